//! What data others control can no longer steer (the trust rules, docs/security.md): steps get a
//! built environment, not the daemon's; alert data and API parameters cannot become options;
//! HTTP steps encode what they interpolate; metrics stay valid whatever keys alerts make.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, Dirs, Served};

/// The real binary serving `dirs`, with this environment, killed when dropped.
struct Daemon {
    _served: Served,
    base: String,
}

async fn serve(dirs: &Dirs, env: &[(&str, &str)], args: &[&str]) -> Daemon {
    let mut cmd = common::untoil_command(dirs);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    untoil::exec::step::http::install_crypto_provider();
    let mut served = Served::spawn(cmd);
    // It answers once it says where it listens.
    let base = tokio::task::block_in_place(|| served.base());
    Daemon {
        _served: served,
        base,
    }
}

/// Starts a manual run through the API (with a bearer token when given) and waits for its end.
async fn run_to_end(base: &str, runbook: &str, token: Option<&str>) -> Value {
    let client = reqwest::Client::new();
    let with_token = |r: reqwest::RequestBuilder| match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let started: Value = with_token(client.post(format!("{base}/api/v1/runbooks/{runbook}/runs")))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let id = started["id"].as_str().expect("a run id").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run: Value = with_token(client.get(format!("{base}/api/v1/runs/{id}")))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if run["finished_at"].is_string() {
            return run;
        }
        assert!(Instant::now() < deadline, "run {id} did not end: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_get_a_built_environment_without_untoils_credentials_or_other_runbooks_secrets() {
    let dirs = Dirs::new();
    // A runbook that declares nothing prints its whole environment.
    dirs.runbook(
        "printenv",
        "name: printenv\nowner: t\ntoil: {manual_minutes: 1}\nsteps:\n  - name: env\n    run: env\n",
    );
    // Another runbook's secret lives in the daemon's environment.
    dirs.runbook(
        "other",
        "name: other\nowner: t\ntoil: {manual_minutes: 1}\nenv: [DEPLOY_ENV]\nsecrets:\n  key: {env: OTHER_RUNBOOK_KEY}\nsteps:\n  - name: env\n    run: env\n",
    );
    let d = serve(
        &dirs,
        &[
            ("UNTOIL_TOKEN", "tok-untoil-token-1"),
            ("UNTOIL_BASIC_AUTH", "lead:untoil-basic-2"),
            ("OTHER_RUNBOOK_KEY", "other-secret-3"),
            ("DEPLOY_ENV", "staging"),
            ("SSH_AUTH_SOCK", "/tmp/agent.sock"),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ],
        &["--pass-env", "SSH_AUTH_SOCK"],
    )
    .await;
    let token = Some("tok-untoil-token-1");
    let run = run_to_end(&d.base, "printenv", token).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = run["steps"][0]["stdout"].as_str().unwrap_or_default();
    for leaked in [
        "tok-untoil-token-1",
        "untoil-basic-2",
        "other-secret-3",
        "UNTOIL_TOKEN",
        "UNTOIL_BASIC_AUTH",
        "DEPLOY_ENV",
    ] {
        assert!(!out.contains(leaked), "{leaked} reached the step:\n{out}");
    }
    for given in [
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "SSH_AUTH_SOCK=/tmp/agent.sock",
        "UNTOIL_RUNBOOK=printenv",
        "UNTOIL_RUN_ID=",
    ] {
        assert!(out.contains(given), "{given} missing from:\n{out}");
    }
    // The runbook that declares the variable and the secret gets them (the secret masked in
    // what is stored).
    let run = run_to_end(&d.base, "other", token).await;
    let out = run["steps"][0]["stdout"].as_str().unwrap_or_default();
    assert!(out.contains("DEPLOY_ENV=staging"), "{out}");
    assert!(out.contains("UNTOIL_SECRET_KEY=***"), "{out}");
    assert!(!out.contains("other-secret-3"), "{out}");
    assert!(!out.contains("tok-untoil-token-1"), "{out}");
}

#[test]
fn untoils_own_variables_can_neither_be_passed_on_nor_read_by_a_runbook() {
    let dirs = Dirs::new();
    let out = Command::new(env!("CARGO_BIN_EXE_untoil"))
        .arg("--data")
        .arg(dirs.path("data"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pass-env",
            "UNTOIL_TOKEN",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pass-env UNTOIL_TOKEN"), "{err}");
    write(
        &dirs.path("runbooks"),
        "leak.yaml",
        "name: leak\nowner: t\ntoil: {manual_minutes: 1}\nenv: [UNTOIL_TOKEN]\nsteps:\n  - name: s\n    run: echo {{env.UNTOIL_TOKEN}}\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_untoil"))
        .arg("--runbooks")
        .arg(dirs.path("runbooks"))
        .arg("validate")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`UNTOIL_TOKEN` is untoil's own variable: runbooks cannot read it"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_label_cannot_become_an_option_of_a_command_and_the_alert_is_still_acknowledged() {
    let dirs = Dirs::new();
    let victim = dirs.path("victim");
    std::fs::create_dir_all(&victim).expect("mkdir");
    std::fs::write(victim.join("keep.tmp"), "x").expect("write");
    dirs.runbook(
        "clean",
        &format!(
            "name: clean\nowner: t\ntoil: {{manual_minutes: 1}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"TmpFull\"']}}\nsteps:\n  - name: find\n    workdir: {}\n    run: find {{{{alert.labels.dir}}}} -name '*.tmp' -print\n",
            victim.display()
        ),
    );
    dirs.runbook(
        "login",
        "name: login\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - alert: {matchers: ['alertname=\"HostDown\"']}\nsteps:\n  - name: ssh\n    run: ssh {{alert.labels.instance}} uptime\n",
    );
    let d = crate::common::Running::start(dirs.settings()).await;
    let alert = |name: &str, labels: Value| {
        let mut labels = labels;
        labels["alertname"] = name.into();
        serde_json::json!({
            "version": "4", "status": "firing", "receiver": "untoil", "groupKey": "g",
            "alerts": [{"status": "firing", "labels": labels, "annotations": {},
                        "startsAt": "2026-12-01T10:00:00Z", "fingerprint": name}]
        })
    };
    for body in [
        alert("TmpFull", serde_json::json!({"dir": "-delete"})),
        alert(
            "HostDown",
            serde_json::json!({"instance": "-oProxyCommand=sh -c \"id > /tmp/untoil-pwned-ssh\""}),
        ),
    ] {
        let (status, answer, _) = d
            .post("/api/v1/alerts/alertmanager", body.to_string().into_bytes())
            .await;
        assert_eq!(status, 200, "the alert is acknowledged: {answer}");
        assert_eq!(
            answer["accepted"].as_array().map(Vec::len),
            Some(1),
            "{answer}"
        );
    }
    let runs = d.wait_runs_final(2).await;
    for run in &runs {
        assert_eq!(run["status"], "failed", "{run}");
        assert_eq!(
            run["steps"][0]["exit_code"],
            Value::Null,
            "never started: {run}"
        );
    }
    let reasons: Vec<&str> = runs.iter().filter_map(|r| r["error"].as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|e| e.contains("alert.labels.dir starts with '-'")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|e| e.contains("alert.labels.instance starts with '-'")),
        "{reasons:?}"
    );
    assert!(victim.join("keep.tmp").exists(), "find -delete ran");
    assert!(!Path::new("/tmp/untoil-pwned-ssh").exists());
    d.stop().await;
}

/// An Alertmanager notification of one firing alert.
fn notification(fingerprint: &str, labels: Value) -> Vec<u8> {
    serde_json::json!({
        "version": "4", "status": "firing", "receiver": "untoil", "groupKey": "g",
        "alerts": [{"status": "firing", "labels": labels, "annotations": {},
                    "startsAt": "2026-12-01T10:00:00Z", "fingerprint": fingerprint}]
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_inputs_take_checked_values_from_the_alert_and_refuse_the_rest_before_any_step() {
    let dirs = Dirs::new();
    dirs.runbook(
        "probe",
        "name: probe\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - alert: {matchers: ['alertname=\"Down\"']}\ninputs:\n  target: {label: instance, type: hostname}\n  unit: {label: unit, pattern: '[a-z-]+\\.service', default: nginx.service}\nsteps:\n  - name: show\n    run: echo {{inputs.target.host}} {{inputs.target.port}} {{inputs.unit}}\n",
    );
    let d = crate::common::Running::start(dirs.settings()).await;
    let cases = [
        (
            "ok",
            serde_json::json!({"alertname": "Down", "instance": "db-1:9100"}),
        ),
        (
            "v6",
            serde_json::json!({"alertname": "Down", "instance": "[2001:db8::1]:22", "unit": "ssh.service"}),
        ),
        (
            "option",
            serde_json::json!({"alertname": "Down", "instance": "-oProxyCommand=id"}),
        ),
        (
            "userinfo",
            serde_json::json!({"alertname": "Down", "instance": "evil@127.0.0.1"}),
        ),
        (
            "unit",
            serde_json::json!({"alertname": "Down", "instance": "db-1", "unit": "x; reboot"}),
        ),
        ("missing", serde_json::json!({"alertname": "Down"})),
    ];
    for (fp, labels) in &cases {
        let (status, answer, _) = d
            .post(
                "/api/v1/alerts/alertmanager",
                notification(fp, labels.clone()),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let runs = d.wait_runs_final(cases.len()).await;
    let by_fp = |fp: &str| {
        runs.iter()
            .find(|r| r["cause"]["fingerprint"] == fp)
            .cloned()
            .unwrap_or_default()
    };
    let ok = by_fp("ok");
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(
        ok["steps"][0]["stdout"].as_str().map(str::trim),
        Some("db-1 9100 nginx.service")
    );
    let v6 = by_fp("v6");
    assert_eq!(
        v6["steps"][0]["stdout"].as_str().map(str::trim),
        Some("2001:db8::1 22 ssh.service")
    );
    for (fp, reason) in [
        (
            "option",
            "input `target` (label `instance`) is not a hostname",
        ),
        (
            "userinfo",
            "input `target` (label `instance`) is not a hostname",
        ),
        (
            "unit",
            "input `unit` (label `unit`) does not match the pattern",
        ),
        (
            "missing",
            "input `target`: the alert has no label `instance`",
        ),
    ] {
        let run = by_fp(fp);
        assert_eq!(run["status"], "failed", "{run}");
        assert!(
            run["error"].as_str().is_some_and(|e| e.contains(reason)),
            "{fp}: {run}"
        );
        assert_eq!(run["steps"], serde_json::json!([]), "no step ran: {run}");
        // The value itself is not repeated in the reason.
        assert!(!run["error"].as_str().unwrap_or("").contains("ProxyCommand"));
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_that_breaks_its_type_or_list_is_refused_with_its_rule() {
    let dirs = Dirs::new();
    dirs.runbook(
        "scale",
        "name: scale\nowner: t\ntoil: {manual_minutes: 1}\nparams:\n  replicas: {type: int, default: 2}\n  env: {allowed: [staging, prod], default: staging}\n  dir: {type: path, default: /var/log}\nsteps:\n  - name: s\n    run: echo {{params.replicas}} {{params.env}} {{params.dir}}\n",
    );
    let d = crate::common::Running::start(dirs.settings()).await;
    for (params, reason) in [
        (
            serde_json::json!({"replicas": "two"}),
            "parameter `replicas` is not a whole number",
        ),
        (
            serde_json::json!({"env": "dev"}),
            "parameter `env` is not one of: staging, prod",
        ),
        (
            serde_json::json!({"dir": "/var/../etc"}),
            "parameter `dir` contains `..`",
        ),
    ] {
        let (status, answer, _) = d
            .post(
                "/api/v1/runbooks/scale/runs",
                serde_json::json!({ "params": params })
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(reason)),
            "{answer}"
        );
    }
    let (status, answer, _) = d
        .post(
            "/api/v1/runbooks/scale/runs",
            serde_json::json!({"params": {"replicas": "3", "dir": "/srv//data/./x"}})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let runs = d.wait_runs_final(1).await;
    assert_eq!(
        runs[0]["steps"][0]["stdout"].as_str().map(str::trim),
        Some("3 staging /srv/data/x"),
        "a path is normalised"
    );
    assert!(
        d.runs().await.len() == 1,
        "the refused runs were never recorded"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_label_cannot_move_an_http_request_nor_add_fields_to_its_json() {
    use axum::extract::OriginalUri;
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
    let app = {
        let seen = seen.clone();
        axum::Router::new().fallback(move |uri: OriginalUri, body: String| {
            let seen = seen.clone();
            async move {
                if let Ok(mut s) = seen.lock() {
                    s.push((uri.0.to_string(), body));
                }
                "ok"
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dirs = Dirs::new();
    dirs.runbook(
        "hook",
        &format!(
            "name: hook\nowner: t\ntoil: {{manual_minutes: 1}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"Hook\"']}}\nsteps:\n  - name: post\n    http:\n      method: POST\n      url: \"http://127.0.0.1:{port}/hook/{{{{alert.labels.path}}}}?q={{{{alert.labels.q}}}}\"\n      json: {{title: \"{{{{alert.labels.title}}}}\"}}\n"
        ),
    );
    dirs.runbook(
        "redirect",
        "name: redirect\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - alert: {matchers: ['alertname=\"Redirect\"']}\nsteps:\n  - name: get\n    http:\n      url: \"http://{{alert.labels.target}}/api/v1/runbooks\"\n",
    );
    let d = crate::common::Running::start(dirs.settings()).await;
    for (fp, labels) in [
        (
            "hook",
            serde_json::json!({"alertname": "Hook", "path": "../admin/delete?all=1#x",
                               "q": "a&admin=1", "title": "x\",\"admin\":true,\"y\":\""}),
        ),
        (
            "redirect",
            serde_json::json!({"alertname": "Redirect", "target": "evil.example@127.0.0.1:9470"}),
        ),
    ] {
        let (status, answer, _) = d
            .post("/api/v1/alerts/alertmanager", notification(fp, labels))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let runs = d.wait_runs_final(2).await;
    let redirect = runs
        .iter()
        .find(|r| r["runbook"] == "redirect")
        .cloned()
        .unwrap_or_default();
    assert_eq!(redirect["status"], "failed", "{redirect}");
    assert!(
        redirect["error"]
            .as_str()
            .is_some_and(|e| e.contains("alert.labels.target cannot form the host of a URL")),
        "{redirect}"
    );
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (uri, body) = &seen[0];
    assert_eq!(
        uri, "/hook/..%2Fadmin%2Fdelete%3Fall%3D1%23x?q=a%26admin%3D1",
        "the label stayed one path segment and one query value"
    );
    let json: Value = serde_json::from_str(body).expect("json body");
    assert_eq!(json.as_object().map(|o| o.len()), Some(1), "{json}");
    assert_eq!(json["title"], "x\",\"admin\":true,\"y\":\"");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_valid_and_bounded_whatever_guard_keys_alerts_make() {
    let dirs = Dirs::new();
    dirs.runbook(
        "keyed",
        "name: keyed\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - alert: {matchers: ['alertname=\"Keyed\"']}\nguards:\n  key: '{{alert.labels.k}}'\n  trip_after_failures: 1\nsteps:\n  - name: fail\n    run: exit 1\n",
    );
    let d = crate::common::Running::start(dirs.settings()).await;
    let hostile = "x\"} 1\nuntoil_fake_metric{evil=\"1\"} 42\n# ";
    let mut keys: Vec<String> = vec![hostile.to_string(), "back\\slash".into()];
    keys.extend((0..130).map(|i| format!("k{i}")));
    for (i, k) in keys.iter().enumerate() {
        let (status, answer, _) = d
            .post(
                "/api/v1/alerts/alertmanager",
                notification(
                    &format!("fp{i}"),
                    serde_json::json!({"alertname": "Keyed", "k": k}),
                ),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    d.wait_runs_final(keys.len()).await;
    let text = d
        .client
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !text.lines().any(|l| l.starts_with("untoil_fake_metric")),
        "a label value added a series:\n{text}"
    );
    let breaker_series = text
        .lines()
        .filter(|l| l.starts_with("untoil_breaker_open{") && l.contains("runbook=\"keyed\""))
        .count();
    assert!(
        (100..=101).contains(&breaker_series),
        "{breaker_series} breaker series for one runbook"
    );
    assert!(
        text.contains("key=\"_other\""),
        "keys beyond the cap are aggregated"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &text).expect("write");
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("promtool (Debian package prometheus) must be installed: run scripts/test-deps");
    // promtool 2.42 reads the classic text format, where an OpenMetrics counter's HELP (on the
    // family, `untoil_runs`) does not name its `_total` sample: those lint lines are expected.
    // Anything else (a parse error above all) means the exposition is broken.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.starts_with("untoil_") && l.ends_with("_total no help text")))
        .collect();
    assert!(problems.is_empty(), "promtool: {report}");
    d.stop().await;
}

/// `untoil run` in the foreground, without a daemon, with this `$USER`.
fn run_here(dirs: &Dirs, user: &str, args: &[&str]) -> std::process::Output {
    common::untoil_command(dirs)
        .env("USER", user)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run untoil")
}

#[test]
fn a_foreground_run_skips_no_guard_unless_told_and_then_records_who_did() {
    let dirs = Dirs::new();
    let marker = dirs.path("ran");
    dirs.runbook(
        "gated",
        &format!(
            "name: gated\nowner: t\ntoil: {{manual_minutes: 5}}\nguards:\n  approval: required\n  cooldown: 1h\nsteps:\n  - name: s\n    run: echo ran >> {}\n",
            marker.display()
        ),
    );
    // No daemon holds the store: the run is refused, naming the guards and the way out.
    let out = run_here(&dirs, "mallory", &["gated"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "runbook `gated` has guards (approval, cooldown) that only the daemon decides"
        ) && err.contains("--bypass-guards"),
        "{err}"
    );
    assert!(!marker.exists(), "a step ran without its approval");
    let listed = common::untoil_command(&dirs)
        .args(["runs", "--json"])
        .output()
        .expect("untoil runs");
    let runs: Value = serde_json::from_slice(&listed.stdout).expect("runs json");
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs}");

    // A dry run executes nothing, so it needs no bypass.
    let out = run_here(&dirs, "mallory", &["gated", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!marker.exists());

    // Said explicitly: it runs, and the record says who (the uid's name; $USER only as a claim)
    // and which guards it went without.
    let out = run_here(&dirs, "mallory", &["gated", "--bypass-guards"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        std::fs::read_to_string(&marker).ok().as_deref(),
        Some("ran\n")
    );
    let login = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("this test's user has a name");
    let listed = common::untoil_command(&dirs)
        .args(["runs", "--json"])
        .output()
        .expect("untoil runs");
    let runs: Value = serde_json::from_slice(&listed.stdout).expect("runs json");
    let bypassed = &runs[0]["bypassed"];
    assert_eq!(bypassed["by"], login.as_str(), "{runs}");
    assert_eq!(bypassed["claimed"], "mallory", "{runs}");
    assert_eq!(
        bypassed["guards"],
        serde_json::json!(["approval", "cooldown"])
    );
    let id = runs[0]["id"].as_str().expect("id");
    let shown = common::untoil_command(&dirs)
        .args(["runs", "show", id])
        .output()
        .expect("untoil runs show");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!(
            "guards    bypassed: run by {login} (claimed: mallory) without approval, cooldown"
        )),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_daemon_holding_the_store_a_run_goes_through_it_and_cannot_bypass_its_guards() {
    let dirs = Dirs::new();
    let marker = dirs.path("ran");
    dirs.runbook(
        "gated",
        &format!(
            "name: gated\nowner: t\ntoil: {{manual_minutes: 5}}\nguards:\n  approval: required\nsteps:\n  - name: s\n    run: echo ran >> {}\n",
            marker.display()
        ),
    );
    let mut c = common::untoil_command(&dirs);
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut served = Served::spawn(c);
    let base = served.base();
    // A wrong --server is refused, never run past: nothing answers there.
    let out = run_here(
        &dirs,
        "mallory",
        &["gated", "--server", "http://127.0.0.1:9"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no daemon answers at http://127.0.0.1:9")
    );
    let out = run_here(&dirs, "mallory", &["gated", "--bypass-guards"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--bypass-guards is for a run without a daemon")
            && err.contains(base.as_str()),
        "{err}"
    );
    assert!(!marker.exists(), "a step ran without its approval");
    // Nothing reached the daemon (found through the store's directory) either.
    untoil::exec::step::http::install_crypto_provider();
    let client = reqwest::Client::new();
    let approvals: Value = client
        .get(format!("{base}/api/v1/approvals"))
        .send()
        .await
        .expect("approvals")
        .json()
        .await
        .expect("json");
    assert_eq!(approvals.as_array().map(Vec::len), Some(0), "{approvals}");
    drop(served);
}

/// Whether `file` (a path from the repository's root) defines `fn name`.
fn defines(file: &Path, name: &str) -> bool {
    std::fs::read_to_string(file).is_ok_and(|text| {
        text.contains(&format!("fn {name}(")) || text.contains(&format!("fn {name}<"))
    })
}

#[test]
fn the_security_guide_names_only_tests_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/security.md")).expect("docs/security.md");
    let table = guide
        .split("## Guarantees and the tests that prove them")
        .nth(1)
        .expect("the guide ends with its table of guarantees and tests");
    let mut named = 0;
    let mut missing = Vec::new();
    // Every `module::name` or `src/file.rs::name` in backticks on a table row.
    for row in table.lines().filter(|l| l.starts_with("| ")) {
        for (i, cell) in row.split('`').enumerate() {
            let Some((file, name)) = cell.rsplit_once("::") else {
                continue;
            };
            if i % 2 == 0
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            {
                continue;
            }
            let path = if file.starts_with("src/") {
                root.join(file)
            } else {
                root.join("tests/suite").join(format!("{file}.rs"))
            };
            named += 1;
            if !defines(&path, name) {
                missing.push(cell.to_string());
            }
        }
    }
    assert!(
        named >= 40,
        "only {named} tests named: the table was not read"
    );
    assert!(
        missing.is_empty(),
        "docs/security.md names tests that do not exist: {missing:?}"
    );
}
