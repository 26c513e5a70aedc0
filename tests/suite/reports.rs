//! The toil report's figures read the same in `untoil report`, the report API and the dashboard
//! for one store: success rate, time to remediate (median and p90 from the one histogram, the
//! mean in JSON), outcomes, verdicts, and the comparison with the previous period.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use untoil::report::human::duration_ms;
use untoil::report::toil::change_text;
use untoil::run::cause::Cause;
use untoil::run::record::{RunRecord, Verification};
use untoil::run::status::RunStatus;
use untoil::store::Store;
use untoil::store::sled::SledStore;

use crate::common::{Dirs, Http, by_id, serve, untoil_command};

/// A finished run of `runbook` started at `start`, lasting a second.
fn run(runbook: &str, status: RunStatus, start: DateTime<Utc>) -> RunRecord {
    RunRecord {
        runbook: runbook.into(),
        owner: "team-a".into(),
        status,
        created_at: start,
        started_at: Some(start),
        finished_at: Some(start + Duration::seconds(1)),
        ..RunRecord::synthetic(1)
    }
}

/// A succeeded alert run that ended `ttr` after its alert started.
fn remediation(start: DateTime<Utc>, ttr: Duration, verified: Option<bool>) -> RunRecord {
    let mut r = run("disk", RunStatus::Succeeded, start);
    let end = start + Duration::seconds(1);
    r.cause = Cause::Alert {
        source: untoil::trigger::source::ALERTMANAGER.into(),
        fingerprint: "f".into(),
        starts_at: end - ttr,
        labels: Default::default(),
    };
    r.verification = verified.map(|verified| Verification {
        verified,
        at: end,
        resolved_at: None,
    });
    r
}

/// The runs of this period: 9 alerts fixed within a minute, one four days after it started (the
/// mean would be ~9.6 h, the median stays a minute); a noop, two failures (one timed out), two
/// interruptions and a cancellation. Before: 4 succeeded runs 40 days ago.
fn runs(now: DateTime<Utc>) -> Vec<RunRecord> {
    let start = now - Duration::hours(1);
    let mut runs: Vec<RunRecord> = (0..9)
        .map(|i| remediation(start, Duration::seconds(60), Some(i % 3 != 0)))
        .collect();
    runs.push(remediation(start, Duration::days(4), None));
    for s in [
        RunStatus::Noop,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Interrupted,
        RunStatus::Interrupted,
        RunStatus::Cancelled,
    ] {
        runs.push(run("other", s, start));
    }
    for _ in 0..4 {
        runs.push(run("other", RunStatus::Succeeded, now - Duration::days(40)));
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_the_api_and_the_dashboard_show_the_same_figures() {
    let dirs = Dirs::new();
    {
        let store = SledStore::open(&dirs.path("data")).expect("store");
        store.finish_many(runs(Utc::now())).await.expect("finish");
    }
    let out = untoil_command(&dirs)
        .args(["report", "--format", "json", "--compare"])
        .output()
        .expect("untoil report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let total = &cli["total"];

    // What the runs say, worked out by hand.
    assert_eq!(total["runs"], 16, "{cli}");
    assert_eq!(
        (&total["succeeded"], &total["noop"], &total["failed"]),
        (&Value::from(10), &Value::from(1), &Value::from(2)),
        "{cli}"
    );
    assert_eq!(
        (&total["interrupted"], &total["cancelled"]),
        (&Value::from(2), &Value::from(1))
    );
    // (10 + 1) / (10 + 1 + 2): interrupted and cancelled runs are not failures.
    let rate = total["success_rate"].as_f64().expect("a rate");
    assert!((rate - 11.0 / 13.0).abs() < 1e-12, "{rate}");
    let median = total["ttr_median_ms"].as_u64().expect("a median");
    assert!(
        (median as f64 - 60_000.0).abs() < 60_000.0 * 0.04,
        "{median}"
    );
    assert_eq!(
        total["ttr_p90_ms"], total["ttr_median_ms"],
        "the 9th of 10 is a minute"
    );
    let mean = total["mttr_ms"].as_u64().expect("a mean");
    assert_eq!(mean, (9 * 60_000 + 4 * 86_400_000) / 10);
    assert_eq!(
        (&total["verified"], &total["unverified"]),
        (&Value::from(6), &Value::from(3))
    );
    assert_eq!(total["verified_share"], 6.0 / 9.0);
    // The previous 31 days held the four runs of 40 days ago.
    assert_eq!(cli["previous"]["total"]["runs"], 4, "{cli}");
    assert_eq!(cli["previous"]["change"]["runs"]["delta"], 12.0, "{cli}");
    assert_eq!(cli["previous"]["change"]["runs"]["percent"], 300.0, "{cli}");

    let (served, base) = serve(&dirs);
    let http = Http::new(base);
    let (status, api) = http
        .get("/api/v1/reports/toil?format=json&compare=true")
        .await;
    assert_eq!(status, 200, "{api}");
    assert_eq!(api["total"], cli["total"]);
    assert_eq!(api["previous"], cli["previous"]);
    assert_eq!(api["rows"], cli["rows"]);
    // The CLI through the daemon asks the API for the comparison too.
    let out = untoil_command(&dirs)
        .args(["report", "--format", "json", "--compare"])
        .output()
        .expect("untoil report through the daemon");
    let remote: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(remote["previous"], cli["previous"], "{remote}");
    assert_eq!(remote["total"], cli["total"]);
    let (_, plain) = http.get("/api/v1/reports/toil?format=json").await;
    assert!(plain.get("previous").is_none(), "{plain}");
    assert_eq!(plain["total"], cli["total"]);

    let (status, html) = http.text("/?period=30d").await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(by_id(&html, "ttr-median"), duration_ms(median));
    assert_eq!(by_id(&html, "ttr-median"), "1 min");
    let p90 = total["ttr_p90_ms"].as_u64().expect("a p90");
    assert_eq!(by_id(&html, "ttr-p90"), duration_ms(p90));
    assert_eq!(
        by_id(&html, "success-rate"),
        format!("{:.1}%", rate * 100.0)
    );
    assert_eq!(by_id(&html, "verified-share"), "66.7%");
    assert_eq!(by_id(&html, "total-runs"), "16");
    // The cards' change is the report's.
    let change: untoil::report::toil::Change = [(
        "runs",
        untoil::report::toil::Delta {
            delta: Some(12.0),
            percent: Some(300.0),
        },
    )]
    .into_iter()
    .collect();
    assert!(
        html.contains(&format!(
            "data-figure=\"runs\">{} vs the previous 31 days",
            change_text(&change, "runs")
        )),
        "{html}"
    );
    assert!(html.contains("+12 (+300%)"), "{html}");
    served.terminate();
}

#[test]
fn the_table_names_the_new_columns_and_compares() {
    let dirs = Dirs::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = SledStore::open(&dirs.path("data")).expect("store");
        store.finish_many(runs(Utc::now())).await.expect("finish");
    });
    let text = |args: &[&str]| {
        let out = untoil_command(&dirs)
            .arg("report")
            .args(args)
            .output()
            .expect("untoil report");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let table = text(&["--by", "runbook"]);
    for column in [
        "RUNS",
        "SUCCEEDED",
        "NOOP",
        "FAILED",
        "INTERRUPTED",
        "CANCELLED",
        "SUCCESS RATE",
        "TOIL SAVED (h)",
        "TTR MEDIAN",
        "TTR P90",
        "VERIFIED",
        "UNVERIFIED",
        "VERIFIED %",
    ] {
        assert!(table.contains(column), "{column} in {table}");
    }
    assert!(!table.contains("MTTR"), "{table}");
    let compared = text(&["--by", "runbook", "--compare", "--since", "7d"]);
    assert!(
        compared.contains("compared with the previous 8 days"),
        "{compared}"
    );
    assert!(
        compared.lines().any(|l| l.starts_with("change")),
        "{compared}"
    );
    let csv = text(&["--format", "csv", "--compare"]);
    let header = csv.lines().next().unwrap_or_default();
    assert!(
        header.contains("ttr_median_ms,ttr_p90_ms,mttr_ms"),
        "{header}"
    );
    assert!(
        header.contains("previous_success_rate") && header.contains("change_runs"),
        "{header}"
    );
    let md = text(&["--format", "markdown", "--compare"]);
    assert!(md.contains("| previous |"), "{md}");
    let first = text(&["--from", "0001-01-01", "--to", "0001-01-03", "--compare"]);
    assert!(
        first.contains("no previous period to compare with"),
        "{first}"
    );
    assert!(!first.lines().any(|l| l.starts_with("previous")), "{first}");
}

#[test]
fn runs_show_says_remediated_only_for_succeeded_alert_runs_and_the_verdict_when_known() {
    let dirs = Dirs::new();
    let start = Utc::now() - Duration::hours(1);
    let fixed = remediation(start, Duration::seconds(90), Some(true));
    let mut failed = remediation(start, Duration::seconds(90), None);
    failed.status = RunStatus::Failed;
    let still_firing = remediation(start, Duration::seconds(90), Some(false));
    let noop = run("other", RunStatus::Noop, start);
    let interrupted = run("other", RunStatus::Interrupted, start);
    let all = vec![
        fixed.clone(),
        failed.clone(),
        still_firing.clone(),
        noop.clone(),
        interrupted.clone(),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = SledStore::open(&dirs.path("data")).expect("store");
        store.finish_many(all).await.expect("finish");
    });
    let show = |r: &RunRecord| {
        let out = untoil_command(&dirs)
            .args(["runs", "show", &r.id.0])
            .output()
            .expect("untoil runs show");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let text = show(&fixed);
    assert!(
        text.contains("remediated 1 min 30 s after the alert started"),
        "{text}"
    );
    assert!(text.contains("verified: alert resolved"), "{text}");
    let text = show(&failed);
    assert!(!text.contains("remediated"), "{text}");
    assert!(!text.contains("verified"), "{text}");
    let text = show(&still_firing);
    assert!(
        text.contains("unverified: alert still firing when the verify window ended"),
        "{text}"
    );
    let text = show(&noop);
    assert!(
        text.contains("status    noop (found nothing to do"),
        "{text}"
    );
    let text = show(&interrupted);
    assert!(
        text.contains("status    interrupted (untoil stopped or crashed while it ran"),
        "{text}"
    );
}

/// A run of `runbook` with the given cause kind, started at `start`.
fn caused(kind: &str, status: RunStatus, start: DateTime<Utc>) -> RunRecord {
    let mut r = run(kind, status, start);
    match kind {
        "schedule" => r.cause = Cause::Schedule { at: start },
        "alert" => {
            r.cause = Cause::Alert {
                source: untoil::trigger::source::ALERTMANAGER.into(),
                fingerprint: "f".into(),
                starts_at: start,
                labels: Default::default(),
            }
        }
        _ => {}
    }
    r
}

/// The CLI's stdout as JSON, after checking it succeeded.
fn cli_json(dirs: &Dirs, args: &[&str]) -> Value {
    let out = untoil_command(dirs).args(args).output().expect("untoil");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_run_lists_filter_by_cause_in_the_cli_and_the_api() {
    let dirs = Dirs::new();
    {
        let now = Utc::now();
        let (start, before) = (now - Duration::hours(1), now - Duration::days(40));
        let mut all = Vec::new();
        for (kind, n, m) in [("manual", 3, 1), ("schedule", 2, 0), ("alert", 4, 2)] {
            all.extend((0..n).map(|_| caused(kind, RunStatus::Succeeded, start)));
            all.extend((0..m).map(|_| caused(kind, RunStatus::Succeeded, before)));
        }
        all.push(caused("schedule", RunStatus::Failed, start));
        let store = SledStore::open(&dirs.path("data")).expect("store");
        store.finish_many(all).await.expect("finish");
    }
    let report = ["report", "--format", "json", "--by", "cause", "--compare"];
    let alert = cli_json(&dirs, &[&report[..], &["--cause", "alert"]].concat());
    assert_eq!(alert["total"]["runs"], 4, "{alert}");
    assert_eq!(alert["rows"].as_array().map(Vec::len), Some(1), "{alert}");
    assert_eq!(alert["rows"][0]["group"][0], "alert");
    // The previous period is read with the same filter.
    assert_eq!(alert["previous"]["total"]["runs"], 2, "{alert}");
    assert_eq!(alert["causes"], serde_json::json!(["alert"]));
    let two = cli_json(
        &dirs,
        &[&report[..], &["--cause", "manual,schedule"]].concat(),
    );
    assert_eq!(two["total"]["runs"], 6, "{two}");
    assert_eq!(two["previous"]["total"]["runs"], 1, "{two}");
    let repeated = cli_json(
        &dirs,
        &[&report[..], &["--cause", "manual", "--cause", "schedule"]].concat(),
    );
    assert_eq!(repeated["total"], two["total"]);
    let out = untoil_command(&dirs)
        .args(["report", "--cause", "cron"])
        .output()
        .expect("untoil report");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cron") && err.contains("schedule"), "{err}");
    let runs = cli_json(&dirs, &["runs", "--json", "--cause", "schedule"]);
    let kinds: Vec<&Value> = runs
        .as_array()
        .map(|r| r.iter().map(|r| &r["cause"]["kind"]).collect())
        .unwrap_or_default();
    assert_eq!(kinds, [&Value::from("schedule"); 3], "{runs}");

    let (served, base) = serve(&dirs);
    let http = Http::new(base);
    let (status, api) = http
        .get("/api/v1/reports/toil?format=json&by=cause&compare=true&cause=alert")
        .await;
    assert_eq!(status, 200, "{api}");
    assert_eq!(api, alert);
    let (_, api) = http
        .get("/api/v1/reports/toil?format=json&by=cause&compare=true&cause=manual,schedule")
        .await;
    assert_eq!(api, two);
    let (status, e) = http.get("/api/v1/reports/toil?cause=cron").await;
    assert_eq!(status, 400, "{e}");
    let e = e["error"].as_str().unwrap_or_default().to_string();
    assert!(
        e.contains("`cron`") && e.contains("manual, schedule or alert"),
        "{e}"
    );
    let (status, manual) = http.get("/api/v1/runs?cause=manual&limit=100").await;
    assert_eq!(status, 200, "{manual}");
    assert_eq!(manual.as_array().map(Vec::len), Some(4), "{manual}");
    let (_, some) = http.get("/api/v1/runs?cause=manual,alert&limit=100").await;
    assert_eq!(some.as_array().map(Vec::len), Some(10), "{some}");
    // The limit counts only runs that pass the filter.
    let (_, two_schedules) = http.get("/api/v1/runs?cause=schedule&limit=2").await;
    let kinds: Vec<&Value> = two_schedules
        .as_array()
        .map(|r| r.iter().map(|r| &r["cause"]["kind"]).collect())
        .unwrap_or_default();
    assert_eq!(kinds, [&Value::from("schedule"); 2], "{two_schedules}");
    let (status, e) = http.get("/api/v1/runs?cause=cron").await;
    assert_eq!(status, 400, "{e}");
    // Unknown parameters are refused, naming the parameter and the accepted ones.
    for (url, accepted) in [
        ("/api/v1/runs?caus=manual", "`cause`"),
        ("/api/v1/reports/toil?label=x", "`compare`"),
        (
            "/api/v1/reports/unautomated?cause=alert",
            "`assume_minutes`",
        ),
    ] {
        let (status, e) = http.get(url).await;
        assert_eq!(status, 400, "{url}: {e}");
        let e = e["error"].as_str().unwrap_or_default().to_string();
        assert!(
            e.contains("unknown parameter") && e.contains(accepted),
            "{url}: {e}"
        );
    }
    // The CLI through the daemon passes the filter on.
    assert_eq!(
        cli_json(&dirs, &[&report[..], &["--cause", "alert"]].concat()),
        alert
    );
    let remote = cli_json(&dirs, &["runs", "--json", "--cause", "schedule"]);
    assert_eq!(remote.as_array().map(Vec::len), Some(3), "{remote}");
    served.terminate();
}
