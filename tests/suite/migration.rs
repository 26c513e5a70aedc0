//! A store written by the first release (schema version 1, `tests/fixtures/store-v1`) opens with
//! the current code, migrated, with every run, rollup, alert episode, dedupe key, schedule fire
//! and guard state it held.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use untoil::report::period::Period;
use untoil::report::toil::toil_report;
use untoil::run::record::RunRecord;
use untoil::run::status::RunStatus;
use untoil::store::sled::SledStore;
use untoil::store::sled::migrate::Migrated;
use untoil::store::{Admitted, Candidate, Change, RunFilter, Store};
use untoil::trigger::alert::Notification;
use untoil::trigger::key::{DedupeKey, Fire};
use untoil::trigger::schedule::Schedule;

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1")
}

/// The fixture's `data/` unpacked into a fresh directory.
fn unpack() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(fixture_dir().join("store.tar.gz"))
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
            to: 2
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
            from: Some(2),
            to: 2
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
