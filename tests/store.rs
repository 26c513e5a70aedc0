//! The sled store: report totals reconcile with raw runs, SIGKILL never loses an acknowledged
//! run nor corrupts the store, reconciliation after a crash, schema and lock errors, retention.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use untoil::ledger::rollup::milli_minutes;
use untoil::ledger::toil::credit;
use untoil::report::query::{Dim, Period};
use untoil::report::toil::toil_report;
use untoil::run::cause::Cause;
use untoil::run::credit::Baseline;
use untoil::run::id::RunId;
use untoil::run::record::RunRecord;
use untoil::run::status::{RunStatus, StepStatus};
use untoil::run::step::StepResult;
use untoil::store::sled::SledStore;
use untoil::store::{RunFilter, Store};

const STATUSES: [RunStatus; 6] = [
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::Cancelled,
    RunStatus::TimedOut,
    RunStatus::Interrupted,
    RunStatus::Skipped,
];

#[derive(Debug, Clone)]
struct Spec {
    day: u32,
    team: u8,
    runbook: u8,
    cause: u8,
    status: usize,
    manual: u16,
    approval: u16,
    step_minutes: Vec<Option<u16>>,
    step_ok: Vec<bool>,
    approval_required: bool,
    dry_run: bool,
    duration_ms: u32,
    finish_twice: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (0u32..60, 0u8..3, 0u8..4, 0u8..3, 0usize..STATUSES.len()),
        (0u16..120, 0u16..10),
        prop::collection::vec((prop::option::of(0u16..30), any::<bool>()), 0..4),
        (
            any::<bool>(),
            prop::bool::weighted(0.1),
            0u32..600_000,
            prop::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (day, team, runbook, cause, status),
                (manual, approval),
                steps,
                (ar, dry, dur, twice),
            )| {
                Spec {
                    day,
                    team,
                    runbook,
                    cause,
                    status,
                    manual,
                    approval,
                    step_minutes: steps.iter().map(|s| s.0).collect(),
                    step_ok: steps.iter().map(|s| s.1).collect(),
                    approval_required: ar,
                    dry_run: dry,
                    duration_ms: dur,
                    finish_twice: twice,
                }
            },
        )
}

/// Builds a finished run as the executor would, toil credit included. Estimates are in
/// tenths so that fractional minutes are exercised.
fn build(i: usize, s: &Spec) -> RunRecord {
    let start = Utc
        .with_ymd_and_hms(2026, 9, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::days(s.day as i64)
        + chrono::Duration::seconds(i as i64);
    let steps: Vec<StepResult> = s
        .step_minutes
        .iter()
        .zip(&s.step_ok)
        .enumerate()
        .map(|(j, (_, ok))| StepResult {
            name: format!("s{j}"),
            kind: "shell".into(),
            status: Some(if *ok {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            }),
            ..Default::default()
        })
        .collect();
    let baseline = Baseline {
        manual_minutes: s.manual as f64 / 10.0,
        approval_minutes: s.approval as f64 / 10.0,
        step_minutes: s
            .step_minutes
            .iter()
            .enumerate()
            .filter_map(|(j, m)| m.map(|m| (format!("s{j}"), m as f64 / 10.0)))
            .collect(),
    };
    let status = STATUSES[s.status];
    let cause = match s.cause {
        0 => Cause::Manual { user: "u".into() },
        1 => Cause::Schedule { at: start },
        _ => Cause::Alert {
            fingerprint: format!("f{i}"),
            starts_at: start - chrono::Duration::seconds(30),
            labels: BTreeMap::new(),
        },
    };
    RunRecord {
        id: RunId(ulid::Ulid::from_parts(start.timestamp_millis() as u64, i as u128).to_string()),
        runbook: format!("rb-{}", s.runbook),
        version: "v".into(),
        owner: format!("team-{}", s.team),
        service: Some("svc".into()),
        cause,
        params: BTreeMap::new(),
        status,
        created_at: start,
        started_at: Some(start),
        finished_at: Some(start + chrono::Duration::milliseconds(s.duration_ms as i64)),
        toil: Some(credit(
            &baseline,
            status,
            &steps,
            s.dry_run,
            s.approval_required,
        )),
        steps,
        current_step: None,
        current_pgid: None,
        dry_run: s.dry_run,
        approval_required: s.approval_required,
        error: None,
        alert: None,
        verification: None,
        guard_key: None,
        approval: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn report_totals_equal_the_sum_over_the_recorded_runs(specs in prop::collection::vec(spec(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        for (i, s) in specs.iter().enumerate() {
            let run = build(i, s);
            store.finish_run(&run).expect("finish");
            if s.finish_twice {
                store.finish_run(&run).expect("finish again");
            }
        }
        let period = Period {
            from: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap_or_default(),
            to: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap_or_default(),
        };
        let raw = store.list_runs(&RunFilter::default()).expect("list");
        prop_assert_eq!(raw.len(), specs.len());
        // Recompute from raw runs, independently of the rollup code.
        let counted: Vec<&RunRecord> = raw
            .iter()
            .filter(|r| !r.dry_run && r.status != RunStatus::Skipped)
            .collect();
        let runs = counted.len() as u64;
        let succeeded = counted.iter().filter(|r| r.status == RunStatus::Succeeded).count() as u64;
        let cancelled = counted.iter().filter(|r| r.status == RunStatus::Cancelled).count() as u64;
        let toil: u64 = counted.iter().map(|r| milli_minutes(r.toil.as_ref().map_or(0.0, |t| t.minutes))).sum();
        for by in [vec![], vec![Dim::Team], vec![Dim::Runbook, Dim::Cause], vec![Dim::Team, Dim::Month], vec![Dim::Week]] {
            let report = toil_report(&store, period, &by).expect("report");
            prop_assert_eq!(report.total.runs, runs);
            prop_assert_eq!(report.total.succeeded, succeeded);
            prop_assert_eq!(report.total.cancelled, cancelled);
            prop_assert_eq!(report.total.failed, runs - succeeded - cancelled);
            prop_assert_eq!(report.total_rollup.toil_milli_minutes, toil);
            let row_sum: u64 = report.rows.iter().map(|r| r.rollup.toil_milli_minutes).sum();
            prop_assert_eq!(row_sum, toil);
            let row_runs: u64 = report.rows.iter().map(|r| r.figures.runs).sum();
            prop_assert_eq!(row_runs, runs);
        }
        // Per team, the rows equal the raw sums too.
        let report = toil_report(&store, period, &[Dim::Team]).expect("report");
        for row in &report.rows {
            let team = &row.group[0];
            let raw_team: u64 = counted
                .iter()
                .filter(|r| &r.owner == team)
                .map(|r| milli_minutes(r.toil.as_ref().map_or(0.0, |t| t.minutes)))
                .sum();
            prop_assert_eq!(row.rollup.toil_milli_minutes, raw_team);
        }
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_an_acknowledged_run_nor_corrupts_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut acknowledged: Vec<String> = Vec::new();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..8 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_untoil"))
            .args([
                "--data",
                &data.display().to_string(),
                "store-stress",
                "--count",
                "1000000",
                "--threads",
                "4",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start writer");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wanted = 20 + (seed % 400) as usize;
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut got = 0;
        // Kill it after a random number of acknowledged runs, i.e. at a random moment.
        while got < wanted {
            match lines.next() {
                Some(Ok(id)) => {
                    acknowledged.push(id);
                    got += 1;
                }
                _ => break,
            }
        }
        child.kill().expect("SIGKILL");
        // Lines written before the kill are acknowledged too.
        for id in lines.map_while(Result::ok) {
            acknowledged.push(id);
        }
        let _ = child.wait();
        assert!(got > 0, "round {round}: the writer acknowledged nothing");
    }
    let store = SledStore::open(&data).expect("store opens cleanly after 8 SIGKILLs");
    for id in &acknowledged {
        assert!(
            store.get_run(&RunId(id.clone())).expect("read").is_some(),
            "acknowledged run {id} is missing"
        );
    }
    let all = store.list_runs(&RunFilter::default()).expect("list");
    let today = Utc::now().date_naive();
    let report = toil_report(
        &store,
        Period {
            from: today - chrono::Duration::days(1),
            to: today,
        },
        &[],
    )
    .expect("report");
    assert_eq!(
        report.total.runs,
        all.len() as u64,
        "rollups reconcile with the runs on disk"
    );
}

#[test]
fn reconcile_interrupts_running_runs_kills_their_groups_and_keeps_queued_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut running = RunRecord::synthetic(1);
    // A process group left running by a "crashed" untoil: its steps carry the run's id.
    let mut orphan = Command::new("/bin/sh")
        .args(["-c", "sleep 1000004 & sleep 1000004"])
        .env("UNTOIL_RUN_ID", &running.id.0)
        .process_group(0)
        .spawn()
        .expect("spawn");
    let orphan_group = orphan.id();
    // The group id the store recorded now belongs to someone else (pid reuse after a reboot):
    // it must survive.
    let mut bystander = Command::new("/bin/sh")
        .args(["-c", "sleep 1000005 & sleep 1000005"])
        .process_group(0)
        .spawn()
        .expect("spawn");
    let recorded = bystander.id();
    // A service the run started on purpose, in a session of its own: it must survive too.
    let mut service = Command::new("setsid")
        .args(["sleep", "1000006"])
        .env("UNTOIL_RUN_ID", &running.id.0)
        .spawn()
        .expect("spawn setsid");
    // Whatever happens below, none of them outlives the test.
    let _cleanup = KillOnDrop(vec![orphan_group, recorded, service.id()]);
    {
        let store = SledStore::open(dir.path()).expect("open");
        running.status = RunStatus::Queued;
        running.finished_at = None;
        store.enqueue_run(&running).expect("enqueue");
        store.start_run(&running.id, Utc::now()).expect("start");
        store
            .record_step(
                &running.id,
                &StepResult {
                    name: "first".into(),
                    status: Some(StepStatus::Succeeded),
                    ..Default::default()
                },
            )
            .expect("step");
        store
            .step_started(&running.id, "second", Some(recorded))
            .expect("step started");
        let mut queued = RunRecord::synthetic(2);
        queued.status = RunStatus::Queued;
        queued.finished_at = None;
        store.enqueue_run(&queued).expect("enqueue");
    }
    let store = SledStore::open(dir.path()).expect("reopen");
    let r = store.reconcile().expect("reconcile");
    assert_eq!(r.interrupted.len(), 1);
    assert_eq!(r.queued.len(), 1);
    assert_eq!(
        untoil::exec::process::kill_leftovers(&r.interrupted),
        vec![orphan_group]
    );
    let run = store
        .get_run(&r.interrupted[0])
        .expect("get")
        .expect("exists");
    assert_eq!(run.status, RunStatus::Interrupted);
    assert_eq!(
        run.error.as_deref(),
        Some("interrupted: untoil stopped while step `second` was running")
    );
    assert_eq!(run.steps.len(), 1);
    let _ = orphan.wait();
    assert!(
        bystander.try_wait().expect("bystander").is_none(),
        "a group that is not the run's was killed"
    );
    assert!(
        service.try_wait().expect("service").is_none(),
        "a service the run started in its own session was killed"
    );
    // Nothing of the orphan group is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains("1000004"))
                    .unwrap_or(false)
            })
            .count();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} processes of the killed group remain"
        );
        std::thread::yield_now();
    }
    // A second reconcile finds nothing more.
    assert_eq!(store.reconcile().expect("again").interrupted.len(), 0);
}

use std::os::unix::process::CommandExt;

#[test]
fn a_store_of_a_newer_schema_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = sled::open(dir.path()).expect("sled");
        let meta = db.open_tree("meta").expect("tree");
        meta.insert("schema_version", b"99").expect("insert");
        db.flush().expect("flush");
    }
    let err = SledStore::open(dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("schema version 99, newer than this untoil understands (1)"),
        "{err}"
    );
}

#[test]
fn a_store_closed_a_moment_ago_reopens_at_once_and_a_held_one_is_reported_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    // sled releases its lock from a background thread after the handle is dropped; open()
    // waits for that instead of calling a store closed a moment ago "in use".
    for i in 0..25 {
        let store = SledStore::open(dir.path()).unwrap_or_else(|e| panic!("open #{i}: {e}"));
        drop(store);
    }
    {
        let db = sled::open(dir.path()).expect("sled");
        db.flush().expect("flush");
    }
    let held = SledStore::open(dir.path()).expect("open after a raw sled handle");
    let err = SledStore::open(dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("is in use by another untoil process"), "{err}");
    drop(held);
}

#[test]
fn commands_say_plainly_when_another_process_holds_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _held = SledStore::open(dir.path()).expect("open");
    let out = Command::new(env!("CARGO_BIN_EXE_untoil"))
        .args(["--data", &dir.path().display().to_string(), "runs"])
        .env("UNTOIL_SERVER", "http://127.0.0.1:9")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use by another untoil process"), "{err}");
}

#[test]
fn prune_removes_old_run_details_but_keeps_report_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("open");
    let old = build(
        1,
        &Spec {
            day: 0,
            team: 0,
            runbook: 0,
            cause: 0,
            status: 0,
            manual: 100,
            approval: 0,
            step_minutes: vec![],
            step_ok: vec![],
            approval_required: false,
            dry_run: false,
            duration_ms: 10,
            finish_twice: false,
        },
    );
    store.finish_run(&old).expect("finish");
    let recent = RunRecord::synthetic(3);
    store.finish_run(&recent).expect("finish");
    let removed = store
        .prune(Utc::now() - chrono::Duration::days(1))
        .expect("prune");
    assert_eq!(removed, 1);
    assert!(store.get_run(&old.id).expect("get").is_none());
    assert!(store.get_run(&recent.id).expect("get").is_some());
    let period = Period {
        from: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap_or_default(),
        to: Utc::now().date_naive(),
    };
    let report = toil_report(&store, period, &[]).expect("report");
    assert_eq!(report.total.runs, 2, "rollups survive pruning");
    assert_eq!(report.total_rollup.toil_milli_minutes, 10_000 + 5_000);
}

/// Kills these process groups when dropped (so a failed assertion leaves no `sleep` behind).
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for g in &self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(*g as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn concurrent_admissions_and_finishes_queue_each_key_once_count_every_delivery_and_each_run_once() {
    const THREADS: usize = 16;
    const KEYS: usize = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(SledStore::open(dir.path()).expect("open"));
    let starts_at = Utc
        .with_ymd_and_hms(2026, 11, 28, 14, 43, 50)
        .single()
        .unwrap_or_default();
    let queued = |i: usize| RunRecord {
        runbook: "rb".into(),
        status: RunStatus::Queued,
        started_at: None,
        finished_at: None,
        ..RunRecord::synthetic(i)
    };
    // Every thread offers every key (as HA peers and re-sends do), starting at a different one.
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut admitted = Vec::new();
                for i in 0..KEYS {
                    let k = (i + t) % KEYS;
                    let run = queued(k);
                    let now = Utc::now();
                    let alert = untoil::store::AlertReceived {
                        fingerprint: format!("fp{k}"),
                        starts_at,
                        received_at: now,
                        last_seen: now,
                        times_received: 1,
                        labels: BTreeMap::new(),
                        annotations: BTreeMap::new(),
                        matched: vec!["rb".into()],
                    };
                    let fresh = store
                        .enqueue_unique(&[(format!("alert:fp{k}:rb"), run.clone())], &[alert])
                        .expect("enqueue");
                    if fresh == [true] {
                        admitted.push((k, run.id));
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted: Vec<(usize, RunId)> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("admitting thread"))
        .collect();
    admitted.sort();
    let keys: Vec<usize> = admitted.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, (0..KEYS).collect::<Vec<_>>(), "one run per key");
    assert_eq!(
        store.list_runs(&RunFilter::default()).expect("list").len(),
        KEYS,
        "no run stored beyond the admitted ones"
    );
    for (k, id) in &admitted {
        let run = store
            .get_run(id)
            .expect("get")
            .expect("admitted run stored");
        assert_eq!(run.status, RunStatus::Queued);
        assert_eq!(
            store
                .runs_with_key_prefix(&format!("alert:fp{k}:"))
                .expect("dedupe"),
            vec![id.clone()]
        );
    }
    assert_eq!(store.reconcile().expect("reconcile").queued.len(), KEYS);
    let episodes = store
        .alerts(
            Utc::now() - chrono::Duration::hours(1),
            Utc::now() + chrono::Duration::hours(1),
        )
        .expect("alerts");
    assert_eq!(episodes.len(), KEYS);
    for e in &episodes {
        assert_eq!(
            e.times_received, THREADS as u64,
            "{}: every delivery counted",
            e.fingerprint
        );
    }

    // Every admitted run finished by every thread at once, while admissions go on: each run is
    // final and counted once in the rollups.
    let finals: Vec<RunRecord> = admitted
        .iter()
        .map(|(_, id)| {
            let mut run = store.get_run(id).expect("get").expect("stored");
            let now = Utc::now();
            run.status = RunStatus::Succeeded;
            run.started_at = Some(now);
            run.finished_at = Some(now);
            run
        })
        .collect();
    let finals = std::sync::Arc::new(finals);
    let finishers: Vec<_> = (0..8)
        .map(|t| {
            let (store, finals) = (store.clone(), finals.clone());
            std::thread::spawn(move || {
                for i in 0..finals.len() {
                    store
                        .finish_run(&finals[(i + t * 5) % finals.len()])
                        .expect("finish");
                    let extra = queued(10_000 + t * 100 + i);
                    store
                        .enqueue_unique(&[(format!("alert:extra{t}-{i}:rb"), extra)], &[])
                        .expect("enqueue while finishing");
                }
            })
        })
        .collect();
    for f in finishers {
        f.join().expect("finishing thread");
    }
    for run in finals.iter() {
        let stored = store.get_run(&run.id).expect("get").expect("stored");
        assert_eq!(stored.status, RunStatus::Succeeded);
    }
    let today = Utc::now().date_naive();
    let counted: u64 = store
        .rollups(
            today.pred_opt().unwrap_or(today),
            today.succ_opt().unwrap_or(today),
            false,
        )
        .expect("rollups")
        .iter()
        .map(|(_, r)| r.runs)
        .sum();
    assert_eq!(counted, KEYS as u64, "each run counted once");
    let reconciled = store.reconcile().expect("reconcile");
    assert_eq!(
        reconciled.queued.len(),
        8 * KEYS,
        "only the extra runs are still queued"
    );

    // Within one call, a repeated key admits its first run only.
    let (a, b) = (queued(1000), queued(1001));
    let fresh = store
        .enqueue_unique(
            &[
                ("alert:again:rb".into(), a.clone()),
                ("alert:again:rb".into(), b.clone()),
            ],
            &[],
        )
        .expect("enqueue");
    assert_eq!(fresh, vec![true, false]);
    assert!(store.get_run(&a.id).expect("get").is_some());
    assert!(store.get_run(&b.id).expect("get").is_none());
}
