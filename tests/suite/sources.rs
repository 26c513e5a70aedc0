//! Issue 19, alert sources, through the real daemon: the built-in Grafana route, defined sources
//! (Grafana, GitHub-style HMAC, Standard Webhooks, PagerDuty v3), their answers, and the trust
//! issue's attacks applied to them. Every signature here is made by Python (stdlib `hmac`, or
//! the Standard Webhooks reference package in the test venv), never by untoil's code.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common;

use common::{Dirs, Running, sample, scrape, until};
use serde_json::{Value, json};
use untoil::server::auth::Auth;

/// The current Unix time in seconds, as senders put in their timestamp headers.
fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Runs `python` with `code`, `args` as argv[1..] and `input` on stdin; its trimmed stdout.
fn run_python(python: &str, code: &str, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(code)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Hex HMAC (`algo`: sha256 or sha512) of `message` with `key`, by Python's stdlib.
fn hmac_hex(algo: &str, key: &str, message: &[u8]) -> String {
    run_python(
        "python3",
        "import hmac, hashlib, sys; print(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), getattr(hashlib, sys.argv[2])).hexdigest())",
        &[key, algo],
        message,
    )
}

/// The test venv's Python, which has the Standard Webhooks reference package.
fn venv_python() -> String {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test-deps (it installs the standardwebhooks reference)",
        python.display()
    );
    python.display().to_string()
}

/// The `webhook-signature` the reference package makes for `body`.
fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    run_python(
        &venv_python(),
        "import sys\nfrom datetime import datetime, timezone\nfrom standardwebhooks import Webhook\nprint(Webhook(sys.argv[1]).sign(sys.argv[2], datetime.fromtimestamp(int(sys.argv[3]), tz=timezone.utc), sys.stdin.buffer.read().decode()))",
        &[secret, id, &timestamp.to_string()],
        body,
    )
}

/// A fixture of issue 19 (`tests/fixtures/{dir}/{name}`).
fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} must exist: {e}", path.display()))
}

/// A one-step runbook started by alerts of `source` (None: the default) matching `matcher`,
/// echoing the label `label`.
fn runbook(name: &str, source: Option<&str>, matcher: &str, label: &str) -> String {
    let source = source.map(|s| format!("source: {s}, ")).unwrap_or_default();
    format!(
        "name: {name}\nowner: team-ops\ntoil: {{manual_minutes: 7}}\ntriggers:\n  - alert: {{{source}matchers: ['{matcher}']}}\nsteps:\n  - name: echo\n    run: echo {{{{alert.labels.{label}}}}}\n"
    )
}

/// What a POST answered: status, headers and the body as text.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    fn accepted(&self) -> usize {
        self.json()["accepted"].as_array().map_or(0, Vec::len)
    }
}

/// POSTs `body` as JSON with `headers` (and the daemon's token when set and not overridden).
async fn post(d: &Running, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
    post_typed(d, path, body, "application/json", headers).await
}

async fn post_typed(
    d: &Running,
    path: &str,
    body: &[u8],
    content_type: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = d
        .client
        .post(format!("{}{path}", d.base))
        .header("content-type", content_type)
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("POST");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        text,
    }
}

/// A run by id, as the API shows it.
async fn run(d: &Running, id: &str) -> Value {
    d.get(&format!("/api/v1/runs/{id}")).await.1
}

/// The ids a POST accepted.
fn ids(a: &Answer) -> Vec<String> {
    a.json()["accepted"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The runbooks of the runs the daemon has, sorted.
async fn runbooks_run(d: &Running) -> Vec<String> {
    let mut v: Vec<String> = d
        .runs()
        .await
        .iter()
        .filter_map(|r| r["runbook"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Writes a private secret file in `dirs` and returns its path.
fn secret_file(dirs: &Dirs, name: &str, secret: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dirs.path(name);
    std::fs::write(&p, format!("{secret}\n")).expect("secret");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p.display().to_string()
}

/// The Grafana firing fixture's alert as Alertmanager's webhook (version 4) sends it.
fn as_alertmanager(grafana: &[u8]) -> Vec<u8> {
    let g: Value = serde_json::from_slice(grafana).expect("grafana json");
    let a = &g["alerts"][0];
    serde_json::to_vec(&json!({
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "untoil",
        "groupLabels": {},
        "commonLabels": a["labels"],
        "commonAnnotations": a["annotations"],
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": "firing",
            "labels": a["labels"],
            "annotations": a["annotations"],
            "startsAt": a["startsAt"],
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": a["generatorURL"],
            "fingerprint": a["fingerprint"],
        }],
    }))
    .expect("json")
}

const MEMORY: &str = "alertname=\"High memory usage\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_route_runs_once_records_the_resolve_and_keeps_sources_apart() {
    let dirs = Dirs::new();
    dirs.runbook(
        "mem-grafana",
        &format!(
            "{}verify: {{alert_resolves_within: 1h}}\n",
            runbook("mem-grafana", Some("grafana"), MEMORY, "zone")
        ),
    );
    dirs.runbook("mem-default", &runbook("mem-default", None, MEMORY, "zone"));
    dirs.runbook(
        "mem-both",
        &runbook("mem-both", Some("[grafana, alertmanager]"), MEMORY, "zone"),
    );
    let d = Running::start(dirs.settings()).await;

    let first = post(
        &d,
        "/api/v1/alerts/grafana",
        &fixture("grafana", "firing.json"),
        &[],
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(
        first.accepted(),
        2,
        "grafana + both, never the default: {}",
        first.text
    );
    let runs = d.wait_runs_final(2).await;
    assert_eq!(
        runbooks_run(&d).await,
        ["mem-both", "mem-grafana"],
        "{runs:?}"
    );
    for r in &runs {
        assert_eq!(r["cause"]["kind"], "alert", "{r}");
        assert_eq!(r["cause"]["source"], "grafana", "{r}");
        assert_eq!(r["status"], "succeeded", "{r}");
    }

    // The resolve, as Grafana sends it once the runs have fixed the alert.
    let mut resolved: Value =
        serde_json::from_slice(&fixture("grafana", "resolved.json")).expect("json");
    resolved["alerts"][0]["endsAt"] = json!(chrono::Utc::now().to_rfc3339());
    let resolved = post(
        &d,
        "/api/v1/alerts/grafana",
        &serde_json::to_vec(&resolved).expect("json"),
        &[],
    )
    .await;
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    assert_eq!(resolved.json()["resolved"], 1, "{}", resolved.text);
    assert_eq!(resolved.accepted(), 0, "{}", resolved.text);
    let verified = runs
        .iter()
        .find(|r| r["runbook"] == "mem-grafana")
        .expect("mem-grafana ran");
    let grafana_run = verified["id"].as_str().expect("id").to_string();
    let verified = run(&d, &grafana_run).await;
    assert_eq!(verified["verification"]["verified"], true, "{verified}");

    let again = post(
        &d,
        "/api/v1/alerts/grafana",
        &fixture("grafana", "firing.json"),
        &[],
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.accepted(), 0, "{}", again.text);
    assert_eq!(again.json()["duplicates"], 2, "{}", again.text);

    // The same alert (fingerprint, startsAt) from Alertmanager is another source's event.
    let am = post(
        &d,
        "/api/v1/alerts/alertmanager",
        &as_alertmanager(&fixture("grafana", "firing.json")),
        &[],
    )
    .await;
    assert_eq!(am.status, 200, "{}", am.text);
    assert_eq!(am.accepted(), 2, "{}", am.text);
    for id in ids(&am) {
        let r = run(&d, &id).await;
        assert_eq!(r["cause"]["source"], "alertmanager", "{r}");
        assert_ne!(r["runbook"], "mem-grafana", "{r}");
    }
    d.wait_runs_final(4).await;
    assert_eq!(
        runbooks_run(&d).await,
        ["mem-both", "mem-both", "mem-default", "mem-grafana"]
    );
    d.stop().await;

    let out = common::untoil_command(&dirs)
        .arg("runs")
        .output()
        .expect("untoil runs");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{list}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(list.matches("alert (grafana)").count(), 2, "{list}");
    let out = common::untoil_command(&dirs)
        .args(["runs", "show", &grafana_run])
        .output()
        .expect("untoil runs show");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("grafana"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_route_runs_each_alert_of_a_grouped_notification() {
    let dirs = Dirs::new();
    dirs.runbook(
        "blue",
        &runbook("blue", Some("grafana"), "team=\"blue\"", "zone"),
    );
    let d = Running::start(dirs.settings()).await;
    let a = post(
        &d,
        "/api/v1/alerts/grafana",
        &fixture("grafana", "grouped.json"),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 2, "{}", a.text);
    let runs = d.wait_runs_final(2).await;
    let mut zones: Vec<String> = Vec::new();
    for r in &runs {
        let r = run(&d, r["id"].as_str().expect("id")).await;
        zones.push(
            r["steps"][0]["stdout"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_string(),
        );
    }
    zones.sort();
    assert_eq!(zones, ["eu-1", "us-1"]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_route_refuses_alertmanager_payloads_and_needs_an_alerts_token_with_auth_on() {
    let dirs = Dirs::new();
    dirs.runbook("mem", &runbook("mem", Some("grafana"), MEMORY, "zone"));
    let auth = dirs.path("auth.yaml");
    std::fs::write(
        &auth,
        "tokens:\n  - name: grafana\n    token: grafana-alerts-token-1\n    scope: alerts\n  - name: viewer\n    token: viewer-token-1\n    scope: read\n",
    )
    .expect("auth file");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let mut settings = dirs.settings();
    settings.auth = untoil::cli::credentials::load(None, None, Some(&auth))
        .expect("credentials")
        .auth;
    let d = Running::start(settings).await;
    let bearer = [("authorization", "Bearer grafana-alerts-token-1")];

    let v4 = as_alertmanager(&fixture("grafana", "firing.json"));
    let a = post(&d, "/api/v1/alerts/grafana", &v4, &bearer).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.text.contains("/api/v1/alerts/alertmanager"), "{}", a.text);

    let firing = fixture("grafana", "firing.json");
    let a = post(&d, "/api/v1/alerts/grafana", &firing, &[]).await;
    assert_eq!(a.status, 401, "{}", a.text);
    let a = post(
        &d,
        "/api/v1/alerts/grafana",
        &firing,
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text);
    let a = post(
        &d,
        "/api/v1/alerts/grafana",
        &firing,
        &[("authorization", "Bearer viewer-token-1")],
    )
    .await;
    assert_eq!(
        a.status, 403,
        "a read token may not post alerts: {}",
        a.text
    );
    let a = post(&d, "/api/v1/alerts/grafana", &firing, &bearer).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);
    d.stop().await;
}

const GRAFANA_SECRET: &str = "grafana-signed-secret-7f3a";
const TS_HEADER: &str = "X-Grafana-Alerting-Signature-Timestamp";

/// The `X-Grafana-Alerting-Signature` Grafana sends: hex HMAC-SHA256 of `ts:body`.
fn grafana_signature(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut signed = format!("{ts}:").into_bytes();
    signed.extend_from_slice(body);
    hmac_hex("sha256", secret, &signed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_grafana_source_takes_valid_signatures_only_and_dedupes_replays() {
    let dirs = Dirs::new();
    let secret = secret_file(&dirs, "grafana.secret", GRAFANA_SECRET);
    dirs.source(
        "grafana-signed",
        &format!(
            "source: grafana-signed\nkind: grafana\nverify:\n  preset: grafana\n  timestamp_header: {TS_HEADER}\n  tolerance: 5m\n  secret_file: {secret}\n"
        ),
    );
    dirs.runbook(
        "mem",
        &runbook("mem", Some("grafana-signed"), MEMORY, "zone"),
    );
    let d = Running::start(dirs.settings()).await;
    let path = "/api/v1/sources/grafana-signed";
    let body = fixture("grafana", "firing.json");
    let now = now_secs();
    let right = grafana_signature(GRAFANA_SECRET, now, &body);
    let ts = now.to_string();

    let refused = |a: &Answer, why: &str| {
        assert_eq!(a.status, 401, "{why}: {}", a.text);
        assert!(
            a.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{why}: a reason: {}",
            a.text
        );
        assert!(!a.text.contains(GRAFANA_SECRET), "{why}: {}", a.text);
        assert!(!a.text.contains(&right), "{why}: {}", a.text);
    };
    let wrong = grafana_signature("not-the-secret", now, &body);
    let a = post(
        &d,
        path,
        &body,
        &[("X-Grafana-Alerting-Signature", &wrong), (TS_HEADER, &ts)],
    )
    .await;
    refused(&a, "wrong secret");
    let a = post(&d, path, &body, &[(TS_HEADER, &ts)]).await;
    refused(&a, "no signature");
    assert!(
        a.text.contains("X-Grafana-Alerting-Signature"),
        "{}",
        a.text
    );
    for (offset, what) in [(-600, "old"), (600, "future")] {
        let t = now + offset;
        let sig = grafana_signature(GRAFANA_SECRET, t, &body);
        let a = post(
            &d,
            path,
            &body,
            &[
                ("X-Grafana-Alerting-Signature", &sig),
                (TS_HEADER, &t.to_string()),
            ],
        )
        .await;
        refused(&a, what);
        assert!(a.text.contains("tolerance"), "{what}: {}", a.text);
    }
    assert!(
        d.runs().await.is_empty(),
        "nothing runs on a refused request"
    );

    let signed = [
        ("X-Grafana-Alerting-Signature", right.as_str()),
        (TS_HEADER, ts.as_str()),
    ];
    let a = post(&d, path, &body, &signed).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);
    let runs = d.wait_runs_final(1).await;
    assert_eq!(runs[0]["cause"]["source"], "grafana-signed", "{}", runs[0]);
    // The same signed request again, within the tolerance: the same episode, no second run.
    let a = post(&d, path, &body, &signed).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 0, "{}", a.text);
    assert_eq!(a.json()["duplicates"], 1, "{}", a.text);
    assert_eq!(d.runs().await.len(), 1);
    d.stop().await;
}

const GITHUB_SECRET: &str = "gh-webhook-secret-51c9";

/// A GitHub-style source definition (`preset` hmac-sha256 or hmac-sha512).
fn github_source(name: &str, preset: &str, header: &str, prefix: &str, secret: &str) -> String {
    format!(
        "source: {name}\nverify:\n  preset: {preset}\n  header: {header}\n  prefix: \"{prefix}\"\n  secret_file: {secret}\ndelivery:\n  id_header: X-GitHub-Delivery\nmap:\n  labels:\n    alertname: GitHubWorkflowFailed\n    repo: /repository/full_name\n    branch: \"{{{{body.workflow_run.head_branch}}}}\"\n    workflow: /workflow/name\n  annotations: {{url: /workflow_run/html_url}}\n  id: /workflow_run/id\n  starts_at: /workflow_run/created_at\n  when:\n    field: /workflow_run/conclusion\n    values: [failure]\n"
    )
}

/// The workflow_run fixture as a failed run.
fn failed_workflow_run() -> Vec<u8> {
    let mut v: Value =
        serde_json::from_slice(&fixture("github", "workflow_run.json")).expect("json");
    v["workflow_run"]["conclusion"] = json!("failure");
    serde_json::to_vec(&v).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_style_source_maps_signed_deliveries_and_dedupes_them() {
    let dirs = Dirs::new();
    let secret = secret_file(&dirs, "github.secret", GITHUB_SECRET);
    dirs.source(
        "github-ci",
        &github_source(
            "github-ci",
            "hmac-sha256",
            "X-Hub-Signature-256",
            "sha256=",
            &secret,
        ),
    );
    dirs.source(
        "github-512",
        &github_source(
            "github-512",
            "hmac-sha512",
            "X-Hub-Signature-512",
            "sha512=",
            &secret,
        ),
    );
    dirs.runbook(
        "ci",
        "name: ci\nowner: team-ci\ntoil: {manual_minutes: 15}\ntriggers:\n  - alert: {source: [github-ci, github-512], matchers: ['alertname=\"GitHubWorkflowFailed\"']}\nsteps:\n  - name: echo\n    run: echo {{alert.labels.repo}} {{alert.labels.branch}} {{alert.labels.workflow}}\n",
    );
    let mut settings = dirs.settings();
    settings.auth = Auth::new(vec!["untoil-full-token-1".into()], vec![]);
    let mut d = Running::start(settings).await;
    let path = "/api/v1/sources/github-ci";
    let body = failed_workflow_run();
    let sig = format!("sha256={}", hmac_hex("sha256", GITHUB_SECRET, &body));

    // untoil's own token is no signature.
    let a = post(
        &d,
        path,
        &body,
        &[
            ("authorization", "Bearer untoil-full-token-1"),
            ("X-GitHub-Delivery", "d-0"),
        ],
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text);

    let a = post(
        &d,
        path,
        &body,
        &[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", "d-1")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);
    d.token = Some("untoil-full-token-1".into());
    let runs = d.wait_runs_final(1).await;
    let r = run(&d, runs[0]["id"].as_str().expect("id")).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["cause"]["source"], "github-ci", "{r}");
    assert_eq!(
        r["steps"][0]["stdout"].as_str().map(str::trim),
        Some("octo-org/octo-repo master test"),
        "{r}"
    );
    let labels = &r["alert"]["alert"]["labels"];
    assert_eq!(labels["repo"], "octo-org/octo-repo", "{r}");
    assert_eq!(labels["branch"], "master", "{r}");

    // The same delivery again: acknowledged, nothing runs.
    let a = post(
        &d,
        path,
        &body,
        &[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", "d-1")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["duplicate_delivery"], true, "{}", a.text);
    // Another delivery of the same workflow run: the same episode.
    let a = post(
        &d,
        path,
        &body,
        &[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", "d-2")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 0, "{}", a.text);
    assert_eq!(a.json()["duplicates"], 1, "{}", a.text);

    // A valid signature over a body the mapping cannot read: 400 with where.
    let mut v: Value = serde_json::from_slice(&body).expect("json");
    v["repository"]
        .as_object_mut()
        .expect("object")
        .remove("full_name");
    let missing = serde_json::to_vec(&v).expect("json");
    let sig_missing = format!("sha256={}", hmac_hex("sha256", GITHUB_SECRET, &missing));
    let a = post(
        &d,
        path,
        &missing,
        &[
            ("X-Hub-Signature-256", &sig_missing),
            ("X-GitHub-Delivery", "d-3"),
        ],
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.text.contains("/repository/full_name"), "{}", a.text);
    // A refused body does not use up its delivery id: the sender's fixed retry is admitted
    // (as the same episode as d-1).
    let a = post(
        &d,
        path,
        &body,
        &[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", "d-3")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["duplicate_delivery"], Value::Null, "{}", a.text);
    assert_eq!(a.json()["duplicates"], 1, "{}", a.text);

    // GitHub's `ping` on webhook creation: `when` does not hold, acknowledged and ignored.
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let sig_ping = format!("sha256={}", hmac_hex("sha256", GITHUB_SECRET, ping));
    let a = post(
        &d,
        path,
        ping,
        &[
            ("X-Hub-Signature-256", &sig_ping),
            ("X-GitHub-Delivery", "d-ping"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 0, "{}", a.text);

    // hmac-sha512.
    let sig512 = format!("sha512={}", hmac_hex("sha512", GITHUB_SECRET, &body));
    let a = post(
        &d,
        "/api/v1/sources/github-512",
        &body,
        &[
            ("X-Hub-Signature-512", &sig512),
            ("X-GitHub-Delivery", "d-1"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.accepted(),
        1,
        "another source, another delivery (d-1 is github-ci's) and episode: {}",
        a.text
    );
    let a = post(
        &d,
        "/api/v1/sources/github-512",
        &body,
        &[("X-Hub-Signature-512", &sig), ("X-GitHub-Delivery", "d-5")],
    )
    .await;
    assert_eq!(
        a.status, 401,
        "a sha256 signature is no sha512 one: {}",
        a.text
    );
    assert_eq!(d.wait_runs_final(2).await.len(), 2);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_webhooks_source_takes_the_reference_signature_and_its_delivery_id() {
    let dirs = Dirs::new();
    let key = "whsec_dW50b2lsLXN0YW5kYXJkLXdlYmhvb2tzLWtleS0zMmI=";
    let secret = secret_file(&dirs, "sw.secret", key);
    dirs.source(
        "billing",
        &format!(
            "source: billing\nverify:\n  preset: standard-webhooks\n  secret_file: {secret}\nmap:\n  labels:\n    alertname: PaymentFailed\n    customer: /data/customer\n"
        ),
    );
    dirs.runbook(
        "pay",
        &runbook(
            "pay",
            Some("billing"),
            "alertname=\"PaymentFailed\"",
            "customer",
        ),
    );
    let d = Running::start(dirs.settings()).await;
    let path = "/api/v1/sources/billing";
    let body = br#"{"type":"invoice.payment_failed","data":{"customer":"cus-42"}}"#.to_vec();
    let ts = now_secs();
    let sig = standard_webhooks_signature(key, "msg_2Yh1", ts, &body);
    let ts = ts.to_string();
    let headers = [
        ("webhook-id", "msg_2Yh1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let a = post(&d, path, &body, &headers).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);
    let runs = d.wait_runs_final(1).await;
    let r = run(&d, runs[0]["id"].as_str().expect("id")).await;
    assert_eq!(
        r["steps"][0]["stdout"].as_str().map(str::trim),
        Some("cus-42"),
        "{r}"
    );

    let a = post(&d, path, &body, &headers).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["duplicate_delivery"], true, "{}", a.text);

    let tampered = br#"{"type":"invoice.payment_failed","data":{"customer":"cus-43"}}"#.to_vec();
    let other = [
        ("webhook-id", "msg_2Yh2"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let a = post(&d, path, &tampered, &other).await;
    assert_eq!(a.status, 401, "{}", a.text);
    assert!(!a.text.contains(key), "{}", a.text);
    assert_eq!(d.runs().await.len(), 1);
    d.stop().await;

    // Delivery ids are stored: a replay after a restart is still a duplicate.
    let d = Running::start(dirs.settings()).await;
    let a = post(&d, path, &body, &headers).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["duplicate_delivery"], true, "{}", a.text);
    assert_eq!(d.runs().await.len(), 1);
    d.stop().await;
}

const PD_SECRET: &str = "pd-v3-current-secret";

/// `X-PagerDuty-Signature` with one `v1=` per secret.
fn pagerduty_signature(secrets: &[&str], body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| format!("v1={}", hmac_hex("sha256", s, body)))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pagerduty_source_runs_on_incidents_and_records_their_resolve() {
    let dirs = Dirs::new();
    let secret = secret_file(&dirs, "pd.secret", PD_SECRET);
    dirs.source(
        "pagerduty",
        &format!("source: pagerduty\nkind: pagerduty\nverify:\n  preset: pagerduty-v3\n  secret_file: {secret}\n"),
    );
    dirs.runbook(
        "pd",
        "name: pd\nowner: team-ops\ntoil: {manual_minutes: 30}\ntriggers:\n  - alert: {source: pagerduty, matchers: ['urgency=\"high\"']}\nverify: {alert_resolves_within: 1h}\nsteps:\n  - name: echo\n    run: echo {{alert.labels.service}}/{{alert.labels.urgency}}/{{alert.labels.priority}}/{{alert.labels.title}}/{{alert.labels.incident}}\n",
    );
    let d = Running::start(dirs.settings()).await;
    let path = "/api/v1/sources/pagerduty";
    let send = |name: &'static str, secrets: &'static [&'static str]| {
        let d = &d;
        async move {
            let body = fixture("pagerduty", name);
            let sig = pagerduty_signature(secrets, &body);
            post(d, path, &body, &[("X-PagerDuty-Signature", &sig)]).await
        }
    };
    let a = send("incident.triggered.json", &[PD_SECRET]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);
    let runs = d.wait_runs_final(1).await;
    let r = run(&d, runs[0]["id"].as_str().expect("id")).await;
    assert_eq!(r["cause"]["source"], "pagerduty", "{r}");
    assert_eq!(
        r["steps"][0]["stdout"].as_str().map(str::trim),
        Some("API Service/high/P1/A little bump in the road/PGR0VU2"),
        "{r}"
    );

    // During a rotation PagerDuty signs with the old and the new secret.
    // (Its event id is the triggered one's in the documentation: another delivery here.)
    let mut update: Value =
        serde_json::from_slice(&fixture("pagerduty", "incident.priority_updated.json"))
            .expect("json");
    update["event"]["id"] = json!("01CELDAQ9R3Z5Y8W7V6U5T4S3R");
    let update = serde_json::to_vec(&update).expect("json");
    let sig = pagerduty_signature(&["pd-v3-old-secret", PD_SECRET], &update);
    let a = post(&d, path, &update, &[("X-PagerDuty-Signature", &sig)]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["duplicates"], 1, "the same incident: {}", a.text);
    let a = send(
        "incident.priority_updated.json",
        &["pd-v3-old-secret", "another"],
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text);

    let a = send("incident.acknowledged.json", &[PD_SECRET]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 0, "the same incident: {}", a.text);
    let a = send("incident.resolved.json", &[PD_SECRET]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["resolved"], 1, "{}", a.text);
    assert_eq!(a.accepted(), 0, "{}", a.text);
    let r = run(&d, runs[0]["id"].as_str().expect("id")).await;
    assert_eq!(r["verification"]["verified"], true, "{r}");

    let a = send("service.updated.json", &[PD_SECRET]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 0, "{}", a.text);
    assert_eq!(a.json()["unmatched"], 0, "{}", a.text);
    assert_eq!(d.runs().await.len(), 1);
    d.stop().await;
}

/// A signed webhook source of labels `/name` (alertname), `/v` (`v`, and `t` by a template),
/// id `/id`, starting at `/at`.
fn plain_source(name: &str, secret: &str) -> String {
    format!(
        "source: {name}\nverify:\n  preset: hmac-sha256\n  header: X-Signature\n  secret_file: {secret}\nmap:\n  labels:\n    alertname: /name\n    v: /v\n    t: \"{{{{body.v}}}}\"\n  id: /id\n  starts_at: /at\n"
    )
}

const PLAIN_SECRET: &str = "plain-secret-0b7e";

/// Posts `body` to `/api/v1/sources/{name}` signed with [`PLAIN_SECRET`].
async fn post_plain(d: &Running, name: &str, body: &Value, extra: &[(&str, &str)]) -> Answer {
    let bytes = serde_json::to_vec(body).expect("json");
    let sig = hmac_hex("sha256", PLAIN_SECRET, &bytes);
    let mut headers = vec![("X-Signature", sig.as_str())];
    headers.extend_from_slice(extra);
    post(d, &format!("/api/v1/sources/{name}"), &bytes, &headers).await
}

fn event(name: &str, v: &str, id: &str) -> Value {
    json!({"name": name, "v": v, "id": id, "at": "2026-12-01T10:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_answers_404_503_415_413_and_a_broken_source_leaves_the_others_serving() {
    let dirs = Dirs::new();
    let secret = secret_file(&dirs, "plain.secret", PLAIN_SECRET);
    dirs.source("plain", &plain_source("plain", &secret));
    dirs.source(
        "broken",
        &plain_source("broken", &dirs.path("missing.secret").display().to_string()),
    );
    dirs.runbook(
        "echo",
        &runbook("echo", Some("plain"), "alertname=\"Echo\"", "v"),
    );
    let mut settings = dirs.settings();
    settings.body_limit = 4096;
    let d = Running::start(settings).await;

    let a = post_plain(&d, "nope", &event("Echo", "x", "1"), &[]).await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert!(a.text.contains("no source `nope` is defined"), "{}", a.text);
    // A built-in name is pointed to its own route; an invalid name is explained, not echoed.
    let a = post_plain(&d, "grafana", &event("Echo", "x", "1"), &[]).await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert!(a.text.contains("/api/v1/alerts/grafana"), "{}", a.text);
    let a = post_plain(&d, "GitHub-CI", &event("Echo", "x", "1"), &[]).await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert!(
        a.text.contains("lowercase letter") && !a.text.contains("GitHub-CI"),
        "{}",
        a.text
    );
    let a = post_plain(&d, "broken", &event("Echo", "x", "1"), &[]).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert!(a.headers.contains_key("retry-after"), "{:?}", a.headers);
    // The answer does not tell an unauthenticated sender where the secret lives.
    assert!(!a.text.contains("missing.secret"), "{}", a.text);
    // A signed body that is not JSON: 400 with the position, said once.
    let sig = hmac_hex("sha256", PLAIN_SECRET, b"{nope");
    let a = post(
        &d,
        "/api/v1/sources/plain",
        b"{nope",
        &[("X-Signature", sig.as_str())],
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(
        a.text.contains("(line 1, column 2)") && !a.text.contains("at line 1 column 2"),
        "{}",
        a.text
    );
    let a = post_plain(&d, "plain", &event("Echo", "ok", "1"), &[]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);

    let bytes = serde_json::to_vec(&event("Echo", "text", "2")).expect("json");
    let sig = hmac_hex("sha256", PLAIN_SECRET, &bytes);
    let a = post_typed(
        &d,
        "/api/v1/sources/plain",
        &bytes,
        "text/plain",
        &[("X-Signature", &sig)],
    )
    .await;
    assert_eq!(a.status, 415, "{}", a.text);
    // JSON with a charset (as some senders write it) is JSON.
    let a = post_typed(
        &d,
        "/api/v1/sources/plain",
        &bytes,
        "application/json; charset=utf-8",
        &[("X-Signature", &sig)],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);

    let big = event("Echo", &"x".repeat(8192), "3");
    let a = post_plain(&d, "plain", &big, &[]).await;
    assert_eq!(a.status, 413, "{}", a.text);
    let mut g: Value = serde_json::from_slice(&fixture("grafana", "firing.json")).expect("json");
    g["alerts"][0]["annotations"]["padding"] = json!("x".repeat(8192));
    let a = post(
        &d,
        "/api/v1/alerts/grafana",
        &serde_json::to_vec(&g).expect("json"),
        &[],
    )
    .await;
    assert_eq!(a.status, 413, "the Grafana route too: {}", a.text);
    assert_eq!(
        d.wait_runs_final(2).await.len(),
        2,
        "only the good ones ran"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mapped_label_values_reach_the_shell_only_quoted() {
    let dirs = Dirs::new();
    let secret = secret_file(&dirs, "plain.secret", PLAIN_SECRET);
    dirs.source("plain", &plain_source("plain", &secret));
    // Both labels, the pointer's and the template's, as two words.
    dirs.runbook(
        "echo",
        "name: echo\nowner: team-ops\ntoil: {manual_minutes: 7}\ntriggers:\n  - alert: {source: plain, matchers: ['alertname=\"Echo\"']}\nsteps:\n  - name: echo\n    run: printf '%s|%s' {{alert.labels.v}} {{alert.labels.t}}\n",
    );
    let d = Running::start(dirs.settings()).await;
    let pwned = dirs.path("pwned");
    let victim = dirs.path("victim");
    std::fs::create_dir(&victim).expect("mkdir");
    std::fs::write(victim.join("keep"), "x").expect("write");
    let values = [
        format!("$(touch {})", pwned.display()),
        format!("x; rm -rf {}", victim.display()),
        format!("`touch {}`", pwned.display()),
        format!("a\ntouch {}\nb", pwned.display()),
        "x' && touch pwned '".to_string(),
        "{{alert.labels.alertname}} {{ env.HOME }}".to_string(),
    ];
    let mut expected = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let a = post_plain(&d, "plain", &event("Echo", v, &format!("h{i}")), &[]).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.accepted(), 1, "{}", a.text);
        expected.push((ids(&a)[0].clone(), v.clone()));
    }
    let a = post_plain(&d, "plain", &event("Echo", "-rf", "dash"), &[]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let dash = ids(&a)[0].clone();
    d.wait_runs_final(values.len() + 1).await;
    for (id, v) in &expected {
        let r = run(&d, id).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(
            r["steps"][0]["stdout"].as_str(),
            Some(format!("{v}|{v}").as_str()),
            "{r}"
        );
    }
    let r = run(&d, &dash).await;
    assert_eq!(r["status"], "failed", "{r}");
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("starts with '-'")),
        "{r}"
    );
    assert!(!pwned.exists(), "a label value ran as a command");
    assert!(!dirs.path("runbooks/pwned").exists());
    assert!(victim.join("keep").exists(), "rm ran");

    for (k, v) in [("name", "Echo\u{0}"), ("v", "a\u{0}b")] {
        let mut e = event("Echo", "x", "nul");
        e[k] = json!(v);
        let a = post_plain(&d, "plain", &e, &[]).await;
        assert_eq!(a.status, 400, "NUL in {k}: {}", a.text);
    }
    // Label names come from the body on the Grafana route.
    let mut g: Value = serde_json::from_slice(&fixture("grafana", "firing.json")).expect("json");
    g["alerts"][0]["labels"]["zo\u{0}ne"] = json!("x");
    let a = post(
        &d,
        "/api/v1/alerts/grafana",
        &serde_json::to_vec(&g).expect("json"),
        &[],
    )
    .await;
    assert_eq!(a.status, 400, "NUL in a label name: {}", a.text);
    assert_eq!(d.runs().await.len(), values.len() + 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_to_a_source_are_refused_even_when_signed() {
    let dirs = Dirs::new();
    let secret = secret_file(&dirs, "plain.secret", PLAIN_SECRET);
    dirs.source("plain", &plain_source("plain", &secret));
    dirs.runbook(
        "echo",
        &runbook("echo", Some("plain"), "alertname=\"Echo\"", "v"),
    );
    let d = Running::start(dirs.settings()).await;
    for (i, header) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ]
    .into_iter()
    .enumerate()
    {
        let a = post_plain(
            &d,
            "plain",
            &event("Echo", "x", &format!("c{i}")),
            &[header],
        )
        .await;
        assert_eq!(a.status, 403, "{header:?}: {}", a.text);
    }
    assert!(d.runs().await.is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_the_backlog_show_each_source() {
    let dirs = Dirs::new();
    let secret = secret_file(&dirs, "plain.secret", PLAIN_SECRET);
    dirs.source("plain", &plain_source("plain", &secret));
    dirs.source("other", &plain_source("other", &secret));
    dirs.runbook(
        "echo",
        &runbook("echo", Some("plain"), "alertname=\"Echo\"", "v"),
    );
    let d = Running::start(dirs.settings()).await;

    assert_eq!(
        post_plain(&d, "plain", &event("Echo", "x", "1"), &[])
            .await
            .status,
        200
    );
    assert_eq!(
        post_plain(&d, "plain", &event("Echo", "x", "1"), &[])
            .await
            .status,
        200
    );
    let a = post_plain(&d, "other", &event("NobodysAlert", "y", "1"), &[]).await;
    assert_eq!(a.json()["unmatched"], 1, "{}", a.text);
    let a = post(
        &d,
        "/api/v1/alerts/grafana",
        &fixture("grafana", "firing.json"),
        &[],
    )
    .await;
    assert_eq!(a.json()["unmatched"], 1, "{}", a.text);
    let a = post(&d, "/api/v1/sources/plain", b"{}", &[("X-Signature", "00")]).await;
    assert_eq!(a.status, 401, "{}", a.text);
    let bad = serde_json::to_vec(&json!({"name": "Echo"})).expect("json");
    let sig = hmac_hex("sha256", PLAIN_SECRET, &bad);
    let a = post(&d, "/api/v1/sources/other", &bad, &[("X-Signature", &sig)]).await;
    assert_eq!(a.status, 400, "{}", a.text);

    let m = scrape(&d).await;
    for source in ["plain", "other", "grafana"] {
        assert!(
            sample(&m, "untoil_alerts_total", Some(("source", source))) >= 1.0,
            "untoil_alerts_total{{source={source}}}: {:?}",
            m.samples
        );
    }
    let refused = |source: &str, reason: &str| {
        m.samples
            .iter()
            .filter(|s| s.metric == "untoil_source_requests_refused_total")
            .filter(|s| {
                s.labels.get("source") == Some(source) && s.labels.get("reason") == Some(reason)
            })
            .count()
    };
    assert_eq!(refused("plain", "signature"), 1, "{:?}", m.samples);
    assert_eq!(refused("other", "body"), 1, "{:?}", m.samples);

    d.wait_runs_final(1).await;
    let backlog = until("the backlog lists both unmatched sources", || async {
        let (_, b) = d.get("/api/v1/reports/unautomated").await;
        let rows = b["rows"].as_array().cloned().unwrap_or_default();
        let sources: Vec<String> = rows
            .iter()
            .filter_map(|r| r["source"].as_str().map(str::to_string))
            .collect();
        (sources.contains(&"other".to_string()) && sources.contains(&"grafana".to_string()))
            .then_some(b)
    })
    .await;
    let rows = backlog["rows"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter().all(|r| r["source"] != "plain"),
        "a matched alert is no backlog: {backlog}"
    );
    d.stop().await;

    let out = common::untoil_command(&dirs)
        .args(["report", "unautomated"])
        .output()
        .expect("untoil report unautomated");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (source, alertname) in [("other", "NobodysAlert"), ("grafana", "High memory usage")] {
        assert!(
            text.lines()
                .any(|l| l.contains(source) && l.contains(alertname)),
            "{source} {alertname}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_log_never_contains_a_source_secret() {
    let dirs = Dirs::new();
    // The secret from the environment this time (`secret_env`), with the log at debug.
    dirs.source(
        "plain",
        &plain_source("plain", "unused").replace(
            "secret_file: unused",
            "secret_env: UNTOIL_TEST_PLAIN_SECRET",
        ),
    );
    dirs.runbook(
        "echo",
        &runbook("echo", Some("plain"), "alertname=\"Echo\"", "v"),
    );
    let mut command = common::untoil_command(&dirs);
    command
        .env("UNTOIL_TEST_PLAIN_SECRET", PLAIN_SECRET)
        .env("UNTOIL_LOG", "debug")
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let mut served = common::Served::spawn(command);
    let base = served.base();
    untoil::exec::step::http::install_crypto_provider();
    let client = reqwest::Client::new();
    let send = |body: Vec<u8>, sig: String| {
        let client = client.clone();
        let url = format!("{base}/api/v1/sources/plain");
        async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .header("X-Signature", sig)
                .body(body)
                .send()
                .await
                .expect("POST")
                .status()
                .as_u16()
        }
    };
    let good = serde_json::to_vec(&event("Echo", "x", "1")).expect("json");
    let right = hmac_hex("sha256", PLAIN_SECRET, &good);
    assert_eq!(send(good.clone(), right.clone()).await, 200);
    assert_eq!(send(good.clone(), "ab".repeat(32)).await, 401);
    let (_, log) = served.terminate();
    assert!(log.contains("signature"), "the refusal is logged: {log}");
    assert!(!log.contains(PLAIN_SECRET), "{log}");
    assert!(!log.contains(&right), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_sources_check_the_signature_before_the_delivery_id_and_map_resolves() {
    let dirs = Dirs::new();
    let secret_path = secret_file(&dirs, "deploys.secret", "deploys-env-secret-9d");
    dirs.source(
        "deploys",
        &format!("source: deploys\nverify:\n  preset: hmac-sha256\n  header: X-Signature\n  timestamp_header: X-Timestamp\n  tolerance: 2m\n  secret_file: {secret_path}\ndelivery:\n  id_header: X-Delivery\nmap:\n  labels:\n    alertname: DeployFailed\n    app: /app\n  id: /deploy\n  starts_at: /at\n  resolved:\n    field: /state\n    values: [recovered]\n  when:\n    field: /state\n    values: [failed, recovered]\n"),
    );
    dirs.runbook(
        "deploy",
        &format!(
            "{}verify: {{alert_resolves_within: 1h}}\n",
            runbook(
                "deploy",
                Some("deploys"),
                "alertname=\"DeployFailed\"",
                "app"
            )
        ),
    );
    let d = Running::start(dirs.settings()).await;
    let path = "/api/v1/sources/deploys";
    let send = |state: &'static str, delivery: &'static str, secret: &'static str, offset: i64| {
        let d = &d;
        async move {
            let body = serde_json::to_vec(
                &json!({"app": "shop", "deploy": 77, "at": "2026-12-01T10:00:00Z", "state": state}),
            )
            .expect("json");
            let ts = now_secs() + offset;
            let mut signed = format!("{ts}:").into_bytes();
            signed.extend_from_slice(&body);
            let sig = hmac_hex("sha256", secret, &signed);
            post(
                d,
                path,
                &body,
                &[
                    ("X-Signature", &sig),
                    ("X-Timestamp", &ts.to_string()),
                    ("X-Delivery", delivery),
                ],
            )
            .await
        }
    };
    let secret = "deploys-env-secret-9d";
    let a = send("started", "s-1", secret, 0).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 0, "`when` does not hold: {}", a.text);
    assert_eq!(a.json()["unmatched"], 0, "ignored, not backlog: {}", a.text);
    let a = send("failed", "f-1", secret, -300).await;
    assert_eq!(a.status, 401, "stale: {}", a.text);
    let a = send("failed", "f-1", secret, 0).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);
    // A known delivery id does not excuse a bad signature.
    let a = send("failed", "f-1", "not-the-secret", 0).await;
    assert_eq!(a.status, 401, "{}", a.text);
    let runs = d.wait_runs_final(1).await;
    assert_eq!(runs[0]["status"], "succeeded", "{}", runs[0]);
    let a = send("recovered", "r-1", secret, 0).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["resolved"], 1, "{}", a.text);
    let r = run(&d, runs[0]["id"].as_str().expect("id")).await;
    assert_eq!(r["verification"]["verified"], true, "{r}");
    assert_eq!(d.runs().await.len(), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_grafana_source_takes_untoil_credentials_and_standard_webhooks_checks_time() {
    let dirs = Dirs::new();
    dirs.source("grafana-team", "source: grafana-team\nkind: grafana\n");
    let key = "whsec_dW50b2lsLXN0YW5kYXJkLXdlYmhvb2tzLWtleS0zMmI=";
    let secret = secret_file(&dirs, "sw.secret", key);
    dirs.source(
        "billing",
        &format!(
            "source: billing\nverify:\n  preset: standard-webhooks\n  secret_file: {secret}\nmap:\n  labels:\n    alertname: PaymentFailed\n"
        ),
    );
    dirs.runbook("mem", &runbook("mem", Some("grafana-team"), MEMORY, "zone"));
    let mut settings = dirs.settings();
    settings.auth = Auth::new(vec!["untoil-full-token-2".into()], vec![]);
    let d = Running::start(settings).await;
    let firing = fixture("grafana", "firing.json");
    let a = post(&d, "/api/v1/sources/grafana-team", &firing, &[]).await;
    assert_eq!(a.status, 401, "{}", a.text);
    let a = post(
        &d,
        "/api/v1/sources/grafana-team",
        &firing,
        &[("authorization", "Bearer untoil-full-token-2")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);

    let body = br#"{"type":"x"}"#.to_vec();
    for offset in [-600, 600] {
        let ts = now_secs() + offset;
        let sig = standard_webhooks_signature(key, "msg_old", ts, &body);
        let ts = ts.to_string();
        let a = post(
            &d,
            "/api/v1/sources/billing",
            &body,
            &[
                ("webhook-id", "msg_old"),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &sig),
            ],
        )
        .await;
        assert_eq!(a.status, 401, "{offset}: {}", a.text);
        assert!(!a.text.contains(&sig[3..]), "{}", a.text);
    }
    d.stop().await;
}

/// The signature of `tests/fixtures/grafana/signatures.json` named `name`.
fn grafana_vector(name: &str) -> Value {
    let all: Value =
        serde_json::from_slice(&fixture("grafana", "signatures.json")).expect("signatures json");
    all["vectors"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name).cloned())
        .unwrap_or_else(|| panic!("vector {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grafana_source_takes_the_recorded_signature_vectors() {
    let dirs = Dirs::new();
    let plain = grafana_vector("untoil: firing.json as sent");
    let secret = secret_file(&dirs, "g.secret", plain["secret"].as_str().expect("secret"));
    // Grafana's own code falls back to X-Grafana-Alert-Signature: a configured header is used.
    dirs.source(
        "grafana-plain",
        &format!(
            "source: grafana-plain\nkind: grafana\nverify:\n  preset: grafana\n  header: X-Grafana-Alert-Signature\n  secret_file: {secret}\n"
        ),
    );
    dirs.source(
        "grafana-ts",
        &format!(
            "source: grafana-ts\nkind: grafana\nverify:\n  preset: grafana\n  timestamp_header: {TS_HEADER}\n  secret_file: {secret}\n"
        ),
    );
    dirs.runbook(
        "mem",
        &runbook("mem", Some("[grafana-plain, grafana-ts]"), MEMORY, "zone"),
    );
    let d = Running::start(dirs.settings()).await;
    let body = fixture("grafana", "firing.json");
    let sig = plain["signature"].as_str().expect("signature");
    let a = post(
        &d,
        "/api/v1/sources/grafana-plain",
        &body,
        &[("X-Grafana-Alerting-Signature", sig)],
    )
    .await;
    assert_eq!(a.status, 401, "not the configured header: {}", a.text);
    let a = post(
        &d,
        "/api/v1/sources/grafana-plain",
        &body,
        &[("X-Grafana-Alert-Signature", sig)],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);

    // A correct signature from 2025: long past the tolerance.
    let old = grafana_vector("untoil: firing.json as sent with a timestamp");
    let a = post(
        &d,
        "/api/v1/sources/grafana-ts",
        &body,
        &[
            (
                "X-Grafana-Alerting-Signature",
                old["signature"].as_str().expect("sig"),
            ),
            (TS_HEADER, old["timestamp"].as_str().expect("ts")),
        ],
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text);
    assert!(a.text.contains("tolerance"), "{}", a.text);

    // Cross-site requests to the built-in route and a hostile source name.
    let a = post(
        &d,
        "/api/v1/alerts/grafana",
        &body,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.text);
    let a = post(
        &d,
        "/api/v1/sources/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &body,
        &[],
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert!(!a.text.contains("<script>"), "{}", a.text);
    assert_eq!(d.wait_runs_final(1).await.len(), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_ids_are_remembered_for_their_sources_keep_and_pruned_after() {
    let dirs = Dirs::new();
    let secret = secret_file(&dirs, "plain.secret", PLAIN_SECRET);
    dirs.source(
        "brief",
        &plain_source("brief", &secret).replace(
            "map:\n",
            "delivery:\n  id_header: X-Delivery\n  keep: 1s\nmap:\n",
        ),
    );
    dirs.source(
        "long",
        &plain_source("long", &secret)
            .replace("map:\n", "delivery:\n  id_header: X-Delivery\nmap:\n"),
    );
    let d = Running::start(dirs.settings()).await;
    for name in ["brief", "long"] {
        let a = post_plain(
            &d,
            name,
            &event("Echo", "x", "1"),
            &[("X-Delivery", "dl-1")],
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json()["duplicate_delivery"], Value::Null, "{}", a.text);
    }
    let a = post_plain(
        &d,
        "long",
        &event("Echo", "x", "1"),
        &[("X-Delivery", "dl-1")],
    )
    .await;
    assert_eq!(a.json()["duplicate_delivery"], true, "{}", a.text);
    // After `keep`, the same id is a new delivery (of the same episode).
    until("brief's delivery id to expire", || async {
        let a = post_plain(
            &d,
            "brief",
            &event("Echo", "x", "1"),
            &[("X-Delivery", "dl-1")],
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        (a.json()["duplicate_delivery"] == Value::Null).then_some(())
    })
    .await;
    d.stop().await;
    // Wait until brief's id (remembered again just now) expired too, then prune: only brief's
    // id goes; long's stays.
    let out = until("prune to remove brief's delivery ids", || async {
        let out = common::untoil_command(&dirs)
            .args(["prune", "--retain", "3650d"])
            .output()
            .expect("untoil prune");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (!text.contains("removed 0 delivery")).then_some(text)
    })
    .await;
    assert!(out.contains("delivery id"), "{out}");
    let d = Running::start(dirs.settings()).await;
    let a = post_plain(
        &d,
        "long",
        &event("Echo", "x", "1"),
        &[("X-Delivery", "dl-1")],
    )
    .await;
    assert_eq!(
        a.json()["duplicate_delivery"],
        true,
        "long's id survived the prune: {}",
        a.text
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_extras_reach_the_run_as_annotations_and_templates() {
    let dirs = Dirs::new();
    dirs.runbook(
        "extras",
        "name: extras\nowner: team-ops\ntoil: {manual_minutes: 3}\ntriggers:\n  - alert: {source: grafana, matchers: ['alertname=\"alert1\"']}\nsteps:\n  - name: echo\n    run: echo {{alert.labels.lbl1}} {{alert.annotations.panelURL}}\n",
    );
    let d = Running::start(dirs.settings()).await;
    let a = post(
        &d,
        "/api/v1/alerts/grafana",
        &fixture("grafana", "with-values.json"),
        &[],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.accepted(), 1, "{}", a.text);
    let runs = d.wait_runs_final(1).await;
    let r = run(&d, runs[0]["id"].as_str().expect("id")).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(
        r["steps"][0]["stdout"].as_str().map(str::trim),
        Some("val1 http://localhost/d/abcd?orgId=1&viewPanel=efgh"),
        "{r}"
    );
    let annotations = &r["alert"]["alert"]["annotations"];
    assert_eq!(annotations["ann1"], "annv1", "{r}");
    assert_eq!(
        annotations["imageURL"], "http://localhost/public/img/attachments/abcd.png",
        "{r}"
    );
    assert_eq!(
        annotations["valueString"], "[ metric='' labels={} value=14151.331895396988 ]",
        "{r}"
    );
    let values: Value = serde_json::from_str(annotations["values"].as_str().expect("values"))
        .expect("values as JSON text");
    assert_eq!(values, json!({"B": 44.23943737541908, "C": 1}), "{r}");
    for k in ["dashboardURL", "silenceURL"] {
        assert!(
            annotations[k]
                .as_str()
                .is_some_and(|v| v.starts_with("http://localhost/")),
            "{k}: {r}"
        );
    }
    d.stop().await;
}
