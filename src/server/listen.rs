//! Serving the router on a listener: at most `max_connections` connections at once (one more is
//! answered 503 and closed, never left hanging), each over HTTP/1 with a header read timeout (a
//! connection that does not send a request's headers in time, or idles that long between
//! requests, is closed), and a graceful shutdown that stops accepting, closes idle connections
//! and lets the requests under way finish.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

/// Connections beyond the cap answered at once, each kept open briefly after its 503 so that
/// the client reads the answer before the close; beyond these the 503 is written without
/// waiting and the connection closed.
pub const REFUSING: usize = 64;

/// The longest a refused connection is kept open after its 503.
const LINGER: Duration = Duration::from_secs(2);

/// The answer to a connection beyond the cap.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
x-content-type-options: nosniff\r\n\
connection: close\r\n\
content-length: 71\r\n\
\r\n\
{\"error\":\"too many connections: untoil serves --max-connections at once\"}";

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, or idle between requests.
    pub header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, closes idle
/// connections and returns once the requests under way are answered.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let linger = LINGER.min(limits.header_read_timeout);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream, refusing.clone().try_acquire_owned().ok(), linger);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = graceful.watch(
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone())),
        );
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

/// Answers a connection beyond the cap with [`TOO_MANY`]. With a `permit`, it stays open up to
/// `linger` reading what the client sends, so the close does not discard the answer; without
/// one, the answer is written if the socket takes it at once and the connection closed.
fn refuse(stream: TcpStream, permit: Option<OwnedSemaphorePermit>, linger: Duration) {
    let Some(permit) = permit else {
        let _ = stream.try_write(TOO_MANY);
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(linger, async {
            stream.write_all(TOO_MANY).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
        drop(permit);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_http_answer() {
        let text = String::from_utf8_lossy(TOO_MANY);
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
