//! Secrets never leave untoil, in any form they take on the way out.
//!
//! One runbook with a file secret and an env secret uses them every way a step can: printed
//! raw, printed shell-quoted, split over two reads of the step's output (and over the line the
//! reader cuts at 8 KiB), cut by the stored head/tail of a huge output, sent URL-encoded and in
//! a JSON body to a local HTTP server (whose redirect loop makes reqwest's error show the URL),
//! echoed in JSON by a plugin. It runs on the real daemon binary (`untoil serve`, with text or
//! JSON logs to a file: the env secret and the log format belong to the daemon's process), through
//! the API, `untoil run` (through the daemon, then in the foreground) and `untoil runs show`.
//! Then every surface is searched, as bytes, for every 8-byte window of every form of either
//! secret: raw, shell-quoted (untoil's, POSIX `'\''`, Python's `'"'"'`), URL-encoded (`+` and
//! `%20`, upper and lower case hex, and the minimal encoding of a URL), JSON-escaped and
//! HTML-escaped.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use axum::Router;
use axum::extract::RawQuery;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{any, get};
use serde_json::Value;

use crate::common::{Dirs, Http, Served, untoil_env};

/// Read from a file: a quote, a `$`, a double quote, a space and a `/`.
const FILE_SECRET: &str = "it's$FILE\"pw w0rd/42";
/// Read from the daemon's environment: URL separators, a `%`, a `+` and a non-ASCII letter.
const ENV_SECRET: &str = "Env-T0k3n&k=1+2 z%zz/é";
const ENV_VAR: &str = "UNTOIL_TEST_REDACTION_SECRET";
/// Length of the windows searched for: any leak of 8 bytes or more of a form is found.
const WINDOW: usize = 8;

const RUNBOOK: &str = r#"name: leaky
owner: team
toil: {manual_minutes: 5}
secrets:
  pw: {file: SECRET_FILE}
  tok: {env: ENV_VAR}
steps:
  - name: raw
    env: {A: "{{secrets.pw}}", B: "{{secrets.tok}}"}
    run: |
      printf '%s\n' "$A" "$B"
      printf '%s\n' "$A" >&2
      echo {{secrets.pw}} {{secrets.tok}}
  - name: quoted
    env: {A: "{{secrets.pw}}", B: "{{secrets.tok}}"}
    run: |
      cat <<'EOF'
      {{secrets.pw}} {{secrets.tok}}
      EOF
      printf '%s\n' "$A" "$B" | sed "s/'/'\\\\''/g; s/^/'/; s/\$/'/"
      printf '%s\n' "$A" "$B" | sed "s/'/'\"'\"'/g; s/^/'/; s/\$/'/"
  - name: chunked
    env: {A: "{{secrets.pw}}"}
    run: |
      head -c 8190 /dev/zero | tr '\0' x
      printf '%s' "$A" | head -c 10
      sleep 0.3
      printf '%s' "$A" | tail -c +11
      head -c 9000 /dev/zero | tr '\0' y
  - name: huge
    env: {A: "{{secrets.pw}}"}
    run: |
      head -c 32758 /dev/zero | tr '\0' h
      printf '%s' "$A"
      head -c 100000 /dev/zero | tr '\0' m
      printf '%s' "$A"
      head -c 32758 /dev/zero | tr '\0' t
  - name: http_error
    http:
      url: "BASE/loop?raw={{secrets.pw}}"
      query: {f: "{{secrets.pw}}", e: "{{secrets.tok}}"}
    retries: {attempts: 0}
    continue_on_error: true
  - name: http_echo
    http:
      method: POST
      url: "BASE/echo?raw={{secrets.pw}}"
      query: {f: "{{secrets.pw}}", e: "{{secrets.tok}}"}
      json: {f: "{{secrets.pw}}", e: "{{secrets.tok}}"}
  - name: plugin
    plugin: echo-json
    with: {f: "{{secrets.pw}}", e: "{{secrets.tok}}"}
"#;

/// Echoes its whole input back in its reply's outputs, and logs it on stderr.
const PLUGIN: &str = r#"#!/bin/sh
input=$(cat)
printf '%s\n' "$input" >&2
printf '{"status":"succeeded","message":"echoed","outputs":%s}\n' "$input"
"#;

/// Percent-encodes every byte but ASCII letters and digits, in lower case hex, spaces as `%20`.
fn lower_percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// A local server: `/echo` answers the raw query and body it got, `/loop` redirects to itself
/// with its query re-encoded in lower case hex, until reqwest gives up and reports the URL.
async fn server() -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route(
            "/echo",
            any(|RawQuery(q): RawQuery, body: String| async move {
                format!("query: {}\nbody: {body}\n", q.unwrap_or_default())
            }),
        )
        .route(
            "/loop",
            get(|RawQuery(q): RawQuery| async move {
                let q = q.unwrap_or_default();
                let pairs: Vec<String> = form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| format!("{k}={}", lower_percent(&v)))
                    .collect();
                Redirect::temporary(&format!("/loop?{}", pairs.join("&"))).into_response()
            }),
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

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Every form of a secret a surface could hold, computed here independently of untoil's
/// redactor (but for `shell_quote`, which is what untoil renders commands with).
fn forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).expect("json");
    let json = json[1..json.len() - 1].to_string();
    let form_upper: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let url_minimal = reqwest::Url::parse(&format!("http://h/?q={secret}"))
        .ok()
        .and_then(|u| u.query().map(|q| q[2..].to_string()))
        .unwrap_or_default();
    let mut out = vec![
        secret.to_string(),
        untoil::exec::render::shell_quote(secret),
        format!("'{}'", secret.replace('\'', r"'\''")),
        format!("'{}'", secret.replace('\'', r#"'"'"'"#)),
        json,
        form_upper.clone(),
        form_upper.replace('+', "%20"),
        lower_percent(secret),
        lower_percent(secret).replace("%20", "+"),
        url_minimal,
    ];
    let escaped: Vec<String> = out.iter().map(|f| html_escape(f)).collect();
    out.extend(escaped);
    out.sort();
    out.dedup();
    out
}

/// Every 8-byte window of every form of both secrets, as one pattern.
fn leak_pattern() -> regex::bytes::Regex {
    let mut windows: Vec<String> = Vec::new();
    for secret in [FILE_SECRET, ENV_SECRET] {
        for form in forms(secret) {
            let b = form.as_bytes();
            if b.len() <= WINDOW {
                windows.push(form.clone());
                continue;
            }
            for start in 0..=b.len() - WINDOW {
                // Windows that cut a UTF-8 character are covered by their neighbours.
                if let Ok(w) = std::str::from_utf8(&b[start..start + WINDOW]) {
                    windows.push(w.to_string());
                }
            }
        }
    }
    windows.sort();
    windows.dedup();
    let alternatives: Vec<String> = windows.iter().map(|w| regex::escape(w)).collect();
    regex::bytes::Regex::new(&alternatives.join("|")).expect("pattern")
}

/// The leaks in a surface (a few, far enough apart to be different ones), shown in context.
fn leaks(pattern: &regex::bytes::Regex, surface: &str, bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = 0;
    for m in pattern.find_iter(bytes) {
        if m.start() < after || out.len() == 8 {
            continue;
        }
        after = m.end() + 200;
        let from = m.start().saturating_sub(50);
        let to = (m.end() + 50).min(bytes.len());
        out.push(format!(
            "{surface} holds part of a secret ({:?}) at byte {}: ...{}...",
            String::from_utf8_lossy(m.as_bytes()),
            m.start(),
            String::from_utf8_lossy(&bytes[from..to])
        ));
    }
    out
}

/// Every file under a directory, as bytes.
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push((
                p.display().to_string(),
                std::fs::read(&p).expect("read file"),
            ));
        }
    }
}

/// Runs `untoil ARGS` on the directories of `dirs`, with the env secret set: stdout + stderr.
async fn untoil(dirs: &Dirs, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_untoil"));
    untoil_env(&mut cmd, dirs);
    cmd.current_dir(dirs.root.path())
        .args(args)
        .env(ENV_VAR, ENV_SECRET);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run untoil");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// What a run of the leaky runbook must look like for the search to mean something: every
/// step ran and used the secrets, which show masked where they were.
fn assert_the_secrets_were_used(run: &Value) {
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = steps.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "raw",
            "quoted",
            "chunked",
            "huge",
            "http_error",
            "http_echo",
            "plugin"
        ],
        "{run:#}"
    );
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    for name in ["raw", "quoted", "chunked", "huge", "http_echo", "plugin"] {
        assert_eq!(
            step(name)["status"],
            "succeeded",
            "{name}: {:#}",
            step(name)
        );
    }
    let text = |name: &str, field: &str| step(name)[field].as_str().unwrap_or_default().to_string();
    assert_eq!(
        text("raw", "stdout").matches("***").count(),
        4,
        "{}",
        text("raw", "stdout")
    );
    // The heredoc's line (both secrets), then each secret quoted POSIX's way and Python's.
    assert_eq!(
        text("quoted", "stdout")
            .lines()
            .filter(|l| l.contains("***"))
            .count(),
        5,
        "{}",
        text("quoted", "stdout")
    );
    assert!(
        text("chunked", "stdout").contains("x***y"),
        "the split secret is masked whole"
    );
    let huge = text("huge", "stdout");
    assert!(huge.contains("bytes truncated"), "the huge output is cut");
    // The raw output's cuts fell inside the secrets; masked first, each is whole in its part.
    assert!(
        huge.contains("h***m") && huge.contains("m***t"),
        "the secrets are masked before the cuts"
    );
    let error = text("http_error", "error");
    assert!(
        error.contains("redirect") && error.contains("***"),
        "{error}"
    );
    assert!(
        text("http_echo", "body").matches("***").count() >= 5,
        "{}",
        text("http_echo", "body")
    );
    assert!(
        step("plugin")["outputs"]["with"]["f"] == "***",
        "{:#}",
        step("plugin")
    );
    // What each step ran is recorded and shown, its secrets masked as its outputs are.
    for name in ["raw", "http_echo", "plugin"] {
        assert!(
            text(name, "command").contains("***"),
            "{name}: {:#}",
            step(name)
        );
    }
}

async fn no_form_of_a_secret_reaches_any_surface(log_format: &str) {
    let dirs = Dirs::new();
    let (base, _srv) = server().await;
    let secret_file = dirs.path("pw.secret");
    std::fs::write(&secret_file, format!("{FILE_SECRET}\n")).expect("secret file");
    dirs.runbook(
        "leaky",
        &RUNBOOK
            .replace("SECRET_FILE", &secret_file.display().to_string())
            .replace("ENV_VAR", ENV_VAR)
            .replace("BASE", &base),
    );
    let plugin = dirs.path("plugins").join("echo-json");
    std::fs::write(&plugin, PLUGIN).expect("plugin");
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pattern = leak_pattern();
    let mut surfaces: Vec<(String, Vec<u8>)> = Vec::new();

    let mut serve = Command::new(env!("CARGO_BIN_EXE_untoil"));
    untoil_env(&mut serve, &dirs);
    serve
        .current_dir(dirs.root.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--shutdown-grace", "5s"])
        .args(["--log-format", log_format])
        .env("UNTOIL_LOG", "info")
        .env(ENV_VAR, ENV_SECRET);
    let mut served = Served::spawn(serve);
    let daemon = Http::new(served.base());
    let (status, answer) = daemon
        .post("/api/v1/runbooks/leaky/runs", serde_json::json!({}))
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().expect("run id").to_string();
    // Followed from the start: the live stream holds every step's start and output lines.
    let (status, events) = daemon.text(&format!("/api/v1/runs/{id}/events")).await;
    assert_eq!(status, 200);
    assert!(events.contains(r#""event":"step_started""#), "{events}");
    surfaces.push(("the run's live events".into(), events.into_bytes()));

    let (status, run) = daemon.text(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(status, 200);
    let record: Value = serde_json::from_str(&run).expect("run json");
    surfaces.push((format!("GET /api/v1/runs/{id}"), run.into_bytes()));
    for path in [
        "/api/v1/runs".to_string(),
        format!("/api/v1/runs/{id}/events"),
        format!("/ui/runs/{id}"),
        "/ui/runs".to_string(),
    ] {
        let (status, body) = daemon.text(&path).await;
        assert_eq!(status, 200, "{path}");
        surfaces.push((format!("GET {path}"), body.into_bytes()));
    }
    let (ok, shown) = untoil(&dirs, &["runs", "show", &id]).await;
    assert!(ok, "{shown}");
    surfaces.push(("`untoil runs show` (daemon)".into(), shown.into_bytes()));
    let (ok, shown) = untoil(&dirs, &["runs", "show", &id, "--json"]).await;
    assert!(ok, "{shown}");
    surfaces.push((
        "`untoil runs show --json` (daemon)".into(),
        shown.into_bytes(),
    ));
    let (_, printed) = untoil(&dirs, &["run", "leaky"]).await;
    assert!(printed.contains("==> [2/7] quoted"), "{printed}");
    surfaces.push((
        "`untoil run` through the daemon".into(),
        printed.into_bytes(),
    ));
    let (_, log) = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .expect("join");

    let (_, printed) = untoil(&dirs, &["run", "leaky"]).await;
    assert!(!printed.contains("queued on the daemon"), "{printed}");
    assert!(printed.contains("==> [2/7] quoted"), "{printed}");
    surfaces.push((
        "`untoil run` in the foreground".into(),
        printed.into_bytes(),
    ));
    let (ok, shown) = untoil(&dirs, &["runs", "show", &id]).await;
    assert!(ok, "{shown}");
    surfaces.push(("`untoil runs show` (store)".into(), shown.into_bytes()));

    let log_text = log.clone();
    let log = log.into_bytes();
    assert!(
        log_text.contains("***"),
        "output lines are logged, masked:\n{log_text:.2000}"
    );
    if log_format == "json" {
        assert!(
            log_text
                .lines()
                .all(|l| serde_json::from_str::<Value>(l).is_ok()),
            "{log_text:.2000}"
        );
    }
    surfaces.push((format!("the daemon's {log_format} log"), log));
    let mut stored = Vec::new();
    files(&dirs.path("data"), &mut stored);
    assert!(!stored.is_empty());
    surfaces.extend(stored);

    let leaks: Vec<String> = surfaces
        .iter()
        .flat_map(|(surface, bytes)| leaks(&pattern, surface, bytes))
        .collect();
    assert!(leaks.is_empty(), "{}", leaks.join("\n\n"));
    // And the search meant something: every step ran and used the secrets, masked.
    assert_the_secrets_were_used(&record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_form_of_a_secret_reaches_any_surface_with_text_logs() {
    no_form_of_a_secret_reaches_any_surface("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_form_of_a_secret_reaches_any_surface_with_json_logs() {
    no_form_of_a_secret_reaches_any_surface("json").await;
}

/// The search finds what it is meant to find: a leak of each kind, in each form.
#[test]
fn the_leak_search_finds_every_form_and_a_partial_secret() {
    let pattern = leak_pattern();
    for secret in [FILE_SECRET, ENV_SECRET] {
        for form in forms(secret) {
            assert!(pattern.is_match(format!("a {form} b").as_bytes()), "{form}");
        }
        assert!(
            pattern.is_match(&secret.as_bytes()[..10]),
            "a prefix of {secret}"
        );
        assert!(
            pattern.is_match(&secret.as_bytes()[10..]),
            "a suffix of {secret}"
        );
    }
    assert!(!pattern.is_match(b"step raw ***: x***y, 'h***' and %2A%2A%2A"));
}
