//! What a new user trips over (issue 15, CLI): what the CLI and the daemon say when driven by
//! hand, through a real `untoil serve` on loopback.

use std::process::Output;

use crate::common::{self, Dirs, Served};

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

/// `untoil serve` on an ephemeral loopback port, with its base URL.
fn serve(dirs: &Dirs) -> (Served, String) {
    let mut c = common::untoil_command(dirs);
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut served = Served::spawn(c);
    let base = served.base();
    (served, base)
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
