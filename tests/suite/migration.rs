//! A store written by the first release (schema version 1, `tests/fixtures/store-v1`) opens with
//! the current code, migrated, with every run, rollup, alert episode, dedupe key, schedule fire
//! and guard state it held. A store of the last schema-2 release with pruned runs
//! (`tests/fixtures/store-v2`) keeps its report totals exactly and names what it cannot split. A
//! store of the last schema-3 release (`tests/fixtures/store-v3`) reads back identically, with
//! each notification stored once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use untoil::report::period::Period;
use untoil::report::query::Dim;
use untoil::report::toil::toil_report;
use untoil::report::toil::{Figures, ToilReport};
use untoil::run::record::RunRecord;
use untoil::run::status::RunStatus;
use untoil::store::sled::SledStore;
use untoil::store::sled::migrate::{Migrated, SCHEMA_VERSION};
use untoil::store::{Admitted, Candidate, Change, RunFilter, Store};
use untoil::trigger::alert::Notification;
use untoil::trigger::key::{DedupeKey, Fire};
use untoil::trigger::schedule::Schedule;

fn fixture_dir() -> std::path::PathBuf {
    fixture("store-v1")
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The first release's store's `data/` unpacked into a fresh directory.
fn unpack() -> tempfile::TempDir {
    unpack_fixture("store-v1")
}

/// A fixture store's `data/` unpacked into a fresh directory.
fn unpack_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(fixture(name).join("store.tar.gz"))
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar runs");
    assert!(status.success(), "unpacking the fixture store");
    dir
}

fn expected_runs() -> Vec<RunRecord> {
    let text = std::fs::read(fixture_dir().join("runs.json")).expect("runs.json");
    serde_json::from_slice(&text).expect("runs.json holds run records")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_by_the_first_release_opens_migrated_with_everything_in_it() {
    let dir = unpack();
    let data = dir.path().join("data");
    let store = SledStore::open(&data).expect("the old store opens");
    assert_eq!(
        store.migrated(),
        &Migrated {
            from: Some(1),
            to: SCHEMA_VERSION
        }
    );
    let id = store.id().to_string();
    assert_eq!(id.len(), 26, "a store id was given: {id}");

    // Every run reads back as the old release wrote it.
    let expected = expected_runs();
    let runs = store
        .list_runs(&RunFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(
        serde_json::to_value(&runs).expect("json"),
        serde_json::to_value(&expected).expect("json")
    );
    let count = |rb: &str, s: RunStatus| {
        runs.iter()
            .filter(|r| r.runbook == rb && r.status == s)
            .count()
    };
    assert_eq!(count("disk", RunStatus::Succeeded), 1);
    assert_eq!(count("gated", RunStatus::PendingApproval), 1);
    assert_eq!(count("flaky", RunStatus::Failed), 1);
    assert!(count("slow", RunStatus::Queued) >= 1);

    // The rollups still add up to the runs.
    let today = Utc::now().date_naive();
    let first = runs
        .iter()
        .map(|r| r.created_at.date_naive())
        .min()
        .unwrap_or(today);
    let report = toil_report(
        &store,
        Period {
            from: first,
            to: today,
        },
        &[],
    )
    .await
    .expect("report");
    let counted: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.status.is_final() && r.status != RunStatus::Skipped && !r.dry_run)
        .collect();
    assert_eq!(report.total.runs, counted.len() as u64);
    let toil: u64 = counted
        .iter()
        .map(|r| untoil::ledger::rollup::milli_minutes(r.toil.as_ref().map_or(0.0, |t| t.minutes)))
        .sum();
    assert_eq!(report.total_rollup.toil_milli_minutes, toil);

    // Its dedupe keys still hold: the alert that ran `disk` does not run it again.
    let firing = Notification::from_json(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alertmanager/firing.json"),
        )
        .expect("fixture"),
    )
    .expect("decodes");
    let episode = firing.alerts[0].episode();
    let disk_run = runs
        .iter()
        .find(|r| r.runbook == "disk")
        .expect("the disk run");
    assert_eq!(
        store.runs_of_episode(&episode).await.expect("episode"),
        vec![disk_run.id.clone()]
    );
    let again = store
        .admit(
            vec![Candidate {
                key: DedupeKey::Alert {
                    episode,
                    runbook: "disk".into(),
                    resolved: false,
                },
                run: RunRecord {
                    status: RunStatus::Queued,
                    ..RunRecord::synthetic(1)
                },
                gate: None,
            }],
            vec![],
        )
        .await
        .expect("admit");
    assert_eq!(again, vec![Admitted::Duplicate]);

    // The schedule's last fire is found for catch-up.
    let tick = Fire::new(
        "tick",
        0,
        &Schedule::parse("* * * * * *", chrono_tz::UTC).expect("cron"),
    );
    let last_fire: Option<DateTime<Utc>> = runs
        .iter()
        .filter_map(|r| match r.cause {
            untoil::run::cause::Cause::Schedule { at } => Some(at),
            _ => None,
        })
        .max();
    assert_eq!(store.last_fire(&tick).await.expect("last fire"), last_fire);

    // The breaker `flaky` opened is still open.
    let guards = store.guard_states().await.expect("guards");
    let flaky: Vec<_> = guards.iter().filter(|(rb, _, _)| rb == "flaky").collect();
    assert_eq!(flaky.len(), 1, "{guards:?}");
    assert!(flaky[0].2.breaker.is_some());

    // The alert episodes: the matched one and the three the backlog lists.
    let episodes = store
        .alerts(
            first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
            Utc::now(),
        )
        .await
        .expect("alerts");
    let unmatched = episodes.iter().filter(|e| e.matched.is_empty()).count();
    assert_eq!(episodes.len() - unmatched, 1);
    assert!(unmatched >= 3, "{episodes:?}");

    // What a start finds: queued and pending runs, nothing running.
    let reconciled = store
        .reconcile(Arc::new(|_: &mut RunRecord| {}) as Change)
        .await
        .expect("reconcile");
    assert!(reconciled.interrupted.is_empty());
    let queued: BTreeMap<String, usize> =
        reconciled.queued.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.runbook.clone()).or_default() += 1;
            m
        });
    assert_eq!(
        queued.values().sum::<usize>(),
        runs.iter()
            .filter(|r| r.status == RunStatus::Queued)
            .count(),
        "{queued:?}"
    );
    assert_eq!(reconciled.pending_approval.len(), 1);

    // Opened again: already current, same id.
    drop(store);
    let store = SledStore::open(&data).expect("reopens");
    assert_eq!(
        store.migrated(),
        &Migrated {
            from: Some(SCHEMA_VERSION),
            to: SCHEMA_VERSION
        }
    );
    assert_eq!(store.id(), id);
}

#[test]
fn the_fixture_is_what_its_readme_says() {
    let runs: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("runs.json")).expect("read"))
            .expect("json");
    let statuses: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| {
            (
                r["runbook"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for want in [
        ("disk", "succeeded"),
        ("flaky", "failed"),
        ("flaky", "skipped"),
        ("gated", "pending_approval"),
        ("slow", "interrupted"),
        ("slow", "queued"),
        ("tick", "succeeded"),
    ] {
        assert!(statuses.contains(&want), "{want:?} in {statuses:?}");
    }
}

/// The old release's report (`report-*.json`) and the migrated store's, over the same days.
async fn reports(store: &SledStore, file: &str) -> (Value, ToilReport) {
    let old: Value = serde_json::from_slice(
        &std::fs::read(fixture("store-v2").join(file)).expect("the old release's report"),
    )
    .expect("json");
    let day = |k: &str| {
        untoil::report::period::day(old["period"][k].as_str().unwrap_or("")).expect("a day")
    };
    let period = Period::new(day("from"), day("to")).expect("period");
    let new = toil_report(store, period, &[Dim::Runbook, Dim::Cause])
        .await
        .expect("report");
    (old, new)
}

/// The figures schema 2 knew are the same; the new splits add up to them.
fn same_totals(old: &Value, new: &Figures, what: &str) {
    let n = |k: &str| old[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(new.runs, n("runs"), "runs of {what}");
    assert_eq!(
        new.succeeded + new.noop,
        n("succeeded"),
        "successes of {what}"
    );
    assert_eq!(
        new.failed + new.interrupted,
        n("failed"),
        "failed (interrupted included then) of {what}"
    );
    assert_eq!(new.cancelled, n("cancelled"), "cancelled of {what}");
    assert_eq!(
        new.toil_minutes,
        old["toil_minutes"].as_f64().unwrap_or(-1.0),
        "toil of {what}"
    );
    assert_eq!(new.median_ms, old["median_ms"].as_u64(), "median of {what}");
    assert_eq!(new.p95_ms, old["p95_ms"].as_u64(), "p95 of {what}");
    assert_eq!(new.mttr_ms, old["mttr_ms"].as_u64(), "mean TTR of {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_2_store_keeps_its_totals_and_names_what_pruned_runs_cannot_split() {
    let dir = unpack_fixture("store-v2");
    let data = dir.path().join("data");
    let store = SledStore::open(&data).expect("the schema 2 store opens");
    assert_eq!(
        store.migrated(),
        &Migrated {
            from: Some(2),
            to: SCHEMA_VERSION
        }
    );
    let runs: Vec<RunRecord> = serde_json::from_slice(
        &std::fs::read(fixture("store-v2").join("runs.json")).expect("runs.json"),
    )
    .expect("run records");

    for file in ["report-day.json", "report-month.json"] {
        let (old, new) = reports(&store, file).await;
        same_totals(&old["total"], &new.total, file);
        let old_rows = old["rows"].as_array().cloned().unwrap_or_default();
        assert_eq!(old_rows.len(), new.rows.len(), "{file}: {new:?}");
        for (o, n) in old_rows.iter().zip(&new.rows) {
            assert_eq!(o["group"], serde_json::json!(n.group), "{file}");
            same_totals(o, &n.figures, &format!("{file} {:?}", n.group));
        }

        // What the runs still present tell apart; what the pruned ones cannot.
        let row = |rb: &str| {
            new.rows
                .iter()
                .find(|r| r.group[0] == rb)
                .map(|r| r.figures.clone())
                .expect("row")
        };
        let slow = row("slow");
        assert_eq!(
            (slow.interrupted, slow.failed, slow.legacy_runs),
            (1, 1, 1),
            "{file}"
        );
        let flaky = row("flaky");
        assert_eq!((flaky.failed, flaky.legacy_runs), (2, 1), "{file}");
        let gone = row("gone");
        assert_eq!((gone.runs, gone.legacy_runs), (1, 1), "{file}");
        assert_eq!(row("ok").legacy_runs, 2, "{file}");
        let disk = row("disk");
        assert_eq!((disk.verified, disk.unverified), (1, 0), "{file}");
        assert_eq!(disk.verified_share, Some(1.0), "{file}");
        assert_eq!(disk.legacy_runs, 1, "{file}");
        // The percentiles cover the one alert run still recorded; the mean covers both.
        let present = runs
            .iter()
            .find_map(|r| match (&r.cause, r.finished_at) {
                (untoil::run::cause::Cause::Alert { starts_at, .. }, Some(end)) => {
                    Some((end - *starts_at).num_milliseconds() as f64)
                }
                _ => None,
            })
            .expect("the recorded alert run");
        let median = disk.ttr_median_ms.expect("a median") as f64;
        assert!(
            (median - present).abs() <= present * 0.04,
            "{median} vs {present}"
        );
        assert_eq!(disk.ttr_p90_ms, disk.ttr_median_ms);
        assert!(disk.mttr_ms.is_some_and(|m| m as f64 > median), "{disk:?}");

        assert_eq!(new.total.legacy_runs, 6, "{file}");
        assert_eq!(new.total.interrupted, 1, "{file}");
        // 6 successes of 6 + 3 failed: the interrupted run is neither.
        assert_eq!(new.total.success_rate, Some(6.0 / 9.0), "{file}");
        assert_eq!(new.notes.len(), 1, "{file}: {:?}", new.notes);
        let table = new.render(untoil::report::query::Format::Table);
        assert!(
            table.contains("* 6 runs counted before the store's schema 3"),
            "{table}"
        );
    }

    // Opened again: already current, and the figures did not move.
    let before = reports(&store, "report-month.json").await.1;
    drop(store);
    let store = SledStore::open(&data).expect("reopens");
    assert_eq!(
        store.migrated(),
        &Migrated {
            from: Some(SCHEMA_VERSION),
            to: SCHEMA_VERSION
        }
    );
    assert_eq!(reports(&store, "report-month.json").await.1, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_3_store_reads_back_identically_with_notifications_stored_once() {
    let dir = unpack_fixture("store-v3");
    let data = dir.path().join("data");
    let expected: Vec<Value> = serde_json::from_slice(
        &std::fs::read(fixture("store-v3").join("runs.json")).expect("runs.json"),
    )
    .expect("json");
    let read_all = |store: SledStore| async move {
        let listed = store
            .list_runs(&RunFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("list");
        let mut one_by_one = Vec::new();
        for r in &listed {
            one_by_one.push(store.get_run(&r.id).await.expect("get").expect("stored"));
        }
        assert_eq!(listed, one_by_one);
        (store, serde_json::to_value(&listed).expect("json"))
    };

    let store = SledStore::open(&data).expect("the schema 3 store opens");
    assert_eq!(
        store.migrated(),
        &Migrated {
            from: Some(3),
            to: SCHEMA_VERSION
        }
    );
    let (store, runs) = read_all(store).await;
    assert_eq!(runs, Value::Array(expected.clone()));
    let running: Vec<&Value> = expected
        .iter()
        .filter(|r| r["status"] == "running")
        .collect();
    assert_eq!(running.len(), 1, "the fixture's running run");
    assert_eq!(running[0]["current_step"], "wait");
    assert_eq!(running[0]["steps"].as_array().map(Vec::len), Some(1));
    drop(store);

    // Four alert runs of two notifications: two stored, every record refers to one.
    let db = crate::common::raw_sled(&data);
    let notifications = db.open_tree("notifications").expect("tree");
    assert_eq!(notifications.len(), 2);
    let runs_tree = db.open_tree("runs").expect("tree");
    let mut refs = 0;
    for item in runs_tree.iter() {
        let (_, v) = item.expect("reads");
        let record: Value = serde_json::from_slice(&v).expect("json");
        if record["alert"].is_object() {
            assert!(record["alert"].get("notification").is_none(), "{record}");
            let r = record["alert"]["notification_ref"].as_str().expect("a ref");
            assert!(notifications.contains_key(r).expect("reads"), "{r}");
            refs += 1;
        }
    }
    assert_eq!(refs, 4);
    // A crash before the version moved on repeats the step: nothing changes.
    db.open_tree("meta")
        .expect("tree")
        .insert("schema_version", b"3")
        .expect("write");
    db.flush().expect("flush");
    drop((notifications, runs_tree, db));
    let store = SledStore::open(&data).expect("reopens");
    assert_eq!(store.migrated().from, Some(3));
    let (store, again) = read_all(store).await;
    assert_eq!(again, runs);

    // The run left running is interrupted at the next start, with the step it was in.
    let rec = store
        .reconcile(Arc::new(|r: &mut RunRecord| {
            r.error = Some(format!("interrupted in {:?}", r.current_step));
            r.status = RunStatus::Interrupted;
        }) as Change)
        .await
        .expect("reconcile");
    assert_eq!(rec.interrupted.len(), 1);
    let run = store
        .get_run(&rec.interrupted[0])
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(run.error.as_deref(), Some("interrupted in Some(\"wait\")"));
    assert_eq!(run.steps.len(), 1);
    drop(store);
    let store = SledStore::open(&data).expect("reopens");
    assert_eq!(
        store.migrated(),
        &Migrated {
            from: Some(SCHEMA_VERSION),
            to: SCHEMA_VERSION
        }
    );
}
