//! Resource and hygiene guarantees: report periods out of range are refused (never a panic),
//! empty credentials are refused at start, the data directory is private without touching the
//! umask steps inherit, secret files readable by others are warned about, CSV and Markdown
//! reports neutralise what spreadsheets and renderers would interpret, text logs escape control
//! characters, every response carries the security headers, and the systemd unit verifies.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Dirs, Running, Served, fixture, untoil_command};
use serde_json::{Value, json};
use untoil::server::auth::Auth;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

fn write_with_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A webhook payload of one firing alert with these labels (no runbook handles it).
fn alert(labels: Value) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("firing.json")).expect("json");
    v["alerts"][0]["labels"] = labels.clone();
    v["commonLabels"] = labels;
    v["alerts"][0]["fingerprint"] = json!(format!("{:x}", rand_like()));
    serde_json::to_vec(&v).expect("json")
}

fn rand_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_periods_out_of_range_are_refused_with_400_and_edge_ones_are_answered() {
    let dirs = Dirs::new();
    let d = Running::start(dirs.settings()).await;
    let (status, _, _) = d
        .post(
            "/api/v1/alerts/alertmanager",
            alert(json!({"alertname": "Edge"})),
        )
        .await;
    assert_eq!(status, 200);
    // (query, expected status, the backlog's alerts_received when 200)
    let table: &[(&str, u16, u64)] = &[
        ("since=300000y", 400, 0),
        ("since=262144y", 400, 0),
        ("since=10000y", 400, 0),
        ("since=9000000000000000s", 400, 0),
        ("since=18446744073709551615s", 400, 0),
        ("since=99999999999999999999999d", 400, 0),
        ("since=-1d", 400, 0),
        ("since=", 400, 0),
        ("since=1y", 200, 1),
        ("since=0s", 200, 1),
        ("since=2000y", 200, 1),
        ("from=0001-01-01&to=9999-12-31", 200, 1),
        ("from=2000-01-01&to=1999-12-31", 400, 0),
        ("from=%2B262142-01-01&to=%2B262142-12-31", 400, 0),
        ("from=%2B10000-01-01&to=%2B10000-01-02", 400, 0),
        ("from=-0001-01-01&to=2000-01-01", 400, 0),
        ("from=2026-02-30&to=2026-03-01", 400, 0),
        ("from=2026-01-01", 400, 0),
    ];
    for (query, want, received) in table {
        for path in ["/api/v1/reports/toil", "/api/v1/reports/unautomated"] {
            let url = format!("{path}?{query}");
            let (status, body) = d.get(&url).await;
            assert_eq!(status, *want, "{url}: {body}");
            if *want == 400 {
                assert!(
                    body["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{url}: {body}"
                );
            } else if path.ends_with("unautomated") {
                assert_eq!(body["alerts_received"], *received, "{url}: {body}");
            }
        }
        // The dashboard reads the same parser: never a panic, only fixed periods.
    }
    // The daemon still answers after all of them.
    assert_eq!(d.get("/healthz").await.0, 200);
    d.stop().await;
}

#[test]
fn report_since_out_of_range_is_refused_by_the_cli() {
    let dirs = Dirs::new();
    for (args, needle) in [
        (vec!["report", "--since", "300000y"], "--since `300000y`"),
        (
            vec!["report", "unautomated", "--since", "9000000000000000s"],
            "--since `9000000000000000s`",
        ),
        (
            vec!["report", "--from", "+262142-12-31", "--to", "+262142-12-31"],
            "--from",
        ),
    ] {
        let out = untoil_command(&dirs).args(&args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn empty_credentials_are_refused_at_start_naming_where_they_are() {
    let dirs = Dirs::new();
    let basic = dirs.path("basic");
    let token = dirs.path("token");
    // (file contents or env, the flag or variable, what the message must name)
    let cases: Vec<(Vec<(&str, String)>, String)> = vec![
        (
            vec![("basic", "alertmanager:pw\n:nopass\n".into())],
            format!("{}:2", basic.display()),
        ),
        (
            vec![("basic", "# users\nalertmanager:\n".into())],
            format!("{}:2", basic.display()),
        ),
        (
            vec![("basic", "alertmanager pw\n".into())],
            format!("{}:1", basic.display()),
        ),
        (
            vec![("token", "\n  \n".into())],
            token.display().to_string(),
        ),
        (vec![("env", ":pw".into())], "UNTOIL_BASIC_AUTH".into()),
        (vec![("env", "user:".into())], "UNTOIL_BASIC_AUTH".into()),
    ];
    for (inputs, names) in cases {
        let mut c = untoil_command(&dirs);
        c.args(["serve", "--listen", "127.0.0.1:0"]);
        for (what, text) in &inputs {
            match *what {
                "basic" => {
                    write_with_mode(&basic, text, 0o600);
                    c.arg("--basic-auth-file").arg(&basic);
                }
                "token" => {
                    write_with_mode(&token, text, 0o600);
                    c.arg("--token-file").arg(&token);
                }
                _ => {
                    c.env("UNTOIL_BASIC_AUTH", text);
                }
            }
        }
        let (code, stderr) = Served::spawn(c).exit();
        assert_eq!(code, Some(2), "{inputs:?}: {stderr}");
        assert!(
            stderr.contains(&names),
            "{inputs:?} names {names}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private_and_steps_keep_the_umask() {
    let dirs = Dirs::new();
    dirs.runbook(
        "umask",
        "name: umask\nowner: t\ntoil: {manual_minutes: 1}\nsteps:\n  - name: u\n    run: umask\n",
    );
    // A store directory untoil creates, and one that exists open to everyone.
    let fresh = dirs.path("data/new/store");
    let open = dirs.path("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for data in [&fresh, &open] {
        let mut s = dirs.settings();
        s.data = data.clone();
        let d = Running::start(s).await;
        assert_eq!(mode(data), 0o700, "{}", data.display());
        let (status, body, _) = d.post("/api/v1/runbooks/umask/runs", b"{}".to_vec()).await;
        assert_eq!(status, 202, "{body}");
        let runs = d.wait_runs_final(1).await;
        let ours = std::fs::read_to_string("/proc/self/status")
            .expect("status")
            .lines()
            .find_map(|l| l.strip_prefix("Umask:").map(|u| u.trim().to_string()))
            .expect("Umask line");
        assert_eq!(
            runs[0]["steps"][0]["stdout"].as_str().map(str::trim),
            Some(ours.as_str()),
            "steps inherit untoil's umask: {}",
            runs[0]
        );
        d.stop().await;
        assert_eq!(mode(data), 0o700, "{}", data.display());
    }
}

#[test]
fn secret_files_readable_by_others_are_warned_about_at_start() {
    let dirs = Dirs::new();
    let token = dirs.path("token");
    let basic = dirs.path("basic");
    let secret = dirs.path("api-key");
    let private = dirs.path("private-key");
    write_with_mode(&token, "t0k3n\n", 0o644);
    write_with_mode(&basic, "am:pw\n", 0o640);
    write_with_mode(&secret, "k\n", 0o604);
    write_with_mode(&private, "k\n", 0o600);
    dirs.runbook(
        "keys",
        &format!(
            "name: keys\nowner: t\ntoil: {{manual_minutes: 1}}\nsecrets:\n  api: {{file: {}}}\n  own: {{file: {}}}\nsteps:\n  - name: u\n    run: 'true'\n",
            secret.display(),
            private.display()
        ),
    );
    let mut c = untoil_command(&dirs);
    c.args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&token)
        .arg("--basic-auth-file")
        .arg(&basic);
    let mut served = Served::spawn(c);
    served.base();
    for file in [&token, &basic, &secret] {
        let name = file.display().to_string();
        let line = served.wait_line(|l| l.contains(&name) && l.contains("WARN"));
        assert!(line.contains("chmod 600"), "{line}");
    }
    let private = private.display().to_string();
    assert!(
        !served.seen.iter().any(|l| l.contains(&private)),
        "{}",
        served.seen.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_markdown_reports_neutralise_formulas_and_markup() {
    let dirs = Dirs::new();
    dirs.runbook(
        "owned",
        "name: owned\nowner: \"=HYPERLINK(1)|<b>&\"\ntoil: {manual_minutes: 1}\nsteps:\n  - name: u\n    run: 'true'\n",
    );
    let d = Running::start(dirs.settings()).await;
    let hostile = [
        "=HYPERLINK(\"http://x\",\"y\")",
        "+1+1",
        "-2+3",
        "@SUM(1)",
        "\tTAB",
        "\rCR",
        "a|b <script>&\"'",
    ];
    for (i, name) in hostile.iter().enumerate() {
        let (status, body, _) = d
            .post(
                "/api/v1/alerts/alertmanager",
                alert(json!({"alertname": name, "team": format!("{name}{i}")})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, _) = d.post("/api/v1/runbooks/owned/runs", b"{}".to_vec()).await;
    assert_eq!(status, 202);
    d.wait_runs_final(1).await;

    let (_, csv) = d
        .get("/api/v1/reports/unautomated?format=csv&label=team")
        .await;
    let csv = csv.as_str().unwrap_or_default().to_string();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let mut seen = 0;
    for record in reader.records() {
        let record = record.expect("csv record");
        for cell in record.iter().take(2) {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?} in\n{csv}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 2 * hostile.len(), "{csv}");
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    let (_, toil) = d.get("/api/v1/reports/toil?format=csv").await;
    let toil = toil.as_str().unwrap_or_default().to_string();
    assert!(toil.contains("'=HYPERLINK(1)|<b>&"), "{toil}");

    let (_, md) = d
        .get("/api/v1/reports/unautomated?format=markdown&label=team")
        .await;
    let md = md.as_str().unwrap_or_default().to_string();
    let (_, toil_md) = d.get("/api/v1/reports/toil?format=markdown").await;
    let toil_md = toil_md.as_str().unwrap_or_default().to_string();
    for text in [&md, &toil_md] {
        assert!(!text.contains('<'), "{text}");
        assert!(!text.contains('\r'), "{text}");
        assert!(!text.contains('\t'), "{text}");
        // Each table row has as many cell separators as the header: no `|` from a cell.
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
        // GitHub's table splitting: a backslash escapes the next character.
        let separators = |l: &str| {
            let (mut n, mut escaped) = (0, false);
            for c in l.chars() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '|') => n += 1,
                    _ => {}
                }
            }
            n
        };
        assert!(rows.len() >= 3, "{text}");
        // A text may hold several tables (the backlog's two lists): each row has as many as
        // the header of its table, the row before a `|---` line.
        let mut header = 0;
        for (i, row) in rows.iter().enumerate() {
            if rows.get(i + 1).is_some_and(|next| next.starts_with("|---")) {
                header = separators(row);
            }
            assert_eq!(separators(row), header, "{row} in\n{text}");
        }
    }
    assert!(md.contains("a\\|b &lt;script&gt;&amp;"), "{md}");
    assert!(
        toil_md.contains("=HYPERLINK(1)\\|&lt;b&gt;&amp;"),
        "{toil_md}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_nosniff_and_html_ones_csp_and_frame_denial() {
    let dirs = Dirs::new();
    let mut s = dirs.settings();
    s.body_limit = 1024;
    s.auth = Auth::new(vec!["t0k".into()], Vec::new());
    let d = Running::start(s).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", d.base);
    let bearer = "Bearer t0k";
    let requests = vec![
        (
            "404",
            client.get(url("/nope")).header("authorization", bearer),
        ),
        (
            "405",
            client
                .delete(url("/api/v1/runs"))
                .header("authorization", bearer),
        ),
        (
            "413",
            client
                .post(url("/api/v1/alerts/alertmanager"))
                .header("authorization", bearer)
                .header("content-type", "application/json")
                .body(vec![b' '; 4096]),
        ),
        ("401", client.get(url("/api/v1/runs"))),
        ("401", client.get(url("/"))),
        ("200", client.get(url("/healthz"))),
        (
            "200",
            client
                .get(url("/api/v1/runs"))
                .header("authorization", bearer),
        ),
        ("200", client.get(url("/")).header("authorization", bearer)),
        (
            "404",
            client
                .get(url("/ui/runs/nosuch"))
                .header("authorization", bearer),
        ),
        (
            "200",
            client
                .get(url("/ui/assets/app.css"))
                .header("authorization", bearer),
        ),
        (
            "400",
            client
                .get(url("/api/v1/reports/toil?format=nope"))
                .header("authorization", bearer),
        ),
    ];
    let mut html = 0;
    for (want, request) in requests {
        let r = request.send().await.expect("send");
        let status = r.status().as_u16().to_string();
        let h = r.headers().clone();
        let what = format!("{status} {:?}", r.url().path());
        assert_eq!(status, want, "{what}");
        assert_eq!(
            h.get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff"),
            "{what}: {h:?}"
        );
        let is_html = h
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/html"));
        if is_html {
            html += 1;
            assert_eq!(
                h.get("x-frame-options").and_then(|v| v.to_str().ok()),
                Some("DENY"),
                "{what}"
            );
            assert!(
                h.get("content-security-policy")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|p| p.contains("frame-ancestors 'none'")),
                "{what}: {h:?}"
            );
        }
    }
    assert!(html >= 2, "the dashboard page and its 404 are HTML");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_escape_control_characters_in_step_output() {
    let dirs = Dirs::new();
    dirs.runbook(
        "forge",
        "name: forge\nowner: t\ntoil: {manual_minutes: 1}\nsteps:\n  - name: u\n    run: printf 'real\\rFORGED ERROR line\\033[2J\\tend\\n'\n",
    );
    let mut c = untoil_command(&dirs);
    c.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "text"]);
    let mut served = Served::spawn(c);
    let base = served.base();
    untoil::exec::step::http::install_crypto_provider();
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/runbooks/forge/runs"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("start a run");
    assert_eq!(r.status().as_u16(), 202);
    let line = served.wait_line(|l| l.contains("FORGED"));
    assert!(
        !line.chars().any(|c| c.is_control()),
        "no control character reaches the log: {line:?}"
    );
    assert!(line.contains("real\\rFORGED ERROR line"), "{line:?}");
    assert!(line.contains("\\tend"), "{line:?}");
}

#[test]
fn the_systemd_unit_verifies_and_its_file_limit_fits_the_connection_cap() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/untoil.service"),
    )
    .expect("examples/untoil.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
    };
    let limit: usize = value("LimitNOFILE")
        .and_then(|v| v.parse().ok())
        .expect("LimitNOFILE= a number");
    let workers = 2 * 64; // two per CPU on a 64-CPU machine
    let needed = untoil::daemon::files::needed(
        &untoil::server::listen::Limits {
            max_connections: untoil::daemon::settings::DEFAULT_MAX_CONNECTIONS,
            refusing: untoil::server::listen::REFUSING,
            header_read_timeout: untoil::daemon::settings::DEFAULT_HEADER_READ_TIMEOUT,
        },
        workers,
    );
    assert!(limit >= needed, "LimitNOFILE={limit} < {needed}");

    // ExecStart names the installed binary; verify the unit with the one just built.
    let exec = value("ExecStart").expect("ExecStart=");
    let installed = exec
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("untoil.service");
    std::fs::write(
        &path,
        unit.replace(&installed, env!("CARGO_BIN_EXE_untoil")),
    )
    .expect("write unit");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze must be installed (scripts/test-deps installs systemd): {e}")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("untoil.service"),
        "systemd-analyze has something to say about the unit:\n{stderr}"
    );
    // The flags ExecStart passes are ones untoil takes.
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    let mut check = std::process::Command::new(env!("CARGO_BIN_EXE_untoil"));
    check.args(&args).arg("--help");
    let out = check.output().expect("untoil --help");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_daemon_whose_stderr_is_closed_still_stops_on_sigterm() {
    use std::io::BufRead;
    let dirs = Dirs::new();
    let mut child = untoil_command(&dirs)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn untoil");
    {
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let listening = lines.any(|l| l.is_ok_and(|l| l.contains("untoil listening on")));
        assert!(listening, "the daemon started");
        // The reading end closes here: the next log line fails to write.
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(status.success(), "{status:?}");
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("untoil did not stop on SIGTERM with its stderr closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
