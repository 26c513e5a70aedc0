//! Guards, approvals and metrics over HTTP: cooldown, max_runs and failure breakers (and their
//! reset), overlap policies, approve/deny/expire (and a restart while pending), and a
//! `/metrics` scrape parsed as Prometheus text whose counters move as runs happen.

use crate::common;

use common::{Dirs, Running, fixture, sample, scrape};
use serde_json::{Value, json};

/// A webhook body with one firing alert of this fingerprint and instance.
fn alert(fingerprint: &str, instance: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("firing.json")).expect("fixture json");
    v["alerts"][0]["fingerprint"] = json!(fingerprint);
    v["alerts"][0]["labels"]["instance"] = json!(instance);
    serde_json::to_vec(&v).expect("json")
}

fn runbook(guards: &str, step: &str) -> String {
    format!(
        "name: g\nowner: team-g\ntoil: {{manual_minutes: 10, approval_minutes: 2}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nguards:\n{guards}\nsteps:\n  - name: s\n    run: {step}\n"
    )
}

async fn post_alert(d: &Running, fp: &str, instance: &str) -> Value {
    let (status, body, _) = d
        .post("/api/v1/alerts/alertmanager", alert(fp, instance))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn run_of(d: &Running, body: &Value) -> Value {
    let id = body["accepted"][0].as_str().unwrap_or_default().to_string();
    d.wait_for(|| async {
        let (_, r) = d.get(&format!("/api/v1/runs/{id}")).await;
        !matches!(r["status"].as_str(), Some("queued" | "running"))
    })
    .await;
    d.get(&format!("/api/v1/runs/{id}")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldown_is_per_key_and_skipped_triggers_are_listed_with_their_reason() {
    let dirs = Dirs::new();
    dirs.runbook(
        "g",
        &runbook(
            "  key: \"{{alert.labels.instance}}\"\n  cooldown: 1h",
            "\"true\"",
        ),
    );
    let d = Running::start(dirs.settings()).await;
    assert_eq!(
        run_of(&d, &post_alert(&d, "a1", "db-1").await).await["status"],
        "succeeded"
    );
    let second = run_of(&d, &post_alert(&d, "a2", "db-1").await).await;
    assert_eq!(second["status"], "skipped");
    assert!(
        second["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("cooldown")),
        "{second}"
    );
    assert_eq!(second["guard_key"], "db-1");
    assert_eq!(
        run_of(&d, &post_alert(&d, "a3", "db-2").await).await["status"],
        "succeeded",
        "another key"
    );
    let (_, skipped) = d.get("/api/v1/runs?status=skipped").await;
    assert_eq!(skipped.as_array().map(Vec::len), Some(1));
    d.stop().await;

    // The cooldown survives a restart.
    let d = Running::start(dirs.settings()).await;
    assert_eq!(
        run_of(&d, &post_alert(&d, "a4", "db-1").await).await["status"],
        "skipped"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runs_opens_the_breaker_until_it_is_reset() {
    let dirs = Dirs::new();
    dirs.runbook("g", &runbook("  max_runs: {count: 2, per: 1h}", "\"true\""));
    let d = Running::start(dirs.settings()).await;
    for fp in ["b1", "b2"] {
        assert_eq!(
            run_of(&d, &post_alert(&d, fp, "x").await).await["status"],
            "succeeded"
        );
    }
    let third = run_of(&d, &post_alert(&d, "b3", "x").await).await;
    assert!(
        third["error"]
            .as_str()
            .is_some_and(|e| e.contains("breaker opened: more than 2 runs within 1h")),
        "{third}"
    );
    let (_, breakers) = d.get("/api/v1/breakers").await;
    assert_eq!(breakers[0]["open"], true, "{breakers}");
    d.stop().await;
    // An open breaker survives a restart, and a reset closes it.
    let d = Running::start(dirs.settings()).await;
    let fourth = run_of(&d, &post_alert(&d, "b4", "x").await).await;
    assert!(
        fourth["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("circuit breaker open")),
        "{fourth}"
    );
    let (status, body, _) = d.post("/api/v1/breakers/g/reset", b"{}".to_vec()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        run_of(&d, &post_alert(&d, "b5", "x").await).await["status"],
        "succeeded"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_trip_the_breaker() {
    let dirs = Dirs::new();
    dirs.runbook("g", &runbook("  trip_after_failures: 2", "exit 1"));
    let d = Running::start(dirs.settings()).await;
    for fp in ["c1", "c2"] {
        assert_eq!(
            run_of(&d, &post_alert(&d, fp, "x").await).await["status"],
            "failed"
        );
    }
    let third = run_of(&d, &post_alert(&d, "c3", "x").await).await;
    assert!(
        third["error"]
            .as_str()
            .is_some_and(|e| e.contains("2 consecutive failures")),
        "{third}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_and_cancel_previous_apply_at_the_concurrency_limit() {
    let dirs = Dirs::new();
    dirs.runbook(
        "g",
        &runbook("  concurrency: 1\n  overlap: skip", "sleep 1000006"),
    );
    let d = Running::start(dirs.settings()).await;
    let first = post_alert(&d, "d1", "x").await;
    let id1 = first["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    d.wait_for(|| async { d.get(&format!("/api/v1/runs/{id1}")).await.1["status"] == "running" })
        .await;
    let second = run_of(&d, &post_alert(&d, "d2", "x").await).await;
    assert!(
        second["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("overlap")),
        "{second}"
    );
    assert_eq!(
        d.post(&format!("/api/v1/runs/{id1}/cancel"), vec![])
            .await
            .0,
        202
    );
    d.stop().await;

    dirs.runbook(
        "g",
        &runbook(
            "  concurrency: 1\n  overlap: cancel_previous",
            "sleep 1000006",
        ),
    );
    let d = Running::start(dirs.settings()).await;
    let first = post_alert(&d, "e1", "x").await;
    let id1 = first["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    d.wait_for(|| async { d.get(&format!("/api/v1/runs/{id1}")).await.1["status"] == "running" })
        .await;
    let second = post_alert(&d, "e2", "x").await;
    let id2 = second["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    d.wait_for(|| async { d.get(&format!("/api/v1/runs/{id1}")).await.1["status"] == "cancelled" })
        .await;
    d.wait_for(|| async { d.get(&format!("/api/v1/runs/{id2}")).await.1["status"] == "running" })
        .await;
    assert_eq!(
        d.post(&format!("/api/v1/runs/{id2}/cancel"), vec![])
            .await
            .0,
        202
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_gate_runs_and_survive_a_restart() {
    let dirs = Dirs::new();
    dirs.runbook(
        "g",
        &runbook(
            "  approval: required\n  approval_timeout: 1h",
            "echo approved-run",
        ),
    );
    let d = Running::start(dirs.settings()).await;
    let pending = post_alert(&d, "f1", "x").await;
    let id = pending["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["status"], "pending_approval");
    let (_, approvals) = d.get("/api/v1/approvals").await;
    assert_eq!(approvals[0]["run"]["id"], id.as_str());
    assert!(
        approvals[0]["plan"][0]["detail"]
            .as_str()
            .is_some_and(|p| p.contains("echo approved-run")),
        "{approvals}"
    );
    d.stop().await;

    // Still pending after a restart; approving runs it and credits toil minus the approval cost.
    let d = Running::start(dirs.settings()).await;
    assert_eq!(
        d.get(&format!("/api/v1/runs/{id}")).await.1["status"],
        "pending_approval"
    );
    let (status, body, _) = d
        .post(
            &format!("/api/v1/runs/{id}/approve"),
            br#"{"by":"alice"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    d.wait_for(|| async { d.get(&format!("/api/v1/runs/{id}")).await.1["status"] == "succeeded" })
        .await;
    let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
    // Without authentication the principal is `anonymous`; the body's `by` is only a claim.
    assert_eq!(run["approval"]["by"], "anonymous");
    assert_eq!(run["approval"]["claimed_by"], "alice");
    assert_eq!(run["toil"]["minutes"], 8.0);
    let (status, _, _) = d.post(&format!("/api/v1/runs/{id}/approve"), vec![]).await;
    assert_eq!(status, 409, "a decided run cannot be approved again");

    let denied = post_alert(&d, "f2", "x").await;
    let id2 = denied["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (_, body, _) = d
        .post(
            &format!("/api/v1/runs/{id2}/deny"),
            br#"{"by":"bob"}"#.to_vec(),
        )
        .await;
    assert_eq!(body["status"], "skipped");
    assert_eq!(body["error"], "denied by anonymous (claimed: bob)");
    d.stop().await;

    dirs.runbook(
        "g",
        &runbook("  approval: required\n  approval_timeout: 1s", "echo never"),
    );
    let d = Running::start(dirs.settings()).await;
    let expiring = post_alert(&d, "f3", "x").await;
    let id3 = expiring["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    d.wait_for(|| async {
        d.get(&format!("/api/v1/runs/{id3}")).await.1["error"] == "approval expired"
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_and_move_as_runs_happen() {
    let dirs = Dirs::new();
    dirs.runbook("g", &runbook("  cooldown: 0s", "\"true\""));
    let d = Running::start(dirs.settings()).await;
    let before = scrape(&d).await;
    assert_eq!(sample(&before, "untoil_runs_total", None), 0.0);
    run_of(&d, &post_alert(&d, "m1", "x").await).await;
    post_alert(&d, "m1", "x").await; // a duplicate
    let (status, _, _) = d
        .post(
            "/api/v1/alerts/alertmanager",
            fixture("firing-grouped.json"),
        )
        .await;
    assert_eq!(status, 200);
    let after = scrape(&d).await;
    assert_eq!(
        sample(&after, "untoil_runs_total", Some(("status", "succeeded"))),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "untoil_toil_saved_seconds_total",
            Some(("team", "team-g"))
        ),
        600.0
    );
    assert_eq!(
        sample(&after, "untoil_alerts_total", Some(("outcome", "received"))),
        5.0
    );
    assert_eq!(
        sample(
            &after,
            "untoil_alerts_total",
            Some(("outcome", "deduplicated"))
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "untoil_alerts_total",
            Some(("outcome", "firing_unmatched"))
        ),
        3.0
    );
    assert!(
        sample(
            &after,
            "untoil_webhook_request_duration_seconds_count",
            None
        ) >= 3.0
    );
    assert_eq!(sample(&after, "untoil_runs_in_progress", None), 0.0);
    d.stop().await;
}

#[test]
fn the_shipped_prometheus_rules_pass_promtool() {
    let out = std::process::Command::new("promtool")
        .args([
            "check",
            "rules",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/prometheus-rules.yaml"
            ),
        ])
        .output()
        .expect("promtool (Debian package prometheus) must be installed: run scripts/test-deps");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_request_runs_the_notification_steps_with_the_run_id() {
    let dirs = Dirs::new();
    let note = dirs.path("note.txt");
    dirs.runbook(
        "g",
        &format!(
            "name: g\nowner: t\ntoil: {{manual_minutes: 1}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nguards: {{approval: required}}\non_approval_requested:\n  - name: tell\n    run: echo approve {{{{run.id}}}} for {{{{alert.labels.instance}}}} > {}\nsteps:\n  - name: s\n    run: \"true\"\n",
            note.display()
        ),
    );
    let d = Running::start(dirs.settings()).await;
    let pending = post_alert(&d, "n1", "db-7").await;
    let id = pending["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    d.wait_for(|| async {
        std::fs::read_to_string(&note).is_ok_and(|t| t == format!("approve {id} for db-7\n"))
    })
    .await;
    assert_eq!(
        d.get(&format!("/api/v1/runs/{id}")).await.1["status"],
        "pending_approval"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_queue_starts_the_waiting_run_when_the_running_one_ends() {
    let dirs = Dirs::new();
    dirs.runbook(
        "g",
        &runbook("  concurrency: 1\n  overlap: queue", "sleep 0.5"),
    );
    let d = Running::start(dirs.settings()).await;
    let first = post_alert(&d, "q1", "x").await;
    let second = post_alert(&d, "q2", "x").await;
    let a = run_of(&d, &first).await;
    let b = run_of(&d, &second).await;
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("succeeded"), Some("succeeded"))
    );
    let ended = a["finished_at"].as_str().unwrap_or_default().to_string();
    let started = b["started_at"].as_str().unwrap_or_default().to_string();
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    assert!(
        t(&started) >= t(&ended),
        "the second run started at {started}, before the first ended at {ended}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_of_a_run_waiting_for_approval_sees_it_end_when_denied() {
    let dirs = Dirs::new();
    dirs.runbook("g", &runbook("  approval: required", "\"true\""));
    let d = Running::start(dirs.settings()).await;
    let body = post_alert(&d, "f1", "x").await;
    let id = body["accepted"][0].as_str().unwrap_or_default().to_string();
    d.wait_for(|| async {
        d.get(&format!("/api/v1/runs/{id}")).await.1["status"] == "pending_approval"
    })
    .await;
    let follow = {
        let client = d.client.clone();
        let url = format!("{}/api/v1/runs/{id}/events", d.base);
        tokio::spawn(async move {
            let r = client.get(url).send().await.expect("events");
            r.text().await.unwrap_or_default()
        })
    };
    let (status, body, _) = d
        .post(
            &format!("/api/v1/runs/{id}/deny"),
            br#"{"by":"oncall"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let text = tokio::time::timeout(std::time::Duration::from_secs(30), follow)
        .await
        .expect("the event stream ends once the run is denied")
        .expect("follower task");
    let last: Value = serde_json::from_str(text.lines().last().unwrap_or("{}")).expect("ndjson");
    assert_eq!(last["event"], "run_finished", "{text}");
    assert_eq!(last["record"]["status"], "skipped", "{text}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_sent_on_seeing_a_run_finish_is_not_skipped_as_overlapping_it() {
    let dirs = Dirs::new();
    dirs.runbook(
        "g",
        &runbook(
            "  concurrency: 1\n  overlap: skip\n  cooldown: 0s",
            "\"true\"",
        ),
    );
    let d = Running::start(dirs.settings()).await;
    for i in 0..8 {
        let run = run_of(&d, &post_alert(&d, &format!("o{i}"), "x").await).await;
        assert_eq!(run["status"], "succeeded", "trigger {i}: {run}");
    }
    d.stop().await;
}
