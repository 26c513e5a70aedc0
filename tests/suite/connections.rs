//! The daemon's connections: a cap on how many it serves at once (503 beyond it, never a hang),
//! a header read timeout that closes half-open and idle connections, graceful shutdown with
//! idle connections open, and a cap lowered to what the open-file limit leaves room for.

use crate::common;

use std::time::{Duration, Instant};

use common::{Dirs, Running, Served, raw_get, read_until_closed, untoil_env};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CAP: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_503_and_half_open_ones_are_closed_after_the_header_timeout()
{
    let dirs = Dirs::new();
    let mut s = dirs.settings();
    s.max_connections = CAP;
    s.header_read_timeout = TIMEOUT;
    let d = Running::start(s).await;
    let addr = d.base.trim_start_matches("http://").to_string();

    // CAP + 50 connections that never finish a request: half of them send part of a header.
    let opened = Instant::now();
    let mut idle = Vec::new();
    for i in 0..CAP + 50 {
        let mut c = TcpStream::connect(&addr).await.expect("connect");
        if i % 2 == 0 {
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("write");
        }
        idle.push(c);
    }
    // A request while they hold every slot: an immediate 503 saying why, not a hang.
    let over = raw_get(&d.base, "/healthz").await;
    assert_eq!(over.status, 503, "{}\n{}", over.head, over.body);
    assert!(over.head.contains("retry-after:"), "{}", over.head);
    assert!(
        over.head.contains("x-content-type-options: nosniff"),
        "{}",
        over.head
    );
    assert!(over.body.contains("connections"), "{}", over.body);

    // Each idle connection ends: those over the cap with the same 503 at once, those within it
    // closed without an answer once the header timeout passes.
    let ends = futures_like_join(idle.into_iter().map(|mut c| async move {
        let raw = read_until_closed(&mut c, TIMEOUT + Duration::from_secs(15)).await;
        (raw.map(|r| r.status), opened.elapsed())
    }))
    .await;
    let refused = ends.iter().filter(|(s, _)| *s == Some(503)).count();
    let closed: Vec<Duration> = ends
        .iter()
        .filter(|(s, _)| *s == Some(0))
        .map(|(_, t)| *t)
        .collect();
    assert!(
        ends.iter().all(|(s, _)| s.is_some()),
        "every connection ends before the deadline: {ends:?}"
    );
    assert!((50..=51).contains(&refused), "{refused} refused: {ends:?}");
    assert!(closed.len() >= CAP - 1, "{} closed: {ends:?}", closed.len());
    assert!(
        closed.iter().all(|t| *t >= TIMEOUT),
        "none is closed before the timeout: {closed:?}"
    );

    // With the half-open connections gone, requests are served again.
    d.wait_for(|| async { raw_get(&d.base, "/healthz").await.status == 200 })
        .await;
    d.stop().await;
}

/// Awaits every future, concurrently, in order.
async fn futures_like_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_connections() {
    let dirs = Dirs::new();
    let mut s = dirs.settings();
    s.header_read_timeout = Duration::from_secs(120);
    let d = Running::start(s).await;
    let addr = d.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    // The idle connections are being served (a request after them is answered).
    assert_eq!(raw_get(&d.base, "/healthz").await.status, 200);
    let started = Instant::now();
    d.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopping took {:?}",
        started.elapsed()
    );
    for mut c in idle {
        assert!(
            read_until_closed(&mut c, Duration::from_secs(10))
                .await
                .is_some(),
            "an idle connection is closed at shutdown"
        );
    }
}

#[test]
fn the_connection_cap_is_lowered_to_what_the_open_file_limit_leaves_room_for() {
    let dirs = Dirs::new();
    // A hard limit of 512 open files: 1024 connections cannot fit; the daemon says so and
    // serves fewer rather than running out of descriptors for its runs.
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg("ulimit -n 512 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_untoil"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "1024",
        ]);
    untoil_env(&mut c, &dirs);
    let mut served = Served::spawn(c);
    let line = served.wait_line(|l| l.contains("open-file limit"));
    assert!(line.contains("512"), "{line}");
    assert!(line.contains("--max-connections"), "{line}");
    assert!(line.contains("LimitNOFILE"), "{line}");
    served.base();
}
