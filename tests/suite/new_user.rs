//! What a new user trips over (issue 15, CLI): what the CLI and the daemon say when driven by
//! hand, through a real `untoil serve` on loopback.

use std::process::Output;

use crate::common::{self, Dirs, serve};

/// `untoil ARGS` against the directories of `dirs` (and so the daemon holding its store).
fn untoil(dirs: &Dirs, args: &[&str]) -> Output {
    common::untoil_command(dirs)
        .args(args)
        .output()
        .expect("run untoil")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

#[test]
fn the_start_up_line_gives_the_dashboards_full_address() {
    let dirs = Dirs::new();
    let (mut served, base) = serve(&dirs);
    let line = served.wait_line(|l| l.contains("untoil listening on"));
    assert!(line.contains(&format!("dashboard at {base}/")), "{line}");
}

#[test]
fn an_empty_run_list_through_the_daemon_names_the_daemon_not_the_local_store() {
    let dirs = Dirs::new();
    let (_served, base) = serve(&dirs);
    let out = untoil(&dirs, &["runs"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("no runs recorded (daemon at {base})")),
        "{err}"
    );
    let data = dirs.path("data").display().to_string();
    assert!(!err.contains(&data), "{err}");
    let out = untoil(&dirs, &["runs", "--runbook", "nope", "--status", "failed"]);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "no runs of runbook `nope` with status failed (daemon at {base})"
        )),
        "{err}"
    );
}

/// A runbook on two matchers, one with a regex escape that the canonical form doubles.
const UNIT_FAILED: &str = r#"name: unit-failed
owner: team-a
toil: {manual_minutes: 5}
triggers:
  - alert:
      matchers: ['alertname="SystemdUnitFailed"', 'name=~".+\.service"']
steps:
  - name: s
    run: "true"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matchers_are_shown_all_of_them_as_the_author_wrote_them() {
    let dirs = Dirs::new();
    dirs.runbook("unit-failed", UNIT_FAILED);
    let both = r#"alert alertname="SystemdUnitFailed", name=~".+\.service""#;
    let out = untoil(&dirs, &["list"]);
    assert!(text(&out.stdout).contains(both), "{}", text(&out.stdout));
    let (_served, base) = serve(&dirs);
    let out = untoil(&dirs, &["list"]);
    assert!(text(&out.stdout).contains(both), "{}", text(&out.stdout));
    let http = common::Http::new(base);
    let (status, list) = http.get("/api/v1/runbooks").await;
    assert_eq!(status, 200);
    assert_eq!(
        list[0]["triggers"][0]["matchers"],
        serde_json::json!([r#"alertname="SystemdUnitFailed""#, r#"name=~".+\.service""#]),
        "{list}"
    );
    let (status, page) = http.text("/ui/runbooks").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"name=~&quot;.+\.service&quot;"#),
        "the runbooks page shows the matcher as written: {page}"
    );
}

/// An alert-triggered runbook with a cooldown per instance: the second alert of an instance is
/// skipped, with the cooldown as its reason.
const RESTART: &str = r#"name: restart
owner: team-a
toil: {manual_minutes: 5}
triggers:
  - alert:
      matchers: ['alertname="UnitFailed"']
guards:
  key: "{{alert.labels.instance}}"
  cooldown: 1h
steps:
  - name: restart-unit
    run: echo restarting {{alert.labels.instance}}
"#;

/// Polls the daemon's run list until `count` runs are final, and returns them.
async fn final_runs(http: &common::Http, count: usize) -> Vec<serde_json::Value> {
    common::until("the runs to end", || async {
        let (_, runs) = http.get("/api/v1/runs").await;
        let runs = runs.as_array().cloned().unwrap_or_default();
        let done = runs.iter().filter(|r| r["finished_at"].is_string()).count();
        (runs.len() == count && done == count).then_some(runs)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_the_instance_why_a_run_was_skipped_and_what_each_step_ran() {
    let dirs = Dirs::new();
    dirs.runbook("restart", RESTART);
    let (mut served, base) = serve(&dirs);
    let http = common::Http::new(base);
    let alert = |fingerprint: &str| {
        serde_json::json!({"status": "firing", "startsAt": "2026-12-01T10:00:00Z",
            "fingerprint": fingerprint, "annotations": {},
            "labels": {"alertname": "UnitFailed", "instance": "web-1:9100",
                       "note": "a\u{1b}[2Jb"}})
    };
    let (status, answer) = http
        .post(
            "/api/v1/alerts/alertmanager",
            serde_json::json!({"version": "4", "status": "firing", "receiver": "untoil",
                "groupKey": "g", "alerts": [alert("f1"), alert("f2")]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let runs = final_runs(&http, 2).await;
    let ran = runs
        .iter()
        .find(|r| r["status"] == "succeeded")
        .unwrap_or_else(|| panic!("one run succeeded: {runs:?}"));
    let id = ran["id"].as_str().unwrap_or_default().to_string();

    let out = untoil(&dirs, &["runs"]);
    let listed = text(&out.stdout);
    assert!(
        listed.contains("INSTANCE") && listed.contains("WHY SKIPPED"),
        "{listed}"
    );
    let skipped = listed
        .lines()
        .find(|l| l.contains("skipped"))
        .unwrap_or_else(|| panic!("a skipped run: {listed}"));
    assert!(
        skipped.contains("web-1:9100") && skipped.contains("cooldown: the last run"),
        "{skipped}"
    );
    let succeeded = listed
        .lines()
        .find(|l| l.contains("succeeded"))
        .unwrap_or_else(|| panic!("a succeeded run: {listed}"));
    assert!(succeeded.contains("web-1:9100"), "{succeeded}");

    let out = untoil(&dirs, &["runs", "show", &id]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("ran:\n        /bin/sh -c echo restarting web-1:9100"),
        "{shown}"
    );
    assert!(
        !shown.contains('\u{1b}'),
        "a label's escape reached the terminal: {shown}"
    );
    assert!(shown.contains(r"note=a\u{1b}[2Jb"), "{shown}");

    let (_, page) = http.text(&format!("/ui/runs/{id}")).await;
    assert!(
        page.contains("<pre class=\"output command\">/bin/sh -c echo restarting web-1:9100"),
        "{page}"
    );
    let (_, page) = http.text("/ui/runs").await;
    assert!(
        page.contains("<td class=\"instance\">web-1:9100</td>"),
        "{page}"
    );
    assert!(page.contains("cooldown: the last run"), "{page}");

    // The daemon's log line of the step's output names the step.
    let line = served.wait_line(|l| l.contains("restarting web-1:9100"));
    assert!(line.contains("step=restart-unit"), "{line}");
}

fn good(name: &str) -> String {
    format!(
        "name: {name}\nowner: team-a\ntoil: {{manual_minutes: 5}}\nsteps:\n  - name: s\n    run: \"true\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_what_the_daemon_runs_with_the_files_errors_beside_it() {
    let dirs = Dirs::new();
    dirs.runbook("kept", &good("kept"));
    dirs.runbook("edited", &good("edited"));
    let (served, base) = serve(&dirs);
    // A bad edit of a runbook in service, and a new file that never loads.
    dirs.runbook(
        "edited",
        &good("edited").replace("    run:", "    timeuot: 5s\n    run:"),
    );
    dirs.runbook("fresh", "name: fresh\nowner: team-a\nsteps: nope\n");
    let http = common::Http::new(base.clone());
    common::until("the daemon to see both broken files", || async {
        let (_, errors) = http.get("/api/v1/runbooks/errors").await;
        let text = errors.to_string();
        (text.contains("edited.yaml") && text.contains("fresh.yaml")).then_some(())
    })
    .await;

    let out = untoil(&dirs, &["list"]);
    let (listed, err) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        listed.contains("kept") && listed.contains("edited"),
        "the daemon still runs the last good version of `edited`: {listed}"
    );
    assert!(
        err.contains(&format!("2 files with errors: the daemon at {base}")),
        "{err}"
    );
    assert!(
        err.contains("edited.yaml: in service as its last good version: edited\n"),
        "{err}"
    );
    assert!(err.contains("unknown field `timeuot`"), "{err}");
    assert!(
        err.contains("fresh.yaml: nothing of it in service (it never loaded)\n"),
        "{err}"
    );
    let out = untoil(&dirs, &["list", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let edited = json
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "edited")
        .cloned()
        .unwrap_or_default();
    assert!(edited["errors"].as_u64() > Some(0), "{json}");

    // Without the daemon, the files: what loads, and every broken file's errors.
    drop(served);
    let out = untoil(&dirs, &["list"]);
    let (listed, err) = (text(&out.stdout), text(&out.stderr));
    assert!(
        listed.contains("kept") && !listed.contains("edited"),
        "{listed}"
    );
    assert!(
        err.contains("2 files with errors: their runbooks are not listed"),
        "{err}"
    );
    assert!(err.contains("unknown field `timeuot`"), "{err}");
    assert!(err.contains("fresh.yaml\n"), "{err}");
}

#[test]
fn a_retried_step_reports_its_whole_time_and_every_attempt_in_the_one_format() {
    let dirs = Dirs::new();
    // Nothing listens on the discard port: each attempt fails at once, the waits make the time.
    dirs.runbook(
        "down",
        "name: down\nowner: t\ntoil: {manual_minutes: 5}\nsteps:\n  - name: call\n    http: {url: \"http://127.0.0.1:9/\"}\n    retries: {attempts: 2, backoff: 600ms}\n",
    );
    let out = untoil(&dirs, &["run", "down"]);
    let printed = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    let seconds = regex::Regex::new(r"^\d+\.\d s$").expect("regex");
    let started = printed
        .lines()
        .find(|l| l.starts_with("run ") && l.ends_with(" of down (1 step)"))
        .unwrap_or_else(|| panic!("a start line with one step: {printed}"));
    let id = started
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let step = printed
        .lines()
        .find_map(|l| l.strip_prefix("<XX [1/1] call failed in "))
        .and_then(|l| l.split_once(" (3 attempts): request failed"))
        .map(|(took, _)| took)
        .unwrap_or_else(|| panic!("a failed step line with its attempts: {printed}"));
    assert!(
        seconds.is_match(step),
        "the waits between attempts count: {step}"
    );
    let summary = printed
        .lines()
        .find_map(|l| l.strip_prefix(&format!("run {id} failed in ")))
        .unwrap_or_else(|| panic!("a summary: {printed}"));
    assert!(
        summary
            .split(':')
            .next()
            .is_some_and(|d| seconds.is_match(d)),
        "{summary}"
    );

    let out = untoil(&dirs, &["runs", "show", &id]);
    let shown = text(&out.stdout);
    let step = shown
        .lines()
        .find_map(|l| l.strip_prefix("  [1] call (http) failed in "))
        .and_then(|l| l.strip_suffix(", 3 attempts"))
        .unwrap_or_else(|| panic!("the step in runs show: {shown}"));
    assert!(seconds.is_match(step), "{step}");
    let started = shown
        .lines()
        .find_map(|l| l.strip_prefix("started   "))
        .unwrap_or_default();
    assert!(
        regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
            .expect("regex")
            .is_match(started),
        "an instant to the second: {shown}"
    );
}

#[test]
fn a_steps_control_characters_never_reach_the_terminal_and_its_tabs_do() {
    let dirs = Dirs::new();
    dirs.runbook(
        "noisy",
        "name: noisy\nowner: t\ntoil: {manual_minutes: 5}\nsteps:\n  - name: s\n    run: printf 'a\\033[2Jb\\tc\\rd\\n'\n",
    );
    let out = untoil(&dirs, &["run", "noisy"]);
    let printed = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(!printed.contains(['\u{1b}', '\r']), "{printed:?}");
    assert!(printed.contains("| a\\u{1b}[2Jb\tc\\rd"), "{printed}");
    let id = printed
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    let out = untoil(&dirs, &["runs", "show", &id]);
    let shown = text(&out.stdout);
    assert!(!shown.contains(['\u{1b}', '\r']), "{shown:?}");
    assert!(shown.contains("        a\\u{1b}[2Jb\tc\\rd\n"), "{shown}");
}
