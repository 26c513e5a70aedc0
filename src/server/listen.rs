//! Serving the router on a listener: at most `max_connections` connections at once, each over
//! HTTP/1 with a header read timeout (a connection that does not send its request's headers in
//! time is closed), one request per connection (`Connection: close`: no idle keep-alive
//! connection holds a slot, and none is closed under a client about to reuse it), and a
//! graceful shutdown that stops accepting, closes connections that have not sent a request and
//! lets the requests under way finish.
//!
//! A request on a connection beyond the cap is answered 503 at once and the connection closed,
//! never left hanging nor dropped: the answer is written once the request's headers are in,
//! then what the client sends is read until it closes, so that closing does not reset the
//! connection before the client has read the answer; a connection that does not send its
//! headers within the header read timeout is closed, as within the cap. At most `refusing`
//! connections (1024 by default) are being refused at once; beyond that the next one waits (in
//! the listen backlog) for a refusal to end or a slot to free, so the descriptors connections
//! take stay bounded by `max_connections + refusing`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::server::connection::{self, LocalAddr};

/// The answer to a connection beyond the cap.
fn too_many() -> Vec<u8> {
    let body =
        r#"{"error":"too many connections: untoil serves --max-connections at once; retry"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: application/json\r\n\
         retry-after: 1\r\n\
         x-content-type-options: nosniff\r\n\
         connection: close\r\n\
         content-length: {}\r\n\
         \r\n\
         {body}",
        body.len()
    )
    .into_bytes()
}

/// Connections beyond the cap being answered 503 at once, by default.
pub const REFUSING: usize = 1024;

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections beyond the cap being answered 503 at once.
    pub refusing: usize,
    /// How long a connection may take to send its request's headers.
    pub header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, closes the
/// connections that have not sent a request and returns once the requests under way are
/// answered.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusing = Arc::new(Semaphore::new(limits.refusing.max(1)));
    let linger = limits.header_read_timeout;
    let answer: Arc<[u8]> = too_many().into();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(false);
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if !transient(&e) {
                        // Out of descriptors, most likely: wait for some to be freed.
                        warn!("cannot accept a connection: {e}");
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                    continue;
                }
            },
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            // Beyond the cap: a slot that frees meanwhile serves it, else a refusal answers it.
            Err(_) => tokio::select! {
                () = &mut shutdown => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                permit = refusing.clone().acquire_owned() => {
                    if let Ok(permit) = permit {
                        tokio::spawn(refuse(stream, answer.clone(), linger, permit));
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Each request carries its connection's local address: a host the daemon answers to
        // when it listens on every address.
        let local = LocalAddr(stream.local_addr().ok());
        let service = app.clone().map_request(move |mut req: Request<Incoming>| {
            connection::record(req.extensions_mut(), local);
            req
        });
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!("connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Errors of one connection, not of the listener.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// Answers a connection beyond the cap with `answer` once the client has sent a request's
/// headers (an HTTP client takes an answer that comes before its request for a broken
/// connection), then reads what else it sends until it closes, so that the close does not
/// discard the answer; all within `linger`. `permit` is its place among the connections being
/// refused.
async fn refuse(
    mut stream: TcpStream,
    answer: Arc<[u8]>,
    linger: Duration,
    permit: OwnedSemaphorePermit,
) {
    let _ = tokio::time::timeout(linger, async {
        let mut buf = [0u8; 4096];
        let mut head = HeadEnd::default();
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            if head.seen(&buf[..n]) {
                break;
            }
        }
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
    drop(permit);
}

/// Finds the blank line that ends a request's headers (`\r\n\r\n`, or `\n\n` from a client
/// that ends lines with a bare line feed) in bytes read piece by piece.
#[derive(Default)]
struct HeadEnd {
    /// The last bytes of what was read so far (at most 3).
    tail: Vec<u8>,
}

impl HeadEnd {
    /// Takes the next piece; whether the headers have ended.
    fn seen(&mut self, piece: &[u8]) -> bool {
        let mut joined = std::mem::take(&mut self.tail);
        joined.extend_from_slice(piece);
        let found =
            joined.windows(4).any(|w| w == b"\r\n\r\n") || joined.windows(2).any(|w| w == b"\n\n");
        self.tail = joined[joined.len().saturating_sub(3)..].to_vec();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_the_headers_is_found_across_pieces() {
        for pieces in [
            vec![&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]],
            vec![b"GET / HTTP/1.1\r\nHost: x\r", b"\n", b"\r", b"\nbody"],
            vec![b"GET / HTTP/1.1\r\n", b"\r\n"],
            vec![b"GET / HTTP/1.1\n", b"Host: x\n", b"\n"],
        ] {
            let mut head = HeadEnd::default();
            let found = pieces.iter().map(|p| head.seen(p)).collect::<Vec<_>>();
            assert_eq!(found.last(), Some(&true), "{pieces:?}");
            assert_eq!(found.iter().filter(|f| **f).count(), 1, "{pieces:?}");
        }
        let mut head = HeadEnd::default();
        assert!(!head.seen(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        assert!(!head.seen(b"X: y\r\n"));
    }

    #[test]
    fn the_refusal_is_a_whole_http_answer() {
        let answer = too_many();
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 503 "));
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        assert_eq!(length, body.len());
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}
