//! The sled store as a process sees it: SIGKILL never loses an acknowledged run nor corrupts
//! the store, a crashed daemon's step processes are found and killed, schema and lock errors,
//! and a store written by an earlier release opens (the contract itself is checked for every
//! backend in `conformance`).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use untoil::report::period::Period;
use untoil::report::toil::toil_report;
use untoil::run::id::RunId;
use untoil::run::record::RunRecord;
use untoil::run::status::{RunStatus, StepStatus};
use untoil::run::step::StepResult;
use untoil::store::sled::SledStore;
use untoil::store::{Candidate, Change, RunFilter, Store};
use untoil::trigger::key::DedupeKey;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
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
    let rt = runtime();
    for id in &acknowledged {
        assert!(
            rt.block_on(store.get_run(&RunId(id.clone())))
                .expect("read")
                .is_some(),
            "acknowledged run {id} is missing"
        );
    }
    let all = rt
        .block_on(store.list_runs(&RunFilter::default()))
        .expect("list");
    let today = Utc::now().date_naive();
    let report = rt
        .block_on(toil_report(
            &store,
            Period {
                from: today - chrono::Duration::days(1),
                to: today,
            },
            &[],
        ))
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
    let rt = runtime();
    let manual = |run: RunRecord| Candidate {
        key: DedupeKey::Manual {
            run: run.id.0.clone(),
        },
        run,
        gate: None,
    };
    {
        let store = SledStore::open(dir.path()).expect("open");
        running.status = RunStatus::Queued;
        running.finished_at = None;
        running.started_at = None;
        let mut queued = RunRecord::synthetic(2);
        queued.status = RunStatus::Queued;
        queued.finished_at = None;
        rt.block_on(async {
            store
                .admit(vec![manual(running.clone()), manual(queued)], vec![])
                .await
                .expect("admit");
            let start: Change =
                Arc::new(|r: &mut RunRecord| untoil::engine::lifecycle::start(r, Utc::now()));
            store
                .transition(&running.id, &[RunStatus::Queued], start)
                .await
                .expect("start");
            store
                .record_step(
                    &running.id,
                    &StepResult {
                        name: "first".into(),
                        status: Some(StepStatus::Succeeded),
                        ..Default::default()
                    },
                )
                .await
                .expect("step");
            store
                .step_started(&running.id, "second", Some(recorded))
                .await
                .expect("step started");
        });
    }
    let store = SledStore::open(dir.path()).expect("reopen");
    let interrupt: Change =
        Arc::new(|r: &mut RunRecord| untoil::engine::lifecycle::interrupt(r, Utc::now(), false));
    let r = rt
        .block_on(store.reconcile(interrupt.clone()))
        .expect("reconcile");
    assert_eq!(r.interrupted.len(), 1);
    assert_eq!(r.queued.len(), 1);
    assert_eq!(
        untoil::exec::process::kill_leftovers(&r.interrupted),
        vec![orphan_group]
    );
    let run = rt
        .block_on(store.get_run(&r.interrupted[0]))
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
    assert_eq!(
        rt.block_on(store.reconcile(interrupt))
            .expect("again")
            .interrupted
            .len(),
        0
    );
}

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
        err.contains("schema version 99, newer than this untoil understands (4)"),
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
        .env_remove("UNTOIL_SERVER")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use by another untoil process"), "{err}");
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
fn a_run_whose_notification_is_gone_reads_as_corrupt_naming_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alertmanager/firing.json"
    ))
    .expect("fixture");
    let n = untoil::trigger::alert::Notification::from_json(&body).expect("decodes");
    let alert = n.alerts[0].clone();
    let run = RunRecord {
        status: RunStatus::Queued,
        alert: Some(untoil::run::cause::AlertContext::new(
            alert,
            Arc::new(n.without_alerts()),
        )),
        ..RunRecord::synthetic(1)
    };
    let id = run.id.clone();
    {
        let store = SledStore::open(dir.path()).expect("opens");
        rt.block_on(store.admit(
            vec![Candidate {
                key: DedupeKey::Manual { run: id.0.clone() },
                run,
                gate: None,
            }],
            vec![],
        ))
        .expect("admit");
    }
    // What no write of the store does: the notification removed under its run.
    let db = crate::common::raw_sled(dir.path());
    let tree = db.open_tree("notifications").expect("tree");
    assert_eq!(tree.len(), 1);
    tree.clear().expect("clear");
    db.flush().expect("flush");
    drop((tree, db));
    let store = SledStore::open(dir.path()).expect("opens");
    let e = rt
        .block_on(store.get_run(&id))
        .expect_err("a dangling ref is an error");
    assert!(
        matches!(&e, untoil::store::error::StoreError::Corrupt { key, .. } if key.contains(&id.0)),
        "{e}"
    );
    assert!(e.to_string().contains("notification"), "{e}");
    assert!(rt.block_on(store.list_runs(&RunFilter::default())).is_err());
}
