//! Issue 14, the alert side of honest toil numbers: a replay by hand is a manual run with its
//! alert attached (no time to remediate), resolves are never unmatched alerts and find their
//! episode at millisecond precision, guard-skipped episodes come back on a re-send, and an
//! idempotent runbook's interrupted run starts again after a restart.

use crate::common;

use common::{Dirs, Running, fixture};
use serde_json::Value;

const DISK: &str = "name: disk\nowner: team-db\ntoil: {manual_minutes: 20}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\nsteps:\n  - name: fix\n    run: echo fixing {{alert.labels.instance}}\n";

/// Whether any figure about time to remediate in a report's JSON holds a value.
fn any_remediation(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            let named = k.contains("mttr") || k.contains("ttr") || k.contains("remediat");
            (named
                && !(v.is_null()
                    || v == &Value::from(0)
                    || v.as_array().is_some_and(Vec::is_empty)))
                || any_remediation(v)
        }),
        Value::Array(a) => a.iter().any(any_remediation),
        _ => false,
    }
}

fn cli(dirs: &Dirs, args: &[&str]) -> std::process::Output {
    common::untoil_command(dirs)
        .args(args)
        .output()
        .expect("run the CLI")
}

#[test]
fn a_replay_by_hand_in_the_foreground_is_manual_with_its_alert_and_no_time_to_remediate() {
    let dirs = Dirs::new();
    dirs.runbook("disk", DISK);
    let payload = dirs.path("firing.json");
    std::fs::write(&payload, fixture("firing.json")).expect("write payload");
    let out = cli(
        &dirs,
        &["run", "disk", "--alert", &payload.display().to_string()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("fixing db-1"),
        "templates still see alert.*: {stdout}"
    );

    let out = cli(&dirs, &["runs", "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).expect("runs json");
    let summary = &runs[0];
    assert_eq!(
        summary["replayed_alert"], "replaying alert DiskFull 1b821551d31d953a",
        "{summary}"
    );
    // The list is summaries; the alert itself is in the record.
    let id = summary["id"].as_str().expect("id");
    let out = cli(&dirs, &["runs", "show", id, "--json"]);
    let run: Value = serde_json::from_slice(&out.stdout).expect("run json");
    let run = &run;
    assert_eq!(run["cause"]["kind"], "manual", "{run}");
    assert!(
        run["cause"]["user"].as_str().is_some_and(|u| !u.is_empty()),
        "{run}"
    );
    assert_eq!(
        run["alert"]["alert"]["fingerprint"], "1b821551d31d953a",
        "{run}"
    );

    let out = cli(&dirs, &["runs"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("(alert replay)") && list.contains("db-1"),
        "{list}"
    );
    let id = run["id"].as_str().expect("id");
    let out = cli(&dirs, &["runs", "show", id]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("manual, by "), "{shown}");
    assert!(
        shown.contains("replaying alert DiskFull 1b821551d31d953a"),
        "{shown}"
    );
    assert!(!shown.contains("remediated"), "{shown}");

    let out = cli(&dirs, &["report", "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("report json");
    assert_eq!(report["total"]["runs"], 1, "{report}");
    assert!(!any_remediation(&report), "no time to remediate: {report}");
    let out = cli(&dirs, &["report", "--by", "cause", "--format", "json"]);
    let by_cause: Value = serde_json::from_slice(&out.stdout).expect("report json");
    assert_eq!(by_cause["rows"][0]["group"][0], "manual", "{by_cause}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_through_the_daemon_is_manual_and_never_deduplicated_against_the_webhook() {
    let dirs = Dirs::new();
    dirs.runbook("disk", DISK);
    let d = Running::start(dirs.settings()).await;
    let payload: Value = serde_json::from_slice(&fixture("firing.json")).expect("fixture");
    let replay =
        serde_json::to_vec(&serde_json::json!({"params": {}, "alert": payload})).expect("body");
    let (status, body, _) = d.post("/api/v1/runbooks/disk/runs", replay.clone()).await;
    assert_eq!(status, 202, "{body}");
    // The webhook's own delivery of the same episode still runs...
    let (status, body, _) = d
        .post("/api/v1/alerts/alertmanager", fixture("firing.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"].as_array().map(Vec::len), Some(1), "{body}");
    // ...and a replay by hand after it still runs too.
    let (status, body, _) = d.post("/api/v1/runbooks/disk/runs", replay).await;
    assert_eq!(status, 202, "{body}");
    let runs = d.wait_runs_final(3).await;
    let kinds: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["cause"]["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "manual").count(),
        2,
        "{runs:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "alert").count(),
        1,
        "{runs:?}"
    );
    for r in &runs {
        assert_eq!(
            r["alert"]["alert"]["fingerprint"], "1b821551d31d953a",
            "{r}"
        );
        assert_eq!(r["steps"][0]["stdout"], "fixing db-1\n", "{r}");
    }
    let (_, page) = {
        let id = runs
            .iter()
            .find(|r| r["cause"]["kind"] == "manual")
            .and_then(|r| r["id"].as_str())
            .expect("a manual run");
        let r = d
            .client
            .get(format!("{}/ui/runs/{id}", d.base))
            .send()
            .await
            .expect("page");
        (r.status(), r.text().await.unwrap_or_default())
    };
    assert!(
        page.contains("replaying alert DiskFull 1b821551d31d953a"),
        "{page}"
    );
    let (_, toil) = d.get("/api/v1/reports/toil?by=cause").await;
    let rows = toil["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{toil}");
    d.stop().await;
}

/// The firing fixture as an episode of this fingerprint.
fn firing(fingerprint: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("firing.json")).expect("fixture json");
    v["alerts"][0]["fingerprint"] = Value::from(fingerprint);
    serde_json::to_vec(&v).expect("json")
}

fn guarded(guards: &str, step: &str) -> String {
    format!(
        "name: g\nowner: team-g\ntoil: {{manual_minutes: 10}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nguards:\n{guards}\nsteps:\n  - name: s\n    run: {step}\n"
    )
}

async fn post(d: &Running, body: Vec<u8>) -> Value {
    let (status, body, _) = d.post("/api/v1/alerts/alertmanager", body).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn status_of(d: &Running, id: &str) -> Value {
    d.get(&format!("/api/v1/runs/{id}")).await.1["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_episode_skipped_as_overlapping_comes_back_once_the_running_one_ends() {
    let dirs = Dirs::new();
    dirs.runbook(
        "g",
        &guarded("  concurrency: 1\n  overlap: skip", "sleep 1000007"),
    );
    let d = Running::start(dirs.settings()).await;
    let first = post(&d, firing("o1")).await;
    let id1 = first["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    d.wait_for(|| async { status_of(&d, &id1).await == "running" })
        .await;
    let second = post(&d, firing("o2")).await;
    let id2 = second["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    d.wait_for(|| async { status_of(&d, &id2).await == "skipped" })
        .await;
    // Re-sent while the first still runs: a duplicate, not a second skipped record.
    let early = post(&d, firing("o2")).await;
    assert_eq!(early["duplicates"], 1, "{early}");
    assert_eq!(d.runs().await.len(), 2);
    assert_eq!(
        d.post(&format!("/api/v1/runs/{id1}/cancel"), vec![])
            .await
            .0,
        202
    );
    d.wait_for(|| async { status_of(&d, &id1).await == "cancelled" })
        .await;
    // Re-sent once nothing overlaps: it runs (and is cancelled here, it sleeps), once.
    let again = post(&d, firing("o2")).await;
    let id3 = again["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!id3.is_empty(), "{again}");
    let (_, run) = d.get(&format!("/api/v1/runs/{id3}")).await;
    assert_eq!(run["retry_of"], id2.as_str(), "{run}");
    let third = post(&d, firing("o2")).await;
    assert_eq!(third["duplicates"], 1, "{third}");
    d.wait_for(|| async { status_of(&d, &id3).await == "running" })
        .await;
    assert_eq!(
        d.post(&format!("/api/v1/runs/{id3}/cancel"), vec![])
            .await
            .0,
        202
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_approval_is_a_human_decision_and_does_not_come_back() {
    let dirs = Dirs::new();
    dirs.runbook(
        "g",
        &guarded("  approval: required\n  approval_timeout: 1h", "\"true\""),
    );
    let d = Running::start(dirs.settings()).await;
    let pending = post(&d, firing("n1")).await;
    let id = pending["accepted"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, body, _) = d
        .post(
            &format!("/api/v1/runs/{id}/deny"),
            br#"{"by":"bob"}"#.to_vec(),
        )
        .await;
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("skipped")),
        "{body}"
    );
    let resent = post(&d, firing("n1")).await;
    assert_eq!(resent["duplicates"], 1, "{resent}");
    assert_eq!(d.runs().await.len(), 1);
    d.stop().await;
}

const VERIFIED_DISK: &str = "name: disk\nowner: team-db\ntoil: {manual_minutes: 20}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\nverify: {alert_resolves_within: 1h}\nsteps:\n  - name: fix\n    run: echo fixing {{alert.labels.instance}}\n";

/// A fixture with the first alert's fields changed.
fn edited(name: &str, edit: impl Fn(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(name)).expect("fixture json");
    edit(&mut v["alerts"][0]);
    serde_json::to_vec(&v).expect("json")
}

/// `untoil_alerts_total{outcome="..."}` as scraped.
async fn alerts_total(d: &Running, outcome: &str) -> f64 {
    let metrics = crate::common::scrape(d).await;
    crate::common::sample(&metrics, "untoil_alerts_total", Some(("outcome", outcome)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_are_never_unmatched_and_a_millisecond_resolve_finds_its_episode() {
    let dirs = Dirs::new();
    dirs.runbook("disk", VERIFIED_DISK);
    let d = Running::start(dirs.settings()).await;
    // The webhook sends the start at nanoseconds; the resolve comes as amtool sends it, at
    // milliseconds (the real resolved fixture).
    let firing = edited("firing.json", |a| {
        a["startsAt"] = Value::from("2026-11-28T14:43:50.307089778Z")
    });
    let body = post(&d, firing.clone()).await;
    assert_eq!(body["accepted"].as_array().map(Vec::len), Some(1), "{body}");
    let fix = d.wait_runs_final(1).await;
    assert_eq!(fix[0]["status"], "succeeded", "{fix:?}");
    let resolved = post(&d, crate::common::resolved_now()).await;
    assert_eq!(
        resolved["verified"], 1,
        "the episode's run is verified: {resolved}"
    );
    assert_eq!(
        (&resolved["unmatched"], &resolved["resolved"]),
        (&Value::from(0), &Value::from(1))
    );
    let id = fix[0]["id"].as_str().expect("id");
    let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["verification"]["verified"], true, "{run}");
    // Resolves of episodes never seen firing, of a handled alert and of one nothing handles.
    let orphan = edited("resolved.json", |a| {
        a["fingerprint"] = Value::from("0000aaaa")
    });
    let unhandled = edited("resolved.json", |a| {
        a["fingerprint"] = Value::from("0000bbbb");
        a["labels"]["alertname"] = Value::from("NobodyHandlesThis");
    });
    for payload in [orphan, unhandled] {
        let body = post(&d, payload).await;
        assert_eq!(
            (&body["unmatched"], &body["resolved"]),
            (&Value::from(0), &Value::from(1)),
            "{body}"
        );
    }
    // A re-send of the firing episode: a duplicate; and so is one carrying the start truncated
    // to milliseconds, as Alertmanager re-sends once the alert was posted through its API.
    assert_eq!(post(&d, firing).await["duplicates"], 1);
    let truncated = edited("firing.json", |a| {
        a["startsAt"] = Value::from("2026-11-28T14:43:50.307Z")
    });
    let body = post(&d, truncated).await;
    assert_eq!(
        (&body["duplicates"], &body["accepted"]),
        (&Value::from(1), &Value::Array(vec![])),
        "the same episode, not a new one: {body}"
    );
    let (_, backlog) = d.get("/api/v1/reports/unautomated").await;
    assert_eq!(backlog["rows"], Value::Array(vec![]), "{backlog}");
    assert_eq!(
        backlog["alerts_received"], 1,
        "only the firing episode: {backlog}"
    );
    assert_eq!(backlog["alerts_handled"], 1, "{backlog}");
    assert_eq!(backlog["coverage"], 1.0, "{backlog}");
    let out = tokio::task::block_in_place(|| cli(&dirs, &["report", "unautomated"]));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!table.contains("NobodyHandlesThis"), "{table}");
    assert!(table.contains("coverage: 1 of 1 alerts"), "{table}");
    // Firing alerts nothing handles are the backlog, and the metrics say which is which.
    post(&d, fixture("firing-grouped.json")).await;
    assert_eq!(alerts_total(&d, "received").await, 9.0);
    assert_eq!(alerts_total(&d, "matched").await, 3.0);
    assert_eq!(alerts_total(&d, "firing_unmatched").await, 3.0);
    assert_eq!(alerts_total(&d, "resolved").await, 3.0);
    assert_eq!(alerts_total(&d, "deduplicated").await, 2.0);
    // What docs/guards.md (Metrics) says holds: matched counts the two deduplicated re-sends
    // too, and with no `on: resolved`/`both` trigger the outcomes add up to what was received.
    let sum = alerts_total(&d, "matched").await
        + alerts_total(&d, "firing_unmatched").await
        + alerts_total(&d, "resolved").await;
    assert_eq!(alerts_total(&d, "received").await, sum);
    assert_eq!(
        alerts_total(&d, "unmatched").await,
        0.0,
        "no such outcome any more"
    );
    let (_, backlog) = d.get("/api/v1/reports/unautomated").await;
    assert_eq!(
        backlog["rows"][0]["group"]["alertname"], "HighLatency",
        "{backlog}"
    );
    assert_eq!(backlog["rows"][0]["count"], 3, "{backlog}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_whose_runs_failed_or_were_skipped_are_the_backlogs_second_list() {
    let dirs = Dirs::new();
    dirs.runbook("g", &guarded("  cooldown: 1h", "exit 3"));
    let d = Running::start(dirs.settings()).await;
    post(&d, firing("x1")).await;
    // Inside the cooldown: skipped.
    post(&d, firing("x2")).await;
    d.wait_runs_final(2).await;
    let (_, backlog) = d.get("/api/v1/reports/unautomated").await;
    assert_eq!(backlog["rows"], Value::Array(vec![]), "{backlog}");
    assert_eq!(backlog["alerts_not_remediated"], 2, "{backlog}");
    let row = &backlog["not_remediated"][0];
    assert_eq!(row["group"]["alertname"], "DiskFull", "{backlog}");
    assert_eq!(row["count"], 2, "{backlog}");
    assert_eq!(
        row["estimated_minutes"], 30.0,
        "2 x the assumed 15 minutes: {backlog}"
    );
    assert_eq!(row["runbooks"], serde_json::json!(["g"]), "{backlog}");
    assert_eq!(
        row["outcomes"],
        serde_json::json!({"failed": 1, "skipped": 1}),
        "{backlog}"
    );
    let out =
        tokio::task::block_in_place(|| cli(&dirs, &["report", "unautomated", "--format", "csv"]));
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.lines().any(|l| l.starts_with("DiskFull,")
            && l.ends_with(",g,\"failed 1, skipped 1\",not_remediated")),
        "{csv}"
    );
    for format in ["table", "markdown"] {
        let out = tokio::task::block_in_place(|| {
            cli(&dirs, &["report", "unautomated", "--format", format])
        });
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("toil that still landed on people (2 of 2 handled alerts)"),
            "{text}"
        );
        assert!(text.contains("failed 1, skipped 1"), "{text}");
    }
    let page = d
        .client
        .get(format!("{}/ui/backlog", d.base))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .unwrap_or_default();
    assert!(page.contains("<b id=\"not-remediated\">2</b>"), "{page}");
    assert!(page.contains("failed 1, skipped 1"), "{page}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_run_interrupted_by_a_shutdown_starts_again_at_the_next_start() {
    let dirs = Dirs::new();
    let release = dirs.path("release");
    dirs.runbook(
        "idem",
        &format!(
            "name: idem\nowner: t\ntoil: {{manual_minutes: 1}}\nidempotent: true\nparams: {{who: {{default: x}}}}\nsteps:\n  - name: wait\n    run: while [ ! -e {} ]; do sleep 0.05; done\n",
            release.display()
        ),
    );
    let mut s = dirs.settings();
    s.shutdown_grace = std::time::Duration::from_millis(200);
    let d = Running::start(s).await;
    let body = serde_json::to_vec(&serde_json::json!({"params": {"who": "amy"}})).expect("body");
    let (status, first, _) = d.post("/api/v1/runbooks/idem/runs", body).await;
    assert_eq!(status, 202, "{first}");
    let first = first["id"].as_str().unwrap_or_default().to_string();
    d.wait_for(|| async { status_of(&d, &first).await == "running" })
        .await;
    d.stop().await;
    std::fs::write(&release, "").expect("release");

    let d = Running::start(dirs.settings()).await;
    assert_eq!(status_of(&d, &first).await, "interrupted");
    let runs = d.wait_runs_final(2).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let retry = runs
        .iter()
        .find(|r| r["retry_of"] == first.as_str())
        .unwrap_or_else(|| panic!("a retry of {first}: {runs:?}"));
    assert_eq!(retry["status"], "succeeded", "{retry}");
    assert_eq!(retry["params"]["who"], "amy", "{retry}");
    assert_eq!(retry["cause"]["kind"], "manual", "{retry}");
    let id = retry["id"].as_str().expect("id");
    let page = d
        .client
        .get(format!("{}/ui/runs/{id}", d.base))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .unwrap_or_default();
    assert!(
        page.contains(&format!("<a id=\"retry-of\" href=\"/ui/runs/{first}\">")),
        "{page}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_webhook_run_records_alertmanager_as_its_source() {
    let dirs = Dirs::new();
    dirs.runbook("disk", VERIFIED_DISK);
    let d = Running::start(dirs.settings()).await;
    let body = post(&d, fixture("firing.json")).await;
    assert_eq!(body["accepted"].as_array().map(Vec::len), Some(1), "{body}");
    let runs = d.wait_runs_final(1).await;
    assert_eq!(runs[0]["cause"]["kind"], "alert", "{runs:?}");
    assert_eq!(runs[0]["cause"]["source"], "alertmanager", "{runs:?}");
    // Alertmanager's fingerprint as sent: its dedupe keys keep their stored encoding.
    assert_eq!(runs[0]["cause"]["fingerprint"], "1b821551d31d953a");
    let id = runs[0]["id"].as_str().expect("id");
    let detail = d.get(&format!("/api/v1/runs/{id}")).await.1;
    assert_eq!(detail["cause"]["source"], "alertmanager", "{detail}");
    let metrics = crate::common::scrape(&d).await;
    let received = metrics
        .samples
        .iter()
        .find(|s| {
            s.metric == "untoil_alerts_total"
                && s.labels.get("outcome") == Some("received")
                && s.labels.get("source") == Some("alertmanager")
        })
        .map(|s| s.value.clone());
    assert!(
        matches!(received, Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v)) if v == 1.0),
        "{received:?}"
    );
    d.stop().await;
}
