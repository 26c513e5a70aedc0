//! Storms against the real `untoil` binary (a child process), on 127.0.0.1 only.
//!
//! 1. Ten thousand alerts (distinct fingerprints, each re-sent, some in grouped notifications)
//!    posted by eight concurrent senders while the daemon is SIGKILLed and restarted 24 times:
//!    20 times at random points of the senders' progress (plus up to 300 ms), 4 times at random
//!    moments while the backlog drains. Senders behave like Alertmanager: a 5xx or no answer is
//!    re-sent until a 2xx comes. The runbook's step appends the alert's fingerprint to a file.
//!    The queue keeps its default capacity (10,000): the backlog then grows to thousands of
//!    runs, restarts resume them while the senders' retries pour in, and the store is under
//!    the load that exposes the races (with a queue of 1000 they showed far less often).
//! 2. A burst of ten thousand alerts at once (one notification and one keep-alive connection
//!    each) against a queue of 50: excess gets 503 with Retry-After, the daemon's peak RSS stays
//!    under 300 MiB, every accepted alert runs.
//! 3. Steps that fork daemons, ignore SIGTERM or print without end, run by the daemon: their
//!    timeout holds, the daemon's memory stays bounded, nothing they started survives.
//! 4. A thousand alerts, each to a runbook that needs approval and to one that does not, posted
//!    by the same senders while the daemon is SIGKILLed and restarted 10 times (as in 1) and an
//!    approver approves the runs of every other alert, a few at a time at random moments. No
//!    step of the gated runbook runs unless its run was approved before it started, none runs
//!    twice, no acknowledged alert is lost, the unapproved runs still wait (issue 13, item 4).
//!
//! What "exactly once" means under SIGKILL (checked by the storm test):
//! - (a) every alert has exactly one run record in the store: none lost (every alert was
//!   acknowledged in the end, since the senders retry until a 2xx) and none doubled (dedupe per
//!   runbook, fingerprint and startsAt, across restarts). Every run id a 2xx answer announced is
//!   in the store, and no id is announced twice. A re-send answered 2xx after a first 2xx
//!   answer must report the alert as a duplicate.
//! - (b) the step never ran twice: no fingerprint appears twice in the file the step appends
//!   to. A run interrupted by SIGKILL mid-step is marked `interrupted` at the next start and is
//!   not re-run (at most once for in-flight steps), so its line may or may not be there.
//! - (c) after the last restart every run is final, `succeeded` or `interrupted`, and every
//!   succeeded run has its line in the file.
//! - The store opens; its toil report (monthly and daily rollups) adds up to the runs it holds;
//!   listing the runbook's runs finds them all; every alert episode is listed once and recorded
//!   at least as often as it was acknowledged; no step process is left behind (a scan of /proc
//!   for the test's temporary directory, which every step command names).
//!
//! Sizes: UNTOIL_STORM_ALERTS (default 10000), UNTOIL_STORM_KILLS (default 24),
//! UNTOIL_BURST_ALERTS (default 10000), UNTOIL_APPROVAL_STORM_ALERTS (default 1000),
//! UNTOIL_APPROVAL_STORM_KILLS (default 10); UNTOIL_STORM_SEED replays the kill moments. Run with
//! `--no-capture` to see the figures; a failed storm keeps its directory (daemon log, store,
//! output file) and names it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, Utc};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use untoil::ledger::rollup::milli_minutes;
use untoil::report::period::Period;
use untoil::report::query::Dim;
use untoil::report::toil::toil_report;
use untoil::run::record::RunRecord;
use untoil::run::status::{RunStatus, StepStatus};
use untoil::store::sled::SledStore;
use untoil::store::{RunFilter, Store};

const ALERTS_PATH: &str = "/api/v1/alerts/alertmanager";
/// Peak resident memory allowed to the daemon.
const RSS_LIMIT_KIB: u64 = 300 * 1024;
/// Peak resident memory allowed during the burst: it holds 10,000 connections open at once, and
/// each costs about 28 KiB in a debug build (hyper buffers, keep-alive), so memory is bounded by
/// the connections, not by the alerts (measured: 1,000 -> 87 MiB, 10,000 -> 330-450 MiB).
const BURST_RSS_LIMIT_KIB: u64 = 640 * 1024;
/// Senders handling the storm.
const SENDERS: usize = 8;
/// Alerts per grouped notification.
const GROUP: usize = 4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// splitmix64: enough randomness for kill moments, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = std::env::var("UNTOIL_STORM_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        (Rng(seed), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn http_client() -> reqwest::Client {
    untoil::exec::step::http::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// A temporary directory whose name is unique enough to find our processes in /proc.
struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    fn new(prefix: &str) -> Dirs {
        let root = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        for d in ["runbooks", "plugins", "data"] {
            std::fs::create_dir(root.path().join(d)).expect("mkdir");
        }
        Dirs { root }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }

    /// The directory's name, which every step command and the daemon's arguments contain.
    fn marker(&self) -> String {
        self.root
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    }

    /// Keeps the directory after the test, for a post-mortem.
    fn keep(self) -> PathBuf {
        self.root.keep()
    }

    fn runbook(&self, name: &str, body: &str) {
        std::fs::write(self.path("runbooks").join(format!("{name}.yaml")), body)
            .expect("write runbook");
    }
}

/// A runbook for DiskFull alerts whose one step appends the alert's fingerprint to `file`.
fn recording_runbook(file: &Path) -> String {
    format!(
        "name: record\nowner: team-storm\nservice: storm\ntoil: {{manual_minutes: 3}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nsteps:\n  - name: append\n    timeout: 30s\n    run: printf '%s\\n' {{{{alert.fingerprint}}}} >> {}\n",
        file.display()
    )
}

/// The real daemon binary as a child process.
struct Daemon {
    dirs_root: PathBuf,
    port: u16,
    extra: Vec<String>,
    log: Option<PathBuf>,
    /// UNTOIL_LOG for the daemon.
    log_filter: &'static str,
    child: Option<Child>,
    base: Arc<RwLock<String>>,
    starts: usize,
}

impl Daemon {
    fn new(dirs: &Dirs, extra: &[&str], log: Option<PathBuf>) -> Daemon {
        let port = free_port();
        Daemon {
            dirs_root: dirs.root.path().to_path_buf(),
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log,
            log_filter: "info",
            child: None,
            base: Arc::new(RwLock::new(format!("http://127.0.0.1:{port}"))),
            starts: 0,
        }
    }

    fn base(&self) -> String {
        self.base.read().map(|b| b.clone()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let stderr = match &self.log {
            Some(path) => Stdio::from(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("daemon log"),
            ),
            None => Stdio::null(),
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_untoil"));
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec. The
        // daemon dies with the test process (a cancelled or timed out test leaves none).
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .arg("--runbooks")
            .arg(self.dirs_root.join("runbooks"))
            .arg("--plugins")
            .arg(self.dirs_root.join("plugins"))
            .arg("--data")
            .arg(self.dirs_root.join("data"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.extra)
            .env_remove("UNTOIL_TOKEN")
            .env_remove("UNTOIL_TOKEN_FILE")
            .env_remove("UNTOIL_BASIC_AUTH")
            .env_remove("UNTOIL_BASIC_AUTH_FILE")
            .env_remove("UNTOIL_SERVER")
            .env("UNTOIL_LOG", self.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the untoil binary");
        self.child = Some(child);
        self.starts += 1;
    }

    fn log_tail(&self) -> String {
        let text = self
            .log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    /// Starts the daemon and polls /healthz until it answers (deadline 30 s). When the port was
    /// taken meanwhile, moves to another one.
    async fn start(&mut self, client: &reqwest::Client) -> Duration {
        let began = Instant::now();
        let deadline = began + Duration::from_secs(30);
        self.spawn();
        loop {
            assert!(
                Instant::now() < deadline,
                "the daemon did not become healthy within 30 s:\n{}",
                self.log_tail()
            );
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let tail = self.log_tail();
                assert!(
                    tail.contains("cannot listen"),
                    "the daemon exited at start ({status}):\n{tail}"
                );
                self.port = free_port();
                if let Ok(mut b) = self.base.write() {
                    *b = format!("http://127.0.0.1:{}", self.port);
                }
                self.spawn();
                continue;
            }
            let healthy = client
                .get(format!("{}/healthz", self.base()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return began.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// VmHWM of the running daemon, in KiB.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit (deadline `limit`, then SIGKILL and Err).
    async fn stop(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let mut child = self.child.take().expect("a running daemon");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the daemon did not stop within {limit:?} of SIGTERM (SIGKILLed)"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// Processes whose command line contains one of `needles` (zombies have none).
fn processes_with(needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if needles.iter().any(|n| text.contains(n.as_str())) {
                found.push(format!("{name}: {text}"));
            }
        }
    }
    found
}

/// Polls (deadline `limit`) until no process matches; returns those left.
async fn processes_left(needles: &[String], limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_with(needles);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A distinct, Alertmanager-looking fingerprint for alert `i`.
fn fingerprint(i: usize) -> String {
    let mut r = Rng(i as u64 ^ 0x5eed);
    format!("{:016x}", r.next())
}

/// An Alertmanager notification (the fixture, with our alerts) for alerts `ids`.
fn notification(template: &Value, ids: &[usize]) -> Vec<u8> {
    let mut n = template.clone();
    let first = template["alerts"][0].clone();
    let alerts: Vec<Value> = ids
        .iter()
        .map(|&i| {
            let mut a = first.clone();
            a["fingerprint"] = json!(fingerprint(i));
            a["labels"]["instance"] = json!(format!("host-{i}"));
            a
        })
        .collect();
    n["alerts"] = Value::Array(alerts);
    serde_json::to_vec(&n).expect("json")
}

fn template() -> Value {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alertmanager/firing.json"
    ))
    .expect("the Alertmanager fixture (tests/fixtures) must exist");
    serde_json::from_slice(&bytes).expect("fixture json")
}

/// What the senders saw.
#[derive(Default)]
struct Seen {
    posts: AtomicUsize,
    acked: AtomicUsize,
    /// Alerts whose first delivery was acknowledged: the senders' progress.
    delivered: AtomicUsize,
    unavailable: AtomicUsize,
    other_5xx: AtomicUsize,
    no_answer: AtomicUsize,
    /// Alerts whose first delivery got a 5xx or no answer.
    retried: Mutex<HashSet<String>>,
    /// Run ids announced by 2xx answers.
    accepted: Mutex<Vec<String>>,
    /// Acknowledged deliveries per fingerprint.
    acks: Mutex<HashMap<String, u64>>,
    problems: Mutex<Vec<String>>,
}

impl Seen {
    fn problem(&self, p: String) {
        if let Ok(mut v) = self.problems.lock() {
            v.push(p);
        }
    }
}

/// Posts `body` until a 2xx answer, as Alertmanager does (short backoff here, to keep the test
/// fast; Alertmanager backs off exponentially too). Returns the answer and whether a retry was
/// needed.
async fn deliver(
    client: &reqwest::Client,
    base: &RwLock<String>,
    body: &[u8],
    seen: &Seen,
    deadline: Instant,
) -> (Value, bool) {
    let mut backoff = Duration::from_millis(5);
    let mut retried = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "an alert could not be delivered before the deadline"
        );
        let url = format!(
            "{}{ALERTS_PATH}",
            base.read().map(|b| b.clone()).unwrap_or_default()
        );
        seen.posts.fetch_add(1, Ordering::Relaxed);
        let answer = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(v) => {
                    seen.acked.fetch_add(1, Ordering::Relaxed);
                    return (v, retried);
                }
                // Killed between the status line and the body: not an acknowledgement.
                Err(_) => {
                    seen.no_answer.fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(r) if r.status().as_u16() == 503 => {
                seen.unavailable.fetch_add(1, Ordering::Relaxed);
                if r.headers().get("retry-after").is_none() {
                    seen.problem("a 503 without Retry-After".into());
                }
            }
            Ok(r) if r.status().is_server_error() => {
                seen.other_5xx.fetch_add(1, Ordering::Relaxed);
                seen.problem(format!("unexpected {}", r.status()));
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                panic!("the webhook answered {status}: {text}");
            }
            Err(_) => {
                seen.no_answer.fetch_add(1, Ordering::Relaxed);
            }
        }
        retried = true;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// One sender: for each chunk of its alerts, a first delivery (grouped for one chunk in three,
/// one notification per alert otherwise), then a grouped re-send of the chunk, then for every
/// other chunk one more re-send of its first alert alone. Each alert runs `runbooks` runbooks.
async fn sender(
    client: reqwest::Client,
    base: Arc<RwLock<String>>,
    template: Arc<Value>,
    alerts: Vec<usize>,
    seen: Arc<Seen>,
    deadline: Instant,
    runbooks: usize,
) {
    let ack = |ids: &[usize], answer: &Value| {
        if let Ok(mut a) = seen.acks.lock() {
            for &i in ids {
                *a.entry(fingerprint(i)).or_default() += 1;
            }
        }
        if let (Ok(mut acc), Some(ids)) = (seen.accepted.lock(), answer["accepted"].as_array()) {
            acc.extend(ids.iter().filter_map(|v| v.as_str().map(String::from)));
        }
    };
    for (c, chunk) in alerts.chunks(GROUP).enumerate() {
        let firsts: Vec<Vec<usize>> = if c % 3 == 0 {
            vec![chunk.to_vec()]
        } else {
            chunk.iter().map(|&i| vec![i]).collect()
        };
        for ids in firsts {
            let (answer, retried) = deliver(
                &client,
                &base,
                &notification(&template, &ids),
                &seen,
                deadline,
            )
            .await;
            if let (true, Ok(mut r)) = (retried, seen.retried.lock()) {
                r.extend(ids.iter().map(|&i| fingerprint(i)));
            }
            seen.delivered.fetch_add(ids.len(), Ordering::Relaxed);
            ack(&ids, &answer);
        }
        // Re-sends of alerts already acknowledged: duplicates, never a second run.
        let mut resends = vec![chunk.to_vec()];
        if c % 2 == 0 {
            resends.push(vec![chunk[0]]);
        }
        for ids in resends {
            let (answer, _) = deliver(
                &client,
                &base,
                &notification(&template, &ids),
                &seen,
                deadline,
            )
            .await;
            let accepted = answer["accepted"].as_array().map_or(0, Vec::len);
            if accepted != 0 || answer["duplicates"] != json!(ids.len() * runbooks) {
                seen.problem(format!(
                    "a re-send of acknowledged alerts {:?} was not a duplicate: {answer}",
                    ids.iter().map(|&i| fingerprint(i)).collect::<Vec<_>>()
                ));
            }
            ack(&ids, &answer);
        }
    }
}

/// Waits (deadline `limit`) until the daemon has no queued or running run.
async fn wait_idle(client: &reqwest::Client, base: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut busy = false;
        for status in ["queued", "running"] {
            let r = client
                .get(format!("{base}/api/v1/runs?status={status}&limit=1"))
                .send()
                .await;
            let runs: Vec<Value> = match r {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => vec![json!({})],
            };
            busy |= !runs.is_empty();
        }
        if !busy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "runs still queued or running after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lines of the file the recording step appends to, counted.
fn ran_lines(path: &Path) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = HashMap::new();
    for line in text.lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn last_of_month(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|n| n.pred_opt())
        .unwrap_or(d)
}

/// Checks that the toil report (from monthly and from daily rollups) adds up to `runs`.
async fn check_reports(store: &SledStore, runs: &[RunRecord], problems: &mut Vec<String>) {
    let today = Utc::now().date_naive();
    let earliest = runs
        .iter()
        .map(|r| r.started_at.unwrap_or(r.created_at).date_naive())
        .min()
        .unwrap_or(today);
    // Whole months, so the report without day grouping reads the monthly rollups.
    let period = Period {
        from: first_of_month(earliest),
        to: last_of_month(today),
    };
    let monthly = toil_report(store, period, &[]).await.expect("toil report");
    let daily = toil_report(store, period, &[Dim::Day])
        .await
        .expect("daily toil report");
    let by_runbook = toil_report(store, period, &[Dim::Runbook, Dim::Cause])
        .await
        .expect("report");
    let count = |s: RunStatus| runs.iter().filter(|r| r.status == s).count() as u64;
    let counted: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| !r.dry_run && r.status.is_final() && r.status != RunStatus::Skipped)
        .collect();
    let toil: u64 = counted
        .iter()
        .map(|r| milli_minutes(r.toil.as_ref().map_or(0.0, |t| t.minutes)))
        .sum();
    for (name, report) in [
        ("monthly", &monthly),
        ("daily", &daily),
        ("by runbook", &by_runbook),
    ] {
        let t = &report.total_rollup;
        // Interrupted runs (a storm's crashes) are their own column, not failures.
        let want = (
            counted.len() as u64,
            count(RunStatus::Succeeded) + count(RunStatus::Noop),
            count(RunStatus::Failed) + count(RunStatus::TimedOut),
            count(RunStatus::Interrupted),
            count(RunStatus::Cancelled),
            toil,
        );
        let got = (
            t.runs,
            t.succeeded + t.noop,
            t.failed,
            t.interrupted,
            t.cancelled,
            t.toil_milli_minutes,
        );
        if got != want {
            problems.push(format!(
                "the {name} toil report does not reconcile: (runs, succeeded + noop, failed, interrupted, cancelled, toil) = {got:?}, the runs give {want:?}"
            ));
        }
    }
    if let [row] = by_runbook.rows.as_slice() {
        if row.group != ["record", "alert"] {
            problems.push(format!("unexpected report group {:?}", row.group));
        }
    } else {
        problems.push(format!(
            "the report should have one row, has {}",
            by_runbook.rows.len()
        ));
    }
}

/// Sleeps `d` while reaping senders that finish (re-raising their panics); notes when the last
/// one finished.
async fn pause(senders: &mut JoinSet<()>, ended: &mut Option<Instant>, d: Duration) {
    let wait = tokio::time::sleep(d);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            _ = &mut wait => return,
            done = senders.join_next(), if !senders.is_empty() => {
                if let Some(Err(e)) = done {
                    std::panic::resume_unwind(e.into_panic());
                }
                if senders.is_empty() {
                    ended.get_or_insert_with(Instant::now);
                }
            }
        }
    }
}

/// What [`kill_at_random_moments`] did.
struct Killed {
    kills: usize,
    /// The daemons' peak resident memory, in KiB.
    peak_rss: u64,
    restart_times: Vec<Duration>,
    /// When the last sender finished.
    sending_ended: Option<Instant>,
}

/// The killer: SIGKILLs and restarts the daemon `kills` times, then waits for the senders. Kill
/// moments: random points of the senders' progress (of the `n` alerts, those whose first
/// delivery was acknowledged) plus up to 300 ms, then up to 4 random moments while the backlog
/// drains. Tied to progress, so the number of kills, hence the test's length, stays the same
/// however fast the machine is.
async fn kill_at_random_moments(
    daemon: &mut Daemon,
    client: &reqwest::Client,
    senders: &mut JoinSet<()>,
    seen: &Seen,
    rng: &mut Rng,
    n: usize,
    kills: usize,
) -> Killed {
    let drain_kills = kills.min(4);
    let mut points: Vec<usize> = (0..kills - drain_kills)
        .map(|_| rng.below(n as u64) as usize)
        .collect();
    points.sort_unstable();
    let moments = points
        .into_iter()
        .map(Some)
        .chain(std::iter::repeat_n(None, drain_kills));
    let mut killed = Killed {
        kills: 0,
        peak_rss: 0,
        restart_times: Vec::new(),
        sending_ended: None,
    };
    let ended = &mut killed.sending_ended;
    for point in moments {
        match point {
            Some(p) => {
                while seen.delivered.load(Ordering::Relaxed) < p && !senders.is_empty() {
                    pause(senders, ended, Duration::from_millis(5)).await;
                }
                let jitter = Duration::from_millis(rng.below(300));
                pause(senders, ended, jitter).await;
            }
            None => {
                while !senders.is_empty() {
                    pause(senders, ended, Duration::from_secs(1)).await;
                }
                let gap = Duration::from_millis(rng.below(1500));
                pause(senders, ended, gap).await;
            }
        }
        killed.peak_rss = killed.peak_rss.max(daemon.peak_rss_kib().unwrap_or(0));
        daemon.sigkill();
        killed.kills += 1;
        killed.restart_times.push(daemon.start(client).await);
    }
    while !senders.is_empty() {
        pause(senders, ended, Duration::from_secs(1)).await;
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_alert_runs_exactly_once_while_the_daemon_is_sigkilled_at_random_moments()
 {
    let began = Instant::now();
    let n = env_usize("UNTOIL_STORM_ALERTS", 10_000);
    let kills_wanted = env_usize("UNTOIL_STORM_KILLS", 24);
    let (mut rng, seed) = Rng::seeded();
    let dirs = Dirs::new("untoil-storm-");
    let ran = dirs.path("ran.txt");
    dirs.runbook("record", &recording_runbook(&ran));
    let client = http_client();
    let mut daemon = Daemon::new(
        &dirs,
        &["--workers", "4", "--shutdown-grace", "10s"],
        Some(dirs.path("daemon.log")),
    );
    daemon.start(&client).await;

    // Senders.
    let template = Arc::new(template());
    let seen = Arc::new(Seen::default());
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut senders = JoinSet::new();
    for s in 0..SENDERS {
        let alerts: Vec<usize> = (0..n).filter(|i| i % SENDERS == s).collect();
        senders.spawn(sender(
            client.clone(),
            daemon.base.clone(),
            template.clone(),
            alerts,
            seen.clone(),
            deadline,
            1,
        ));
    }

    let Killed {
        kills,
        mut peak_rss,
        restart_times,
        sending_ended,
    } = kill_at_random_moments(
        &mut daemon,
        &client,
        &mut senders,
        &seen,
        &mut rng,
        n,
        kills_wanted,
    )
    .await;
    let sending_took = sending_ended.unwrap_or_else(Instant::now) - began;

    // After the last restart: everything queued runs.
    wait_idle(&client, &daemon.base(), Duration::from_secs(180)).await;
    peak_rss = peak_rss.max(daemon.peak_rss_kib().unwrap_or(0));
    let status = daemon
        .stop(Duration::from_secs(30))
        .await
        .expect("the daemon stops on SIGTERM");
    let starts = daemon.starts;
    let left = processes_left(&[dirs.marker()], Duration::from_secs(5)).await;

    // The store, opened directly.
    let store = SledStore::open(&dirs.path("data")).expect("the store opens after the storm");
    let runs = store
        .list_runs(&RunFilter::default())
        .await
        .expect("list runs");
    let mut problems: Vec<String> = seen.problems.lock().map(|p| p.clone()).unwrap_or_default();
    if !status.success() {
        problems.push(format!("the daemon exited with {status} on SIGTERM"));
    }
    if !left.is_empty() {
        problems.push(format!("processes left behind: {left:?}"));
    }

    // (a) exactly one run record per alert.
    let expected: HashSet<String> = (0..n).map(fingerprint).collect();
    let mut by_fp: HashMap<String, Vec<&RunRecord>> = HashMap::new();
    for r in &runs {
        match &r.cause {
            untoil::run::cause::Cause::Alert { fingerprint, .. } => {
                by_fp.entry(fingerprint.clone()).or_default().push(r)
            }
            other => problems.push(format!("a run with an unexpected cause {other:?}")),
        }
    }
    let acks = seen.acks.lock().map(|a| a.clone()).unwrap_or_default();
    let unacked = expected.iter().filter(|f| !acks.contains_key(*f)).count();
    let lost: Vec<&String> = expected
        .iter()
        .filter(|f| !by_fp.contains_key(*f))
        .collect();
    let doubled: Vec<(&String, Vec<String>)> = by_fp
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(f, v)| (f, v.iter().map(|r| r.id.to_string()).collect()))
        .collect();
    let strangers = by_fp.keys().filter(|f| !expected.contains(*f)).count();
    if unacked > 0 {
        problems.push(format!("{unacked} alerts were never acknowledged"));
    }
    if !lost.is_empty() {
        problems.push(format!(
            "{} acknowledged alerts have no run, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    if !doubled.is_empty() {
        problems.push(format!(
            "{} alerts have more than one run record, e.g. {:?}",
            doubled.len(),
            &doubled[..doubled.len().min(5)]
        ));
    }
    if strangers > 0 {
        problems.push(format!("{strangers} runs for alerts never sent"));
    }
    let ids: HashSet<String> = runs.iter().map(|r| r.id.to_string()).collect();
    let announced = seen.accepted.lock().map(|a| a.clone()).unwrap_or_default();
    let announced_set: HashSet<&String> = announced.iter().collect();
    if announced_set.len() != announced.len() {
        problems.push(format!(
            "{} run ids were announced twice",
            announced.len() - announced_set.len()
        ));
    }
    let announced_lost = announced.iter().filter(|id| !ids.contains(*id)).count();
    if announced_lost > 0 {
        problems.push(format!(
            "{announced_lost} run ids announced in 2xx answers are not in the store"
        ));
    }

    // (b) no step ran twice; (c) every run final, succeeded ones have their line.
    let lines = ran_lines(&ran);
    let ran_twice: Vec<(&String, &usize)> = lines.iter().filter(|(_, c)| **c > 1).collect();
    if !ran_twice.is_empty() {
        let example: Vec<String> = ran_twice
            .iter()
            .take(5)
            .map(|(f, c)| {
                let runs: Vec<String> = by_fp
                    .get(*f)
                    .map(|v| {
                        v.iter()
                            .map(|r| format!("{} {} {:?}", r.id, r.status, r.error))
                            .collect()
                    })
                    .unwrap_or_default();
                format!("{f} x{c}: runs {runs:?}")
            })
            .collect();
        problems.push(format!(
            "{} alerts' steps ran more than once (at most once is promised), e.g. {example:?}",
            ran_twice.len()
        ));
    }
    let unknown_lines = lines.keys().filter(|l| !expected.contains(*l)).count();
    if unknown_lines > 0 {
        problems.push(format!(
            "{unknown_lines} unexpected lines in {}",
            ran.display()
        ));
    }
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let (mut interrupted, mut interrupted_with_line) = (0, 0);
    for r in &runs {
        *statuses.entry(r.status.to_string()).or_default() += 1;
        let fp = match &r.cause {
            untoil::run::cause::Cause::Alert { fingerprint, .. } => fingerprint.as_str(),
            _ => "",
        };
        match r.status {
            RunStatus::Succeeded => {
                if !lines.contains_key(fp) {
                    problems.push(format!("run {} succeeded but its step left no line", r.id));
                }
            }
            RunStatus::Interrupted => {
                interrupted += 1;
                if lines.contains_key(fp) {
                    interrupted_with_line += 1;
                }
            }
            other => problems.push(format!(
                "run {} ended {other} ({:?}), expected succeeded or interrupted",
                r.id, r.error
            )),
        }
    }

    // The store's reports reconcile with its runs; every acknowledged alert was recorded.
    check_reports(&store, &runs, &mut problems).await;
    let (from, to) = Period {
        from: Utc::now().date_naive() - chrono::Duration::days(2),
        to: Utc::now().date_naive(),
    }
    .instants();
    let episodes = store.alerts(from, to).await.expect("alert episodes");
    let mut episode_count: HashMap<&str, u64> = HashMap::new();
    for e in &episodes {
        *episode_count.entry(e.fingerprint.as_str()).or_default() += 1;
        if e.matched != ["record"] {
            problems.push(format!("episode {} matched {:?}", e.fingerprint, e.matched));
        }
        let acked = acks.get(&e.fingerprint).copied().unwrap_or(0);
        if e.times_received < acked {
            problems.push(format!(
                "alert {} was acknowledged {acked} times but recorded as received {} times",
                e.fingerprint, e.times_received
            ));
        }
    }
    let retried = seen.retried.lock().map(|r| r.clone()).unwrap_or_default();
    let miscounted: Vec<String> = expected
        .iter()
        .filter_map(|f| {
            let c = episode_count.get(f.as_str()).copied().unwrap_or(0);
            (c != 1).then(|| {
                let received = episodes
                    .iter()
                    .find(|e| &e.fingerprint == f)
                    .map(|e| (e.received_at, e.times_received));
                format!(
                    "{f}: listed {c} times, (received_at, times_received) {received:?}, acknowledged {} times, first delivery retried: {}",
                    acks.get(f).copied().unwrap_or(0),
                    retried.contains(f)
                )
            })
        })
        .collect();
    if !miscounted.is_empty() {
        problems.push(format!(
            "{} alert episodes are not listed exactly once by the store (the backlog report counts them so): {miscounted:?}",
            miscounted.len()
        ));
    }
    let by_runbook = store
        .list_runs(&RunFilter {
            runbook: Some("record".into()),
            ..RunFilter::default()
        })
        .await
        .expect("list runs of a runbook")
        .len();
    if by_runbook != runs.len() {
        problems.push(format!(
            "listing the runbook's runs gives {by_runbook} runs, the store holds {}",
            runs.len()
        ));
    }

    let restart_max = restart_times.iter().max().copied().unwrap_or_default();
    eprintln!(
        "storm (seed {seed}): {n} alerts, {} deliveries posted ({} acknowledged, {} 503, {} other 5xx, {} without answer), {} alerts retried after a 5xx or no answer; {kills} SIGKILLs, {starts} starts (slowest {restart_max:?}); {} run records ({} lost, {} doubled), statuses {statuses:?}, interrupted {interrupted} ({interrupted_with_line} of them had appended their line), {} fingerprints executed twice; daemon peak RSS {} MiB; sending took {sending_took:?}, total {:?}",
        seen.posts.load(Ordering::Relaxed),
        seen.acked.load(Ordering::Relaxed),
        seen.unavailable.load(Ordering::Relaxed),
        seen.other_5xx.load(Ordering::Relaxed),
        seen.no_answer.load(Ordering::Relaxed),
        retried.len(),
        runs.len(),
        lost.len(),
        doubled.len(),
        ran_twice.len(),
        peak_rss / 1024,
        began.elapsed(),
    );
    assert_eq!(kills, kills_wanted);
    if peak_rss > RSS_LIMIT_KIB {
        problems.push(format!("daemon peak RSS {peak_rss} KiB"));
    }
    drop(store);
    // Keep the evidence on failure: the daemon log, the store and the step's output file.
    assert_no_problems(&problems, seed, dirs);
}

/// Fails with the first 40 problems of a storm and its seed, keeping its directory (daemon log,
/// store, step output) as evidence; passes when there are none.
fn assert_no_problems(problems: &[String], seed: u64, dirs: Dirs) {
    if problems.is_empty() {
        return;
    }
    let kept = dirs.keep();
    panic!(
        "{} problems (seed {seed}, kept in {}):\n{}",
        problems.len(),
        kept.display(),
        problems[..problems.len().min(40)].join("\n")
    );
}

/// A runbook for DiskFull alerts that needs approval, whose one step appends the run's id to
/// `file`.
fn gated_runbook(file: &Path) -> String {
    format!(
        "name: gated\nowner: team-storm\nservice: storm\ntoil: {{manual_minutes: 3}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nguards:\n  approval: required\n  approval_timeout: 1h\nsteps:\n  - name: append\n    timeout: 30s\n    run: printf '%s\\n' {{{{run.id}}}} >> {}\n",
        file.display()
    )
}

/// Who the storm's approvals are by.
const APPROVER: &str = "storm-approver";

/// What the approver did.
#[derive(Default)]
struct Approvals {
    posts: AtomicUsize,
    /// Run ids whose approval was answered 200.
    approved: Mutex<HashSet<String>>,
    /// 409s: the run was no longer waiting (an approval whose answer a kill swallowed).
    conflicts: AtomicUsize,
    no_answer: AtomicUsize,
    problems: Mutex<Vec<String>>,
}

/// One pass of the approver: lists the runs of `gated` waiting for approval and approves those
/// whose alert is in `subset`, each with probability `percent`% (100 for all). Returns how many
/// of the subset were waiting, or None when the daemon did not answer the list.
async fn approve_pending(
    client: &reqwest::Client,
    base: &RwLock<String>,
    subset: &HashSet<String>,
    approvals: &Approvals,
    rng: &mut Rng,
    percent: u64,
) -> Option<usize> {
    let base = base.read().map(|b| b.clone()).unwrap_or_default();
    let pending: Vec<Value> = client
        .get(format!(
            "{base}/api/v1/runs?runbook=gated&status=pending_approval&limit=0"
        ))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let eligible: Vec<&str> = pending
        .iter()
        .filter(|r| {
            r["cause"]["fingerprint"]
                .as_str()
                .is_some_and(|f| subset.contains(f))
        })
        .filter_map(|r| r["id"].as_str())
        .collect();
    for id in &eligible {
        if rng.below(100) >= percent {
            continue;
        }
        approvals.posts.fetch_add(1, Ordering::Relaxed);
        let answer = client
            .post(format!("{base}/api/v1/runs/{id}/approve"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"by":"{APPROVER}"}}"#))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match answer {
            Ok(r) if r.status().as_u16() == 200 => {
                // Killed between the status line and the body: not an acknowledgement.
                if r.json::<Value>().await.is_err() {
                    approvals.no_answer.fetch_add(1, Ordering::Relaxed);
                } else if let Ok(mut a) = approvals.approved.lock() {
                    a.insert(id.to_string());
                }
            }
            Ok(r) if r.status().as_u16() == 409 => {
                approvals.conflicts.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) if r.status().as_u16() == 503 => {
                approvals.no_answer.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                if let Ok(mut p) = approvals.problems.lock() {
                    p.push(format!("approving {id} was answered {status}: {text}"));
                }
            }
            Err(_) => {
                approvals.no_answer.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Some(eligible.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_step_of_a_runbook_needing_approval_runs_unapproved_while_the_daemon_is_sigkilled_at_random_moments()
 {
    let began = Instant::now();
    let n = env_usize("UNTOIL_APPROVAL_STORM_ALERTS", 1000);
    let kills_wanted = env_usize("UNTOIL_APPROVAL_STORM_KILLS", 10);
    let (mut rng, seed) = Rng::seeded();
    let dirs = Dirs::new("untoil-approval-storm-");
    let ran = dirs.path("ran.txt");
    let gated = dirs.path("gated.txt");
    // Every alert runs both: one that needs approval, one that does not.
    dirs.runbook("record", &recording_runbook(&ran));
    dirs.runbook("gated", &gated_runbook(&gated));
    let log = dirs.path("daemon.log");
    let client = http_client();
    let mut daemon = Daemon::new(
        &dirs,
        &["--workers", "4", "--shutdown-grace", "10s"],
        Some(log.clone()),
    );
    daemon.start(&client).await;

    let template = Arc::new(template());
    let seen = Arc::new(Seen::default());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut senders = JoinSet::new();
    for s in 0..SENDERS {
        let alerts: Vec<usize> = (0..n).filter(|i| i % SENDERS == s).collect();
        senders.spawn(sender(
            client.clone(),
            daemon.base.clone(),
            template.clone(),
            alerts,
            seen.clone(),
            deadline,
            2,
        ));
    }

    // The approver approves the runs of every other alert, a few at a time at random moments,
    // while the senders post and the killer kills; the rest are never approved.
    let subset: Arc<HashSet<String>> = Arc::new((0..n).step_by(2).map(fingerprint).collect());
    let approvals = Arc::new(Approvals::default());
    let approving = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let approver = {
        let (client, base, subset, approvals, approving) = (
            client.clone(),
            daemon.base.clone(),
            subset.clone(),
            approvals.clone(),
            approving.clone(),
        );
        let mut rng = Rng(rng.next());
        tokio::spawn(async move {
            while approving.load(Ordering::Relaxed) {
                approve_pending(&client, &base, &subset, &approvals, &mut rng, 30).await;
                tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
            }
        })
    };

    let killed = kill_at_random_moments(
        &mut daemon,
        &client,
        &mut senders,
        &seen,
        &mut rng,
        n,
        kills_wanted,
    )
    .await;
    approving.store(false, Ordering::Relaxed);
    approver.await.expect("the approver");

    // After the last restart: the rest of the subset approved, everything approved run.
    let approve_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting =
            approve_pending(&client, &daemon.base, &subset, &approvals, &mut rng, 100).await;
        if waiting == Some(0) {
            break;
        }
        assert!(
            Instant::now() < approve_deadline,
            "runs of the subset still wait for approval after 60 s ({waiting:?})"
        );
    }
    wait_idle(&client, &daemon.base(), Duration::from_secs(120)).await;
    let status = daemon
        .stop(Duration::from_secs(30))
        .await
        .expect("the daemon stops on SIGTERM");
    let left = processes_left(&[dirs.marker()], Duration::from_secs(5)).await;

    let store = SledStore::open(&dirs.path("data")).expect("the store opens after the storm");
    let runs = store
        .list_runs(&RunFilter::default())
        .await
        .expect("list runs");
    let mut problems: Vec<String> = seen.problems.lock().map(|p| p.clone()).unwrap_or_default();
    problems.extend(
        approvals
            .problems
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default(),
    );
    if !status.success() {
        problems.push(format!("the daemon exited with {status} on SIGTERM"));
    }
    if !left.is_empty() {
        problems.push(format!("processes left behind: {left:?}"));
    }

    // Every acknowledged alert has one run of each runbook, and every announced run is stored.
    let mut by_alert: HashMap<(&str, &str), Vec<&RunRecord>> = HashMap::new();
    for r in &runs {
        match &r.cause {
            untoil::run::cause::Cause::Alert { fingerprint, .. } => by_alert
                .entry((r.runbook.as_str(), fingerprint.as_str()))
                .or_default()
                .push(r),
            other => problems.push(format!("a run with an unexpected cause {other:?}")),
        }
    }
    let acks = seen.acks.lock().map(|a| a.clone()).unwrap_or_default();
    let expected: Vec<String> = (0..n).map(fingerprint).collect();
    for f in &expected {
        if !acks.contains_key(f) {
            problems.push(format!("alert {f} was never acknowledged"));
        }
        for runbook in ["record", "gated"] {
            let count = by_alert.get(&(runbook, f.as_str())).map_or(0, Vec::len);
            if count != 1 {
                problems.push(format!("alert {f} has {count} runs of {runbook}"));
            }
        }
    }
    if by_alert.len() != 2 * n {
        problems.push(format!(
            "{} (runbook, alert) pairs have runs, {} expected",
            by_alert.len(),
            2 * n
        ));
    }
    let by_id: HashMap<String, &RunRecord> = runs.iter().map(|r| (r.id.to_string(), r)).collect();
    let announced = seen.accepted.lock().map(|a| a.clone()).unwrap_or_default();
    if announced.iter().collect::<HashSet<_>>().len() != announced.len() {
        problems.push("a run id was announced twice".into());
    }
    let announced_lost = announced
        .iter()
        .filter(|id| !by_id.contains_key(*id))
        .count();
    if announced_lost > 0 {
        problems.push(format!(
            "{announced_lost} run ids announced in 2xx answers are not in the store"
        ));
    }

    // Every execution of the gated step belongs to a run of the subset, approved by the approver
    // before it started, and ran once (no authentication here: the principal is anonymous and the
    // approver's name the claim beside it).
    let approved_by = |r: &RunRecord| {
        r.approval.as_ref().is_some_and(|a| {
            a.approved
                && a.claimed_by.as_deref() == Some(APPROVER)
                && r.started_at.is_some_and(|s| a.at <= s)
        })
    };
    let executed = ran_lines(&gated);
    for (id, count) in &executed {
        if *count > 1 {
            problems.push(format!("gated run {id} executed {count} times"));
        }
        match by_id.get(id) {
            None => problems.push(format!("{id} executed the gated step but is no run")),
            Some(r) => {
                let in_subset = matches!(&r.cause, untoil::run::cause::Cause::Alert { fingerprint, .. } if subset.contains(fingerprint));
                if r.runbook != "gated" || !in_subset || !approved_by(r) {
                    problems.push(format!(
                        "run {id} executed the gated step without an approval before it: {} {} (in the subset: {in_subset}), approval {:?}, started {:?}",
                        r.runbook, r.status, r.approval, r.started_at
                    ));
                }
            }
        }
    }
    // Every run is final but the unapproved ones, which still wait and never started.
    let recorded = ran_lines(&ran);
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for r in &runs {
        *statuses
            .entry(format!("{} {}", r.runbook, r.status))
            .or_default() += 1;
        let fp = match &r.cause {
            untoil::run::cause::Cause::Alert { fingerprint, .. } => fingerprint.as_str(),
            _ => "",
        };
        let line = if r.runbook == "gated" {
            executed.contains_key(&r.id.to_string())
        } else {
            recorded.contains_key(fp)
        };
        let fine = match (r.runbook.as_str(), subset.contains(fp), r.status) {
            ("gated", true, RunStatus::Succeeded) => line && approved_by(r),
            // Killed mid-step: not run again, its line may be there.
            ("gated", true, RunStatus::Interrupted) => approved_by(r),
            ("gated", false, RunStatus::PendingApproval) => {
                r.approval.is_none() && r.started_at.is_none() && !line
            }
            ("record", _, RunStatus::Succeeded) => line,
            ("record", _, RunStatus::Interrupted) => true,
            _ => false,
        };
        if !fine {
            problems.push(format!(
                "{} run {} (alert in the approved subset: {}) is {}, step line: {line}, approval {:?}, started {:?}, error {:?}",
                r.runbook,
                r.id,
                subset.contains(fp),
                r.status,
                r.approval,
                r.started_at,
                r.error
            ));
        }
    }
    let record_twice = recorded.values().filter(|c| **c > 1).count();
    if record_twice > 0 {
        problems.push(format!("{record_twice} alerts' record steps ran twice"));
    }
    // An approval answered 200 is durable.
    let approved = approvals
        .approved
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    for id in &approved {
        if !by_id.get(id).is_some_and(|r| approved_by(r)) {
            problems.push(format!(
                "run {id} was approved (200) but the store does not say so: {:?}",
                by_id.get(id).map(|r| (&r.status, &r.approval))
            ));
        }
    }
    // No run was ever stored queued without its approval decision (a restart would have had to
    // put it back to wait: see engine::Engine::resume).
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let rescued = log_text
        .lines()
        .filter(|l| l.contains("needs an approval it never got"))
        .count();
    if rescued > 0 {
        problems.push(format!(
            "{rescued} runs were found queued without their approval decision at a restart"
        ));
    }

    eprintln!(
        "approval storm (seed {seed}): {n} alerts to two runbooks, {} deliveries posted ({} acknowledged, {} 503, {} without answer); {} approvals posted ({} answered 200, {} 409, {} without answer); {} SIGKILLs (slowest restart {:?}); {} runs: {statuses:?}; {} gated steps executed; daemon peak RSS {} MiB; total {:?}",
        seen.posts.load(Ordering::Relaxed),
        seen.acked.load(Ordering::Relaxed),
        seen.unavailable.load(Ordering::Relaxed),
        seen.no_answer.load(Ordering::Relaxed),
        approvals.posts.load(Ordering::Relaxed),
        approved.len(),
        approvals.conflicts.load(Ordering::Relaxed),
        approvals.no_answer.load(Ordering::Relaxed),
        killed.kills,
        killed
            .restart_times
            .iter()
            .max()
            .copied()
            .unwrap_or_default(),
        runs.len(),
        executed.len(),
        killed.peak_rss / 1024,
        began.elapsed(),
    );
    assert_eq!(killed.kills, kills_wanted);
    drop(store);
    assert_no_problems(&problems, seed, dirs);
}

/// What one alert of the burst got.
enum Outcome {
    Accepted(Vec<String>),
    Unavailable(Option<String>),
    Other(u16, String),
    NoAnswer(String),
}

/// Posts one alert notification of the burst; what came back.
async fn send_alert(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Outcome {
    match client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let text = r.text().await.unwrap_or_default();
            match status {
                200 => {
                    let v: Value = serde_json::from_str(&text).unwrap_or_default();
                    Outcome::Accepted(
                        v["accepted"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|id| id.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    )
                }
                503 => Outcome::Unavailable(retry_after),
                other => Outcome::Other(other, text),
            }
        }
        Err(e) => {
            // The whole chain: reqwest's own text never says what went wrong.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            Outcome::NoAnswer(text)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_alerts_beyond_a_small_queue_gets_503_with_retry_after_bounded_memory_and_runs_everything_accepted()
 {
    let began = Instant::now();
    let n = env_usize("UNTOIL_BURST_ALERTS", 10_000);
    let dirs = Dirs::new("untoil-burst-");
    let ran = dirs.path("ran.txt");
    dirs.runbook("record", &recording_runbook(&ran));
    let client = http_client();
    let mut daemon = Daemon::new(
        &dirs,
        // The burst's own client is starved on a loaded machine: between connecting and writing
        // its request, more than the default 10 s header timeout passed for hundreds of its
        // connections, which the daemon then rightly closed as slow clients. That timeout has its
        // own test (connections::); here it must not count the test's own slowness.
        &[
            "--workers",
            "2",
            "--queue-capacity",
            "50",
            "--header-read-timeout",
            "120s",
        ],
        Some(dirs.path("daemon.log")),
    );
    daemon.start(&client).await;
    let rss_at_start = daemon.peak_rss_kib().unwrap_or(0);
    let template = template();
    let url = format!("{}{ALERTS_PATH}", daemon.base());

    // Every alert in its own notification, all fired at once.
    let gate = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let body = notification(&template, &[i]);
        let (client, url, gate) = (client.clone(), url.clone(), gate.clone());
        tasks.spawn(async move {
            gate.wait().await;
            // As Alertmanager does, a request that got no answer at all (its connection reset
            // or closed by the kernel's overflowing listen queue, on a loaded machine) is sent
            // again: it was not acknowledged, so nothing is lost. At most 5 times.
            let mut sent = 0;
            let answer = loop {
                sent += 1;
                let answer = send_alert(&client, &url, body.clone()).await;
                if !matches!(answer, Outcome::NoAnswer(_)) || sent == 5 {
                    break answer;
                }
            };
            (i, answer, sent - 1)
        });
    }
    // Samples the daemon's threads and resident memory during the burst.
    let pid = daemon.pid().unwrap_or(0);
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let (mut threads, mut rss) = (0u64, 0u64);
            while sampling.load(Ordering::Relaxed) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let field = |name: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                threads = threads.max(field("Threads:"));
                rss = rss.max(field("VmRSS:"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (threads, rss)
        })
    };
    let fired = Instant::now();
    gate.wait().await;
    let mut accepted: HashMap<String, String> = HashMap::new();
    let (mut unavailable, mut others, mut no_answer) = (0, 0, Vec::new());
    let mut resent = 0;
    let mut acknowledged_again = HashSet::new();
    let mut problems = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, answer, again) = done.expect("a burst task");
        resent += again;
        match answer {
            // Sent again after a reset that came after the daemon had queued it: the second
            // send is a duplicate, acknowledged without a run; its run is the first send's.
            Outcome::Accepted(ids) if ids.is_empty() && again > 0 => {
                acknowledged_again.insert(fingerprint(i));
            }
            Outcome::Accepted(ids) => {
                if ids.len() != 1 {
                    problems.push(format!("alert {i} was accepted as {ids:?}"));
                }
                for id in ids {
                    accepted.insert(id, fingerprint(i));
                }
            }
            Outcome::Unavailable(retry_after) => {
                unavailable += 1;
                if retry_after
                    .as_deref()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .is_none_or(|s| s == 0)
                {
                    problems.push(format!("a 503 with Retry-After {retry_after:?}"));
                }
            }
            Outcome::Other(status, text) => {
                others += 1;
                problems.push(format!("alert {i}: {status} {text}"));
            }
            Outcome::NoAnswer(e) => no_answer.push(e),
        }
    }
    let burst_took = fired.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let (peak_threads, sampled_rss) = sampler.await.unwrap_or_default();
    if !no_answer.is_empty() {
        problems.push(format!(
            "{} alerts got no answer in 5 sends, e.g. {:?}",
            no_answer.len(),
            &no_answer[..no_answer.len().min(3)]
        ));
    }
    if unavailable == 0 {
        problems.push("no 503 although the queue holds 50".into());
    }

    // After the burst, everything accepted runs.
    wait_idle(&client, &daemon.base(), Duration::from_secs(120)).await;
    let peak_rss = daemon.peak_rss_kib().unwrap_or(0);
    let status = daemon
        .stop(Duration::from_secs(30))
        .await
        .expect("the daemon stops on SIGTERM");
    if !status.success() {
        problems.push(format!("the daemon exited with {status} on SIGTERM"));
    }
    let store = SledStore::open(&dirs.path("data")).expect("the store opens");
    let runs = store.list_runs(&RunFilter::default()).await.expect("runs");
    let lines = ran_lines(&ran);
    for r in &runs {
        if let untoil::run::cause::Cause::Alert { fingerprint, .. } = &r.cause
            && acknowledged_again.contains(fingerprint)
        {
            accepted.insert(r.id.to_string(), fingerprint.clone());
        }
    }
    for r in &runs {
        match accepted.get(&r.id.to_string()) {
            None => problems.push(format!("run {} was never announced", r.id)),
            Some(fp) => {
                if r.status != RunStatus::Succeeded {
                    problems.push(format!("run {} ended {} ({:?})", r.id, r.status, r.error));
                }
                if lines.get(fp) != Some(&1) {
                    problems.push(format!(
                        "{fp} appears {:?} times in the output",
                        lines.get(fp)
                    ));
                }
            }
        }
    }
    if runs.len() != accepted.len() || lines.len() != accepted.len() {
        problems.push(format!(
            "{} alerts accepted, {} runs in the store, {} fingerprints in the output",
            accepted.len(),
            runs.len(),
            lines.len()
        ));
    }
    check_reports(&store, &runs, &mut problems).await;
    if peak_rss > BURST_RSS_LIMIT_KIB {
        problems.push(format!("daemon peak RSS {peak_rss} KiB"));
    }
    eprintln!(
        "burst: {n} alerts at once against a queue of 50: {} accepted, {unavailable} answered 503 with Retry-After, {} without answer after 5 sends, {resent} sent again, {others} other; burst answered in {burst_took:?}; {} runs, all final; daemon RSS {} MiB at start, peak {} MiB (sampled {} MiB, {peak_threads} threads at most); took {:?}",
        accepted.len(),
        no_answer.len(),
        runs.len(),
        rss_at_start / 1024,
        peak_rss / 1024,
        sampled_rss / 1024,
        began.elapsed()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A step that misbehaves, and what it must come to.
struct Hostile {
    name: &'static str,
    run: String,
    /// Whether it ignores SIGTERM, so that only SIGKILL after the grace period stops it.
    ignores_term: bool,
    /// Whether it prints without end.
    floods: bool,
    /// Whether it ends by itself (leaving children behind).
    exits: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_that_fork_daemons_ignore_sigterm_or_print_gigabytes_stop_at_their_timeout_with_bounded_memory_and_leave_nothing()
 {
    let began = Instant::now();
    let dirs = Dirs::new("untoil-procs-");
    let marker = dirs.marker();
    // A sleep length no other process uses, to find what the steps started.
    let tag = 7_000_000 + std::process::id() % 1_000_000;
    let timeout = 2;
    // The daemon's grace between SIGTERM and SIGKILL (executor::DEFAULT_GRACE).
    let grace = untoil::exec::executor::DEFAULT_GRACE.as_secs();
    let cases = [
        Hostile {
            name: "forks-and-waits",
            run: format!(
                "(sleep {tag} &) ; nohup sleep {tag} >/dev/null 2>&1 & sh -c 'sleep {tag}; :' & sleep {tag}"
            ),
            ignores_term: false,
            floods: false,
            exits: false,
        },
        Hostile {
            name: "forks-and-exits",
            run: format!("(sleep {tag} &) ; nohup sleep {tag} >/dev/null 2>&1 & echo forked"),
            ignores_term: false,
            floods: false,
            exits: true,
        },
        Hostile {
            name: "ignores-term",
            run: format!("trap '' TERM; sleep {tag} & sleep {tag}; wait"),
            ignores_term: true,
            floods: false,
            exits: false,
        },
        Hostile {
            name: "prints-lines",
            run: format!("yes {marker}"),
            ignores_term: false,
            floods: true,
            exits: false,
        },
        Hostile {
            name: "prints-one-endless-line",
            run: format!("head -c {tag}000 /dev/zero"),
            ignores_term: false,
            floods: true,
            exits: false,
        },
        Hostile {
            name: "ignores-term-and-prints",
            run: format!("trap '' TERM; yes {marker}"),
            ignores_term: true,
            floods: true,
            exits: false,
        },
    ];
    for c in &cases {
        dirs.runbook(
            c.name,
            &format!(
                "name: {}\nowner: team-storm\ntoil: {{manual_minutes: 1}}\nsteps:\n  - name: hostile\n    timeout: {timeout}s\n    run: |\n      {}\n",
                c.name, c.run
            ),
        );
    }
    let client = http_client();
    // Warnings only: at info the daemon logs every output line, gigabytes here.
    let mut daemon = Daemon::new(
        &dirs,
        &["--workers", "8", "--shutdown-grace", "2s"],
        Some(dirs.path("daemon.log")),
    );
    daemon.log_filter = "warn";
    daemon.start(&client).await;
    let rss_at_start = daemon.peak_rss_kib().unwrap_or(0);
    let base = daemon.base();
    let mut ids = Vec::new();
    for c in &cases {
        let r = client
            .post(format!("{base}/api/v1/runbooks/{}/runs", c.name))
            .json(&json!({}))
            .send()
            .await
            .expect("start a run");
        assert_eq!(r.status().as_u16(), 202, "{}", c.name);
        let v: Value = r.json().await.expect("json");
        ids.push(v["id"].as_str().expect("run id").to_string());
    }
    // The longest case: timeout, grace, the 2 s the executor may drain pipes, and slack.
    let deadline = Instant::now() + Duration::from_secs(timeout + grace + 8);
    let mut records: Vec<Option<Value>> = vec![None; ids.len()];
    let mut unfinished: Vec<Value> = Vec::new();
    let mut rss_samples = Vec::new();
    loop {
        unfinished.clear();
        for (id, slot) in ids.iter().zip(records.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let v: Value = client
                .get(format!("{base}/api/v1/runs/{id}"))
                .send()
                .await
                .expect("get run")
                .json()
                .await
                .expect("json");
            if v["status"]
                .as_str()
                .is_some_and(|s| !matches!(s, "queued" | "running"))
            {
                *slot = Some(v);
            } else {
                unfinished.push(v);
            }
        }
        rss_samples.push((
            began.elapsed().as_secs(),
            daemon.peak_rss_kib().unwrap_or(0) / 1024,
        ));
        if unfinished.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let needles = vec![format!("sleep {tag}"), format!("{tag}000"), marker.clone()];
    // While the daemon still runs (it is no step process; its arguments hold the marker).
    let daemon_pid = daemon.pid().unwrap_or(0).to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let left_while_running = loop {
        let left: Vec<String> = processes_with(&needles)
            .into_iter()
            .filter(|p| !p.starts_with(&format!("{daemon_pid}:")))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let peak_rss = daemon.peak_rss_kib().unwrap_or(0);
    let stopped = daemon.stop(Duration::from_secs(15)).await;
    let left_after_stop = processes_left(&needles, Duration::from_secs(5)).await;

    let mut problems = Vec::new();
    let mut figures = Vec::new();
    for u in &unfinished {
        let name = u["runbook"].as_str().unwrap_or("?");
        problems.push(format!(
            "{name}: still {} {} s after it started, its step's timeout being {timeout} s",
            u["status"],
            (timeout + grace + 8)
        ));
        figures.push(format!("{name}: {} when the test gave up", u["status"]));
    }
    for (c, r) in cases.iter().zip(&records) {
        let Some(r) = r else { continue };
        let step = &r["steps"][0];
        let started = chrono::DateTime::parse_from_rfc3339(r["started_at"].as_str().unwrap_or(""));
        let finished =
            chrono::DateTime::parse_from_rfc3339(r["finished_at"].as_str().unwrap_or(""));
        let wall_ms = match (started, finished) {
            (Ok(s), Ok(f)) => (f - s).num_milliseconds(),
            _ => i64::MAX,
        };
        let step_ms = step["duration_ms"].as_u64().unwrap_or(0);
        let stdout = step["stdout"].as_str().unwrap_or("");
        let read = stdout
            .split("[... ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|b| b.parse::<u64>().ok())
            .unwrap_or(0)
            + stdout.len() as u64;
        figures.push(format!(
            "{}: {} in {wall_ms} ms, step {} after {step_ms} ms, {} MB of output read, {} bytes kept",
            c.name,
            r["status"],
            step["status"],
            read / 1_000_000,
            stdout.len()
        ));
        if c.exits {
            if r["status"] != "succeeded" {
                problems.push(format!("{}: {r}", c.name));
            }
        } else {
            if r["status"] != "failed" || step["status"] != StepStatus::TimedOut.as_str() {
                problems.push(format!(
                    "{}: expected a timed out step, got run {} step {}",
                    c.name, r["status"], step["status"]
                ));
            }
            if step_ms < timeout * 1000 {
                problems.push(format!(
                    "{}: stopped after {step_ms} ms, before its timeout",
                    c.name
                ));
            }
            // SIGTERM at the timeout; SIGKILL one grace period later for those ignoring it;
            // 10 s slack on a loaded machine (the kill itself is checked by the status and the
            // process scan).
            let limit = (timeout + if c.ignores_term { grace } else { 0 } + 10) as i64 * 1000;
            if wall_ms > limit {
                problems.push(format!(
                    "{}: the run took {wall_ms} ms, more than {limit} ms",
                    c.name
                ));
            }
        }
        if c.floods {
            // The capture keeps 32 KiB head and tail plus a marker line.
            if stdout.len() > 64 * 1024 + 200 || !stdout.contains("bytes truncated") {
                problems.push(format!(
                    "{}: {} bytes of stdout kept, truncated: {}",
                    c.name,
                    stdout.len(),
                    stdout.contains("bytes truncated")
                ));
            }
        }
    }
    if !left_while_running.is_empty() {
        problems.push(format!(
            "step processes survived their runs: {left_while_running:?}"
        ));
    }
    if !left_after_stop.is_empty() {
        problems.push(format!(
            "processes left after the daemon stopped: {left_after_stop:?}"
        ));
    }
    match stopped {
        Ok(status) if status.success() => {}
        Ok(status) => problems.push(format!("the daemon exited with {status} on SIGTERM")),
        Err(e) => problems.push(e),
    }
    if peak_rss > RSS_LIMIT_KIB {
        problems.push(format!(
            "daemon peak RSS {} MiB; (second, MiB) samples: {rss_samples:?}",
            peak_rss / 1024
        ));
    }
    eprintln!(
        "processes: {}; daemon RSS {} MiB at start, peak {} MiB; took {:?}",
        figures.join("; "),
        rss_at_start / 1024,
        peak_rss / 1024,
        began.elapsed()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
