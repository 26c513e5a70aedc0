//! Toil numbers a team lead can trust, end to end: the scenarios that used to overstate or
//! misfile toil (a run that found nothing to do, credit per item, a replay by hand, failed and
//! guard-skipped runs, resolve-only and millisecond resolves, a cooldown then a re-send, a
//! shutdown that interrupts a run, an alert that started days ago) replayed through a real
//! daemon; then every figure read from `untoil report`, the report API and the dashboard, which
//! must agree with each other and with a sum recomputed from the recorded runs.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};
use untoil::report::human::duration_ms;

use crate::common::{
    Dirs, Http, Served, by_id, fixture, parse_metrics, sample, until, untoil_command,
};

const SWEEP: &str = "name: sweep\nowner: team-a\ntoil: {manual_minutes: 10}\nsteps:\n  - name: find\n    run: echo nothing matched; exit 3\n    noop_exit_codes: [3]\n  - name: kill\n    run: echo never\n";
const CLEAN: &str = "name: clean\nowner: team-a\ntoil:\n  manual_minutes: 1\n  per_item: {minutes: 2, count: '{{steps.clean.json.removed}}', max_items: 3}\nsteps:\n  - name: clean\n    run: printf '{\"removed\":5}'\n";
const DISK: &str = "name: disk\nowner: team-db\nservice: db\ntoil: {manual_minutes: 20}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\nverify: {alert_resolves_within: 1h}\nsteps:\n  - name: fix\n    run: echo fixing {{alert.labels.instance}}\n";
const LATENCY: &str = "name: latency\nowner: team-web\ntoil: {manual_minutes: 5}\ntriggers:\n  - alert: {matchers: ['alertname=\"HighLatency\"']}\nguards: {cooldown: 5s}\nverify: {alert_resolves_within: 1s}\nsteps:\n  - name: fix\n    run: 'true'\n";
const BROKEN: &str = "name: broken\nowner: team-db\ntoil: {manual_minutes: 30}\ntriggers:\n  - alert: {matchers: ['alertname=\"BrokenThing\"']}\nsteps:\n  - name: fix\n    run: exit 1\n";
const SLOW: &str = "name: slow\nowner: team-a\ntoil: {manual_minutes: 7}\nsteps:\n  - name: wait\n    run: sleep 120\n";

/// An instant at nanosecond precision (as Prometheus' alerts carry) as Alertmanager writes it.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The real fixture as one alert: `name` on its own fingerprint, started at `starts` (and, when
/// resolved, ended now).
fn alert(name: &str, fingerprint: &str, starts: &str, status: &str) -> Value {
    let file = if status == "resolved" {
        "resolved.json"
    } else {
        "firing.json"
    };
    let mut v: Value = serde_json::from_slice(&fixture(file)).expect("fixture json");
    let a = &mut v["alerts"][0];
    a["labels"]["alertname"] = json!(name);
    a["labels"]["instance"] = json!(format!("{fingerprint}:9100"));
    a["fingerprint"] = json!(fingerprint);
    a["startsAt"] = json!(starts);
    // A resolve ends now, after the runs it verifies started (the fixture's is long past).
    if status == "resolved" {
        a["endsAt"] = json!(stamp(Utc::now()));
    }
    v
}

/// `untoil serve` on an ephemeral port, interrupting runs at once on shutdown.
fn start(dirs: &Dirs) -> (Served, Http) {
    let mut c = untoil_command(dirs);
    c.args(["serve", "--listen", "127.0.0.1:0", "--shutdown-grace", "0s"]);
    let mut served = Served::spawn(c);
    let base = served.base();
    (served, Http::new(base))
}

/// What a webhook delivery answered (200 or the test fails).
async fn post(http: &Http, body: Value) -> Value {
    let (status, v) = http.post("/api/v1/alerts/alertmanager", body).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// Every run, once `ready` holds for all of them.
async fn runs_when(http: &Http, what: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    until(what, || async {
        let (_, v) = http.get("/api/v1/runs?limit=0").await;
        let runs = v.as_array().cloned().unwrap_or_default();
        if !ready(&runs) {
            return None;
        }
        // The list answers summaries; the checks below read whole records (the alert).
        let mut records = Vec::new();
        for r in &runs {
            records.push(http.get(r["url"].as_str().expect("url")).await.1);
        }
        Some(records)
    })
    .await
}

fn is_final(r: &Value) -> bool {
    !matches!(
        r["status"].as_str(),
        Some("queued" | "running" | "pending_approval") | None
    )
}

fn of<'a>(runs: &'a [Value], runbook: &str) -> Vec<&'a Value> {
    runs.iter().filter(|r| r["runbook"] == runbook).collect()
}

fn cli(dirs: &Dirs, args: &[&str]) -> String {
    let out = untoil_command(dirs).args(args).output().expect("untoil");
    assert!(
        out.status.success(),
        "untoil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_agrees_in_the_cli_the_api_and_the_dashboard_and_with_the_runs() {
    let dirs = Dirs::new();
    for (name, body) in [
        ("sweep", SWEEP),
        ("clean", CLEAN),
        ("disk", DISK),
        ("latency", LATENCY),
        ("broken", BROKEN),
        ("slow", SLOW),
    ] {
        dirs.runbook(name, body);
    }
    let (served, http) = start(&dirs);
    let now = Utc::now();
    let duplicates = std::sync::atomic::AtomicU32::new(0);
    let dup = || duplicates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    // Three DiskFull alerts fixed; one started four days ago (its mean would be ~32 h).
    let disk1 = now - Duration::seconds(30) + Duration::nanoseconds(123_456_789);
    for (fp, starts) in [
        ("disk-1", disk1),
        (
            "disk-2",
            now - Duration::days(4) + Duration::nanoseconds(987_654_321),
        ),
        (
            "disk-3",
            now - Duration::seconds(10) + Duration::nanoseconds(5),
        ),
    ] {
        let v = post(&http, alert("DiskFull", fp, &stamp(starts), "firing")).await;
        assert_eq!(v["accepted"].as_array().map(Vec::len), Some(1), "{v}");
    }
    runs_when(&http, "the three disk fixes", |r| {
        r.len() == 3 && r.iter().all(is_final)
    })
    .await;
    // disk-1 resolves, at millisecond precision as amtool sends it: the same episode, verified.
    let ms = disk1.to_rfc3339_opts(SecondsFormat::Millis, true);
    let v = post(&http, alert("DiskFull", "disk-1", &ms, "resolved")).await;
    assert_eq!(
        (&v["verified"], &v["unmatched"]),
        (&json!(1), &json!(0)),
        "{v}"
    );
    // A resolve of an episode never seen firing: resolved, never an unmatched alert.
    let v = post(&http, alert("DiskFull", "never-fired", &ms, "resolved")).await;
    assert_eq!(
        (&v["resolved"], &v["unmatched"]),
        (&json!(1), &json!(0)),
        "{v}"
    );
    // A handled alert whose fix fails, and one nothing handles.
    post(
        &http,
        alert("BrokenThing", "broken-1", &stamp(now), "firing"),
    )
    .await;
    let v = post(
        &http,
        alert("NobodyHandles", "nobody-1", &stamp(now), "firing"),
    )
    .await;
    assert_eq!(v["unmatched"], 1, "{v}");

    // HighLatency twice within the cooldown: the second episode is skipped, then runs on a
    // re-send once the cooldown allows it, and never a second time.
    let lat = stamp(now - Duration::seconds(60) + Duration::nanoseconds(1));
    post(&http, alert("HighLatency", "lat-1", &lat, "firing")).await;
    let v = post(&http, alert("HighLatency", "lat-2", &lat, "firing")).await;
    let skipped = v["accepted"][0]
        .as_str()
        .expect("a skipped run")
        .to_string();
    let (_, run) = http.get(&format!("/api/v1/runs/{skipped}")).await;
    assert_eq!(run["status"], "skipped", "{run}");
    let came_back = until("the re-send after the cooldown", || async {
        let v = post(&http, alert("HighLatency", "lat-2", &lat, "firing")).await;
        match v["accepted"][0].as_str() {
            Some(id) => Some(id.to_string()),
            None => {
                assert_eq!(v["duplicates"], 1, "refused re-sends are duplicates: {v}");
                dup();
                None
            }
        }
    })
    .await;
    let v = post(&http, alert("HighLatency", "lat-2", &lat, "firing")).await;
    assert_eq!(v["duplicates"], 1, "never twice: {v}");
    dup();

    // By hand: a run that finds nothing to do, one credited per item, a replay of an old
    // alert payload, and one that a shutdown interrupts.
    for rb in ["sweep", "clean"] {
        let (status, v) = http
            .post(&format!("/api/v1/runbooks/{rb}/runs"), json!({}))
            .await;
        assert_eq!(status, 202, "{v}");
    }
    let old = dirs.path("old-alert.json");
    let payload = alert(
        "DiskFull",
        "replayed",
        &stamp(now - Duration::days(3)),
        "firing",
    );
    std::fs::write(&old, payload.to_string()).expect("payload");
    let replay = tokio::task::block_in_place(|| {
        cli(
            &dirs,
            &["run", "disk", "--alert", &old.display().to_string()],
        )
    });
    assert!(replay.contains("succeeded"), "{replay}");
    let (status, v) = http.post("/api/v1/runbooks/slow/runs", json!({})).await;
    assert_eq!(status, 202, "{v}");
    let slow = v["id"].as_str().expect("run id").to_string();
    runs_when(
        &http,
        "everything but the slow run ended, and slow running",
        |r| {
            r.iter().all(|x| is_final(x) || x["runbook"] == "slow")
                && r.iter()
                    .any(|x| x["runbook"] == "slow" && x["status"] == "running")
        },
    )
    .await;
    let (_, scraped) = http.text("/metrics").await;
    let scraped = parse_metrics(&scraped);
    let metrics = |m: &prometheus_parse::Scrape, outcome: &str| {
        sample(m, "untoil_alerts_total", Some(("outcome", outcome)))
    };
    assert_eq!(
        metrics(&scraped, "firing_unmatched"),
        1.0,
        "{:?}",
        scraped.samples
    );
    assert_eq!(metrics(&scraped, "resolved"), 2.0, "{:?}", scraped.samples);
    assert_eq!(
        metrics(&scraped, "deduplicated"),
        f64::from(duplicates.load(std::sync::atomic::Ordering::Relaxed)),
        "{:?}",
        scraped.samples
    );
    let (code, stderr) = tokio::task::block_in_place(|| served.terminate());
    assert_eq!(code, Some(0), "{stderr}");

    // Started again: the interrupted run stays interrupted (slow is not idempotent).
    let (served, http) = start(&dirs);
    let runs = runs_when(
        &http,
        "every run ended, both HighLatency verdicts in",
        |r| {
            r.iter().all(is_final)
                && of(r, "latency")
                    .iter()
                    .filter(|x| x["status"] == "succeeded")
                    .all(|x| x["verification"].is_object())
        },
    )
    .await;
    let (_, s) = http.get(&format!("/api/v1/runs/{slow}")).await;
    assert_eq!(s["status"], "interrupted", "{s}");
    let (_, back) = http.get(&format!("/api/v1/runs/{came_back}")).await;
    assert_eq!(
        (&back["status"], &back["retry_of"]),
        (&json!("succeeded"), &json!(skipped)),
        "{back}"
    );
    let sweep = of(&runs, "sweep");
    assert_eq!(sweep[0]["status"], "noop", "{sweep:?}");
    assert_eq!(sweep[0]["toil"]["minutes"], 0.0);
    let clean = of(&runs, "clean");
    assert_eq!(clean[0]["toil"]["minutes"], 7.0, "1 + 3 capped items x 2");
    let replayed: Vec<&Value> = of(&runs, "disk")
        .into_iter()
        .filter(|r| r["cause"]["kind"] == "manual")
        .collect();
    assert_eq!(replayed.len(), 1, "{runs:?}");
    assert_eq!(replayed[0]["alert"]["alert"]["fingerprint"], "replayed");

    // What the runs say, recomputed from the records: finished runs that count (not dry, not
    // skipped), their statuses and credits.
    let counted: Vec<&Value> = runs
        .iter()
        .filter(|r| r["status"] != "skipped" && r["dry_run"] != true)
        .collect();
    let mut statuses: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &counted {
        *statuses
            .entry(r["status"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    let milli: u64 = counted
        .iter()
        .map(|r| (r["toil"]["minutes"].as_f64().unwrap_or(0.0) * 1000.0).round() as u64)
        .sum();
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("failed", 1),
            ("interrupted", 1),
            ("noop", 1),
            ("succeeded", 7)
        ]),
        "{runs:?}"
    );
    // 3 disk x 20 + 2 latency x 5 + clean 7 + the replay 20; noop, failed, interrupted 0.
    assert_eq!(milli, 97_000);
    let ttrs: Vec<i64> = counted
        .iter()
        .filter(|r| r["cause"]["kind"] == "alert" && r["status"] == "succeeded")
        .map(|r| {
            let at = |v: &Value| {
                v.as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .expect("a time")
            };
            (at(&r["finished_at"]) - at(&r["cause"]["starts_at"])).num_milliseconds()
        })
        .collect();
    assert_eq!(
        ttrs.len(),
        5,
        "3 disk + 2 latency, not the replay: {ttrs:?}"
    );

    let (_, api) = http.get("/api/v1/reports/toil?format=json").await;
    let total = &api["total"];
    assert_eq!(total["runs"], 10, "{api}");
    for (field, n) in [
        ("succeeded", 7),
        ("noop", 1),
        ("failed", 1),
        ("interrupted", 1),
        ("cancelled", 0),
        ("remediations", 5),
        ("verified", 1),
        ("unverified", 2),
    ] {
        assert_eq!(total[field], n, "{field}: {api}");
    }
    assert_eq!(total["toil_minutes"], 97.0, "{api}");
    let rate = total["success_rate"].as_f64().expect("a rate");
    assert!((rate - 8.0 / 9.0).abs() < 1e-12, "{rate}");
    // The median is a minute or so; the mean is days, and so is the p90 (the old alert).
    let median = total["ttr_median_ms"].as_u64().expect("a median");
    let p90 = total["ttr_p90_ms"].as_u64().expect("a p90");
    let mean = total["mttr_ms"].as_u64().expect("a mean");
    let mut sorted = ttrs.clone();
    sorted.sort_unstable();
    let near =
        |estimate: u64, exact: i64| (estimate as f64 - exact as f64).abs() <= exact as f64 * 0.04;
    assert!(near(median, sorted[2]), "{median} vs {sorted:?}");
    assert!(near(p90, sorted[4]), "{p90} vs {sorted:?}");
    assert_eq!(mean as i64, sorted.iter().sum::<i64>() / 5);
    assert!(
        median < 5 * 60_000 && mean > 18 * 3_600_000,
        "{median} {mean}"
    );

    // The dashboard shows the same figures at its precision.
    let (status, html) = http.text("/?period=30d").await;
    assert_eq!(status, 200);
    assert_eq!(by_id(&html, "total-runs"), "10");
    assert_eq!(by_id(&html, "total-hours"), format!("{:.2}", 97.0 / 60.0));
    assert_eq!(
        by_id(&html, "success-rate"),
        format!("{:.1}%", rate * 100.0)
    );
    assert_eq!(by_id(&html, "ttr-median"), duration_ms(median));
    assert_eq!(by_id(&html, "ttr-p90"), duration_ms(p90));
    assert_eq!(by_id(&html, "verified-share"), "33.3%");

    // The backlog: the alert nothing handles, and the handled one whose fix failed; the
    // resolves and the HighLatency episode that ran on its re-send are in neither.
    let (_, backlog) = http.get("/api/v1/reports/unautomated").await;
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| r["group"]["alertname"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(&backlog["rows"]), ["NobodyHandles"], "{backlog}");
    assert_eq!(
        names(&backlog["not_remediated"]),
        ["BrokenThing"],
        "{backlog}"
    );
    assert_eq!(
        (&backlog["alerts_received"], &backlog["alerts_handled"]),
        (&json!(7), &json!(6)),
        "3 disk, broken, 2 latency, nobody: {backlog}"
    );
    let (_, page) = http.text("/ui/backlog").await;
    assert!(page.contains("NobodyHandles") && page.contains("BrokenThing"));

    // `runs show` says remediated only for a succeeded alert run, and the verdict.
    let show = |id: &str| tokio::task::block_in_place(|| cli(&dirs, &["runs", "show", id]));
    let id_of = |runbook: &str, pick: &dyn Fn(&Value) -> bool| -> String {
        of(&runs, runbook)
            .into_iter()
            .find(|r| pick(r))
            .and_then(|r| r["id"].as_str())
            .expect("the run")
            .to_string()
    };
    let fixed = show(&id_of("disk", &|r| {
        r["alert"]["alert"]["fingerprint"] == "disk-1" && r["cause"]["kind"] == "alert"
    }));
    assert!(
        fixed.contains("remediated") && fixed.contains("verified"),
        "{fixed}"
    );
    let failed = show(&id_of("broken", &|_| true));
    assert!(!failed.contains("remediated"), "{failed}");
    let replay = show(&id_of("disk", &|r| r["cause"]["kind"] == "manual"));
    assert!(
        replay.contains("replaying alert") && !replay.contains("remediated"),
        "{replay}"
    );

    // `untoil report` through the daemon, then on the store alone: the same figures.
    let through = tokio::task::block_in_place(|| cli(&dirs, &["report", "--format", "json"]));
    let through: Value = serde_json::from_str(&through).expect("report JSON");
    assert_eq!(through["total"], api["total"]);
    let (code, stderr) = tokio::task::block_in_place(|| served.terminate());
    assert_eq!(code, Some(0), "{stderr}");
    let local = cli(&dirs, &["report", "--format", "json"]);
    let local: Value = serde_json::from_str(&local).expect("report JSON");
    assert_eq!(local["total"], api["total"]);
    let backlog_cli = cli(&dirs, &["report", "unautomated", "--format", "json"]);
    let backlog_cli: Value = serde_json::from_str(&backlog_cli).expect("backlog JSON");
    assert_eq!(backlog_cli["rows"], backlog["rows"]);
    assert_eq!(backlog_cli["not_remediated"], backlog["not_remediated"]);
}
