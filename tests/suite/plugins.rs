//! The plugins shipped in `plugins/`, run for real: each test starts a local HTTP server on
//! 127.0.0.1, feeds a plugin the protocol-1 request on stdin exactly as untoil does, and checks
//! the request the server received and the result the plugin printed. The plugins need
//! python3; without it these tests fail (they never skip).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const SLACK: &str = "slack-notify.py";
const PAGERDUTY: &str = "pagerduty-event.py";
const HTTP_CHECK: &str = "http-check.py";

/// The secret part of the test webhook URL; it must never be printed.
const WEBHOOK_SECRET: &str = "T0SECRET/B0SECRET/xoxSecretWebhookToken";
/// A PagerDuty routing key; it must never be printed.
const ROUTING_KEY: &str = "R0UT1NGKEYsecret0123456789abcdef";

fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins")
}

/// Fails the test loudly when python3 is missing: the shipped plugins need it.
fn require_python3() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        match std::process::Command::new("python3")
            .arg("--version")
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!("`python3 --version` exited with {}", out.status)),
            Err(e) => Err(format!("cannot run python3: {e}")),
        }
    });
    if let Err(e) = checked {
        panic!(
            "{e}. The shipped plugins are Python 3 scripts and these tests run them; \
             install python3 (apt-get install python3)"
        );
    }
}

// --- a recording HTTP server -------------------------------------------------------------------

/// One request the server received.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
enum Reply {
    Answer {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Never answer.
    Hang,
}

impl Reply {
    fn text(status: u16, body: &str) -> Reply {
        Reply::Answer {
            status,
            content_type: "text/plain",
            body: body.to_string(),
        }
    }

    fn json(status: u16, body: Value) -> Reply {
        Reply::Answer {
            status,
            content_type: "application/json",
            body: body.to_string(),
        }
    }
}

#[derive(Default)]
struct Recorder {
    received: Mutex<Vec<Received>>,
    /// Replies in order; the last one repeats.
    replies: Vec<Reply>,
}

async fn record(
    State(rec): State<Arc<Recorder>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = {
        let mut received = rec.received.lock().expect("lock");
        received.push(Received {
            method,
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers,
            body,
        });
        received.len()
    };
    let reply = rec
        .replies
        .get(n - 1)
        .or(rec.replies.last())
        .cloned()
        .unwrap_or_else(|| Reply::text(200, "ok"));
    match reply {
        Reply::Answer {
            status,
            content_type,
            body,
        } => (
            StatusCode::from_u16(status).expect("status"),
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response(),
        Reply::Hang => std::future::pending().await,
    }
}

struct Server {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
}

impl Server {
    /// Starts a server on 127.0.0.1 that answers with `replies` in turn (the last repeats).
    async fn start(replies: Vec<Reply>) -> Server {
        let recorder = Arc::new(Recorder {
            received: Mutex::default(),
            replies,
        });
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&recorder));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server { addr, recorder }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.recorder.received.lock().expect("lock").clone()
    }

    fn only_request(&self) -> Received {
        let received = self.received();
        assert_eq!(
            received.len(),
            1,
            "expected exactly one request: {received:#?}"
        );
        received[0].clone()
    }
}

/// A URL on 127.0.0.1 where nothing listens.
fn closed_port_url(path: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}{path}")
}

// --- running a plugin as untoil does ----------------------------------------------------------

/// What a plugin process did.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The one JSON result object the plugin printed, after checking it exited 0 without a
    /// traceback and that its message is one line.
    fn result(&self) -> Value {
        assert_eq!(self.code, Some(0), "plugin exited non-zero: {self:#?}");
        assert!(
            !self.stderr.contains("Traceback"),
            "plugin printed a traceback: {self:#?}"
        );
        let v: Value = serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {self:#?}"));
        assert!(v.is_object(), "stdout is not a JSON object: {self:#?}");
        let status = v["status"].as_str().unwrap_or_default();
        assert!(
            status == "succeeded" || status == "failed",
            "bad status: {self:#?}"
        );
        if let Some(m) = v.get("message") {
            let m = m.as_str().expect("message is a string");
            assert!(!m.contains('\n'), "message is not one line: {m:?}");
        }
        v
    }

    /// The result, which must be `succeeded`.
    fn succeeded(&self) -> Value {
        let v = self.result();
        assert_eq!(v["status"], "succeeded", "{self:#?}");
        v
    }

    /// The message of a result, which must be `failed`.
    fn failed(&self) -> String {
        let v = self.result();
        assert_eq!(v["status"], "failed", "{self:#?}");
        let message = v["message"].as_str().unwrap_or_default().to_string();
        assert!(!message.is_empty(), "a failure needs a message: {self:#?}");
        message
    }

    /// Neither stdout (message, outputs) nor stderr shows `secret`.
    fn assert_hides(&self, secret: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "the secret {secret:?} was printed: {self:#?}"
        );
    }
}

/// Runs plugin `file` with `stdin`, as untoil does: no arguments, protocol variables set.
async fn run_raw(file: &str, stdin: &[u8]) -> Outcome {
    require_python3();
    let mut cmd = tokio::process::Command::new(plugins_dir().join(file));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("UNTOIL_PLUGIN_PROTOCOL", "1")
        .env("UNTOIL_RUN_ID", "01JDTESTRUN0000000000000000")
        .env("UNTOIL_RUNBOOK", "disk-cleanup")
        .env("UNTOIL_STEP", "plugin-step")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The servers are local: no proxy may get in between.
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start plugin {file}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    // A plugin may exit before reading everything; its output is what the tests check.
    let _ = input.write_all(stdin).await;
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("plugin {file} did not finish within 60s"))
        .expect("wait for plugin");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// The protocol-1 request untoil sends for a step with `with` inputs.
fn request(with: Value, alert: Option<Value>) -> Value {
    let notification = alert.as_ref().map(|a| {
        json!({
            "receiver": "untoil",
            "status": a["status"],
            "groupKey": "{}:{alertname=\"HostDiskFull\"}",
            "groupLabels": {"alertname": "HostDiskFull"},
            "commonLabels": a["labels"],
            "commonAnnotations": a["annotations"],
            "externalURL": "http://alertmanager.example:9093"
        })
    });
    json!({
        "protocol": 1,
        "step": "plugin-step",
        "dry_run": false,
        "with": with,
        "run": {
            "id": "01JDTESTRUN0000000000000000",
            "cause": if alert.is_some() { "alert" } else { "manual" },
            "runbook": "disk-cleanup",
            "started_at": "2026-11-28T15:34:27.101Z"
        },
        "params": {"path": "/var/log"},
        "alert": alert,
        "notification": notification,
    })
}

fn firing_alert() -> Value {
    json!({
        "status": "firing",
        "labels": {"alertname": "HostDiskFull", "instance": "db-1:9100", "severity": "critical"},
        "annotations": {"summary": "disk / is 97% full on db-1"},
        "startsAt": "2026-11-28T15:30:00Z",
        "endsAt": null,
        "fingerprint": "4f6c2a9d1e8b7c30",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=disk"
    })
}

async fn run_plugin(file: &str, with: Value, alert: Option<Value>) -> Outcome {
    let body = request(with, alert).to_string();
    run_raw(file, body.as_bytes()).await
}

// --- every plugin -----------------------------------------------------------------------------

#[test]
fn python3_is_installed_because_the_shipped_plugins_need_it() {
    require_python3();
}

fn object_keys(v: &Value, what: &str) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what} must be a JSON object, is {v}"))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn every_shipped_plugin_is_executable_and_has_a_manifest_with_the_documented_fields() {
    let dir = plugins_dir();
    let mut plugins = BTreeSet::new();
    let mut manifests = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("read plugins/").flatten() {
        let file = entry.file_name().to_string_lossy().to_string();
        let path = entry.path();
        let is_doc = [".md", ".txt"].iter().any(|ext| file.ends_with(ext));
        if file.starts_with('.') || is_doc || path.is_dir() {
            continue;
        }
        if let Some(stem) = file.strip_suffix(".manifest.json") {
            manifests.insert(stem.to_string());
            continue;
        }
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        // Like untoil's discovery, a file without any x bit is no plugin (the shared helper
        // module untoil_plugin.py); a plugin that lost its x bit fails the manifest check below.
        if mode & 0o111 == 0 {
            continue;
        }
        assert_eq!(
            mode & 0o111,
            0o111,
            "{file} is not executable by everyone (mode {mode:o})"
        );
        let source = std::fs::read_to_string(&path).expect("read plugin");
        let first_line = source.lines().next().unwrap_or_default();
        if file.ends_with(".py") {
            assert_eq!(first_line, "#!/usr/bin/env python3", "{file}");
        } else {
            assert!(first_line.starts_with("#!"), "{file} has no #! line");
        }
        let name = file.split('.').next().unwrap_or_default().to_string();

        let manifest_path = dir.join(format!("{name}.manifest.json"));
        let text = std::fs::read_to_string(&manifest_path)
            .unwrap_or_else(|e| panic!("{file} has no manifest {name}.manifest.json: {e}"));
        let m: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}.manifest.json is not JSON: {e}"));
        let allowed: BTreeSet<String> = ["description", "inputs", "outputs"]
            .map(String::from)
            .into();
        let keys = object_keys(&m, "the manifest");
        assert!(
            keys.is_subset(&allowed),
            "{name}.manifest.json has unknown fields: {keys:?}"
        );
        assert!(
            m["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}: `description` must be a non-empty string"
        );
        let input_fields: BTreeSet<String> = ["required", "description"].map(String::from).into();
        let inputs = m["inputs"].as_object().expect("`inputs` is a mapping");
        assert!(!inputs.is_empty(), "{name} declares no inputs");
        for (input, spec) in inputs {
            let keys = object_keys(spec, &format!("{name}: input `{input}`"));
            assert!(
                keys.is_subset(&input_fields),
                "{name}: input `{input}` has unknown fields: {keys:?}"
            );
            assert!(
                spec.get("required").is_none_or(Value::is_boolean),
                "{name}: `{input}.required` must be a boolean"
            );
            assert!(
                spec["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{name}: input `{input}` needs a description"
            );
            assert!(
                source.contains(&format!("\"{input}\"")),
                "{name}: the manifest declares input `{input}` but the plugin never reads it"
            );
        }
        let outputs = m["outputs"].as_object().expect("`outputs` is a mapping");
        assert!(!outputs.is_empty(), "{name} declares no outputs");
        for (output, description) in outputs {
            assert!(
                description.as_str().is_some_and(|d| !d.is_empty()),
                "{name}: output `{output}` needs a description string"
            );
        }
        plugins.insert(name);
    }
    assert_eq!(
        manifests, plugins,
        "every manifest needs its plugin and every plugin its manifest"
    );
    for shipped in ["slack-notify", "pagerduty-event", "http-check"] {
        assert!(plugins.contains(shipped), "{shipped} is not in plugins/");
    }
}

#[tokio::test]
async fn every_plugin_exits_non_zero_without_a_result_when_stdin_is_not_a_protocol_1_request() {
    for file in [SLACK, PAGERDUTY, HTTP_CHECK] {
        for stdin in [
            "this is not JSON",
            "",
            "[1, 2]",
            r#"{"protocol": 2, "with": {}}"#,
        ] {
            let out = run_raw(file, stdin.as_bytes()).await;
            assert!(
                out.code.is_some_and(|c| c != 0),
                "{file} with stdin {stdin:?} should exit non-zero: {out:#?}"
            );
            assert_eq!(out.stdout, "", "{file} printed a result for {stdin:?}");
            assert!(
                out.stderr.contains(file.trim_end_matches(".py"))
                    && !out.stderr.contains("Traceback"),
                "{file} should explain itself on stderr, without a traceback: {out:#?}"
            );
        }
    }
}

/// Inputs with which each plugin would make one request to `server`.
fn valid_inputs(file: &str, server: &Server) -> Value {
    match file {
        SLACK => json!({
            "webhook_url": server.url(&format!("/services/{WEBHOOK_SECRET}")),
            "text": "disk cleaned on db-1",
        }),
        PAGERDUTY => json!({
            "routing_key": ROUTING_KEY,
            "summary": "disk still full on db-1",
            "url": server.url("/v2/enqueue"),
        }),
        HTTP_CHECK => json!({"url": server.url("/healthz")}),
        _ => unreachable!("unknown plugin {file}"),
    }
}

#[tokio::test]
async fn every_required_input_of_every_manifest_is_enforced_by_its_plugin_with_a_message() {
    let server = Server::start(vec![Reply::text(200, "ok")]).await;
    for file in [SLACK, PAGERDUTY, HTTP_CHECK] {
        let name = file.trim_end_matches(".py");
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(plugins_dir().join(format!("{name}.manifest.json")))
                .expect("manifest"),
        )
        .expect("manifest JSON");
        let required: Vec<&String> = manifest["inputs"]
            .as_object()
            .expect("inputs")
            .iter()
            .filter(|(_, spec)| spec["required"] == true)
            .map(|(input, _)| input)
            .collect();
        assert!(!required.is_empty(), "{name} has no required input");
        for input in required {
            for missing in [Value::Null, json!("")] {
                let mut with = valid_inputs(file, &server);
                match &missing {
                    Value::Null => with.as_object_mut().expect("object").remove(input),
                    v => with
                        .as_object_mut()
                        .expect("object")
                        .insert(input.clone(), v.clone()),
                };
                let out = run_plugin(file, with, None).await;
                let message = out.failed();
                assert!(
                    message.contains(&format!("`{input}`")) && message.contains("required"),
                    "{name} without `{input}` ({missing}): {message}"
                );
                out.assert_hides(WEBHOOK_SECRET);
                out.assert_hides(ROUTING_KEY);
            }
        }
    }
    assert!(
        server.received().is_empty(),
        "no request may be made with a missing input: {:#?}",
        server.received()
    );
}

#[tokio::test]
async fn every_plugin_rejects_an_input_that_is_not_in_its_manifest() {
    let server = Server::start(vec![Reply::text(200, "ok")]).await;
    for file in [SLACK, PAGERDUTY, HTTP_CHECK] {
        let mut with = valid_inputs(file, &server);
        with["colour"] = json!("red");
        let message = run_plugin(file, with, None).await.failed();
        assert!(message.contains("`colour`"), "{file}: {message}");
    }
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn every_plugin_still_checks_its_inputs_but_sends_nothing_in_a_dry_run() {
    // untoil never starts a plugin in a dry run; a person piping a request in by hand may.
    let server = Server::start(vec![Reply::text(200, "ok")]).await;
    for file in [SLACK, PAGERDUTY, HTTP_CHECK] {
        let mut req = request(valid_inputs(file, &server), Some(firing_alert()));
        req["dry_run"] = json!(true);
        let out = run_raw(file, req.to_string().as_bytes()).await;
        let result = out.succeeded();
        assert!(
            result["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("dry run")),
            "{file}: {result}"
        );
        assert_eq!(result["outputs"]["http_status"], Value::Null, "{file}");
        out.assert_hides(WEBHOOK_SECRET);
        out.assert_hides(ROUTING_KEY);

        let (input, bad) = match file {
            SLACK => ("channel", json!(["not", "a", "string"])),
            PAGERDUTY => ("severity", json!("fatal")),
            _ => ("method", json!("FETCH")),
        };
        req["with"][input] = bad;
        let message = run_raw(file, req.to_string().as_bytes()).await.failed();
        assert!(message.contains(&format!("`{input}`")), "{file}: {message}");
    }
    assert!(server.received().is_empty(), "{:#?}", server.received());
}

// --- slack-notify -----------------------------------------------------------------------------

#[tokio::test]
async fn slack_notify_posts_the_text_and_overrides_as_json_to_the_webhook() {
    let server = Server::start(vec![Reply::text(200, "ok")]).await;
    let with = json!({
        "webhook_url": server.url(&format!("/services/{WEBHOOK_SECRET}")),
        "text": "disk cleaned on *db-1* — 12 GiB freed",
        "channel": "#storage",
        "username": "untoil",
        "icon_emoji": ":broom:",
    });
    let out = run_plugin(SLACK, with, Some(firing_alert())).await;
    let result = out.succeeded();
    assert_eq!(result["outputs"], json!({"http_status": 200}));
    out.assert_hides(WEBHOOK_SECRET);
    out.assert_hides("xoxSecretWebhookToken");

    let req = server.only_request();
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, format!("/services/{WEBHOOK_SECRET}"));
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(
        req.json(),
        json!({
            "text": "disk cleaned on *db-1* — 12 GiB freed",
            "channel": "#storage",
            "username": "untoil",
            "icon_emoji": ":broom:",
        })
    );
}

#[tokio::test]
async fn slack_notify_sends_only_the_text_when_no_overrides_are_set() {
    let server = Server::start(vec![Reply::text(200, "ok")]).await;
    let with = json!({
        "webhook_url": server.url("/hooks/mattermost0hook0id"),
        "text": "hello",
        "channel": "",
    });
    run_plugin(SLACK, with, None).await.succeeded();
    assert_eq!(server.only_request().json(), json!({"text": "hello"}));
}

#[tokio::test]
async fn slack_notify_fails_with_the_status_and_body_when_the_webhook_answers_404() {
    let server = Server::start(vec![Reply::text(404, "no_service")]).await;
    let with = json!({
        "webhook_url": server.url(&format!("/services/{WEBHOOK_SECRET}")),
        "text": "hello",
    });
    let out = run_plugin(SLACK, with, None).await;
    let message = out.failed();
    assert!(
        message.contains("404") && message.contains("no_service"),
        "{message}"
    );
    assert_eq!(out.result()["outputs"], json!({"http_status": 404}));
    out.assert_hides(WEBHOOK_SECRET);
    out.assert_hides("xoxSecretWebhookToken");
}

#[tokio::test]
async fn slack_notify_fails_when_the_webhook_answers_500() {
    let server = Server::start(vec![Reply::text(500, "internal error")]).await;
    let with = json!({
        "webhook_url": server.url(&format!("/services/{WEBHOOK_SECRET}")),
        "text": "hello",
    });
    let out = run_plugin(SLACK, with, None).await;
    assert!(out.failed().contains("HTTP 500"), "{out:#?}");
    assert_eq!(out.result()["outputs"]["http_status"], 500);
    out.assert_hides(WEBHOOK_SECRET);
    assert_eq!(server.received().len(), 1, "a failed post is not retried");
}

#[tokio::test]
async fn slack_notify_fails_clearly_when_the_webhook_refuses_connections() {
    let url = closed_port_url(&format!("/services/{WEBHOOK_SECRET}"));
    let out = run_plugin(SLACK, json!({"webhook_url": url, "text": "hello"}), None).await;
    let message = out.failed();
    assert!(message.contains("connection refused"), "{message}");
    assert!(!message.contains(&url), "{message}");
    assert_eq!(out.result()["outputs"], json!({"http_status": null}));
    out.assert_hides(WEBHOOK_SECRET);
}

#[tokio::test]
async fn slack_notify_rejects_a_webhook_url_that_is_not_http_without_printing_it() {
    let url = format!("hooks.slack.com/services/{WEBHOOK_SECRET}");
    let out = run_plugin(SLACK, json!({"webhook_url": url, "text": "hello"}), None).await;
    let message = out.failed();
    assert!(message.contains("`webhook_url`"), "{message}");
    out.assert_hides(WEBHOOK_SECRET);
}

// --- pagerduty-event --------------------------------------------------------------------------

fn pd_accepted(dedup_key: &str) -> Reply {
    Reply::json(
        202,
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
    )
}

#[tokio::test]
async fn pagerduty_event_triggers_an_incident_built_from_the_alert() {
    let server = Server::start(vec![pd_accepted("4f6c2a9d1e8b7c30")]).await;
    let with = json!({
        "routing_key": ROUTING_KEY,
        "summary": "disk still full on db-1",
        "url": server.url("/v2/enqueue"),
    });
    let out = run_plugin(PAGERDUTY, with, Some(firing_alert())).await;
    let result = out.succeeded();
    assert_eq!(
        result["outputs"],
        json!({"dedup_key": "4f6c2a9d1e8b7c30", "http_status": 202})
    );
    out.assert_hides(ROUTING_KEY);

    let req = server.only_request();
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, "/v2/enqueue");
    assert_eq!(req.header("content-type"), "application/json");
    let alert = firing_alert();
    assert_eq!(
        req.json(),
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "4f6c2a9d1e8b7c30",
            "payload": {
                "summary": "disk still full on db-1",
                "source": "db-1:9100",
                "severity": "error",
                "timestamp": "2026-11-28T15:30:00Z",
                "custom_details": {
                    "runbook": "disk-cleanup",
                    "run_id": "01JDTESTRUN0000000000000000",
                    "run_cause": "alert",
                    "step": "plugin-step",
                    "alert_status": "firing",
                    "labels": alert["labels"],
                    "annotations": alert["annotations"],
                },
            },
            "client": "untoil",
            "client_url": "http://prometheus.example:9090/graph?g0.expr=disk",
        })
    );
}

#[tokio::test]
async fn pagerduty_event_without_an_alert_sends_the_given_fields_and_this_hosts_name() {
    let server = Server::start(vec![pd_accepted("pd-made-this-key")]).await;
    let with = json!({
        "routing_key": ROUTING_KEY,
        "summary": "nightly backup\nfailed",
        "severity": "Warning",
        "component": "postgres",
        "group": "prod-db",
        "class": "backup",
        "links": ["https://runbooks.example/backup", {"href": "https://grafana.example/d/1", "text": "dashboard"}],
        "url": server.url("/v2/enqueue"),
    });
    let out = run_plugin(PAGERDUTY, with, None).await;
    let result = out.succeeded();
    assert_eq!(
        result["outputs"],
        json!({"dedup_key": "pd-made-this-key", "http_status": 202}),
        "without an alert, the dedup key is PagerDuty's"
    );

    let body = server.only_request().json();
    assert!(
        body.get("dedup_key").is_none(),
        "no dedup key to send: {body}"
    );
    let hostname = std::process::Command::new("python3")
        .args(["-c", "import socket; print(socket.gethostname())"])
        .output()
        .expect("python3");
    let hostname = String::from_utf8_lossy(&hostname.stdout).trim().to_string();
    assert!(!hostname.is_empty());
    assert_eq!(
        body["payload"],
        json!({
            "summary": "nightly backup failed",
            "source": hostname,
            "severity": "warning",
            "component": "postgres",
            "group": "prod-db",
            "class": "backup",
            "custom_details": {
                "runbook": "disk-cleanup",
                "run_id": "01JDTESTRUN0000000000000000",
                "run_cause": "manual",
                "step": "plugin-step",
            },
        })
    );
    assert_eq!(
        body["links"],
        json!([
            {"href": "https://runbooks.example/backup"},
            {"href": "https://grafana.example/d/1", "text": "dashboard"},
        ])
    );
}

#[tokio::test]
async fn pagerduty_event_resolves_by_the_alert_fingerprint_without_a_payload() {
    // PagerDuty does not always echo the key: the plugin then reports the one it sent.
    let server = Server::start(vec![Reply::json(
        202,
        json!({"status": "success", "message": "Event processed"}),
    )])
    .await;
    let with = json!({
        "routing_key": ROUTING_KEY,
        "action": "resolve",
        "url": server.url("/v2/enqueue"),
    });
    let mut alert = firing_alert();
    alert["status"] = json!("resolved");
    let out = run_plugin(PAGERDUTY, with, Some(alert)).await;
    assert_eq!(
        out.succeeded()["outputs"],
        json!({"dedup_key": "4f6c2a9d1e8b7c30", "http_status": 202})
    );
    assert_eq!(
        server.only_request().json(),
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "resolve",
            "dedup_key": "4f6c2a9d1e8b7c30",
        })
    );
}

#[tokio::test]
async fn pagerduty_event_acknowledges_by_an_explicit_dedup_key() {
    let server = Server::start(vec![pd_accepted("incident-42")]).await;
    let with = json!({
        "routing_key": ROUTING_KEY,
        "action": "acknowledge",
        "dedup_key": "incident-42",
        "url": server.url("/v2/enqueue"),
    });
    run_plugin(PAGERDUTY, with, Some(firing_alert()))
        .await
        .succeeded();
    let body = server.only_request().json();
    assert_eq!(body["event_action"], "acknowledge");
    assert_eq!(body["dedup_key"], "incident-42");
}

#[tokio::test]
async fn pagerduty_event_refuses_to_resolve_without_a_dedup_key_or_an_alert() {
    let server = Server::start(vec![pd_accepted("x")]).await;
    let with = json!({
        "routing_key": ROUTING_KEY,
        "action": "resolve",
        "url": server.url("/v2/enqueue"),
    });
    let out = run_plugin(PAGERDUTY, with, None).await;
    assert!(out.failed().contains("`dedup_key`"), "{out:#?}");
    out.assert_hides(ROUTING_KEY);
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn pagerduty_event_needs_a_summary_to_trigger() {
    let server = Server::start(vec![pd_accepted("x")]).await;
    let with = json!({"routing_key": ROUTING_KEY, "url": server.url("/v2/enqueue")});
    let message = run_plugin(PAGERDUTY, with, Some(firing_alert()))
        .await
        .failed();
    assert!(
        message.contains("`summary`") && message.contains("trigger"),
        "{message}"
    );
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn pagerduty_event_rejects_an_unknown_action_or_severity_listing_the_allowed_values() {
    let server = Server::start(vec![pd_accepted("x")]).await;
    for (input, value, allowed) in [
        ("severity", "fatal", "critical, error, warning, info"),
        ("action", "snooze", "trigger, acknowledge, resolve"),
    ] {
        let mut with = valid_inputs(PAGERDUTY, &server);
        with[input] = json!(value);
        let out = run_plugin(PAGERDUTY, with, None).await;
        let message = out.failed();
        assert!(
            message.contains(&format!("`{input}`"))
                && message.contains(value)
                && message.contains(allowed),
            "{message}"
        );
        out.assert_hides(ROUTING_KEY);
    }
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn pagerduty_event_reports_pagerdutys_errors_without_leaking_the_routing_key() {
    let server = Server::start(vec![Reply::json(
        400,
        json!({
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": [format!("'routing_key' {ROUTING_KEY} is not a valid integration key")],
        }),
    )])
    .await;
    let out = run_plugin(PAGERDUTY, valid_inputs(PAGERDUTY, &server), None).await;
    let message = out.failed();
    assert!(
        message.contains("HTTP 400")
            && message.contains("Event object is invalid")
            && message.contains("is not a valid integration key"),
        "{message}"
    );
    assert_eq!(out.result()["outputs"]["http_status"], 400);
    out.assert_hides(ROUTING_KEY);
}

#[tokio::test]
async fn pagerduty_event_fails_when_pagerduty_answers_500() {
    let server = Server::start(vec![Reply::text(500, "upstream trouble")]).await;
    let out = run_plugin(PAGERDUTY, valid_inputs(PAGERDUTY, &server), None).await;
    let message = out.failed();
    assert!(
        message.contains("HTTP 500") && message.contains("upstream trouble"),
        "{message}"
    );
    assert_eq!(
        out.result()["outputs"],
        json!({"dedup_key": null, "http_status": 500})
    );
    out.assert_hides(ROUTING_KEY);
}

#[tokio::test]
async fn pagerduty_event_fails_clearly_when_the_endpoint_refuses_connections() {
    let with = json!({
        "routing_key": ROUTING_KEY,
        "summary": "disk still full",
        "url": closed_port_url("/v2/enqueue"),
    });
    let out = run_plugin(PAGERDUTY, with, Some(firing_alert())).await;
    assert!(out.failed().contains("connection refused"), "{out:#?}");
    assert_eq!(
        out.result()["outputs"],
        json!({"dedup_key": "4f6c2a9d1e8b7c30", "http_status": null})
    );
    out.assert_hides(ROUTING_KEY);
}

// --- http-check -------------------------------------------------------------------------------

#[tokio::test]
async fn http_check_succeeds_when_the_status_is_2xx_and_the_body_contains_the_text() {
    let server = Server::start(vec![Reply::json(200, json!({"status": "healthy"}))]).await;
    let with = json!({"url": server.url("/healthz?verbose=1"), "contains": "healthy"});
    let result = run_plugin(HTTP_CHECK, with, None).await.succeeded();
    assert_eq!(result["outputs"]["http_status"], 200);
    assert_eq!(result["outputs"]["attempts"], 1);
    assert!(
        result["outputs"]["latency_ms"].is_u64(),
        "latency_ms: {result}"
    );
    let req = server.only_request();
    assert_eq!(req.method, Method::GET);
    assert_eq!(req.path, "/healthz");
    assert_eq!(req.query.as_deref(), Some("verbose=1"));
}

#[tokio::test]
async fn http_check_fails_when_the_body_lacks_the_expected_text() {
    let server = Server::start(vec![Reply::text(200, "degraded")]).await;
    let with = json!({"url": server.url("/healthz"), "contains": "healthy"});
    let out = run_plugin(HTTP_CHECK, with, None).await;
    let message = out.failed();
    assert!(
        message.contains("does not contain") && message.contains("healthy"),
        "{message}"
    );
    assert_eq!(out.result()["outputs"]["http_status"], 200);
}

#[tokio::test]
async fn http_check_fails_on_a_500_by_default() {
    let server = Server::start(vec![Reply::text(500, "boom")]).await;
    let out = run_plugin(HTTP_CHECK, json!({"url": server.url("/healthz")}), None).await;
    let message = out.failed();
    assert!(
        message.contains("HTTP 500") && message.contains("2xx"),
        "{message}"
    );
    assert_eq!(out.result()["outputs"]["http_status"], 500);
    assert_eq!(out.result()["outputs"]["attempts"], 1);
}

#[tokio::test]
async fn http_check_accepts_exactly_the_statuses_listed_in_expect_status() {
    let server = Server::start(vec![Reply::text(404, "gone")]).await;
    for expect in [
        json!(404),
        json!([200, 404]),
        json!("404"),
        json!("200, 404"),
    ] {
        let with = json!({"url": server.url("/old"), "expect_status": expect});
        let result = run_plugin(HTTP_CHECK, with, None).await.succeeded();
        assert_eq!(result["outputs"]["http_status"], 404, "{expect}");
    }
    let ok = Server::start(vec![Reply::text(200, "ok")]).await;
    let with = json!({"url": ok.url("/old"), "expect_status": [404]});
    let message = run_plugin(HTTP_CHECK, with, None).await.failed();
    assert!(
        message.contains("HTTP 200") && message.contains("expected 404"),
        "{message}"
    );
}

#[tokio::test]
async fn http_check_retries_until_the_service_is_healthy() {
    let server = Server::start(vec![
        Reply::text(503, "starting"),
        Reply::text(503, "starting"),
        Reply::text(200, "ready"),
    ])
    .await;
    let with = json!({"url": server.url("/ready"), "attempts": 5, "interval_seconds": 0});
    let out = run_plugin(HTTP_CHECK, with, None).await;
    let result = out.succeeded();
    assert_eq!(result["outputs"]["attempts"], 3);
    assert_eq!(result["outputs"]["http_status"], 200);
    assert_eq!(server.received().len(), 3);
    assert!(
        out.stderr.contains("attempt 1/5") && out.stderr.contains("HTTP 503"),
        "failed attempts are logged: {out:#?}"
    );
}

#[tokio::test]
async fn http_check_gives_up_after_the_last_attempt() {
    let server = Server::start(vec![Reply::text(503, "starting")]).await;
    let with = json!({"url": server.url("/ready"), "attempts": "2", "interval_seconds": "0"});
    let out = run_plugin(HTTP_CHECK, with, None).await;
    let message = out.failed();
    assert!(
        message.contains("HTTP 503") && message.contains("after 2 attempts"),
        "{message}"
    );
    assert_eq!(out.result()["outputs"]["attempts"], 2);
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn http_check_fails_clearly_when_the_connection_is_refused() {
    let with = json!({"url": closed_port_url("/healthz"), "attempts": 2, "interval_seconds": 0});
    let out = run_plugin(HTTP_CHECK, with, None).await;
    let message = out.failed();
    assert!(message.contains("connection refused"), "{message}");
    let outputs = &out.result()["outputs"];
    assert_eq!(outputs["http_status"], Value::Null);
    assert_eq!(outputs["attempts"], 2);
}

#[tokio::test]
async fn http_check_times_out_on_a_server_that_never_answers() {
    let server = Server::start(vec![Reply::Hang]).await;
    let with = json!({"url": server.url("/slow"), "timeout_seconds": 0.3});
    let out = run_plugin(HTTP_CHECK, with, None).await;
    let message = out.failed();
    assert!(message.contains("timed out after 0.3s"), "{message}");
    assert_eq!(out.result()["outputs"]["http_status"], Value::Null);
    // The plugin may time out before this test's server got to log the request: poll.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.received().is_empty() && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn http_check_uses_the_requested_method() {
    let server = Server::start(vec![Reply::text(204, "")]).await;
    for (method, expected) in [("head", Method::HEAD), ("POST", Method::POST)] {
        let with = json!({"url": server.url("/ping"), "method": method});
        run_plugin(HTTP_CHECK, with, None).await.succeeded();
        let last = server.received().pop().expect("a request");
        assert_eq!(last.method, expected);
    }
}

#[tokio::test]
async fn http_check_keeps_the_query_string_out_of_its_messages() {
    let server = Server::start(vec![Reply::text(500, "no")]).await;
    let url = server.url("/healthz?token=s3cr3t-query-token");
    let out = run_plugin(HTTP_CHECK, json!({"url": url}), None).await;
    out.failed();
    out.assert_hides("s3cr3t-query-token");
    assert_eq!(
        server.only_request().query.as_deref(),
        Some("token=s3cr3t-query-token")
    );
}

#[tokio::test]
async fn http_check_rejects_bad_inputs_with_a_message_and_makes_no_request() {
    let server = Server::start(vec![Reply::text(200, "ok")]).await;
    let url = server.url("/healthz");
    let cases = [
        (json!({"url": "localhost/healthz"}), "`url`"),
        (json!({"url": url, "method": "FETCH"}), "`method`"),
        (json!({"url": url, "expect_status": 700}), "`expect_status`"),
        (
            json!({"url": url, "expect_status": "ok"}),
            "`expect_status`",
        ),
        (json!({"url": url, "attempts": 0}), "`attempts`"),
        (json!({"url": url, "attempts": 1.5}), "`attempts`"),
        (
            json!({"url": url, "timeout_seconds": 0}),
            "`timeout_seconds`",
        ),
        (
            json!({"url": url, "timeout_seconds": "soon"}),
            "`timeout_seconds`",
        ),
        (
            json!({"url": url, "interval_seconds": -1}),
            "`interval_seconds`",
        ),
        (
            json!({"url": url, "method": "HEAD", "contains": "ok"}),
            "`contains`",
        ),
        (json!({"url": url, "contains": ["a"]}), "`contains`"),
    ];
    for (with, input) in cases {
        let message = run_plugin(HTTP_CHECK, with.clone(), None).await.failed();
        assert!(message.contains(input), "{with}: {message}");
    }
    assert!(server.received().is_empty(), "{:#?}", server.received());
}
