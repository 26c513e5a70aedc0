//! Who decides: the identity of a request is its authenticated principal (a basic-auth user or a
//! named token of the auth file), never what its body or the CLI's `$USER` claims; runbook
//! approvers are enforced by name and group (403 with the reason, nothing changed); `read` and
//! `alerts` tokens can do only that; `anonymous` only while no credential is configured; a bad
//! auth file is refused at start with FILE:LINE:COL. Over real HTTP, the daemon in-process or
//! the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::browser::until;
use crate::common;

use common::{Dirs, Running, Served, fixture, untoil_command};
use serde_json::{Value, json};

const AUTH_FILE: &str = "\
# Who may call untoil, and as whom.
users:
  - name: alice
    password: alice-pw-1
    token: alice-token-1    # the same principal, for the CLI
  - name: bob
    password: bob-pw-1
    groups: [dev]
  - name: lead
    password: lead-pw-1
    groups: [sre]
tokens:
  - name: carol
    token: carol-token-1
    groups: [sre]
  - name: ci
    token: ci-token-1
  - name: grafana
    token: grafana-token-1
    scope: read
  - name: alertmanager
    token: am-token-1
    scope: alerts
";

/// Every secret of [`AUTH_FILE`] and the shared token, none of which may ever be printed.
const SECRETS: [&str; 9] = [
    "alice-pw-1",
    "alice-token-1",
    "bob-pw-1",
    "lead-pw-1",
    "carol-token-1",
    "ci-token-1",
    "grafana-token-1",
    "am-token-1",
    "shared-token-1",
];

/// A runbook whose runs only alice or the group sre may decide, one anyone may, and one whose
/// breaker opens on its second run.
fn seed(dirs: &Dirs) {
    dirs.runbook(
        "gated",
        "name: gated\nowner: team-g\ntoil: {manual_minutes: 5}\nguards:\n  approval: required\n  approvers: {users: [alice], groups: [sre]}\nsteps:\n  - name: fix\n    run: \"true\"\n",
    );
    dirs.runbook(
        "open-gate",
        "name: open-gate\nowner: team-g\ntoil: {manual_minutes: 5}\nguards: {approval: required}\nsteps:\n  - name: fix\n    run: \"true\"\n",
    );
    dirs.runbook(
        "limited",
        "name: limited\nowner: team-g\ntoil: {manual_minutes: 3}\nguards: {max_runs: {count: 1, per: 1h}}\nsteps:\n  - name: s\n    run: \"true\"\n",
    );
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// The auth file (and the shared token file) in `dirs`.
fn auth_files(dirs: &Dirs) -> (std::path::PathBuf, std::path::PathBuf) {
    let auth = dirs.path("auth.yaml");
    let token = dirs.path("token");
    write_private(&auth, AUTH_FILE);
    write_private(&token, "shared-token-1\n");
    (auth, token)
}

/// A daemon in-process with the auth file's credentials and the shared token, as `untoil serve
/// --auth-file --token-file` loads them.
async fn daemon(dirs: &Dirs) -> Running {
    seed(dirs);
    let (auth, token) = auth_files(dirs);
    let mut settings = dirs.settings();
    settings.auth = untoil::cli::credentials::load(Some(&token), None, Some(&auth))
        .expect("credentials")
        .auth;
    Running::start(settings).await
}

/// Credentials of a request.
#[derive(Clone, Copy)]
enum As<'a> {
    Basic(&'a str, &'a str),
    Bearer(&'a str),
    Nobody,
}

/// What an answer held: status, whether it is HTML, the body as JSON (or text).
struct Answer {
    status: u16,
    html: bool,
    body: Value,
}

impl Answer {
    fn error(&self) -> String {
        self.body["error"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| self.body.to_string())
    }
}

/// One request to `base` as `who`: POSTs carry JSON (`{}` when `body` is None), as the CLI
/// sends; `form` POSTs a dashboard form instead.
async fn call(base: &str, who: As<'_>, method: &str, path: &str, body: Option<Value>) -> Answer {
    untoil::exec::step::http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let method: reqwest::Method = method.parse().expect("method");
    let mut req = client.request(method.clone(), format!("{base}{path}"));
    if method == reqwest::Method::POST {
        if path.starts_with("/ui/") {
            let form = body
                .and_then(|b| b.as_str().map(String::from))
                .unwrap_or_default();
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form);
        } else {
            req = req.json(&body.unwrap_or_else(|| json!({})));
        }
    }
    req = match who {
        As::Basic(u, p) => req.basic_auth(u, Some(p)),
        As::Bearer(t) => req.bearer_auth(t),
        As::Nobody => req,
    };
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let html = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    let text = r.text().await.unwrap_or_default();
    Answer {
        status,
        html,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// A POST of the API with this JSON body, or of a dashboard form with this text.
async fn post(base: &str, who: As<'_>, path: &str, body: Value) -> Answer {
    call(base, who, "POST", path, Some(body)).await
}

/// Two fields of a JSON answer as text, to compare at once: (principal, claim).
fn pair<'v>(v: &'v Value, a: &str, b: &str) -> (Option<&'v str>, Option<&'v str>) {
    (v[a].as_str(), v[b].as_str())
}

const CI: As<'static> = As::Bearer("ci-token-1");
const BOB: As<'static> = As::Basic("bob", "bob-pw-1");

/// Starts a manual run of `runbook` as `who`, returning its id.
async fn start(base: &str, who: As<'_>, runbook: &str) -> String {
    let a = call(
        base,
        who,
        "POST",
        &format!("/api/v1/runbooks/{runbook}/runs"),
        None,
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    a.body["id"].as_str().expect("run id").to_string()
}

async fn run(base: &str, id: &str) -> Value {
    call(base, CI, "GET", &format!("/api/v1/runs/{id}"), None)
        .await
        .body
}

/// Starts a run of `runbook` and waits until it waits for approval.
async fn pending(base: &str, runbook: &str) -> String {
    let id = start(base, CI, runbook).await;
    until("the run to wait for approval", || async {
        (run(base, &id).await["status"] == "pending_approval").then_some(())
    })
    .await;
    id
}

/// The CSRF token of the dashboard's forms, read as `who`.
async fn csrf(base: &str, who: As<'_>) -> String {
    let page = call(base, who, "GET", "/ui/approvals", None).await;
    let html = page.body.as_str().unwrap_or_default().to_string();
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap_or_default().to_string()
}

/// The `untoil` CLI against the store of `dirs` (so the daemon serving it), with a token.
fn cli(dirs: &Dirs, token: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::task::block_in_place(|| {
        untoil_command(dirs)
            .env("UNTOIL_TOKEN", token)
            .env("USER", "admin")
            .args(args)
            .output()
            .expect("run the CLI")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_claiming_to_be_admin_is_recorded_as_its_principal_with_the_claim_beside() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let base = d.base.clone();

    // A manual run: bob, claiming admin.
    let a = post(
        &base,
        BOB,
        "/api/v1/runbooks/open-gate/runs",
        json!({"user": "admin"}),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(
        pair(&a.body, "user", "claimed_user"),
        (Some("bob"), Some("admin"))
    );
    let id = a.body["id"].as_str().expect("id").to_string();
    let r = run(&base, &id).await;
    assert_eq!(
        r["cause"],
        json!({"kind": "manual", "user": "bob", "claimed_user": "admin"})
    );

    // Approving it: bob again, claiming admin.
    until("the run to wait for approval", || async {
        (run(&base, &id).await["status"] == "pending_approval").then_some(())
    })
    .await;
    let a = post(
        &base,
        BOB,
        &format!("/api/v1/runs/{id}/approve"),
        json!({"by": "admin"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["approval"]["by"], "bob", "{}", a.body);
    assert_eq!(a.body["approval"]["claimed_by"], "admin", "{}", a.body);

    // Denying: the reason names the principal first.
    let denied = pending(&base, "open-gate").await;
    let a = post(
        &base,
        BOB,
        &format!("/api/v1/runs/{denied}/deny"),
        json!({"by": "admin"}),
    )
    .await;
    assert_eq!(
        a.body["error"], "denied by bob (claimed: admin)",
        "{}",
        a.body
    );

    // Claiming one's own name is no claim; the shared token is the principal `token`.
    let own = pending(&base, "open-gate").await;
    let a = post(
        &base,
        As::Bearer("shared-token-1"),
        &format!("/api/v1/runs/{own}/approve"),
        json!({"by": "token"}),
    )
    .await;
    assert_eq!(a.body["approval"]["by"], "token", "{}", a.body);
    assert!(a.body["approval"].get("claimed_by").is_none(), "{}", a.body);

    // A breaker reset: bob, claiming admin.
    start(&base, CI, "limited").await;
    start(&base, CI, "limited").await;
    let a = post(
        &base,
        BOB,
        "/api/v1/breakers/limited/reset",
        json!({"by": "admin"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        pair(&a.body, "by", "claimed_by"),
        (Some("bob"), Some("admin"))
    );

    // A claim that could forge a log line is refused.
    let a = post(
        &base,
        BOB,
        "/api/v1/runbooks/open-gate/runs",
        json!({"user": "x\nINFO approved by alice"}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);

    // Shown both ways on the dashboard and by the CLI.
    let page = call(&base, BOB, "GET", &format!("/ui/runs/{id}"), None).await;
    let html = page.body.as_str().unwrap_or_default();
    assert!(html.contains("manual, by bob (claimed: admin)"), "{html}");
    assert!(html.contains("approved by bob (claimed: admin)"), "{html}");
    let (code, out) = cli(&dirs, "ci-token-1", &["runs", "show", &id]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("cause     manual, by bob (claimed: admin)"),
        "{out}"
    );
    assert!(
        out.contains("approval  approved by bob (claimed: admin)"),
        "{out}"
    );
    // The CLI's `$USER` (admin here) is a claim beside the token's principal.
    let last = pending(&base, "open-gate").await;
    let (code, out) = cli(&dirs, "ci-token-1", &["approve", &last]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("approved by ci (claimed: admin)"), "{out}");
    let (_, out) = cli(&dirs, "ci-token-1", &["runs"]);
    assert!(out.contains("manual by bob (claimed: admin)"), "{out}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_decide_by_name_or_group_and_anyone_else_gets_403_with_nothing_changed() {
    let dirs = Dirs::new();
    let d = daemon(&dirs).await;
    let base = d.base.clone();
    let (r1, r2, r3) = (
        pending(&base, "gated").await,
        pending(&base, "gated").await,
        pending(&base, "gated").await,
    );
    let untouched = |id: String| {
        let base = base.clone();
        async move {
            let r = run(&base, &id).await;
            assert_eq!(r["status"], "pending_approval", "{r}");
            assert!(r["approval"].is_null(), "{r}");
        }
    };

    // bob (group dev) and ci (no group) are not approvers: over the API...
    let a = post(
        &base,
        BOB,
        &format!("/api/v1/runs/{r1}/approve"),
        json!({"by": "alice"}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(
        a.error(),
        "runbook gated may be approved by users alice or groups sre; you are bob (groups dev)"
    );
    let a = call(&base, BOB, "POST", &format!("/api/v1/runs/{r1}/deny"), None).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.error().starts_with("runbook gated may be denied by"),
        "{}",
        a.body
    );
    let a = call(
        &base,
        CI,
        "POST",
        &format!("/api/v1/runs/{r1}/approve"),
        None,
    )
    .await;
    assert_eq!(
        a.error(),
        "runbook gated may be approved by users alice or groups sre; you are ci"
    );
    untouched(r1.clone()).await;

    // ...on the dashboard, which says who may...
    let approvals = call(&base, BOB, "GET", "/ui/approvals", None).await;
    let html = approvals.body.as_str().unwrap_or_default();
    assert!(
        html.contains(
            "may be decided by <span class=\"approvers\">users alice or groups sre</span>"
        ),
        "{html}"
    );
    let token = csrf(&base, BOB).await;
    let a = post(
        &base,
        BOB,
        &format!("/ui/runs/{r1}/approve"),
        json!(format!("csrf={token}")),
    )
    .await;
    assert_eq!(a.status, 403);
    assert!(a.html, "the dashboard answers with its error page");
    assert!(
        a.body
            .as_str()
            .unwrap_or_default()
            .contains("you are bob (groups dev)"),
        "{}",
        a.body
    );
    untouched(r1.clone()).await;

    // ...and with the CLI, which prints the reason.
    let (code, out) = cli(&dirs, "ci-token-1", &["approve", &r1]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("runbook gated may be approved by users alice or groups sre; you are ci"),
        "{out}"
    );
    untouched(r1.clone()).await;

    // alice by name (with her own token, from the CLI), carol (a token) and lead (a user) by
    // the group sre.
    let (code, out) = cli(&dirs, "alice-token-1", &["approve", &r1]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("approved by alice (claimed: admin)"), "{out}");
    assert_eq!(run(&base, &r1).await["approval"]["by"], "alice");
    let a = call(
        &base,
        As::Bearer("carol-token-1"),
        "POST",
        &format!("/api/v1/runs/{r2}/deny"),
        None,
    )
    .await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (200, Some("denied by carol")),
        "{}",
        a.body
    );
    let lead = As::Basic("lead", "lead-pw-1");
    let token = csrf(&base, lead).await;
    let a = post(
        &base,
        lead,
        &format!("/ui/runs/{r3}/approve"),
        json!(format!("csrf={token}")),
    )
    .await;
    assert_eq!(a.status, 303);
    assert_eq!(run(&base, &r3).await["approval"]["by"], "lead");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_tokens_only_read_and_alerts_tokens_only_post_alerts() {
    let dirs = Dirs::new();
    seed(&dirs);
    let (auth, _) = auth_files(&dirs);
    let mut c = untoil_command(&dirs);
    c.args(["serve", "--listen", "127.0.0.1:0"])
        .env("UNTOIL_AUTH_FILE", &auth);
    let mut served = Served::spawn(c);
    let base = served.base();
    let waiting = pending(&base, "gated").await;
    start(&base, CI, "limited").await;
    start(&base, CI, "limited").await;
    let runs_before = until("the runs of limited to end", || async {
        let runs = call(&base, CI, "GET", "/api/v1/runs", None).await.body;
        let done = runs.as_array().is_some_and(|runs| {
            runs.iter()
                .all(|r| !matches!(r["status"].as_str(), Some("queued" | "running")))
        });
        done.then_some(runs)
    })
    .await;

    let grafana = As::Bearer("grafana-token-1");
    for path in [
        "/api/v1/runs",
        "/api/v1/approvals",
        "/api/v1/breakers",
        "/ui/runs",
        "/",
        "/metrics",
    ] {
        assert_eq!(
            call(&base, grafana, "GET", path, None).await.status,
            200,
            "GET {path}"
        );
    }
    let alert: Value = serde_json::from_slice(&fixture("firing.json")).expect("fixture");
    let posts = [
        (format!("/api/v1/runs/{waiting}/approve"), None),
        (format!("/api/v1/runs/{waiting}/deny"), None),
        (format!("/api/v1/runs/{waiting}/cancel"), None),
        ("/api/v1/runbooks/limited/runs".to_string(), None),
        ("/api/v1/breakers/limited/reset".to_string(), None),
        (
            "/api/v1/alerts/alertmanager".to_string(),
            Some(alert.clone()),
        ),
    ];
    for (path, body) in &posts {
        let a = call(&base, grafana, "POST", path, body.clone()).await;
        assert_eq!(a.status, 403, "POST {path}: {}", a.body);
        assert!(
            a.error().starts_with("token `grafana` has scope `read`"),
            "{}",
            a.body
        );
    }
    let a = post(
        &base,
        grafana,
        &format!("/ui/runs/{waiting}/approve"),
        json!("csrf=x"),
    )
    .await;
    assert_eq!((a.status, a.html), (403, true));
    assert!(
        a.body
            .as_str()
            .unwrap_or_default()
            .contains("token `grafana` has scope `read`"),
        "{}",
        a.body
    );

    let am = As::Bearer("am-token-1");
    let a = post(&base, am, "/api/v1/alerts/alertmanager", alert).await;
    assert_eq!(a.status, 200, "{}", a.body);
    for (method, path) in [
        ("GET", "/api/v1/runs".to_string()),
        ("GET", "/metrics".into()),
        ("POST", format!("/api/v1/runs/{waiting}/approve")),
        ("POST", "/api/v1/runbooks/limited/runs".into()),
    ] {
        let a = call(&base, am, method, &path, None).await;
        assert_eq!(a.status, 403, "{method} {path}: {}", a.body);
        assert!(
            a.error()
                .starts_with("token `alertmanager` has scope `alerts`"),
            "{}",
            a.body
        );
    }
    let a = call(&base, am, "GET", "/ui/approvals", None).await;
    assert_eq!((a.status, a.html), (403, true));
    assert_eq!(
        call(&base, As::Nobody, "GET", "/healthz", None)
            .await
            .status,
        200
    );

    // Nothing changed but the alert, which matched no runbook.
    assert_eq!(
        call(&base, CI, "GET", "/api/v1/runs", None).await.body,
        runs_before
    );
    let breakers = call(&base, CI, "GET", "/api/v1/breakers", None).await.body;
    assert_eq!(breakers[0]["open"], true, "{breakers}");
    let backlog = call(&base, CI, "GET", "/api/v1/reports/unautomated", None)
        .await
        .body;
    assert_eq!(backlog["alerts_received"], 1, "{backlog}");

    let (_, log) = served.terminate();
    assert!(
        log.contains("refused: token `grafana` has scope `read`"),
        "{log}"
    );
    for secret in SECRETS {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_everyone_is_anonymous_and_no_approver() {
    let dirs = Dirs::new();
    seed(&dirs);
    let mut c = untoil_command(&dirs);
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut served = Served::spawn(c);
    let base = served.base();
    let line = served
        .wait_line(|l| l.contains("WARN") && l.contains("runbook `gated` may be approved only by"));
    assert!(line.contains("--auth-file"), "{line}");

    let a = post(
        &base,
        As::Nobody,
        "/api/v1/runbooks/gated/runs",
        json!({"user": "alice"}),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(
        pair(&a.body, "user", "claimed_user"),
        (Some("anonymous"), Some("alice"))
    );
    let id = a.body["id"].as_str().expect("id").to_string();
    until("the run to wait for approval", || async {
        (run(&base, &id).await["status"] == "pending_approval").then_some(())
    })
    .await;
    let a = post(
        &base,
        As::Nobody,
        &format!("/api/v1/runs/{id}/approve"),
        json!({"by": "alice"}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.error()
            .contains("this daemon has no authentication configured"),
        "{}",
        a.body
    );
    assert_eq!(run(&base, &id).await["status"], "pending_approval");
    // A runbook without approvers: decided as anonymous, the claim beside it.
    let open = pending(&base, "open-gate").await;
    let a = post(
        &base,
        As::Nobody,
        &format!("/api/v1/runs/{open}/approve"),
        json!({"by": "alice"}),
    )
    .await;
    assert_eq!(
        pair(&a.body["approval"], "by", "claimed_by"),
        (Some("anonymous"), Some("alice"))
    );

    // Said again when a reload brings another such runbook.
    dirs.runbook(
        "gated-too",
        "name: gated-too\nowner: t\ntoil: {manual_minutes: 1}\nguards: {approval: required, approvers: {groups: [sre]}}\nsteps:\n  - name: s\n    run: \"true\"\n",
    );
    let line =
        served.wait_line(|l| l.contains("runbook `gated-too` may be approved only by groups sre"));
    assert!(line.contains("WARN"), "{line}");
}

#[test]
fn a_bad_auth_file_is_refused_at_start_with_file_line_and_column() {
    let dirs = Dirs::new();
    let auth = dirs.path("auth.yaml");
    let basic = dirs.path("basic");
    write_private(&basic, "lead:lead-pw-1\n");
    let file = auth.display().to_string();
    // (auth file, what stderr must say)
    let cases = [
        (
            "users:\n  - name: alice\n    pasword: alice-pw-1\n",
            format!("{file}:3:5: users[0]: unknown field `pasword`"),
        ),
        (
            "tokens:\n  - name: g\n    token: grafana-token-1\n    scope: admin\n",
            format!(
                "{file}:4:12: tokens[0].scope: unknown variant `admin`, expected one of `full`, `read`, `alerts`"
            ),
        ),
        (
            "users:\n  - name: alice\n    password: \"\"\n",
            format!("{file}:3:15: the password of user `alice` is empty"),
        ),
        (
            "users:\n  - name: anonymous\n    password: alice-pw-1\n",
            format!("{file}:2:11: `anonymous` is reserved"),
        ),
        (
            "users:\n  - name: alice\n    password: alice-pw-1\ntokens:\n  - name: alice\n    token: ci-token-1\n",
            format!("{file}:5:11: the name `alice` is already given at 2:11"),
        ),
        (
            "tokens:\n  - name: a\n    token: ci-token-1\n  - name: b\n    token: ci-token-1\n",
            format!("{file}:5:12: the token of `b` is the same as the token of `a` (at 2:11)"),
        ),
        (
            "# to do\n",
            format!("{file}:1:1: the auth file defines no users and no tokens"),
        ),
        (
            "users:\n  - name: lead\n    password: alice-pw-1\n",
            format!("{file}:2:11: `lead` is also a basic-auth user"),
        ),
    ];
    for (text, says) in &cases {
        write_private(&auth, text);
        let mut c = untoil_command(&dirs);
        c.args(["serve", "--listen", "127.0.0.1:0", "--auth-file"])
            .arg(&auth)
            .arg("--basic-auth-file")
            .arg(&basic);
        let (code, stderr) = Served::spawn(c).exit();
        assert_eq!(code, Some(2), "{text:?}: {stderr}");
        assert!(
            stderr.contains(says.as_str()),
            "{text:?} says {says}:\n{stderr}"
        );
        for secret in SECRETS {
            assert!(!stderr.contains(secret), "{secret} printed:\n{stderr}");
        }
    }
    let mut c = untoil_command(&dirs);
    c.args(["serve", "--listen", "127.0.0.1:0", "--auth-file"])
        .arg(dirs.path("missing.yaml"));
    let (code, stderr) = Served::spawn(c).exit();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot read the auth file"), "{stderr}");
}

#[test]
fn an_auth_file_or_its_token_file_readable_by_others_is_warned_about() {
    let dirs = Dirs::new();
    let auth = dirs.path("auth.yaml");
    let token = dirs.path("am.token");
    std::fs::write(&token, "am-token-1\n").expect("write");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(
        &auth,
        "users:\n  - name: alice\n    password: alice-pw-1\ntokens:\n  - name: alertmanager\n    token_file: am.token\n    scope: alerts\n",
    )
    .expect("write");
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let mut c = untoil_command(&dirs);
    c.args(["serve", "--listen", "127.0.0.1:0", "--auth-file"])
        .arg(&auth);
    let mut served = Served::spawn(c);
    served.base();
    for file in [&auth, &token] {
        let name = file.display().to_string();
        let line = served.wait_line(|l| l.contains(&name) && l.contains("WARN"));
        assert!(line.contains("chmod 600"), "{line}");
    }
}
