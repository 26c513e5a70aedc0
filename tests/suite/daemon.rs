//! The daemon driven over HTTP on 127.0.0.1: alert matching, dedupe across re-sends and
//! restarts, resolved semantics, auth, 400/401/413/503, hot reload with a broken file, graceful
//! shutdown, schedule firing, the unautomated report.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Dirs, Running, fixture};
use serde_json::{Value, json};
use untoil::run::id::RunId;
use untoil::run::status::RunStatus;
use untoil::server::auth::Auth;
use untoil::store::Store;
use untoil::store::sled::SledStore;

const DISK: &str = "name: disk\nowner: team-db\ntoil: {manual_minutes: 20}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\nverify: {alert_resolves_within: 1h}\nsteps:\n  - name: fix\n    run: echo fixing {{alert.labels.instance}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_runs_its_runbook_once_across_resends_and_restarts() {
    let dirs = Dirs::new();
    dirs.runbook("disk", DISK);
    let d = Running::start(dirs.settings()).await;
    let (status, body, _) = d
        .post("/api/v1/alerts/alertmanager", fixture("firing.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"].as_array().map(Vec::len), Some(1));
    for _ in 0..3 {
        let (status, body, _) = d
            .post("/api/v1/alerts/alertmanager", fixture("firing.json"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["duplicates"], 1, "{body}");
    }
    let runs = d.wait_runs_final(1).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["steps"][0]["stdout"], "fixing db-1\n");
    assert_eq!(runs[0]["cause"]["fingerprint"], "1b821551d31d953a");
    d.stop().await;

    // The dedupe record survives a restart.
    let d = Running::start(dirs.settings()).await;
    let (status, body, _) = d
        .post("/api/v1/alerts/alertmanager", fixture("firing.json"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["duplicates"], 1, "{body}");
    assert_eq!(d.runs().await.len(), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_alert_never_runs_a_firing_trigger_and_verifies_the_fix() {
    let dirs = Dirs::new();
    dirs.runbook("disk", DISK);
    dirs.runbook(
        "after",
        "name: after\nowner: team-db\ntoil: {manual_minutes: 1}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"'], on: resolved}\nsteps:\n  - name: note\n    run: echo resolved {{alert.status}}\n",
    );
    let d = Running::start(dirs.settings()).await;
    assert_eq!(
        d.post("/api/v1/alerts/alertmanager", fixture("firing.json"))
            .await
            .0,
        200
    );
    d.wait_runs_final(1).await;
    let (status, body, _) = d
        .post("/api/v1/alerts/alertmanager", crate::common::resolved_now())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["accepted"].as_array().map(Vec::len),
        Some(1),
        "only the `on: resolved` runbook runs: {body}"
    );
    assert_eq!(body["verified"], 1, "{body}");
    let runs = d.wait_runs_final(2).await;
    let disk: Vec<&Value> = runs.iter().filter(|r| r["runbook"] == "disk").collect();
    assert_eq!(disk.len(), 1, "the remediation did not run again");
    assert_eq!(disk[0]["verification"]["verified"], true);
    let after: Vec<&Value> = runs.iter().filter(|r| r["runbook"] == "after").collect();
    assert_eq!(after[0]["steps"][0]["stdout"], "resolved resolved\n");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_notifications_run_once_per_alert_and_unmatched_alerts_feed_the_backlog() {
    let dirs = Dirs::new();
    dirs.runbook(
        "latency",
        "name: latency\nowner: team-api\ntoil: {manual_minutes: 5}\ntriggers:\n  - alert: {matchers: ['alertname=\"HighLatency\"', 'instance!=\"inst-3\"']}\nsteps:\n  - name: s\n    run: echo {{alert.labels.instance}}\n",
    );
    let d = Running::start(dirs.settings()).await;
    let (status, body, _) = d
        .post(
            "/api/v1/alerts/alertmanager",
            fixture("firing-grouped.json"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["accepted"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(body["unmatched"], 1);
    let (status, _, _) = d
        .post("/api/v1/alerts/alertmanager", fixture("firing.json"))
        .await;
    assert_eq!(status, 200);
    d.wait_runs_final(2).await;
    let (_, backlog) = d.get("/api/v1/reports/unautomated").await;
    let rows = backlog["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{backlog}");
    assert_eq!(backlog["alerts_received"], 4);
    assert_eq!(backlog["alerts_handled"], 2);
    let (_, toil) = d.get("/api/v1/reports/toil?by=runbook").await;
    assert_eq!(toil["total"]["runs"], 2);
    assert_eq!(toil["total"]["toil_minutes"], 10.0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_answers() {
    let dirs = Dirs::new();
    dirs.runbook("disk", DISK);
    let mut s = dirs.settings();
    s.body_limit = 64 * 1024;
    let d = Running::start(s).await;
    let (status, body, _) = d
        .post(
            "/api/v1/alerts/alertmanager",
            b"{\"version\":\"4\",".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("line 1")),
        "{body}"
    );
    let (status, body, _) = d
        .post(
            "/api/v1/alerts/alertmanager",
            br#"{"version":"3","status":"firing","alerts":[]}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("version")),
        "{body}"
    );
    let (status, _, _) = d
        .post("/api/v1/alerts/alertmanager", vec![b' '; 100 * 1024])
        .await;
    assert_eq!(status, 413);
    let (status, body, _) = d.post("/api/v1/runbooks/nosuch/runs", b"{}".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no runbook named")),
        "{body}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_when_configured() {
    let dirs = Dirs::new();
    dirs.runbook("disk", DISK);
    let mut s = dirs.settings();
    s.auth = Auth::new(
        vec!["s3cret".into()],
        vec![("alertmanager".into(), "pw".into())],
    );
    let d = Running::start(s).await;
    assert_eq!(
        d.get("/healthz").await.0,
        200,
        "health needs no credentials"
    );
    let (status, _, headers) = d
        .post("/api/v1/alerts/alertmanager", fixture("firing.json"))
        .await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = d
        .post_with(
            "/api/v1/alerts/alertmanager",
            fixture("firing.json"),
            Some("Bearer wrong"),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _, _) = d
        .post_with(
            "/api/v1/alerts/alertmanager",
            fixture("firing.json"),
            Some("Bearer s3cret"),
        )
        .await;
    assert_eq!(status, 200);
    // alertmanager:pw
    let (status, _, _) = d
        .post_with(
            "/api/v1/alerts/alertmanager",
            fixture("firing.json"),
            Some("Basic YWxlcnRtYW5hZ2VyOnB3"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(d.get("/api/v1/runs").await.0, 401);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_and_nothing_is_lost() {
    let dirs = Dirs::new();
    dirs.runbook(
        "slow",
        "name: slow\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\nsteps:\n  - name: s\n    run: sleep 1\n",
    );
    let mut s = dirs.settings();
    s.workers = 1;
    s.queue_capacity = 1;
    let d = Running::start(s).await;
    let body = |i: usize| {
        let mut v: Value = serde_json::from_slice(&fixture("firing.json")).expect("json");
        v["alerts"][0]["fingerprint"] = json!(format!("fp{i}"));
        serde_json::to_vec(&v).expect("json")
    };
    let mut accepted = 0;
    let mut rejected = 0;
    for i in 0..6 {
        let (status, _, headers) = d.post("/api/v1/alerts/alertmanager", body(i)).await;
        match status {
            200 => accepted += 1,
            503 => {
                rejected += 1;
                assert_eq!(
                    headers.get("retry-after").and_then(|v| v.to_str().ok()),
                    Some("5")
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(rejected > 0, "the queue of 1 must overflow");
    let runs = d.wait_runs_final(accepted).await;
    assert_eq!(runs.len(), accepted, "every accepted alert ran, none else");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_keeps_its_last_good_version_and_reports_its_errors() {
    let dirs = Dirs::new();
    dirs.runbook("disk", DISK);
    let d = Running::start(dirs.settings()).await;
    assert_eq!(d.get("/api/v1/runbooks/disk").await.0, 200);
    dirs.runbook("disk", &DISK.replace("owner:", "ownr:"));
    d.wait_for(|| async {
        let (_, e) = d.get("/api/v1/runbooks/errors").await;
        e["text"]
            .as_str()
            .is_some_and(|t| t.contains("unknown field `ownr`"))
    })
    .await;
    let (status, rb) = d.get("/api/v1/runbooks/disk").await;
    assert_eq!(status, 200, "the last good version stays in service");
    assert_eq!(rb["errors"], 1);
    assert_eq!(
        d.post("/api/v1/alerts/alertmanager", fixture("firing.json"))
            .await
            .1["accepted"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // A new runbook appears without a restart; the fixed file clears the errors.
    dirs.runbook("disk", DISK);
    dirs.runbook("extra", &DISK.replace("name: disk", "name: extra"));
    d.wait_for(|| async {
        let (_, e) = d.get("/api/v1/runbooks/errors").await;
        d.get("/api/v1/runbooks/extra").await.0 == 200
            && e["diagnostics"].as_array().is_some_and(|a| a.is_empty())
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_runs_past_the_grace_period_and_keeps_queued_ones() {
    let dirs = Dirs::new();
    dirs.runbook(
        "long",
        "name: long\nowner: t\ntoil: {manual_minutes: 1}\nsteps:\n  - name: wait\n    run: sleep 1000005\n",
    );
    let mut s = dirs.settings();
    s.workers = 1;
    s.shutdown_grace = Duration::from_millis(300);
    let d = Running::start(s).await;
    let (_, first, _) = d.post("/api/v1/runbooks/long/runs", b"{}".to_vec()).await;
    let (_, second, _) = d.post("/api/v1/runbooks/long/runs", b"{}".to_vec()).await;
    let first = RunId(first["id"].as_str().unwrap_or_default().to_string());
    let second = RunId(second["id"].as_str().unwrap_or_default().to_string());
    d.wait_for(|| async { d.get(&format!("/api/v1/runs/{first}")).await.1["status"] == "running" })
        .await;
    d.stop().await;
    let store = SledStore::open(&dirs.path("data")).expect("store");
    let r1 = store.get_run(&first).await.expect("get").expect("first");
    assert_eq!(r1.status, RunStatus::Interrupted, "{:?}", r1.error);
    let r2 = store.get_run(&second).await.expect("get").expect("second");
    assert_eq!(
        r2.status,
        RunStatus::Queued,
        "queued runs stay queued for the next start"
    );
    drop(store);
    // The next start resumes it.
    let d = Running::start(dirs.settings()).await;
    d.wait_for(|| async {
        d.get(&format!("/api/v1/runs/{second}")).await.1["status"] == "running"
    })
    .await;
    assert!(
        d.post(&format!("/api/v1/runs/{second}/cancel"), vec![])
            .await
            .0
            == 202
    );
    d.wait_for(|| async {
        d.get(&format!("/api/v1/runs/{second}")).await.1["status"] == "cancelled"
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_on_time_and_a_restart_never_repeats_a_fire() {
    let dirs = Dirs::new();
    dirs.runbook(
        "tick",
        "name: tick\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - schedule: \"* * * * * *\"\nsteps:\n  - name: s\n    run: \"true\"\n",
    );
    let d = Running::start(dirs.settings()).await;
    d.wait_for(|| async { d.runs().await.len() >= 2 }).await;
    d.stop().await;
    let d = Running::start(dirs.settings()).await;
    d.wait_for(|| async { d.runs().await.len() >= 4 }).await;
    d.stop().await;
    let store = Arc::new(SledStore::open(&dirs.path("data")).expect("store"));
    let runs = store.list_runs(&Default::default()).await.expect("runs");
    let mut fires: Vec<String> = runs
        .iter()
        .filter_map(|r| match &r.cause {
            untoil::run::cause::Cause::Schedule { at } => Some(at.to_rfc3339()),
            _ => None,
        })
        .collect();
    let n = fires.len();
    fires.sort();
    fires.dedup();
    assert_eq!(fires.len(), n, "a fire ran twice");
    for r in &runs {
        if let (untoil::run::cause::Cause::Schedule { at }, Some(created)) =
            (&r.cause, Some(r.created_at))
        {
            let late = (created - *at).num_milliseconds();
            // Late by scheduling only (a loaded 2-core machine); lateness itself is measured by
            // benches/schedule-lateness.sh, not here.
            assert!((0..5000).contains(&late), "fire {at} queued {late} ms late");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_run_can_be_followed_to_its_end() {
    let dirs = Dirs::new();
    dirs.runbook(
        "hello",
        "name: hello\nowner: t\ntoil: {manual_minutes: 1}\nparams: {who: {default: x}}\nsteps:\n  - name: a\n    run: sleep 0.3; echo hi {{params.who}}\n",
    );
    let d = Running::start(dirs.settings()).await;
    let (status, body, _) = d
        .post(
            "/api/v1/runbooks/hello/runs",
            br#"{"params":{"who":"you"}}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let events = d.events(&id).await;
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["event"], "run_finished", "{events:?}");
    assert_eq!(last["record"]["status"], "succeeded");
    assert_eq!(last["record"]["steps"][0]["stdout"], "hi you\n");
    let (status, body, _) = d
        .post(
            "/api/v1/runbooks/hello/runs",
            br#"{"params":{"whom":"you"}}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("did you mean `who`")),
        "{body}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_go_through_the_daemon_while_it_holds_the_store() {
    let dirs = Dirs::new();
    dirs.runbook(
        "hello",
        "name: hello\nowner: team-x\ntoil: {manual_minutes: 2}\nparams: {who: {default: x}}\nsteps:\n  - name: a\n    run: echo hi {{params.who}}\n",
    );
    let d = Running::start(dirs.settings()).await;
    // No --server: the CLI finds the daemon by the address it left in the store's directory.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_untoil"))
            .env_remove("UNTOIL_SERVER")
            .env("UNTOIL_DATA", dirs.path("data"))
            .env("UNTOIL_RUNBOOKS", dirs.path("runbooks"))
            .args(args)
            .output()
            .expect("run the CLI")
    };
    let out = tokio::task::block_in_place(|| cli(&["run", "hello", "-p", "who=daemon"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[1/1] a"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("queued on the daemon at {}", d.base)),
        "{out:?}"
    );
    assert!(stdout.contains("| hi daemon"), "{stdout}");
    let out = tokio::task::block_in_place(|| cli(&["runs"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello"),
        "{out:?}"
    );
    let out = tokio::task::block_in_place(|| cli(&["report", "--format", "json"]));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report json");
    assert_eq!(report["total"]["runs"], 1);
    assert_eq!(report["total"]["toil_minutes"], 2.0);
    let out = tokio::task::block_in_place(|| cli(&["cancel", "01NOSUCHRUN"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no run with id"),
        "{out:?}"
    );
    let out = tokio::task::block_in_place(|| cli(&["list", "--format", "json"]));
    let list: Value = serde_json::from_slice(&out.stdout).expect("list json");
    assert_eq!(list[0]["name"], "hello", "{list}");
    d.stop().await;
    // Stopped: its address is gone, and the CLI opens the store itself.
    assert!(!dirs.path("data").join("daemon.json").exists());
    let out = tokio::task::block_in_place(|| cli(&["runs", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let runs: Value = serde_json::from_slice(&out.stdout).expect("runs json");
    assert_eq!(runs.as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_never_uses_a_daemon_of_another_store_nor_falls_back_when_one_is_named() {
    let (a, b) = (Dirs::new(), Dirs::new());
    for dirs in [&a, &b] {
        dirs.runbook(
            "hello",
            "name: hello\nowner: team-x\ntoil: {manual_minutes: 2}\nsteps:\n  - name: a\n    run: echo hi\n",
        );
    }
    let da = Running::start(a.settings()).await;
    let db = Running::start(b.settings()).await;
    let cli = |data: &Path, server: Option<&str>, args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_untoil"));
        c.env_remove("UNTOIL_SERVER")
            .env("UNTOIL_DATA", data)
            .env("UNTOIL_RUNBOOKS", a.path("runbooks"));
        if let Some(s) = server {
            c.env("UNTOIL_SERVER", s);
        }
        c.args(args).output().expect("run the CLI")
    };
    // A daemon named with --server that serves another store than --data's is refused.
    let out =
        tokio::task::block_in_place(|| cli(&a.path("data"), Some(&db.base), &["run", "hello"]));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("serves another store"), "{err}");
    // A --server that does not answer is an error, never a foreground run.
    let out = tokio::task::block_in_place(|| {
        cli(
            &a.path("data"),
            Some("http://127.0.0.1:9"),
            &["run", "hello"],
        )
    });
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no daemon answers at http://127.0.0.1:9"),
        "{err}"
    );
    // The address left in a store's directory that another store's daemon now answers at (the
    // first daemon moved away) is refused too.
    let location = std::fs::read_to_string(a.path("data").join("daemon.json")).expect("address");
    let moved = location.replace(&da.base, &db.base);
    std::fs::write(a.path("data").join("daemon.json"), moved).expect("write");
    let out = tokio::task::block_in_place(|| cli(&a.path("data"), None, &["runs"]));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("serves another store"), "{err}");
    std::fs::write(a.path("data").join("daemon.json"), location).expect("write");
    assert_eq!(
        tokio::task::block_in_place(|| cli(&a.path("data"), None, &["runs"]))
            .status
            .code(),
        Some(0)
    );
    // Nothing ran anywhere.
    assert!(da.runs().await.is_empty());
    assert!(db.runs().await.is_empty());
    da.stop().await;
    db.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_added_while_running_starts_firing_without_a_restart() {
    let dirs = Dirs::new();
    dirs.runbook("disk", DISK);
    let d = Running::start(dirs.settings()).await;
    dirs.runbook(
        "tick",
        "name: tick\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - schedule: \"* * * * * *\"\nsteps:\n  - name: s\n    run: \"true\"\n",
    );
    d.wait_for(|| async {
        d.runs()
            .await
            .iter()
            .any(|r| r["runbook"] == "tick" && r["cause"]["kind"] == "schedule")
    })
    .await;
    d.stop().await;
}

/// What a dashboard page shows of its run, and the stamp it was rendered with.
fn stamp_and_content(html: &str) -> (String, String) {
    let attr = |name: &str| {
        html.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string()
    };
    let steps = html.matches("<tr data-step=").count();
    (
        attr("data-stamp"),
        format!("{} with {steps} steps", attr("data-status")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_page_is_never_stamped_newer_than_what_it_shows() {
    let dirs = Dirs::new();
    let steps: String = (0..3)
        .map(|i| format!("  - name: s{i}\n    run: sleep 0.02\n"))
        .collect();
    dirs.runbook(
        "steps",
        &format!("name: steps\nowner: t\ntoil: {{manual_minutes: 1}}\nsteps:\n{steps}"),
    );
    let d = Running::start(dirs.settings()).await;
    // The page's script refreshes only when /ui/stamp differs from the page's stamp: a page
    // stamped after a change it does not show would stay stale for good. Each run ends once, so
    // several runs give the race several chances.
    let mut pages = 0;
    for _ in 0..15 {
        let (status, body, _) = d.post("/api/v1/runbooks/steps/runs", b"{}".to_vec()).await;
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_str().unwrap_or_default().to_string();
        let mut seen: Vec<(String, String)> = Vec::new();
        loop {
            let (_, page) = d.get(&format!("/ui/runs/{id}")).await;
            let page = stamp_and_content(page.as_str().unwrap_or_default());
            let done = page.1.starts_with("succeeded");
            seen.push(page);
            if done {
                break;
            }
            assert!(seen.len() < 20_000, "the run never finished: {seen:?}");
        }
        // Nothing changes any more: a page fetched now carries the finished run's stamp, the
        // one its script polls.
        let (_, page) = d.get(&format!("/ui/runs/{id}")).await;
        let (last, finished) = stamp_and_content(page.as_str().unwrap_or_default());
        assert!(finished.starts_with("succeeded"), "{finished}");
        for (stamp, content) in &seen {
            assert!(
                stamp != &last || content == &finished,
                "a page shows `{content}` but carries the stamp of the finished run ({stamp}), so it would never refresh"
            );
        }
        let (_, polled) = d.get(&format!("/ui/stamp?run={id}")).await;
        assert_eq!(
            polled.as_str(),
            Some(last.as_str()),
            "what the run page's script polls matches the finished run's page"
        );
        pages += seen.len();
    }
    assert!(
        pages > 30,
        "pages were fetched while the runs went on: {pages}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_followed_after_it_ended_replays_its_steps_and_output() {
    let dirs = Dirs::new();
    dirs.runbook(
        "two",
        "name: two\nowner: t\ntoil: {manual_minutes: 1}\nsteps:\n  - name: a\n    run: echo one; echo two >&2\n  - name: b\n    when: 'false'\n    run: echo never\n",
    );
    let d = Running::start(dirs.settings()).await;
    let (status, body, _) = d.post("/api/v1/runbooks/two/runs", b"{}".to_vec()).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap_or_default().to_string();
    d.wait_runs_final(1).await;
    d.stop().await;
    // A new daemon never saw the run live: what it streams comes from the record.
    let d = Running::start(dirs.settings()).await;
    let events = d.events(&id).await;
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            let name = e["name"].as_str().or(e["stream"].as_str()).unwrap_or("");
            format!("{} {name}", e["event"].as_str().unwrap_or("?"))
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started ",
            "step_started a",
            "output stdout",
            "output stderr",
            "step_finished ",
            "step_finished ",
            "run_finished ",
        ],
        "{events:?}"
    );
    assert_eq!(events[2]["line"], "one");
    assert_eq!(events[3]["line"], "two");
    assert_eq!(events[5]["result"]["status"], "skipped", "{events:?}");
    assert_eq!(events[6]["record"]["status"], "succeeded");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_page_refreshes_for_its_run_even_after_fifty_newer_runs() {
    let dirs = Dirs::new();
    let gate = dirs.path("gate");
    dirs.runbook(
        "slow",
        &format!(
            "name: slow\nowner: t\ntoil: {{manual_minutes: 1}}\nsteps:\n  - name: wait\n    run: while [ ! -e {} ]; do sleep 0.02; done\n",
            gate.display()
        ),
    );
    dirs.runbook(
        "quick",
        "name: quick\nowner: t\ntoil: {manual_minutes: 1}\nsteps:\n  - name: q\n    run: \"true\"\n",
    );
    let d = Running::start(dirs.settings()).await;
    let (_, body, _) = d.post("/api/v1/runbooks/slow/runs", b"{}".to_vec()).await;
    let id = body["id"].as_str().unwrap_or_default().to_string();
    for _ in 0..55 {
        let (status, body, _) = d.post("/api/v1/runbooks/quick/runs", b"{}".to_vec()).await;
        assert_eq!(status, 202, "{body}");
    }
    d.wait_for(|| async {
        d.runs()
            .await
            .iter()
            .filter(|r| r["runbook"] == "quick" && r["status"] == "succeeded")
            .count()
            == 55
    })
    .await;
    let stamp = |q: String| {
        let d = &d;
        async move { d.get(&format!("/ui/stamp{q}")).await.1 }
    };
    let (all_before, run_before) = (
        stamp(String::new()).await,
        stamp(format!("?run={id}")).await,
    );
    std::fs::write(&gate, b"").expect("gate");
    d.wait_for(|| async { d.get(&format!("/api/v1/runs/{id}")).await.1["status"] == "succeeded" })
        .await;
    // The run is older than the latest 50 the plain stamp covers; its page's stamp still moves.
    assert_eq!(stamp(String::new()).await, all_before);
    assert_ne!(stamp(format!("?run={id}")).await, run_before);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifty_run_list_stays_small_while_each_run_keeps_its_900_kb_annotation() {
    let dirs = Dirs::new();
    dirs.runbook("disk", DISK);
    let d = Running::start(dirs.settings()).await;
    // One notification of 50 alerts sharing a 900 KB annotation: each run's record keeps its
    // notification, which the list used to copy 50 times (a 45 MB answer).
    let big = "x".repeat(900 * 1024);
    let mut body: Value = serde_json::from_slice(&fixture("firing.json")).expect("fixture");
    let alert = body["alerts"][0].clone();
    body["alerts"] = Value::Array(
        (0..50)
            .map(|i| {
                let mut a = alert.clone();
                a["fingerprint"] = json!(format!("big{i:04}"));
                a["labels"]["instance"] = json!(format!("db-{i}"));
                a
            })
            .collect(),
    );
    // A label value far over the summary's cap: the list cuts it, the record keeps it.
    body["alerts"][0]["labels"]["long"] = json!("y".repeat(5000));
    body["commonAnnotations"]["big"] = json!(big);
    let (status, answer, _) = d
        .post(
            "/api/v1/alerts/alertmanager",
            serde_json::to_vec(&body).expect("body"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"].as_array().map(Vec::len), Some(50));
    // Every run's record holds the notification from its admission on, so the list is measured
    // now: waiting for 50 rewrites of 900 KB records each is what issue 16 is about.
    let list = d
        .client
        .get(format!("{}/api/v1/runs?limit=50", d.base))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("list body");
    assert!(
        list.len() < 1024 * 1024,
        "a 50-run list is {} bytes",
        list.len()
    );
    let runs: Vec<Value> = serde_json::from_str(&list).expect("list JSON");
    assert_eq!(runs.len(), 50);
    let capped = runs
        .iter()
        .find(|r| r["cause"]["fingerprint"] == "big0000")
        .expect("the run with the long label");
    let long = capped["cause"]["labels"]["long"]
        .as_str()
        .expect("long label");
    assert!(long.len() < 2048 && long.contains("truncated"), "{long}");
    assert_eq!(capped["alertname"], "DiskFull");
    assert!(
        capped.get("alert").is_none(),
        "no notification in a summary"
    );

    let url = capped["url"].as_str().expect("url");
    let (status, run) = d.get(url).await;
    assert_eq!(status, 200);
    assert_eq!(
        run["alert"]["notification"]["commonAnnotations"]["big"]
            .as_str()
            .map(str::len),
        Some(big.len()),
        "the record keeps the annotation"
    );
    assert_eq!(
        run["cause"]["labels"]["long"].as_str().map(str::len),
        Some(5000)
    );
    d.stop().await;
}
