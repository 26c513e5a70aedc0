//! The `untoil` binary as a user runs it: exit codes, output and the shipped examples.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh store directory per command, so parallel tests never share the sled lock.
fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn untoil(args: &[&str]) -> Output {
    let data = data_dir();
    Command::new(env!("CARGO_BIN_EXE_untoil"))
        .current_dir(root())
        .env("UNTOIL_DATA", data.path())
        // No daemon holds this fresh store: nothing to talk to.
        .env_remove("UNTOIL_SERVER")
        .env_remove("UNTOIL_RUNBOOKS")
        .env_remove("UNTOIL_PLUGINS")
        .env_remove("UNTOIL_SOURCES")
        .args(args)
        .output()
        .expect("run untoil")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// Every YAML file under `dir` that is a runbook (has a top-level `steps:`).
fn runbook_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            runbook_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let body = std::fs::read_to_string(&p).unwrap_or_default();
            if body.lines().any(|l| l.starts_with("steps:")) {
                out.push(p);
            }
        }
    }
}

#[test]
fn shipped_runbooks_and_examples_validate_without_errors_or_warnings() {
    let mut files = Vec::new();
    runbook_files(&root().join("runbooks"), &mut files);
    runbook_files(&root().join("examples"), &mut files);
    assert!(
        files.len() >= 6,
        "expected the shipped runbooks, found {files:?}"
    );
    // The example runbooks trigger on the example sources, which validate checks too.
    let mut args = vec![
        "validate",
        "--deny-warnings",
        "--sources",
        "examples/sources",
    ];
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let out = untoil(&args);
    assert!(
        out.status.success(),
        "validate failed:\n{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).starts_with("ok: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn example_sources_load_without_errors() {
    let mut files = untoil::runbook::sources::Sources::new();
    let (catalog, diags) =
        untoil::source::catalog::SourceCatalog::load(&root().join("examples/sources"), &mut files);
    assert!(
        diags.iter().all(|d| !d.is_error()),
        "{}",
        files.render(&diags)
    );
    assert_eq!(
        catalog.names().collect::<Vec<_>>(),
        ["deploys", "github-ci", "grafana-prod", "pagerduty"]
    );
    assert_eq!(
        std::fs::read_dir(root().join("examples/sources"))
            .expect("examples/sources")
            .count(),
        catalog.len(),
        "every file of examples/sources defines a source"
    );
}

/// A temporary directory with `runbooks/` and `sources/` holding these files.
fn runbooks_and_sources(runbooks: &[(&str, &str)], sources: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (sub, files) in [("runbooks", runbooks), ("sources", sources)] {
        std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(sub).join(name), text).expect("write");
        }
    }
    dir
}

const SOURCE_TRIGGERED: &str = "name: ci\nowner: me\ntoil: {manual_minutes: 1}\ntriggers:\n  - alert:\n      source: [grafana, github-ci, pagerdty]\n      matchers: ['alertname=\"X\"']\nsteps: [{ name: a, run: echo }]\n";

#[test]
fn validate_checks_source_definitions_with_located_errors() {
    let dir = runbooks_and_sources(
        &[("ci.yaml", SOURCE_TRIGGERED)],
        &[
            (
                "github-ci.yaml",
                "source: github-ci\nverify: { preset: hmac-sha256, header: X-Hub-Signature-256, secret_env: S }\ndelivery: { id_header: X-GitHub-Delivery }\nmap: { labels: { repo: /repository/full_name } }\n",
            ),
            (
                "broken.yaml",
                "source: broken\nkind: grafana\nverify:\n  preset: grafana\n  secret_env: G\n  tolerence: 1m\n",
            ),
        ],
    );
    let sources = dir.path().join("sources");
    let runbooks = dir.path().join("runbooks");
    let out = untoil(&[
        "validate",
        "--sources",
        &sources.display().to_string(),
        &runbooks.display().to_string(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "--> {}:6:3",
            sources.join("broken.yaml").display()
        )),
        "{err}"
    );
    assert!(
        err.contains("unknown field `tolerence` in `verify`"),
        "{err}"
    );
    assert!(err.contains("did you mean `tolerance`?"), "{err}");
    // github-ci is defined, grafana built in: only the misspelt name is warned about, at it.
    assert!(
        err.contains(&format!("--> {}:6:36", runbooks.join("ci.yaml").display())),
        "{err}"
    );
    assert!(
        err.contains("runbook `ci` triggers on source `pagerdty`, which is neither built in (alertmanager, grafana) nor defined in"),
        "{err}"
    );
    assert!(!err.contains("source `github-ci`, which"), "{err}");
    assert!(
        err.contains("failed: 1 error, 1 warning in 3 files"),
        "{err}"
    );

    let out = untoil(&[
        "validate",
        "--format",
        "json",
        "--sources",
        &sources.display().to_string(),
        &runbooks.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let all = json.as_array().cloned().unwrap_or_default();
    let codes: Vec<(&str, &str, u64, u64)> = all
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or_default(),
                d["severity"].as_str().unwrap_or_default(),
                d["line"].as_u64().unwrap_or_default(),
                d["column"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("undefined-source", "warning", 6, 36),
            ("unknown-field", "error", 6, 3),
        ]
    );
}

#[test]
fn an_undefined_source_is_a_warning_and_fails_only_with_deny_warnings() {
    // No sources directory at all: only the built-in names are known.
    let dir = runbooks_and_sources(&[("ci.yaml", SOURCE_TRIGGERED)], &[]);
    let runbooks = dir.path().join("runbooks").display().to_string();
    let missing = dir.path().join("no-such-dir").display().to_string();
    let out = untoil(&["validate", "--sources", &missing, &runbooks]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("source `github-ci`, which is neither built in"),
        "{err}"
    );
    assert!(err.contains("source `pagerdty`, which"), "{err}");
    assert!(err.contains("ok: 0 errors, 2 warnings in 1 file"), "{err}");
    // A --sources path that is not the default and does not exist is likely mistyped.
    assert!(
        err.contains(&format!("the sources directory {missing} does not exist")),
        "{err}"
    );
    // `untoil list` says which sources the trigger takes.
    let out = untoil(&["list", "--runbooks", &runbooks, "--sources", &missing]);
    assert!(
        text(&out.stdout).contains("alert from grafana, github-ci, pagerdty alertname=\"X\""),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = untoil(&[
        "validate",
        "--deny-warnings",
        "--sources",
        &missing,
        &runbooks,
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn validate_exits_one_with_located_errors_for_a_broken_runbook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "name: broken\nowner: me\nsteps:\n  - name: a\n    rn: echo\n",
    )
    .expect("write");
    let out = untoil(&["validate", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("--> {}:5:5", file.display())),
        "{err}"
    );
    assert!(err.contains("did you mean `run`?"), "{err}");
    // The rest of the file is checked too: its warnings come with the shape error.
    assert!(
        err.contains("failed: 1 error, 2 warnings in 1 file"),
        "{err}"
    );
}

#[test]
fn validate_json_lists_diagnostics_with_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rb.yaml");
    std::fs::write(
        &file,
        "name: x\nowner: me\nsteps: [{ name: a, run: 'echo {{params.nope}}' }]\n",
    )
    .expect("write");
    let out = untoil(&["validate", "--format", "json", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let all = json.as_array().cloned().unwrap_or_default();
    let first = all
        .iter()
        .find(|d| d["code"] == "unknown-variable")
        .cloned()
        .unwrap_or_default();
    assert_eq!(first["column"], 33);
    assert_eq!(first["line"], 3);
    assert_eq!(first["severity"], "error");
    assert!(
        json.as_array()
            .is_some_and(|a| a.iter().any(|d| d["code"] == "no-trigger"))
    );
}

#[test]
fn deny_warnings_turns_warnings_into_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rb.yaml");
    std::fs::write(
        &file,
        "name: x\nowner: me\ntoil: {manual_minutes: 1}\nsteps: [{ name: a, run: echo }]\n",
    )
    .expect("write");
    let path = file.display().to_string();
    assert_eq!(untoil(&["validate", &path]).status.code(), Some(0));
    assert_eq!(
        untoil(&["validate", "--deny-warnings", &path])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn list_shows_the_shipped_runbooks_with_next_fire_times() {
    let out = untoil(&["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let header = table.lines().next().unwrap_or("");
    for col in [
        "NAME",
        "OWNER",
        "SERVICE",
        "TRIGGERS",
        "NEXT FIRE",
        "TOIL (min)",
    ] {
        assert!(header.contains(col), "{table}");
    }
    assert!(table.contains("log-cleanup"), "{table}");
    let json = untoil(&["list", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let log = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "log-cleanup"))
        .cloned()
        .unwrap_or_default();
    let next = log["next_fire"].as_str().unwrap_or("");
    assert!(
        next.contains("T02:30:00"),
        "log-cleanup fires at 02:30 UTC, got {next:?}"
    );
}

#[test]
fn next_prints_fire_times_in_the_zone_with_offsets() {
    let out = untoil(&[
        "next",
        "0 9 * * 1-5",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-03-27T12:00:00Z",
        "-n",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "2026-03-30T09:00:00+02:00\n2026-03-31T09:00:00+02:00\n2026-04-01T09:00:00+02:00\n"
    );
}

#[test]
fn next_rejects_a_bad_expression_with_a_reason() {
    let out = untoil(&["next", "0 0 * * 8"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid schedule `0 0 * * 8`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn schema_is_a_json_schema_naming_every_top_level_field() {
    let out = untoil(&["schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        schema["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("json-schema.org"))
    );
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for field in [
        "name", "owner", "triggers", "guards", "params", "steps", "toil", "verify",
    ] {
        assert!(props.contains_key(field), "missing {field}");
    }
    let required = schema["required"].as_array().cloned().unwrap_or_default();
    assert!(required.contains(&serde_json::json!("name")));
}

#[test]
fn flags_have_environment_equivalents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_untoil"))
        .env("UNTOIL_RUNBOOKS", dir.path())
        .env("UNTOIL_DATA", dir.path().join("data"))
        .env_remove("UNTOIL_SERVER")
        .args(["list", "--format", "json"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "[]");
}

fn write_runbook(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(format!("{name}.yaml")), body).expect("write runbook");
}

fn untoil_in(runbooks: &Path, args: &[&str]) -> Output {
    let data = data_dir();
    Command::new(env!("CARGO_BIN_EXE_untoil"))
        .current_dir(root())
        .env("UNTOIL_DATA", data.path())
        // No daemon holds this fresh store: nothing to talk to.
        .env_remove("UNTOIL_SERVER")
        .env("UNTOIL_RUNBOOKS", runbooks)
        .env_remove("UNTOIL_PLUGINS")
        .args(args)
        .output()
        .expect("run untoil")
}

#[test]
fn run_streams_steps_and_exits_zero_on_success_one_on_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_runbook(
        dir.path(),
        "ok",
        "name: ok\nowner: me\ntoil: {manual_minutes: 3}\nparams: {who: {default: world}}\nsteps:\n  - name: greet\n    run: echo hello {{params.who}}\n",
    );
    write_runbook(
        dir.path(),
        "bad",
        "name: bad\nowner: me\ntoil: {manual_minutes: 3}\nsteps:\n  - name: boom\n    run: echo oops >&2; exit 7\n",
    );
    let out = untoil_in(dir.path(), &["run", "ok", "--param", "who=it's me"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("==> [1/1] greet: /bin/sh -c echo hello \"it's me\""),
        "{stdout}"
    );
    assert!(stdout.contains("    | hello it's me"), "{stdout}");
    assert!(stdout.contains("succeeded"), "{stdout}");
    assert!(stdout.contains("toil credited: 3 min"), "{stdout}");

    let out = untoil_in(dir.path(), &["run", "bad"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("    ! oops"), "{stdout}");
    assert!(stdout.contains("boom failed"), "{stdout}");
    assert!(stdout.contains("exit 7"), "{stdout}");
}

#[test]
fn run_dry_run_prints_what_would_run_and_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    write_runbook(
        dir.path(),
        "touch",
        &format!(
            "name: touch\nowner: me\ntoil: {{manual_minutes: 1}}\nsteps:\n  - name: t\n    run: touch {}\n",
            marker.display()
        ),
    );
    let out = untoil_in(dir.path(), &["run", "touch", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("/bin/sh -c touch {}", marker.display())));
    assert!(!marker.exists());
}

#[test]
fn run_with_an_alert_payload_runs_once_per_matching_alert() {
    let fixture = root().join("tests/fixtures/alertmanager/firing.json");
    assert!(
        fixture.exists(),
        "the Alertmanager fixtures must be beside the repo"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    write_runbook(
        dir.path(),
        "disk",
        "name: disk\nowner: me\ntoil: {manual_minutes: 1}\ntriggers: [{alert: {matchers: ['alertname=\"DiskFull\"']}}]\nsteps:\n  - name: show\n    run: echo {{alert.labels.instance}} {{alert.status}} $UNTOIL_ALERT_LABEL_SEVERITY $UNTOIL_ALERT_STATUS $UNTOIL_ALERT_FINGERPRINT\n",
    );
    let out = untoil_in(
        dir.path(),
        &["run", "disk", "--alert", &fixture.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("    | db-1 firing critical firing 1b821551d31d953a"),
        "{}",
        text(&out.stdout)
    );

    let resolved = root().join("tests/fixtures/alertmanager/resolved.json");
    let out = untoil_in(
        dir.path(),
        &["run", "disk", "--alert", &resolved.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no alert in"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_explains_unknown_runbooks_and_params() {
    let out = untoil(&["run", "log-cleanp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did you mean `log-cleanup`?"),
        "{}",
        text(&out.stderr)
    );
    let out = untoil(&["run", "log-cleanup", "--param", "dirr=/tmp", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("has no parameter `dirr` (did you mean `dir`?)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn plugins_lists_the_shipped_plugins_with_their_inputs() {
    let out = untoil(&["plugins"]);
    assert!(out.status.success());
    let table = text(&out.stdout);
    for name in ["slack-notify", "pagerduty-event", "http-check"] {
        assert!(table.contains(name), "{table}");
    }
    assert!(table.contains("webhook_url*"), "{table}");
}
