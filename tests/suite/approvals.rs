//! Approvals and dry runs as a person meets them: `untoil run` of a runbook that waits for
//! approval, the plan shown before anyone approves, runs that cannot start failing before
//! anyone is asked, dry runs beside a daemon.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, Dirs, Http, Served, serve};

/// A command whose stdout and stderr lines arrive, as they come, on one channel.
struct Lines {
    child: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(mut c: Command) -> Lines {
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn untoil");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(l);
            }
        });
        Lines {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (with a deadline) for a line that contains `text`.
    fn wait_for(&mut self, text: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(text) {
                        return l;
                    }
                }
                Err(_) => panic!("no line with {text:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits (with a deadline) for the exit, and returns its code and every line.
    fn exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "untoil run did not exit; saw:\n{}",
                self.seen.join("\n")
            );
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(l);
            }
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const GATED: &str = "name: gated\nowner: t\nguards: {approval: required}\nsteps:\n  - name: fix\n    run: echo fixed-it\n";

/// Starts `untoil run gated` through the daemon and waits for it to say it waits; returns the
/// follower and the run id.
fn run_until_it_waits(dirs: &Dirs, base: &str, runbook: &str) -> (Lines, String) {
    let mut c = common::untoil_command(dirs);
    c.args(["run", runbook]);
    let mut run = Lines::spawn(c);
    let line = run.wait_for("waits for approval");
    let id = line
        .split_whitespace()
        .nth(1)
        .expect("the run id follows `run`")
        .to_string();
    assert!(line.contains("expires at"), "{line}");
    let approve = run.wait_for("approve it:");
    assert!(
        approve.contains(&format!("untoil approve {id}")),
        "{approve}"
    );
    let page = run.wait_for("on the dashboard:");
    assert!(page.contains(&format!("{base}/ui/approvals")), "{page}");
    (run, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_says_it_waits_for_approval_how_to_give_it_and_follows_the_run_to_its_end() {
    let dirs = Dirs::new();
    dirs.runbook("gated", GATED);
    let (_served, base) = serve(&dirs);
    let http = Http::new(base.clone());

    let (run, id) = tokio::task::block_in_place(|| run_until_it_waits(&dirs, &base, "gated"));
    let (status, _) = http
        .post(&format!("/api/v1/runs/{id}/approve"), serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
    let (code, out) = tokio::task::block_in_place(|| run.exit());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("run {id}: approved by ")), "{out}");
    assert!(out.contains("fixed-it"), "{out}");
    assert!(out.contains(&format!("run {id} succeeded")), "{out}");

    // Denied: said so, and the command fails.
    let (run, id) = tokio::task::block_in_place(|| run_until_it_waits(&dirs, &base, "gated"));
    let (status, _) = http
        .post(&format!("/api/v1/runs/{id}/deny"), serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
    let (code, out) = tokio::task::block_in_place(|| run.exit());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("run {id}: denied by ")), "{out}");
    assert!(!out.contains("fixed-it"), "{out}");

    // Nobody decides: it expires, and the command says so (3 s: time enough, on a loaded
    // machine, for the command to see it waiting first).
    dirs.runbook(
        "brief",
        "name: brief\nowner: t\nguards: {approval: required, approval_timeout: 3s}\nsteps:\n  - name: fix\n    run: echo fixed-it\n",
    );
    common::until("the new runbook to be loaded", || async {
        let (_, rb) = http.get("/api/v1/runbooks/brief").await;
        rb["name"].is_string().then_some(())
    })
    .await;
    let (run, id) = tokio::task::block_in_place(|| run_until_it_waits(&dirs, &base, "brief"));
    let (code, out) = tokio::task::block_in_place(|| run.exit());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("run {id}: not approved: the approval expired at ")),
        "{out}"
    );
    assert!(!out.contains("fixed-it"), "{out}");
}

/// A dry run beside the daemon: its plan on stdout and its notes on stderr.
fn dry_run(dirs: &Dirs, name: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = common::untoil_command(dirs)
        .args(["run", name, "--dry-run"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("untoil run --dry-run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_dry_run_leaves_conditions_on_earlier_output_to_the_run_and_skips_alert_ones_without_an_alert()
{
    let dirs = Dirs::new();
    dirs.runbook(
        "freed",
        "name: freed\nowner: t\ntriggers: [{alert: {matchers: ['alertname=\"DiskFull\"']}}]\nsteps:\n  - name: freed\n    run: echo 3\n  - name: report\n    run: echo freed {{steps.freed.stdout}}\n    when: '{{gt steps.freed.stdout 0}}'\n  - name: page\n    run: echo paging\n    when: '{{eq alert.labels.severity \"critical\"}}'\n",
    );
    let (code, plan, err) = dry_run(&dirs, "freed", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        plan.contains("when: {{gt steps.freed.stdout 0}} -> decided at run time"),
        "{plan}"
    );
    assert!(!plan.contains("-> false"), "{plan}");
    assert!(
        plan.contains("echo freed '<steps.freed.stdout, decided at run time>'"),
        "{plan}"
    );
    assert!(
        plan.contains("{{eq alert.labels.severity \"critical\"}} -> skipped: it reads the alert, and this run has no alert"),
        "{plan}"
    );
    assert!(!plan.contains("Helper/Decorator"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approvals_page_shows_conditions_rendered_or_decided_at_run_time() {
    let dirs = Dirs::new();
    dirs.runbook(
        "gated",
        "name: gated\nowner: t\ntriggers: [{alert: {matchers: ['alertname=\"DiskFull\"']}}]\nguards: {approval: required}\nsteps:\n  - name: usage\n    run: echo 3\n  - name: compress\n    run: echo compressing\n    when: '{{eq alert.labels.severity \"critical\"}}'\n  - name: report\n    run: echo freed\n    when: '{{gt steps.usage.stdout 0}}'\n",
    );
    let (_served, base) = serve(&dirs);
    let http = Http::new(base);
    let (status, answer) = http
        .post("/api/v1/runbooks/gated/runs", serde_json::json!({}))
        .await;
    assert_eq!(status, 202, "{answer}");
    let page = common::until("the run to wait for approval", || async {
        let (_, page) = http.text("/ui/approvals").await;
        page.contains("data-run=").then_some(page)
    })
    .await;
    assert!(!page.contains("Helper/Decorator"), "{page}");
    assert!(
        page.contains("-&gt; skipped: it reads the alert, and this run has no alert"),
        "{page}"
    );
    assert!(page.contains("-&gt; decided at run time"), "{page}");
    let (_, list) = http.get("/api/v1/approvals").await;
    let plan = &list[0]["plan"];
    assert_eq!(
        plan[2]["when"],
        Value::from(
            "{{gt steps.usage.stdout 0}} -> decided at run time (it reads an earlier step's output)"
        ),
        "{list}"
    );
}

/// Polls the run until it is no longer queued, running or waiting to be admitted.
async fn run_settled(http: &Http, id: &str, wanted: &[&str]) -> Value {
    common::until("the run to reach its state", || async {
        let (_, run) = http.get(&format!("/api/v1/runs/{id}")).await;
        wanted
            .contains(&run["status"].as_str().unwrap_or(""))
            .then_some(run)
    })
    .await
}

/// Starts a manual run through the API and returns its id.
async fn start(http: &Http, runbook: &str, params: Value) -> String {
    let (status, answer) = http
        .post(
            &format!("/api/v1/runbooks/{runbook}/runs"),
            serde_json::json!({ "params": params }),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().expect("run id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_be_prepared_fails_before_anyone_is_asked_to_approve_it() {
    let dirs = Dirs::new();
    let head = "owner: t\ntriggers: [{alert: {matchers: ['alertname=\"DiskFull\"']}}]\nguards: {approval: required}\n";
    dirs.runbook(
        "no-secret",
        &format!("name: no-secret\n{head}secrets: {{hook: {{env: APPROVALS_TEST_NO_SUCH_HOOK}}}}\nsteps:\n  - name: a\n    run: echo ran\n"),
    );
    dirs.runbook(
        "no-label",
        &format!("name: no-label\n{head}steps:\n  - name: a\n    run: echo 1\n  - name: b\n    run: echo {{{{alert.labels.instance}}}} {{{{steps.a.stdout}}}}\n"),
    );
    dirs.runbook(
        "later",
        &format!("name: later\n{head}steps:\n  - name: a\n    run: echo 1\n  - name: b\n    run: echo {{{{steps.a.json.count}}}}\n    when: '{{{{gt steps.a.stdout 0}}}}'\n"),
    );
    let (_served, base) = serve(&dirs);
    let http = Http::new(base);

    let id = start(&http, "no-secret", serde_json::json!({})).await;
    let run = run_settled(&http, &id, &["failed", "pending_approval"]).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("nobody was asked to approve it")
            && error.contains("APPROVALS_TEST_NO_SUCH_HOOK"),
        "{run}"
    );

    let id = start(&http, "no-label", serde_json::json!({})).await;
    let run = run_settled(&http, &id, &["failed", "pending_approval"]).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("step `b` cannot run") && error.contains("alert.labels.instance"),
        "{run}"
    );

    // What only the run can decide does not stop it: it waits for a person.
    let id = start(&http, "later", serde_json::json!({})).await;
    run_settled(&http, &id, &["pending_approval"]).await;
    let (_, list) = http.get("/api/v1/approvals").await;
    let waiting: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["run"]["runbook"].as_str())
        .collect();
    assert_eq!(waiting, ["later"], "{list}");
    assert_eq!(
        list[0]["plan"][1]["detail"], "decided at run time (it reads an earlier step's output)",
        "{list}"
    );
}

/// A webhook on an ephemeral loopback port that answers 200 and hands over each request.
async fn webhook() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Head and body: up to the body's length, or until the client stops sending.
            loop {
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .and_then(|v| v.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
                match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            let _ = tx.send(String::from_utf8_lossy(&seen).to_string());
        }
    });
    (url, rx)
}

/// Runs the shipped `examples/runbooks/disk-cleanup.yaml` by hand on a daemon whose
/// `SLACK_WEBHOOK_URL` is `hook` (unset when None), approves it once it waits, with a plan that
/// nothing stops, and returns the ended run and the directory it cleaned.
async fn disk_cleanup_example_approved(hook: Option<&str>) -> (Value, std::path::PathBuf) {
    let dirs = Dirs::new();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/runbooks/disk-cleanup.yaml"),
    )
    .expect("the example");
    dirs.runbook("disk-cleanup", &example);
    let logs = dirs.path("logs");
    let mut c = common::untoil_command(&dirs);
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    match hook {
        Some(hook) => c.env("SLACK_WEBHOOK_URL", hook),
        None => c.env_remove("SLACK_WEBHOOK_URL"),
    };
    let mut served = Served::spawn(c);
    let base = tokio::task::block_in_place(|| served.base());
    let http = Http::new(base);

    let id = start(
        &http,
        "disk-cleanup",
        serde_json::json!({ "path": logs.display().to_string() }),
    )
    .await;
    // Prepared and waiting: nothing it needs is missing, so a person is asked.
    run_settled(&http, &id, &["pending_approval"]).await;
    let (_, list) = http.get("/api/v1/approvals").await;
    let plan = list[0]["plan"].to_string();
    assert!(!plan.contains("cannot"), "{plan}");
    // The webhook is a secret: masked in the plan.
    assert!(hook.is_none_or(|h| !plan.contains(h)), "{plan}");
    let (status, _) = http
        .post(&format!("/api/v1/runs/{id}/approve"), serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
    let run = run_settled(&http, &id, &["succeeded", "failed"]).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    (run, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_disk_cleanup_example_runs_by_hand_once_approved() {
    let (hook, mut posted) = webhook().await;
    let (_, logs) = disk_cleanup_example_approved(Some(&hook)).await;
    let request = tokio::time::timeout(Duration::from_secs(20), posted.recv())
        .await
        .expect("the webhook is called")
        .unwrap_or_default();
    assert!(
        request.contains(&format!("cleaned {} (by manual)", logs.display())),
        "{request}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_disk_cleanup_example_runs_by_hand_without_its_optional_webhook() {
    let (run, _) = disk_cleanup_example_approved(None).await;
    let notify = run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == "notify"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(notify["status"], "skipped", "{run}");
}

const PLAIN: &str = "name: plain\nowner: t\nsteps:\n  - name: a\n    run: echo hello\n";

#[test]
fn a_dry_run_beside_a_process_that_holds_the_store_prints_its_plan_unrecorded_and_says_why() {
    let dirs = Dirs::new();
    dirs.runbook("plain", PLAIN);
    // Another process holds the store without a daemon address (a foreground run, say).
    let held = untoil::store::sled::SledStore::open(&dirs.path("data")).expect("open the store");
    let (code, plan, err) = dry_run(&dirs, "plain", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(plan.contains("echo hello"), "{plan}");
    assert!(
        err.contains("this dry run is not recorded")
            && err.contains("in use by another untoil process"),
        "{err}"
    );
    assert!(!err.contains("daemon's API"), "{err}");
    drop(held);
}

#[test]
fn a_dry_run_beside_the_daemon_says_truly_why_it_is_not_recorded_and_a_silent_server_is_named_with_it()
 {
    let dirs = Dirs::new();
    dirs.runbook("plain", PLAIN);
    // A daemon holds it: rendered here, from these files, and the note says so.
    let (_served, base) = serve(&dirs);
    let (code, plan, err) = dry_run(&dirs, "plain", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(plan.contains("echo hello"), "{plan}");
    assert!(
        err.contains("not recorded: it is rendered here, from the runbook files in")
            && err.contains(&base),
        "{err}"
    );
    assert!(!err.contains("in use"), "{err}");

    // A --server that does not answer is said so, with the daemon that holds the store here.
    let (code, _, err) = dry_run(&dirs, "plain", &["--server", "http://127.0.0.1:9"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no daemon answers at http://127.0.0.1:9")
            && err.contains(&format!("is held by the daemon at {base}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_shows_the_alert_its_labels_the_plan_and_its_conditions_and_runs_show_who_decided()
 {
    let dirs = Dirs::new();
    dirs.runbook(
        "gated",
        "name: gated\nowner: t\ntriggers: [{alert: {matchers: ['alertname=\"DiskFull\"']}}]\nguards: {approval: required}\nsteps:\n  - name: compress\n    run: echo compressing {{alert.labels.instance}}\n    when: '{{eq alert.labels.severity \"critical\"}}'\n",
    );
    let (_served, base) = serve(&dirs);
    let http = Http::new(base.clone());
    let client = reqwest::Client::new();
    let status = client
        .post(format!("{base}/api/v1/alerts/alertmanager"))
        .header("content-type", "application/json")
        .body(common::fixture("firing.json"))
        .send()
        .await
        .expect("post the alert")
        .status();
    assert!(status.is_success(), "{status}");
    let id = common::until("the run to wait for approval", || async {
        let (_, list) = http.get("/api/v1/approvals").await;
        list[0]["run"]["id"].as_str().map(String::from)
    })
    .await;

    let untoil = |args: &[&str]| {
        let out = common::untoil_command(&dirs)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("untoil");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let shown = tokio::task::block_in_place(|| untoil(&["approvals"]));
    for wanted in [
        format!("{id}  gated"),
        "for alert DiskFull (instance=db-1 service=db severity=critical)".to_string(),
        "[1/1] compress (shell)".to_string(),
        "when: {{eq alert.labels.severity \"critical\"}} -> true".to_string(),
        "/bin/sh -c echo compressing db-1".to_string(),
        format!("untoil approve {id}"),
        format!("{base}/ui/approvals"),
    ] {
        assert!(shown.contains(&wanted), "{wanted:?} not in:\n{shown}");
    }

    tokio::task::block_in_place(|| untoil(&["approve", &id, "--by", "bob"]));
    let run = run_settled(&http, &id, &["succeeded", "failed"]).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let shown = tokio::task::block_in_place(|| untoil(&["runs", "show", &id]));
    assert!(
        shown.contains("approval  approved by anonymous (claimed: bob)"),
        "{shown}"
    );
}

/// The `approvals_pending` gauge of the daemon at `http`.
async fn approvals_pending(http: &Http) -> f64 {
    let (status, text) = http.text("/metrics").await;
    assert_eq!(status, 200, "{text}");
    common::sample(
        &common::parse_metrics(&text),
        "untoil_approvals_pending",
        None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_while_it_waits_for_approval_no_longer_counts_as_waiting() {
    let dirs = Dirs::new();
    dirs.runbook(
        "gated",
        "name: gated\nowner: t\nguards: {approval: required}\nsteps:\n  - name: a\n    run: echo ran\n",
    );
    let (_served, base) = serve(&dirs);
    let http = Http::new(base);
    let id = start(&http, "gated", serde_json::json!({})).await;
    run_settled(&http, &id, &["pending_approval"]).await;
    assert_eq!(approvals_pending(&http).await, 1.0);
    let (status, answer) = http
        .post(&format!("/api/v1/runs/{id}/cancel"), serde_json::json!({}))
        .await;
    assert_eq!(status, 202, "{answer}");
    run_settled(&http, &id, &["cancelled"]).await;
    assert_eq!(approvals_pending(&http).await, 0.0);
}
