//! Requests a browser sends for another site, and DNS rebinding: every POST of the API takes
//! JSON only (415), a foreign `Origin` or `Sec-Fetch-Site: cross-site|same-site` is refused
//! (403), a `Host` the daemon does not answer to gets 421 (health checks excepted). Checked over
//! plain HTTP and with a real headless Chromium visiting an attacker's page.

use crate::browser::{Browser, until};
use crate::common;

use common::{Dirs, Running, fixture};
use serde_json::{Value, json};
use untoil::server::auth::Auth;
use untoil::server::site::{AllowedHost, PublicUrl};

const TOKEN: &str = "t0k-cross-site";

/// A runbook waiting for approval, one whose breaker opens on its second run, a plain one and
/// one an alert runs.
fn seed(dirs: &Dirs) {
    dirs.runbook(
        "gated",
        "name: gated\nowner: team-g\nguards: {approval: required}\nsteps:\n  - name: fix\n    run: \"true\"\n",
    );
    dirs.runbook(
        "limited",
        "name: limited\nowner: team-g\ntoil: {manual_minutes: 3}\n\
guards: {max_runs: {count: 1, per: 1h}}\nsteps:\n  - name: s\n    run: \"true\"\n",
    );
    dirs.runbook(
        "restart-web",
        "name: restart-web\nowner: team-web\nsteps:\n  - name: restart\n    run: echo restarted\n",
    );
    dirs.runbook(
        "disk-cleanup",
        "name: disk-cleanup\nowner: team-storage\n\
triggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\n\
steps:\n  - name: clean\n    run: echo cleaned\n",
    );
}

/// The state every attack must leave as it is: the id of the run waiting for approval.
struct Baseline {
    pending: String,
}

/// A daemon (with the test token when `auth`), the `gated` run waiting for approval and the
/// breaker of `limited` open.
async fn daemon(dirs: &Dirs, auth: bool) -> (Running, Baseline) {
    seed(dirs);
    let mut settings = dirs.settings();
    if auth {
        settings.auth = Auth::new(vec![TOKEN.into()], vec![("lead".into(), "s3cret".into())]);
    }
    let mut d = Running::start(settings).await;
    if auth {
        d.token = Some(TOKEN.into());
    }
    let pending = start(&d, "gated").await;
    until("the run to wait for approval", || async {
        (d.get(&format!("/api/v1/runs/{pending}")).await.1["status"] == "pending_approval")
            .then_some(())
    })
    .await;
    start(&d, "limited").await;
    start(&d, "limited").await;
    d.wait_for(|| async {
        d.runs()
            .await
            .iter()
            .filter(|r| r["runbook"] == "limited")
            .all(|r| !matches!(r["status"].as_str(), Some("queued" | "running")))
    })
    .await;
    let (_, breakers) = d.get("/api/v1/breakers").await;
    assert_eq!(breakers[0]["open"], true, "{breakers}");
    (d, Baseline { pending })
}

/// POSTs JSON as the CLI does (with the token when the daemon has one).
async fn post_json(d: &Running, path: &str, body: &[u8]) -> (u16, Value) {
    let auth = d.token.as_ref().map(|t| format!("Bearer {t}"));
    let (status, v, _) = d.post_with(path, body.to_vec(), auth.as_deref()).await;
    (status, v)
}

async fn start(d: &Running, runbook: &str) -> String {
    let (status, v) = post_json(d, &format!("/api/v1/runbooks/{runbook}/runs"), b"{}").await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().expect("run id").to_string()
}

/// Fails unless nothing changed since the baseline: no run started or decided, the breaker
/// still open, no alert received.
async fn assert_untouched(d: &Running, base: &Baseline, what: &str) {
    let runs = d.runs().await;
    let summary: Vec<String> = runs
        .iter()
        .map(|r| format!("{} {}", r["runbook"], r["status"]))
        .collect();
    assert_eq!(runs.len(), 3, "{what}: runs were started: {summary:?}");
    let pending = d.get(&format!("/api/v1/runs/{}", base.pending)).await.1;
    assert_eq!(
        pending["status"], "pending_approval",
        "{what}: the pending run was decided: {pending}"
    );
    let (_, breakers) = d.get("/api/v1/breakers").await;
    assert_eq!(
        breakers[0]["open"], true,
        "{what}: the breaker was reset: {breakers}"
    );
    let (_, backlog) = d.get("/api/v1/reports/unautomated").await;
    assert_eq!(
        backlog["alerts_received"], 0,
        "{what}: an alert was recorded: {backlog}"
    );
}

/// What an attacker posts where: (path, the JSON it would like the daemon to read).
fn targets(base: &Baseline) -> Vec<(String, Value)> {
    let alert: Value = serde_json::from_slice(&fixture("firing.json")).expect("fixture json");
    vec![
        (
            format!("/api/v1/runs/{}/approve", base.pending),
            json!({"by": "attacker"}),
        ),
        (format!("/api/v1/runs/{}/deny", base.pending), json!({})),
        (format!("/api/v1/runs/{}/cancel", base.pending), json!({})),
        ("/api/v1/breakers/limited/reset".into(), json!({})),
        (
            "/api/v1/runbooks/restart-web/runs".into(),
            json!({"user": "attacker"}),
        ),
        ("/api/v1/alerts/alertmanager".into(), alert),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_is_not_json_gets_415_and_changes_nothing() {
    let dirs = Dirs::new();
    let (d, base) = daemon(&dirs, false).await;
    for (path, body) in targets(&base) {
        let json = serde_json::to_vec(&body).expect("json");
        for content_type in [
            Some("text/plain"),
            Some("text/plain;charset=UTF-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            Some("application/json-seq"),
            None,
        ] {
            let mut req = d
                .client
                .post(format!("{}{path}", d.base))
                .body(json.clone());
            if let Some(t) = content_type {
                req = req.header("content-type", t);
            }
            let r = req.send().await.expect("POST");
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 415, "{path} as {content_type:?}: {v}");
            let message = v["error"].as_str().unwrap_or("");
            assert!(
                message.contains("application/json"),
                "{path}: the error says what to send: {v}"
            );
        }
    }
    assert_untouched(&d, &base, "non-JSON posts").await;
    // JSON is taken, with a charset and with an empty body where the body is optional.
    let r = d
        .client
        .post(format!("{}/api/v1/breakers/limited/reset", d.base))
        .header("content-type", "Application/JSON; charset=utf-8")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let (_, breakers) = d.get("/api/v1/breakers").await;
    assert_eq!(breakers[0]["open"], false, "{breakers}");
    let (status, v) = post_json(&d, &format!("/api/v1/runs/{}/deny", base.pending), b"").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["approval"]["approved"], false, "{v}");
    // A cancel with an empty JSON body reaches the handler (the run has ended: 409).
    let (status, v) = post_json(&d, &format!("/api/v1/runs/{}/cancel", base.pending), b"").await;
    assert_eq!(status, 409, "{v}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_from_another_origin_or_site_gets_403_and_changes_nothing() {
    let dirs = Dirs::new();
    let (d, base) = daemon(&dirs, false).await;
    let port = d.base.rsplit(':').next().unwrap_or("").to_string();
    let foreign = [
        ("origin", "http://evil.example".to_string()),
        ("origin", "null".to_string()),
        // Same host, another port: another origin (a page on another local port).
        ("origin", "http://127.0.0.1:1".to_string()),
        // The right host and port with the wrong scheme.
        ("origin", format!("https://127.0.0.1:{port}")),
        // Allowed host names, but not the one the request was sent to.
        ("origin", format!("http://localhost:{port}")),
        ("sec-fetch-site", "cross-site".to_string()),
        ("sec-fetch-site", "same-site".to_string()),
    ];
    for (path, body) in targets(&base) {
        let json = serde_json::to_vec(&body).expect("json");
        for (name, value) in &foreign {
            let r = d
                .client
                .post(format!("{}{path}", d.base))
                .header("content-type", "application/json")
                .header(*name, value)
                .body(json.clone())
                .send()
                .await
                .expect("POST");
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 403, "{path} with {name}: {value}: {v}");
            assert!(v["error"].is_string(), "a JSON error: {v}");
        }
    }
    // The dashboard's forms answer with its error page.
    let r = d
        .client
        .post(format!("{}/ui/breakers/limited/reset", d.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://evil.example")
        .body("key=")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);
    assert!(
        r.text().await.unwrap_or_default().contains("id=\"error\""),
        "the dashboard's error page"
    );
    assert_untouched(&d, &base, "cross-site posts").await;
    // A GET from another site is answered (links to the dashboard work; the browser keeps the
    // answer from the page that asked, untoil sending no CORS headers).
    let r = d
        .client
        .get(format!("{}/api/v1/breakers", d.base))
        .header("origin", "http://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert!(
        !r.headers().contains_key("access-control-allow-origin"),
        "no CORS headers"
    );
    // The daemon's own origin, as the browser names it, is taken.
    let r = d
        .client
        .post(format!("{}/api/v1/breakers/limited/reset", d.base))
        .header("content-type", "application/json")
        .header("origin", d.base.clone())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{v}");
    d.stop().await;
}

/// Sends `method path` with the given Host header.
async fn with_host(d: &Running, method: &str, path: &str, host: &str) -> (u16, String) {
    let mut req = match method {
        "POST" => d
            .client
            .post(format!("{}{path}", d.base))
            .header("content-type", "application/json")
            .body("{}"),
        _ => d.client.get(format!("{}{path}", d.base)),
    };
    req = req.header("host", host);
    if let Some(t) = &d.token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_gets_421_except_on_the_health_checks() {
    let dirs = Dirs::new();
    let (d, base) = daemon(&dirs, false).await;
    let approve = format!("/api/v1/runs/{}/approve", base.pending);
    for host in [
        "evil.example",
        "evil.example:80",
        "127.0.0.1.evil.example",
        "localhost.evil.example:9470",
        "10.1.2.3:9470",
        "",
        "bad host",
    ] {
        for (method, path) in [
            ("GET", "/api/v1/approvals"),
            ("GET", "/api/v1/runs"),
            ("GET", "/metrics"),
            ("GET", "/"),
            ("GET", "/ui/approvals"),
            ("GET", "/ui/stamp"),
            ("POST", approve.as_str()),
            ("POST", "/api/v1/alerts/alertmanager"),
            ("GET", "/no/such/page"),
        ] {
            let (status, text) = with_host(&d, method, path, host).await;
            assert_eq!(status, 421, "{method} {path} with Host {host:?}: {text}");
            assert!(
                !text.contains(&base.pending),
                "{path}: nothing of the daemon's state in the answer: {text}"
            );
        }
        if !host.contains(' ') && !host.is_empty() {
            for path in ["/healthz", "/readyz"] {
                let (status, _) = with_host(&d, "GET", path, host).await;
                assert_eq!(status, 200, "{path} with Host {host}");
            }
        }
    }
    let (status, text) = with_host(&d, "GET", "/api/v1/runs", "evil.example").await;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("--allowed-host")),
        "a JSON error saying how to allow a host: {status} {text}"
    );
    let (_, page) = with_host(&d, "GET", "/ui/approvals", "evil.example").await;
    assert!(
        page.contains("id=\"error\""),
        "the dashboard's error page: {page}"
    );
    assert_untouched(&d, &base, "requests for a foreign host").await;
    // Loopback names and addresses, on any port.
    for host in [
        "localhost",
        "LOCALHOST:8080",
        "127.0.0.1",
        "127.0.0.1:1",
        "[::1]",
        "[::1]:9470",
    ] {
        let (status, text) = with_host(&d, "GET", "/ui/approvals", host).await;
        assert_eq!(status, 200, "Host {host}: {text}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_url_and_the_allowed_hosts_are_answered() {
    let dirs = Dirs::new();
    seed(&dirs);
    let mut settings = dirs.settings();
    settings.public_url = Some(
        "https://Untoil.Example.com"
            .parse::<PublicUrl>()
            .expect("a public URL"),
    );
    settings.allowed_hosts = vec![
        "untoil.monitoring.svc:9470"
            .parse::<AllowedHost>()
            .expect("a host"),
        "untoil-internal".parse::<AllowedHost>().expect("a host"),
    ];
    let d = Running::start(settings).await;
    for host in [
        "untoil.example.com",
        "untoil.example.com:443",
        "UNTOIL.example.com",
        "untoil.monitoring.svc:9470",
        "untoil-internal",
        "untoil-internal:8080",
        "localhost:9470",
    ] {
        let (status, text) = with_host(&d, "GET", "/ui/approvals", host).await;
        assert_eq!(status, 200, "Host {host}: {text}");
    }
    for host in [
        "untoil.monitoring.svc",
        "untoil.monitoring.svc:80",
        "example.com",
        "evil.untoil.example.com",
    ] {
        let (status, text) = with_host(&d, "GET", "/ui/approvals", host).await;
        assert_eq!(status, 421, "Host {host}: {text}");
    }
    // Behind a proxy that keeps or rewrites Host, the public URL's origin is the daemon's own.
    let post = |host: &'static str, origin: &'static str| {
        let req = d
            .client
            .post(format!("{}/api/v1/runbooks/restart-web/runs", d.base))
            .header("content-type", "application/json")
            .header("origin", origin)
            .body("{}");
        let req = if host.is_empty() {
            req
        } else {
            req.header("host", host)
        };
        async move { req.send().await.expect("POST").status().as_u16() }
    };
    assert_eq!(
        post("untoil.example.com", "https://untoil.example.com").await,
        202
    );
    assert_eq!(post("", "https://untoil.example.com").await, 202);
    assert_eq!(post("", "https://untoil.example.com:443").await, 202);
    assert_eq!(
        post("untoil.example.com", "http://untoil.example.com").await,
        403
    );
    assert_eq!(
        post("untoil.example.com", "https://evil.example").await,
        403
    );
    assert_eq!(
        post("untoil-internal:8080", "https://untoil-internal:8080").await,
        202
    );
    assert_eq!(
        post("untoil-internal:8080", "https://untoil-internal:8081").await,
        403
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_posts_json_so_approve_deny_reset_run_and_cancel_still_work() {
    let dirs = Dirs::new();
    let (d, base) = daemon(&dirs, false).await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_untoil"))
            .env_remove("UNTOIL_SERVER")
            .env_remove("UNTOIL_TOKEN")
            .env("UNTOIL_DATA", dirs.path("data"))
            .env("UNTOIL_RUNBOOKS", dirs.path("runbooks"))
            .args(args)
            .output()
            .expect("run the CLI");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "untoil {args:?}: {text}");
        text
    };
    let out = tokio::task::block_in_place(|| cli(&["approve", &base.pending]));
    assert!(
        out.contains("queued") || out.contains("succeeded") || out.contains("running"),
        "{out}"
    );
    let second = start(&d, "gated").await;
    until("the second run to wait for approval", || async {
        (d.get(&format!("/api/v1/runs/{second}")).await.1["status"] == "pending_approval")
            .then_some(())
    })
    .await;
    let out = tokio::task::block_in_place(|| cli(&["deny", &second]));
    assert!(out.contains("denied"), "{out}");
    let out = tokio::task::block_in_place(|| cli(&["breaker", "reset", "limited"]));
    assert!(out.contains("reset 1 breaker"), "{out}");
    let out = tokio::task::block_in_place(|| cli(&["run", "restart-web"]));
    assert!(out.contains("restarted"), "{out}");
    let runs = d.runs().await;
    assert!(
        runs.iter()
            .any(|r| r["runbook"] == "restart-web" && r["status"] == "succeeded"),
        "{runs:?}"
    );
    d.stop().await;
}

// ----- In a real browser -----

/// The attacker's web site: each (path, HTML) page served on 127.0.0.1:0, until dropped.
struct AttackerSite {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AttackerSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn attacker_site(pages: Vec<(String, String)>) -> AttackerSite {
    let mut app = axum::Router::new();
    for (path, html) in pages {
        app = app.route(
            &path,
            axum::routing::get(move || {
                let html = html.clone();
                async move { axum::response::Html(html) }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    AttackerSite { port, task }
}

fn attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A page that posts a `text/plain` form to `url` as soon as it loads, its body being `json`
/// (the classic trick: the field name carries the JSON up to a string that swallows the `=`).
fn form_page(url: &str, json: &Value) -> String {
    let text = json.to_string();
    let open = text.strip_suffix('}').unwrap_or(&text);
    let name = if open == "{" {
        "{\"pad\":\"".to_string()
    } else {
        format!("{open},\"pad\":\"")
    };
    format!(
        "<!doctype html><html><body>\
<form id=\"f\" method=\"post\" enctype=\"text/plain\" action=\"{}\">\
<input type=\"hidden\" name=\"{}\" value=\"&quot;}}\"></form>\
<script>document.getElementById('f').submit();</script></body></html>",
        attr(url),
        attr(&name)
    )
}

/// A page whose script sends every target with `fetch()` as a page can (no-cors, cors with
/// credentials, text, form, multipart and JSON bodies), then tries to read the approvals, and
/// leaves what happened in `window.__attack`.
fn fetch_page(daemon: &str, targets: &[(String, Value)]) -> String {
    let list: Vec<Value> = targets
        .iter()
        .map(|(p, b)| json!({"url": format!("{daemon}{p}"), "body": b}))
        .collect();
    format!(
        r#"<!doctype html><html><body><script>
const targets = {targets};
const results = [];
async function attempt(label, send) {{
  try {{ const r = await send(); results.push(label + ': ' + r.type + ' ' + r.status); }}
  catch (e) {{ results.push(label + ': error ' + e); }}
}}
(async () => {{
  for (const t of targets) {{
    const json = JSON.stringify(t.body);
    const form = () => new URLSearchParams({{payload: json}});
    const multi = () => {{ const f = new FormData(); f.append('payload', json); return f; }};
    const base = {{method: 'POST', credentials: 'include'}};
    await attempt(t.url + ' no-cors text', () => fetch(t.url, {{...base, mode: 'no-cors', body: json}}));
    await attempt(t.url + ' no-cors json', () => fetch(t.url, {{...base, mode: 'no-cors', headers: {{'Content-Type': 'application/json'}}, body: json}}));
    await attempt(t.url + ' no-cors form', () => fetch(t.url, {{...base, mode: 'no-cors', body: form()}}));
    await attempt(t.url + ' no-cors multipart', () => fetch(t.url, {{...base, mode: 'no-cors', body: multi()}}));
    await attempt(t.url + ' cors text', () => fetch(t.url, {{...base, body: json}}));
    await attempt(t.url + ' cors json', () => fetch(t.url, {{...base, headers: {{'Content-Type': 'application/json'}}, body: json}}));
  }}
  let read;
  try {{
    const r = await fetch('{daemon}/api/v1/approvals', {{credentials: 'include'}});
    read = 'read ' + r.status + ' ' + (await r.text());
  }} catch (e) {{ read = 'error ' + e; }}
  window.__attack = {{results, read}};
}})();
</script></body></html>"#,
        targets = Value::Array(list)
    )
}

/// Chromium resolves `evil.example` to 127.0.0.1 itself: no DNS query leaves the machine.
const RESOLVE_EVIL: &[&str] = &[
    "--host-resolver-rules=MAP evil.example 127.0.0.1",
    "--disable-features=HttpsUpgrades",
];

/// Visits the attacker's pages, from a foreign site (`evil.example`) and from another port of
/// the daemon's own host (same site, other origin), and checks the daemon's state after each.
async fn attack(b: &Browser, d: &Running, base: &Baseline) {
    let targets = targets(base);
    let mut pages: Vec<(String, String)> = targets
        .iter()
        .enumerate()
        .map(|(i, (path, body))| {
            (
                format!("/form/{i}"),
                form_page(&format!("{}{path}", d.base), body),
            )
        })
        .collect();
    pages.push(("/fetch".into(), fetch_page(&d.base, &targets)));
    let site = attacker_site(pages).await;
    for attacker in [
        format!("http://evil.example:{}", site.port),
        format!("http://127.0.0.1:{}", site.port),
    ] {
        for (i, (path, _)) in targets.iter().enumerate() {
            b.c()
                .goto(&format!("{attacker}/form/{i}"))
                .await
                .unwrap_or_else(|e| panic!("open the attacker's form {i}: {e}"));
            // The form posted itself: the browser shows the daemon's answer.
            until(&format!("the form to {path} to be answered"), || async {
                let url = b.c().current_url().await.ok()?;
                (url.as_str().starts_with(&format!("{}{path}", d.base))).then_some(())
            })
            .await;
            assert_untouched(d, base, &format!("form from {attacker} to {path}")).await;
        }
        b.c()
            .goto(&format!("{attacker}/fetch"))
            .await
            .expect("open the attacker's fetch page");
        let outcome = until("the attacker's fetches to settle", || async {
            let v = b
                .c()
                .execute("return window.__attack || null;", vec![])
                .await
                .ok()?;
            (!v.is_null()).then_some(v)
        })
        .await;
        assert_eq!(
            outcome["results"].as_array().map(Vec::len),
            Some(targets.len() * 6),
            "{outcome}"
        );
        let read = outcome["read"].as_str().unwrap_or("");
        assert!(
            read.starts_with("error"),
            "a page of {attacker} cannot read the API's answers: {read}"
        );
        assert_untouched(d, base, &format!("fetches from {attacker}: {outcome}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_page_cannot_act_through_a_browser_holding_basic_auth_credentials() {
    let dirs = Dirs::new();
    let (d, base) = daemon(&dirs, true).await;
    let b = Browser::start_with(RESOLVE_EVIL).await;
    // The browser caches the credentials, as after a person logged in to the dashboard.
    let authed = d.base.replacen("http://", "http://lead:s3cret@", 1);
    b.c()
        .goto(&format!("{authed}/ui/approvals"))
        .await
        .expect("open the dashboard");
    assert!(
        b.text(&format!("[data-run=\"{}\"]", base.pending))
            .await
            .contains("gated"),
        "logged in"
    );
    b.open(&d, "/ui/runbooks").await;
    assert!(
        b.text("#runbooks").await.contains("limited"),
        "the credentials are cached"
    );
    attack(&b, &d, &base).await;
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_page_cannot_act_through_a_browser_on_a_daemon_without_auth() {
    let dirs = Dirs::new();
    let (d, base) = daemon(&dirs, false).await;
    let b = Browser::start_with(RESOLVE_EVIL).await;
    attack(&b, &d, &base).await;
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_name_cannot_read_the_dashboard() {
    let dirs = Dirs::new();
    let (d, base) = daemon(&dirs, false).await;
    // A DNS rebinding attack: evil.example, on the daemon's port, now resolves to 127.0.0.1; the
    // attacker's script on that page is same-origin with whatever answers there.
    let b = Browser::start_with(RESOLVE_EVIL).await;
    let port = d.base.rsplit(':').next().unwrap_or("").to_string();
    let rebound = format!("http://evil.example:{port}");
    b.c()
        .goto(&format!("{rebound}/ui/approvals"))
        .await
        .expect("open the rebound name");
    let read = b
        .c()
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
fetch('/ui/approvals', {credentials: 'include'})
  .then(async r => done({status: r.status, text: await r.text()}))
  .catch(e => done({status: 0, text: String(e)}));"#,
            vec![],
        )
        .await
        .expect("the rebound page's script");
    assert_eq!(read["status"], 421, "{read}");
    let text = read["text"].as_str().unwrap_or("");
    assert!(!text.contains(&base.pending), "{text}");
    assert!(!text.contains("name=\"csrf\""), "no CSRF token: {text}");
    let api = b
        .c()
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
fetch('/api/v1/approvals').then(async r => done({status: r.status, text: await r.text()}))
  .catch(e => done({status: 0, text: String(e)}));"#,
            vec![],
        )
        .await
        .expect("the rebound page's script");
    assert_eq!(api["status"], 421, "{api}");
    assert_untouched(&d, &base, "the rebound page").await;
    b.quit().await;
    d.stop().await;
}
