//! The executor against real processes and a real local HTTP server (127.0.0.1 only).
//!
//! One contract every step kind passes: timeouts are enforced and leave no process behind,
//! cancellation works, duration is recorded, output is capped, secrets are redacted. Then the
//! injection corpus: alert label values reach commands verbatim.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use untoil::engine::lifecycle;
use untoil::exec::executor::Executor;
use untoil::exec::plan::Plan;
use untoil::exec::recorder::Recorder;
use untoil::run::cause::{AlertContext, Cause};
use untoil::run::event::RunEvent;
use untoil::run::record::RunRecord;
use untoil::run::status::{RunStatus, StepStatus};
use untoil::runbook::catalog::load_texts;
use untoil::runbook::model::Runbook;
use untoil::runbook::plugins::Plugins;
use untoil::trigger::alert::Notification;

const SECRET: &str = "s3cr3t-t0ken-value";

struct Fixture {
    dir: tempfile::TempDir,
    plugins: Plugins,
}

/// A plugins directory with a test plugin, and a secret file.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    let script = plugins.join("probe.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
# Test plugin: behaves according to the "mode" input.
input=$(cat)
case "$input" in
  *'"mode":"sleep"'*) sleep 1000001 & sleep 1000001 ;;
  *'"mode":"flood"'*) head -c 200000 /dev/zero | tr '\0' b >&2 ;;
  *'"mode":"leak"'*) echo "log: token is $(printf '%s' "$input" | sed 's/.*"tok":"\([^"]*\)".*/\1/')" >&2
                    echo "{\"status\":\"succeeded\",\"message\":\"saw $(printf '%s' "$input" | sed 's/.*"tok":"\([^"]*\)".*/\1/')\"}"; exit 0 ;;
  *'"mode":"fail"'*) echo '{"status":"failed","message":"disk still full"}'; exit 0 ;;
  *'"mode":"garbage"'*) echo 'not json'; exit 0 ;;
esac
echo '{"status":"succeeded","outputs":{"answer":42},"message":"ok"}'
"#,
    )
    .expect("write plugin");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).expect("secret");
    Fixture {
        plugins: Plugins::discover(&plugins),
        dir,
    }
}

fn runbook(fx: &Fixture, yaml: &str) -> Arc<Runbook> {
    let text = yaml.replace(
        "SECRET_FILE",
        &fx.dir.path().join("secret").display().to_string(),
    );
    let loaded = load_texts(&[("test.yaml", &text)], &fx.plugins);
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    assert!(errors.is_empty(), "{}", loaded.sources.render(&errors));
    loaded.catalog.iter().next().cloned().expect("one runbook")
}

fn executor(fx: &Fixture) -> Executor {
    Executor::new(fx.plugins.clone())
        .expect("executor")
        .with_grace(Duration::from_millis(300))
}

async fn run(fx: &Fixture, rb: Arc<Runbook>) -> (RunRecord, Vec<RunEvent>) {
    run_with(
        fx,
        RunRequest::manual(rb, "tester"),
        CancellationToken::new(),
    )
    .await
}

/// What a test runs: a run of a runbook as the engine would store it.
struct RunRequest {
    runbook: Arc<Runbook>,
    cause: Cause,
    params: BTreeMap<String, String>,
    alert: Option<AlertContext>,
    dry_run: bool,
}

impl RunRequest {
    fn manual(runbook: Arc<Runbook>, user: &str) -> RunRequest {
        RunRequest {
            runbook,
            cause: Cause::Manual {
                user: user.into(),
                claimed_user: None,
            },
            params: BTreeMap::new(),
            alert: None,
            dry_run: false,
        }
    }

    /// The run as stored (params with defaults), and its plan.
    fn prepare(self) -> Result<(RunRecord, Plan), untoil::exec::plan::PrepareError> {
        let params = untoil::exec::plan::resolve_params(&self.runbook, &self.params)?;
        let mut record = lifecycle::new_run(
            &self.runbook,
            self.cause,
            params,
            self.alert,
            chrono::Utc::now(),
        );
        record.dry_run = self.dry_run;
        let plan = Plan::of(self.runbook, &record)?;
        lifecycle::start(&mut record, chrono::Utc::now());
        Ok((record, plan))
    }
}

/// Sends every event to a channel.
struct Events(tokio::sync::mpsc::UnboundedSender<RunEvent>);

#[async_trait::async_trait]
impl Recorder for Events {
    async fn record(&mut self, event: RunEvent) {
        let _ = self.0.send(event);
    }
}

/// Executes a prepared run to its end, credited as the engine credits it.
async fn execute(
    ex: &Executor,
    (mut record, plan): (RunRecord, Plan),
    cancel: CancellationToken,
    events: tokio::sync::mpsc::UnboundedSender<RunEvent>,
) -> RunRecord {
    ex.execute(&plan, &mut record, cancel, &mut Events(events))
        .await;
    lifecycle::conclude(&mut record, chrono::Utc::now());
    record
}

async fn run_with(
    fx: &Fixture,
    req: RunRequest,
    cancel: CancellationToken,
) -> (RunRecord, Vec<RunEvent>) {
    let ex = executor(fx);
    let prepared = req.prepare().expect("prepare");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let record = execute(&ex, prepared, cancel, tx).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (record, events)
}

/// Processes whose command line contains `needle` (zombies have none and do not count).
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = entry.path().join("cmdline");
        if let Ok(bytes) = std::fs::read(&cmdline) {
            let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if text.contains(needle) {
                found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Waits (with a deadline) until no process matches.
fn assert_no_process_left(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_with(needle);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        std::thread::yield_now();
    }
}

async fn server() -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/json",
            post(|body: String| async move { axum::Json(serde_json::json!({"got": body})) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route("/big", get(|| async { "c".repeat(200_000) }))
        .route(
            "/echo-header",
            get(|h: axum::http::HeaderMap| async move {
                h.get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            }),
        )
        .route(
            "/fail",
            get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/cut",
            get(|| async {
                // The capture's head and tail cuts fall 9 bytes into the secret.
                let edge = "h".repeat(untoil::exec::capture::HEAD - 9);
                let tail = "t".repeat(untoil::exec::capture::TAIL - 9);
                format!("{edge}{SECRET}{}{SECRET}{tail}", "m".repeat(100_000))
            }),
        )
        .route(
            "/missing",
            get(|| async { (axum::http::StatusCode::NOT_FOUND, "nope") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), handle)
}

const HEAD: &str =
    "name: t\nowner: team\ntoil: {manual_minutes: 5}\nsecrets: {tok: {file: SECRET_FILE}}\n";

/// The step of each kind for a behaviour of the contract.
fn step_yaml(kind: &str, behaviour: &str, base: &str) -> String {
    match (kind, behaviour) {
        ("shell", "slow") => "run: sleep 1000001 & sleep 1000001".into(),
        ("http", "slow") => format!("http: {{url: \"{base}/slow\"}}\n    retries: {{attempts: 0}}"),
        ("plugin", "slow") => "plugin: probe\n    with: {mode: sleep}".into(),
        ("shell", "flood") => "run: head -c 200000 /dev/zero | tr '\\0' a".into(),
        ("http", "flood") => format!("http: {{url: \"{base}/big\"}}"),
        ("plugin", "flood") => "plugin: probe\n    with: {mode: flood}".into(),
        ("shell", "leak") => "run: echo token={{secrets.tok}} && echo {{secrets.tok}} >&2".into(),
        ("http", "leak") => format!(
            "http: {{url: \"{base}/echo-header\", headers: {{authorization: \"Bearer {{{{secrets.tok}}}}\"}}}}"
        ),
        ("plugin", "leak") => {
            "plugin: probe\n    with: {mode: leak, tok: \"{{secrets.tok}}\"}".into()
        }
        ("shell", "quick") => "run: sleep 0.2".into(),
        ("http", "quick") => format!("http: {{url: \"{base}/ok\"}}"),
        ("plugin", "quick") => "plugin: probe".into(),
        _ => unreachable!("no such case"),
    }
}

fn contract_runbook(
    fx: &Fixture,
    kind: &str,
    behaviour: &str,
    base: &str,
    timeout: &str,
) -> Arc<Runbook> {
    let yaml = format!(
        "{HEAD}steps:\n  - name: s\n    timeout: {timeout}\n    {}\n",
        step_yaml(kind, behaviour, base)
    );
    runbook(fx, &yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_kind_is_killed_at_its_timeout_with_nothing_left_behind() {
    let fx = fixture();
    let (base, _srv) = server().await;
    for kind in ["shell", "http", "plugin"] {
        let started = Instant::now();
        let (record, _) = run(&fx, contract_runbook(&fx, kind, "slow", &base, "1s")).await;
        let took = started.elapsed();
        assert_eq!(record.status, RunStatus::Failed, "{kind}");
        assert_eq!(
            record.steps[0].status,
            Some(StepStatus::TimedOut),
            "{kind}: {:?}",
            record.steps[0]
        );
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(10),
            "{kind} took {took:?}"
        );
        assert!(record.steps[0].duration_ms >= 1000, "{kind}");
        assert_no_process_left("sleep 1000001");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_kind_stops_when_the_run_is_cancelled() {
    let fx = fixture();
    let (base, _srv) = server().await;
    for kind in ["shell", "http", "plugin"] {
        let rb = contract_runbook(&fx, kind, "slow", &base, "1m");
        let ex = executor(&fx);
        let prepared = RunRequest::manual(rb, "tester").prepare().expect("prepare");
        let cancel = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let trigger = cancel.clone();
        // Cancel as soon as the step has started.
        let watcher = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if matches!(e, RunEvent::StepStarted { .. }) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    trigger.cancel();
                }
            }
        });
        let started = Instant::now();
        let record = execute(&ex, prepared, cancel, tx).await;
        let _ = watcher.await;
        assert_eq!(record.status, RunStatus::Cancelled, "{kind}");
        assert_eq!(
            record.steps[0].status,
            Some(StepStatus::Cancelled),
            "{kind}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{kind}");
        assert_eq!(record.toil.as_ref().map(|t| t.minutes), Some(0.0));
        assert_no_process_left("sleep 1000001");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_kind_records_its_duration() {
    let fx = fixture();
    let (base, _srv) = server().await;
    for kind in ["shell", "http", "plugin"] {
        let (record, _) = run(&fx, contract_runbook(&fx, kind, "quick", &base, "10s")).await;
        assert_eq!(
            record.status,
            RunStatus::Succeeded,
            "{kind}: {:?}",
            record.steps
        );
        let s = &record.steps[0];
        assert!(s.started_at.is_some(), "{kind}");
        assert_eq!(s.attempts, 1);
        if kind == "shell" {
            assert!(s.duration_ms >= 200, "{kind}: {}", s.duration_ms);
        }
        assert!(
            record.duration_ms().is_some_and(|d| d >= s.duration_ms),
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_kind_caps_its_output_with_a_truncation_marker() {
    let fx = fixture();
    let (base, _srv) = server().await;
    for kind in ["shell", "http", "plugin"] {
        let (record, _) = run(&fx, contract_runbook(&fx, kind, "flood", &base, "30s")).await;
        let s = &record.steps[0];
        let text = match kind {
            "shell" => &s.stdout,
            "http" => &s.body,
            _ => &s.stderr,
        };
        assert!(
            text.contains("[... 134464 bytes truncated ...]"),
            "{kind}: {}",
            text.len()
        );
        assert!(text.len() < 70_000, "{kind}: {}", text.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_kind_redacts_secrets_from_results_and_events() {
    let fx = fixture();
    let (base, _srv) = server().await;
    for kind in ["shell", "http", "plugin"] {
        let (record, events) = run(&fx, contract_runbook(&fx, kind, "leak", &base, "10s")).await;
        assert_eq!(
            record.status,
            RunStatus::Succeeded,
            "{kind}: {:?}",
            record.steps
        );
        let stored = serde_json::to_string(&record).expect("json");
        let streamed = serde_json::to_string(&events).expect("json");
        assert!(
            !stored.contains(SECRET),
            "{kind} leaked into the record: {stored}"
        );
        assert!(!streamed.contains(SECRET), "{kind} leaked into events");
        assert!(
            stored.contains("***"),
            "{kind}: the secret was used and masked"
        );
    }
}

/// Whether a text holds 8 bytes or more of the secret.
fn holds_part_of_the_secret(text: &str) -> bool {
    SECRET
        .as_bytes()
        .windows(8)
        .any(|w| text.contains(std::str::from_utf8(w).unwrap_or(SECRET)))
}

/// The secret is masked before anything cuts the output: when it is split over two reads of a
/// process's output and over the line the reader breaks at 8 KiB, when the capture's head and
/// tail cuts fall inside it (a process's output, an HTTP body), and in more lines than are
/// streamed (10,000; fewer when the watcher lags and lines are dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_masked_before_the_output_is_cut_into_reads_lines_or_head_and_tail() {
    let fx = fixture();
    let (base, _srv) = server().await;
    let edge = untoil::exec::capture::HEAD - 9;
    let rb = runbook(
        &fx,
        &format!(
            r#"{HEAD}steps:
  - name: split
    env: {{T: "{{{{secrets.tok}}}}"}}
    run: |
      head -c 8190 /dev/zero | tr '\0' x
      printf '%s' "$T" | head -c 9
      sleep 0.3
      printf '%s' "$T" | tail -c +10
      head -c 9000 /dev/zero | tr '\0' y
  - name: cut
    env: {{T: "{{{{secrets.tok}}}}"}}
    run: |
      head -c {edge} /dev/zero | tr '\0' h
      printf '%s' "$T"
      head -c 100000 /dev/zero | tr '\0' m
      printf '%s' "$T"
      head -c {edge} /dev/zero | tr '\0' t
  - name: lines
    env: {{T: "{{{{secrets.tok}}}}"}}
    run: seq 10500 | sed "s|$| $T|"
  - name: body
    http: {{url: "{base}/cut"}}
"#
        ),
    );
    // The split over two reads needs the reader to take the first half before the step writes
    // the second, 0.3 s later: on a loaded machine it may not, and both halves come in one
    // read. Leaks are checked on every attempt; the split is tried up to three times.
    let mut attempts = 0;
    let record = loop {
        attempts += 1;
        let (record, events) = run(&fx, rb.clone()).await;
        assert_eq!(record.status, RunStatus::Succeeded, "{:?}", record.steps);
        for e in &events {
            let text = serde_json::to_string(e).expect("json");
            assert!(
                !holds_part_of_the_secret(&text),
                "an event leaks: {text:.300}"
            );
        }
        let stored = serde_json::to_string(&record).expect("json");
        assert!(!holds_part_of_the_secret(&stored), "the record leaks");
        let streamed: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Output { index: 0, line, .. } => Some(line.as_str()),
                _ => None,
            })
            .collect();
        let split = streamed.len() >= 2 && streamed[0].ends_with("x***");
        if split {
            break record;
        }
        assert!(
            attempts < 3,
            "in 3 attempts, the reader never broke the line at 8 KiB with the secret's first \
             half masked: {:.100}",
            streamed.first().copied().unwrap_or_default()
        );
    };
    assert!(record.steps[0].stdout.contains("x***y"));
    for s in [&record.steps[1].stdout, &record.steps[3].body] {
        assert!(s.contains("bytes truncated ..."), "the output is cut");
        assert!(s.contains("h***m") && s.contains("m***t"), "masked whole");
    }
    assert!(record.steps[2].stdout.ends_with("10500 ***\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_step_that_exits_leaves_no_background_child_behind() {
    let fx = fixture();
    let rb = runbook(
        &fx,
        &format!("{HEAD}steps:\n  - name: s\n    run: (sleep 1000002 &) ; echo started\n"),
    );
    let (record, _) = run(&fx, rb).await;
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_no_process_left("sleep 1000002");
}

/// Label values that would break out of naive interpolation.
const CORPUS: &[&str] = &[
    "x'; rm -rf / #",
    "$(touch /tmp/untoil-pwned)",
    "`touch /tmp/untoil-pwned`",
    "a; touch /tmp/untoil-pwned",
    "a && touch /tmp/untoil-pwned",
    "a | cat /etc/passwd",
    "line1\nline2\ttab",
    "\"double\" 'single' \\back",
    "${HOME} $HOME %s %n",
    "-rf",
    "--help",
    "",
    " leading and trailing ",
    "*",
    "~root",
    "ünïcödé ✓ 日本語 🚀",
    "a\u{7f}\u{1b}[31mred",
];

fn alert_with(labels: BTreeMap<String, String>) -> AlertContext {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alertmanager/firing.json"
    ))
    .expect("the Alertmanager fixture (tests/fixtures) must exist");
    let mut n = Notification::from_json(&body).expect("fixture parses");
    let mut alert = n.alerts.remove(0);
    alert.labels.extend(labels);
    AlertContext::new(alert, std::sync::Arc::new(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_label_values_reach_the_command_verbatim() {
    let fx = fixture();
    let out = fx.dir.path().join("out");
    let long = "A".repeat(100_000);
    let mut corpus: Vec<String> = CORPUS.iter().map(|s| s.to_string()).collect();
    corpus.push(long);
    for value in &corpus {
        let rb = runbook(
            &fx,
            &format!(
                "{HEAD}triggers: [{{alert: {{matchers: ['alertname=\"DiskFull\"']}}}}]\nsteps:\n  - name: s\n    run: printf '%s' {{{{alert.labels.evil}}}} > {}\n  - name: env\n    run: printf '%s' \"$UNTOIL_ALERT_LABEL_EVIL\" > {}.env\n",
                out.display(),
                out.display()
            ),
        );
        let labels = BTreeMap::from([("evil".to_string(), value.clone())]);
        let alert = alert_with(labels.clone());
        let mut req = RunRequest::manual(rb, "tester");
        req.cause = Cause::Alert {
            source: untoil::trigger::source::ALERTMANAGER.into(),
            fingerprint: alert.alert.fingerprint.clone(),
            starts_at: alert.alert.starts_at,
            labels,
        };
        req.alert = Some(alert);
        let (record, _) = run_with(&fx, req, CancellationToken::new()).await;
        if value.starts_with('-') {
            // A word beginning with `-` would be an option: refused before anything runs.
            assert_eq!(record.status, RunStatus::Failed, "{value:?}");
            assert!(
                record
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("alert.labels.evil starts with '-'")),
                "{value:?}: {:?}",
                record.error
            );
            assert_eq!(record.steps[0].exit_code, None, "the step never started");
            continue;
        }
        assert_eq!(
            record.status,
            RunStatus::Succeeded,
            "{value:?}: {:?}",
            record.steps
        );
        let got = std::fs::read_to_string(&out).expect("output");
        assert_eq!(&got, value, "command argument differs");
        let got_env =
            std::fs::read_to_string(format!("{}.env", out.display())).expect("env output");
        assert_eq!(&got_env, value, "environment variable differs");
        assert!(
            !Path::new("/tmp/untoil-pwned").exists(),
            "{value:?} injected a command"
        );
    }
}

#[test]
fn nul_bytes_are_rejected_before_anything_runs() {
    let fx = fixture();
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}params: {{p: {{default: x}}}}\nsteps:\n  - name: s\n    run: echo {{{{params.p}}}}\n"
        ),
    );
    let mut req = RunRequest::manual(rb, "tester");
    req.params.insert("p".into(), "a\0b".into());
    let err = req.prepare().err().map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("parameter `p` contains a NUL byte"));
    let body = br#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"a\u0000b"},"startsAt":"2026-01-01T00:00:00Z"}]}"#;
    assert!(Notification::from_json(body).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_steps_send_json_and_expose_status_headers_body_and_json() {
    let fx = fixture();
    let (base, _srv) = server().await;
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}params: {{who: {{default: db-1}}}}\nsteps:\n  - name: post\n    http:\n      method: POST\n      url: \"{base}/json\"\n      json: {{host: \"{{{{params.who}}}}\", n: 3}}\n  - name: after\n    run: echo {{{{steps.post.json.got}}}} {{{{steps.post.http_status}}}}\n"
        ),
    );
    let (record, _) = run(&fx, rb).await;
    assert_eq!(record.status, RunStatus::Succeeded, "{:?}", record.steps);
    let post = &record.steps[0];
    assert_eq!(post.http_status, Some(200));
    assert_eq!(
        post.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        post.json,
        Some(serde_json::json!({"got": "{\"host\":\"db-1\",\"n\":3}"}))
    );
    assert_eq!(record.steps[1].stdout, "{\"host\":\"db-1\",\"n\":3} 200\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_steps_retry_5xx_but_not_4xx() {
    let fx = fixture();
    let (base, _srv) = server().await;
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}steps:\n  - name: down\n    http: {{url: \"{base}/fail\"}}\n    retries: {{attempts: 2, backoff: 10ms}}\n    continue_on_error: true\n  - name: missing\n    http: {{url: \"{base}/missing\"}}\n    retries: {{attempts: 2, backoff: 10ms}}\n    continue_on_error: true\n  - name: expected\n    http: {{url: \"{base}/missing\", expect_status: [404]}}\n"
        ),
    );
    let (record, _) = run(&fx, rb).await;
    assert_eq!(record.steps[0].attempts, 3);
    assert_eq!(
        record.steps[0].error.as_deref(),
        Some("HTTP status 503, expected 2xx")
    );
    assert_eq!(record.steps[1].attempts, 1);
    assert_eq!(record.steps[2].status, Some(StepStatus::Succeeded));
    assert_eq!(record.status, RunStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_steps_retry_refused_connections() {
    let fx = fixture();
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}steps:\n  - name: s\n    http: {{url: \"http://127.0.0.1:{port}/\"}}\n    retries: {{attempts: 1, backoff: 10ms}}\n"
        ),
    );
    let (record, _) = run(&fx, rb).await;
    assert_eq!(record.steps[0].attempts, 2);
    assert!(
        record.steps[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("Connection refused")),
        "{:?}",
        record.steps[0].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_steps_read_earlier_results_and_when_skips() {
    let fx = fixture();
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}steps:\n  - name: a\n    run: |\n      echo '{{\"n\": 7}}'\n  - name: b\n    run: echo {{{{steps.a.json.n}}}} {{{{steps.a.exit_code}}}} {{{{steps.a.status}}}}\n  - name: c\n    when: '{{{{eq steps.a.json.n 8}}}}'\n    run: echo never\n  - name: d\n    plugin: probe\n  - name: e\n    run: echo {{{{steps.d.outputs.answer}}}} {{{{steps.d.message}}}}\n"
        ),
    );
    let (record, _) = run(&fx, rb).await;
    assert_eq!(record.status, RunStatus::Succeeded, "{:?}", record.steps);
    assert_eq!(record.steps[1].stdout, "7 0 succeeded\n");
    assert_eq!(record.steps[2].status, Some(StepStatus::Skipped));
    assert_eq!(record.steps[4].stdout, "42 ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_fails_the_run_unless_continue_on_error() {
    let fx = fixture();
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}steps:\n  - name: soft\n    run: exit 3\n    continue_on_error: true\n  - name: hard\n    run: exit 4\n  - name: never\n    run: echo no\n"
        ),
    );
    let (record, _) = run(&fx, rb).await;
    assert_eq!(record.status, RunStatus::Failed);
    assert_eq!(record.steps[0].exit_code, Some(3));
    assert_eq!(record.steps[1].exit_code, Some(4));
    assert_eq!(record.steps[2].status, Some(StepStatus::Skipped));
    assert_eq!(
        record.error.as_deref(),
        Some("step `hard` failed: command exited with status 4")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_failures_and_protocol_breaks_are_failed_steps_with_a_message() {
    let fx = fixture();
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}steps:\n  - name: f\n    plugin: probe\n    with: {{mode: fail}}\n    continue_on_error: true\n  - name: g\n    plugin: probe\n    with: {{mode: garbage}}\n"
        ),
    );
    let (record, _) = run(&fx, rb).await;
    assert_eq!(
        record.steps[0].error.as_deref(),
        Some("plugin reported failure: disk still full")
    );
    assert!(
        record.steps[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("stdout is not one JSON object"))
    );
    assert_eq!(record.status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_timeout_stops_the_current_step() {
    let fx = fixture();
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}timeout: 1s\nsteps:\n  - name: s\n    run: sleep 1000003\n  - name: t\n    run: echo never\n"
        ),
    );
    let (record, _) = run(&fx, rb).await;
    assert_eq!(record.status, RunStatus::TimedOut);
    assert_eq!(record.error.as_deref(), Some("run timed out after 1s"));
    assert_no_process_left("sleep 1000003");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_executes_nothing_and_credits_nothing() {
    let fx = fixture();
    let marker = fx.dir.path().join("touched");
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}steps:\n  - name: s\n    run: touch {}\n",
            marker.display()
        ),
    );
    let mut req = RunRequest::manual(rb, "tester");
    req.dry_run = true;
    let (record, _) = run_with(&fx, req, CancellationToken::new()).await;
    assert!(!marker.exists());
    assert!(record.dry_run);
    assert_eq!(record.toil.as_ref().map(|t| t.minutes), Some(0.0));
    assert!(
        record.steps[0].message.contains("touch"),
        "{:?}",
        record.steps[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_step_renders_from_the_store_it_was_given_and_without_one_fails_saying_so() {
    use untoil::store::Store;
    let fx = fixture();
    let rb = runbook(
        &fx,
        "name: digest\nowner: t\ntoil: {manual_minutes: 1}\nsteps:\n  - name: week\n    report: { since: 7d, format: json }\n  - name: use\n    run: echo {{steps.week.json.total.runs}} runs\n",
    );

    // No store (e.g. an executor built for a plan preview): the step fails and says why.
    let (alone, _) = run(&fx, rb.clone()).await;
    assert_eq!(alone.status, RunStatus::Failed);
    let why = alone.steps[0].error.clone().unwrap_or_default();
    assert!(
        why.contains("reads untoil's store, and this run has none"),
        "{why}"
    );

    // With a store holding one run of today: the report is read from it, in-process.
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(untoil::store::sled::SledStore::open(dir.path()).expect("store"));
    store
        .finish_many(vec![RunRecord::synthetic(1)])
        .await
        .expect("seed");
    let ex = executor(&fx).with_store(store);
    let prepared = RunRequest::manual(rb, "tester").prepare().expect("prepare");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let record = execute(&ex, prepared, CancellationToken::new(), tx).await;
    assert_eq!(record.status, RunStatus::Succeeded, "{record:#?}");
    assert_eq!(record.steps[0].kind, "report");
    assert_eq!(
        record.steps[0]
            .json
            .as_ref()
            .map(|j| j["total"]["toil_minutes"].clone()),
        Some(serde_json::json!(5.0))
    );
    assert_eq!(record.steps[1].stdout, "1 runs\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_noop_exit_status_ends_the_run_noop_without_retrying_or_running_the_rest() {
    let fx = fixture();
    let tries = fx.dir.path().join("tries");
    let marker = fx.dir.path().join("later-ran");
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}steps:\n  - name: find\n    run: echo x >> {}; exit 3\n    noop_exit_codes: [3]\n    retries: {{attempts: 2, backoff: 10ms}}\n  - name: act\n    run: touch {}\n",
            tries.display(),
            marker.display()
        ),
    );
    let (record, _) = run(&fx, rb).await;
    assert_eq!(record.status, RunStatus::Noop, "{record:?}");
    assert_eq!(record.steps[0].status, Some(StepStatus::Succeeded));
    assert_eq!(record.steps[0].exit_code, Some(3));
    assert_eq!(
        record.steps[0].noop.as_deref(),
        Some("exit status 3 (noop_exit_codes)")
    );
    assert_eq!(
        std::fs::read_to_string(&tries)
            .unwrap_or_default()
            .lines()
            .count(),
        1,
        "a noop status is not retried"
    );
    assert_eq!(record.steps[1].status, Some(StepStatus::Skipped));
    assert!(
        record.steps[1]
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("nothing to do")),
        "{:?}",
        record.steps[1]
    );
    assert!(!marker.exists());
    assert_eq!(record.error, None);
    assert_eq!(record.toil.as_ref().map(|t| t.minutes), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_when_reads_the_step_it_follows_and_an_undecidable_one_fails_the_step() {
    let fx = fixture();
    let rb = |count: &str| {
        runbook(
            &fx,
            &format!(
                "{HEAD}steps:\n  - name: scan\n    run: \"echo '{{\\\"found\\\":{count}}}'\"\n    noop_when: '{{{{eq steps.scan.json.found 0}}}}'\n  - name: act\n    run: echo acted\n"
            ),
        )
    };
    let (none, _) = run(&fx, rb("0")).await;
    assert_eq!(none.status, RunStatus::Noop, "{none:?}");
    assert_eq!(none.steps[1].status, Some(StepStatus::Skipped));
    let (some, _) = run(&fx, rb("2")).await;
    assert_eq!(some.status, RunStatus::Succeeded, "{some:?}");
    assert_eq!(some.steps[1].stdout.trim(), "acted");
    assert_eq!(some.toil.as_ref().map(|t| t.minutes), Some(5.0));
    let broken = runbook(
        &fx,
        &format!(
            "{HEAD}steps:\n  - name: scan\n    run: echo plain\n    noop_when: '{{{{gt steps.scan.json.found.deeper 0}}}}'\n"
        ),
    );
    let (failed, _) = run(&fx, broken).await;
    assert_eq!(failed.status, RunStatus::Failed, "{failed:?}");
    assert!(
        failed.steps[0]
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("`noop_when` cannot be evaluated")),
        "{:?}",
        failed.steps[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plan_says_which_steps_can_end_the_run_as_noop() {
    let fx = fixture();
    let rb = runbook(
        &fx,
        &format!(
            "{HEAD}steps:\n  - name: find\n    run: exit 3\n    noop_exit_codes: [3]\n  - name: act\n    run: echo\n"
        ),
    );
    let mut req = RunRequest::manual(rb, "tester");
    req.dry_run = true;
    let (record, _) = run_with(&fx, req, CancellationToken::new()).await;
    assert_eq!(record.toil.as_ref().map(|t| t.minutes), Some(0.0));
    let plan = executor(&fx).preview(&RunRequest::manual(runbook(&fx, &format!("{HEAD}steps:\n  - name: find\n    run: exit 3\n    noop_exit_codes: [3]\n  - name: act\n    run: echo\n")), "tester").prepare().expect("prepare").1);
    assert_eq!(
        plan[0].noop.as_deref(),
        Some("ends the run as noop on exit status 3")
    );
    assert_eq!(plan[1].noop, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_that_renders_a_secret_says_why_it_is_no_number_without_the_secret() {
    let fx = fixture();
    let rb = runbook(
        &fx,
        "name: t\nowner: team\ntoil: {manual_minutes: 5, per_item: {minutes: 1, count: '{{secrets.tok}}'}}\nsecrets: {tok: {file: SECRET_FILE}}\nsteps:\n  - name: a\n    run: echo\n",
    );
    let (record, _) = run(&fx, rb).await;
    assert_eq!(record.status, RunStatus::Succeeded);
    let credit = record.toil.unwrap_or_default();
    assert_eq!(credit.minutes, 5.0);
    let problem = credit.items.and_then(|i| i.problem).unwrap_or_default();
    assert!(problem.contains("not a whole number"), "{problem}");
    assert!(!problem.contains(SECRET), "{problem}");
    assert!(!credit.reason.contains(SECRET), "{}", credit.reason);
}
