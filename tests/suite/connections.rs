//! The daemon's connections: a cap on how many it serves at once (503 beyond it, never a hang),
//! a header read timeout that closes half-open connections (within the cap and beyond it),
//! graceful shutdown with idle connections open, a burst far beyond the cap answered in full,
//! and a cap lowered to what the open-file limit leaves room for.

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
    // A request while they hold every slot: an immediate 503 saying why, not a hang, however
    // its headers arrive.
    let over = raw_get(&d.base, "/healthz").await;
    assert_eq!(over.status, 503, "{}\n{}", over.head, over.body);
    assert!(over.head.contains("retry-after:"), "{}", over.head);
    assert!(
        over.head.contains("x-content-type-options: nosniff"),
        "{}",
        over.head
    );
    assert!(over.body.contains("connections"), "{}", over.body);
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    for piece in [
        "POST /api/v1/alerts/alertmanager HTTP/1.1\r\nHost: x\r",
        "\nContent-Length: 2\r\n",
        "\r\n{}",
    ] {
        slow.write_all(piece.as_bytes()).await.expect("write");
        slow.flush().await.expect("flush");
    }
    let answer = read_until_closed(&mut slow, Duration::from_secs(20)).await;
    assert_eq!(answer.map(|r| r.status), Some(503));

    // Each idle connection, within the cap or beyond it, is closed without an answer once the
    // header timeout passes: none is left open, none is closed before.
    let ends = join_all(idle.into_iter().map(|mut c| async move {
        let raw = read_until_closed(&mut c, TIMEOUT + Duration::from_secs(15)).await;
        (raw.map(|r| r.status), opened.elapsed())
    }))
    .await;
    assert!(
        ends.iter().all(|(s, _)| *s == Some(0)),
        "every connection is closed, without an answer: {ends:?}"
    );
    assert!(
        ends.iter().all(|(_, t)| *t >= TIMEOUT),
        "none is closed before the timeout: {ends:?}"
    );

    // With the half-open connections gone, requests are served again.
    d.wait_for(|| async { raw_get(&d.base, "/healthz").await.status == 200 })
        .await;
    // One request per connection: no idle keep-alive connection holds a slot.
    let served = raw_get(&d.base, "/healthz").await;
    assert!(served.head.contains("connection: close"), "{}", served.head);
    d.stop().await;
}

/// Awaits every future, concurrently, in order.
async fn join_all<F: std::future::Future + Send + 'static>(
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
async fn every_request_of_a_burst_far_beyond_the_cap_gets_an_answer() {
    let dirs = Dirs::new();
    let mut s = dirs.settings();
    s.max_connections = 4;
    let d = Running::start(s).await;
    let body = common::fixture("firing.json");
    let client = reqwest::Client::new();
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(301));
    let mut tasks = Vec::new();
    for _ in 0..300 {
        let (client, gate, body) = (client.clone(), gate.clone(), body.clone());
        let url = format!("{}/api/v1/alerts/alertmanager", d.base);
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            match client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(r) => Ok(r.status().as_u16()),
                Err(e) => Err(format!("{e:?}")),
            }
        }));
    }
    gate.wait().await;
    let mut answers = std::collections::BTreeMap::new();
    for t in tasks {
        let answer = t.await.expect("task");
        *answers.entry(format!("{answer:?}")).or_insert(0) += 1;
    }
    assert!(
        answers.keys().all(|a| a == "Ok(200)" || a == "Ok(503)"),
        "every request is answered 200 or 503: {answers:?}"
    );
    assert!(answers.contains_key("Ok(503)"), "{answers:?}");
    d.stop().await;
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
