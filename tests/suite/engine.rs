//! The engine's time-dependent units under a manual clock: schedules fire at their times (and
//! catch up after downtime), cooldowns admit a trigger exactly at their edge, approvals expire.
//! Nothing here waits for real time to pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;
use untoil::daemon::scheduler::{self, Scheduler};
use untoil::engine::Engine;
use untoil::engine::clock::{Clock, ManualClock};
use untoil::engine::runbooks::Runbooks;
use untoil::exec::executor::Executor;
use untoil::identity::actor::Actor;
use untoil::identity::principal::Principal;
use untoil::identity::scope::Scope;
use untoil::run::cause::Cause;
use untoil::run::record::RunRecord;
use untoil::run::status::RunStatus;
use untoil::runbook::plugins::Plugins;
use untoil::store::sled::SledStore;
use untoil::store::{RunFilter, Store};

/// The principal of the manual runs these tests start.
fn tester() -> Actor {
    Actor::new(Principal::user("tester", vec![], Scope::Full), None)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0)
        .single()
        .unwrap_or_default()
}

struct World {
    _dir: Option<tempfile::TempDir>,
    engine: Arc<Engine>,
    /// The engine's store, as itself: it counts its flushes.
    sled: SledStore,
    clock: Arc<ManualClock>,
}

/// An engine over a fresh store and these runbooks, at `t0` on a manual clock. No worker runs:
/// admitted runs stay queued, which is what these tests look at.
fn world(runbooks: &[(&str, &str)]) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    write_runbooks(dir.path(), runbooks);
    let mut w = world_at(dir.path(), t0());
    w._dir = Some(dir);
    w
}

fn write_runbooks(root: &std::path::Path, runbooks: &[(&str, &str)]) {
    let rb_dir = root.join("runbooks");
    std::fs::create_dir_all(&rb_dir).expect("mkdir");
    for (name, text) in runbooks {
        std::fs::write(rb_dir.join(format!("{name}.yaml")), text).expect("write runbook");
    }
}

/// An engine over the store and runbooks under `root`, with the clock at `now`.
fn world_at(root: &std::path::Path, now: DateTime<Utc>) -> World {
    let sled = SledStore::open(&root.join("data")).expect("store");
    let store: Arc<dyn Store> = Arc::new(sled.clone());
    let runbooks = Arc::new(Runbooks::new(root.join("runbooks"), root.join("plugins")));
    runbooks.reload();
    assert!(
        runbooks.state().diagnostics.iter().all(|d| !d.is_error()),
        "{}",
        runbooks.state().errors_text
    );
    let clock = Arc::new(ManualClock::new(now));
    let executor = Arc::new(Executor::new(Plugins::default()).expect("executor"));
    let engine = Arc::new(Engine::new(
        store,
        runbooks,
        executor,
        clock.clone() as Arc<dyn Clock>,
        100,
    ));
    World {
        _dir: None,
        engine,
        sled,
        clock,
    }
}

async fn runs(w: &World) -> Vec<RunRecord> {
    let mut runs = w
        .engine
        .store
        .list_runs(&RunFilter::default())
        .await
        .expect("list");
    runs.reverse();
    runs
}

/// Polls `check` until it holds (the engine's tasks run on other threads).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn fires(runs: &[RunRecord]) -> Vec<DateTime<Utc>> {
    runs.iter()
        .filter_map(|r| match r.cause {
            Cause::Schedule { at } => Some(at),
            _ => None,
        })
        .collect()
}

const EVERY_5: &str = "name: tick\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - schedule: \"*/5 * * * *\"\n    catchup: 1h\nsteps:\n  - name: s\n    run: \"true\"\n";

fn start_scheduler(w: &World) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler::run(
        Arc::new(Scheduler {
            admission: w.engine.admission.clone(),
            runbooks: w.engine.runbooks.clone(),
            store: w.engine.store.clone(),
            clock: w.clock.clone(),
        }),
        stop.clone(),
    ));
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_at_each_of_its_times_as_the_clock_passes_them() {
    let w = world(&[("tick", EVERY_5)]);
    let (stop, task) = start_scheduler(&w);
    for n in 1..=3 {
        until("the next fire's timer", || async {
            w.clock.sleepers() >= 1
        })
        .await;
        // Just short of the fire time: nothing.
        w.clock
            .advance(chrono::Duration::minutes(5) - chrono::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(fires(&runs(&w).await).len(), n - 1);
        w.clock.advance(chrono::Duration::seconds(1));
        until("a fire", || async { fires(&runs(&w).await).len() == n }).await;
    }
    let got = fires(&runs(&w).await);
    let want: Vec<DateTime<Utc>> = (1..=3)
        .map(|i| t0() + chrono::Duration::minutes(5 * i))
        .collect();
    assert_eq!(got, want);
    stop.cancel();
    task.await.expect("scheduler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_the_latest_missed_fire_runs_once_and_a_restart_never_repeats_one() {
    let root = tempfile::tempdir().expect("tempdir");
    write_runbooks(root.path(), &[("tick", EVERY_5)]);
    {
        let w = world_at(root.path(), t0());
        let (stop, task) = start_scheduler(&w);
        until("the first timer", || async { w.clock.sleepers() >= 1 }).await;
        w.clock.advance(chrono::Duration::minutes(5));
        until("the 10:05 fire", || async {
            fires(&runs(&w).await).len() == 1
        })
        .await;
        stop.cancel();
        task.await.expect("scheduler");
    }
    // untoil was down from 10:05 until 10:32; it starts again then.
    let w = world_at(root.path(), t0() + chrono::Duration::minutes(32));
    let (stop, task) = start_scheduler(&w);
    until("the catch-up", || async {
        fires(&runs(&w).await).len() == 2
    })
    .await;
    assert_eq!(
        fires(&runs(&w).await),
        vec![
            t0() + chrono::Duration::minutes(5),
            t0() + chrono::Duration::minutes(30)
        ],
        "only the latest missed fire (10:30) runs"
    );
    // The next fire is 10:35, on time, and once.
    until("the next timer", || async { w.clock.sleepers() >= 1 }).await;
    w.clock.advance(chrono::Duration::minutes(3));
    until("the 10:35 fire", || async {
        fires(&runs(&w).await).len() == 3
    })
    .await;
    stop.cancel();
    task.await.expect("scheduler");
    // Started again at the same moment: the catch-up fire is not repeated.
    let w2 = {
        let store = w.engine.store.clone();
        drop(w);
        drop(store);
        world_at(root.path(), t0() + chrono::Duration::minutes(36))
    };
    let (stop, task) = start_scheduler(&w2);
    until("the timer after the restart", || async {
        w2.clock.sleepers() >= 1
    })
    .await;
    assert_eq!(fires(&runs(&w2).await).len(), 3, "no fire repeated");
    stop.cancel();
    task.await.expect("scheduler");
}

const COOLDOWN: &str = "name: cool\nowner: t\ntoil: {manual_minutes: 1}\nguards:\n  cooldown: 10m\nsteps:\n  - name: s\n    run: \"true\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_skips_triggers_until_exactly_its_edge() {
    let w = world(&[("cool", COOLDOWN)]);
    let admission = &w.engine.admission;
    let tester = tester();
    let manual = || admission.manual("cool", Default::default(), &tester, None);
    manual().await.expect("first");
    w.clock.advance(chrono::Duration::minutes(5));
    manual().await.expect("second");
    w.clock.advance(chrono::Duration::minutes(5));
    manual()
        .await
        .expect("third, exactly 10 minutes after the first");
    let statuses: Vec<(RunStatus, Option<String>)> = runs(&w)
        .await
        .into_iter()
        .map(|r| (r.status, r.error))
        .collect();
    assert_eq!(statuses.len(), 3);
    assert_eq!(statuses[0].0, RunStatus::Queued);
    assert_eq!(statuses[1].0, RunStatus::Skipped);
    assert!(
        statuses[1]
            .1
            .as_deref()
            .is_some_and(|e| e.contains("cooldown")),
        "{statuses:?}"
    );
    assert_eq!(statuses[2].0, RunStatus::Queued, "{statuses:?}");
    // The skipped run was decided at the clock's time and ended then.
    let skipped = &runs(&w).await[1];
    assert_eq!(
        skipped.finished_at,
        Some(t0() + chrono::Duration::minutes(5))
    );
}

const APPROVAL: &str = "name: gated\nowner: t\ntoil: {manual_minutes: 1}\nguards:\n  approval: required\n  approval_timeout: 1h\nsteps:\n  - name: s\n    run: \"true\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_expires_when_its_timeout_passes_and_not_before() {
    let w = world(&[("gated", APPROVAL)]);
    let ids = w
        .engine
        .admission
        .manual("gated", Default::default(), &tester(), None)
        .await
        .expect("admitted");
    let id = ids[0].clone();
    assert_eq!(w.engine.approvals.count(), 1);
    until("the expiry timer", || async { w.clock.sleepers() >= 1 }).await;
    w.clock.advance(chrono::Duration::minutes(59));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let run = w
        .engine
        .store
        .get_run(&id)
        .await
        .expect("get")
        .expect("run");
    assert_eq!(run.status, RunStatus::PendingApproval);
    w.clock.advance(chrono::Duration::minutes(1));
    // Expired in the store, then no longer counted as waiting.
    until("the expiry", || async {
        w.engine.approvals.count() == 0
            && w.engine
                .store
                .get_run(&id)
                .await
                .ok()
                .flatten()
                .is_some_and(|r| r.status == RunStatus::Skipped)
    })
    .await;
    let run = w
        .engine
        .store
        .get_run(&id)
        .await
        .expect("get")
        .expect("run");
    assert_eq!(run.error.as_deref(), Some("approval expired"));
    assert_eq!(run.finished_at, Some(t0() + chrono::Duration::hours(1)));
    assert_eq!(run.approval.map(|a| a.by), Some("expired".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_whose_runbook_is_gone_at_the_next_start_fails_saying_so() {
    let root = tempfile::tempdir().expect("tempdir");
    write_runbooks(root.path(), &[("cool", COOLDOWN)]);
    let id = {
        let w = world_at(root.path(), t0());
        let ids = w
            .engine
            .admission
            .manual("cool", Default::default(), &tester(), None)
            .await
            .expect("admitted");
        ids[0].clone()
    };
    std::fs::remove_file(root.path().join("runbooks/cool.yaml")).expect("remove the runbook");
    let w = world_at(root.path(), t0() + chrono::Duration::minutes(1));
    let reconciled = w
        .engine
        .store
        .reconcile(Arc::new(|_: &mut RunRecord| {}))
        .await
        .expect("reconcile");
    assert_eq!(reconciled.queued.len(), 1);
    w.engine.resume(&reconciled).await.expect("resume");
    let run = w
        .engine
        .store
        .get_run(&id)
        .await
        .expect("get")
        .expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error.as_deref(),
        Some("runbook `cool` is no longer loaded")
    );
    assert_eq!(w.engine.queue.depth(), 0);
}

const COOL_ALERT: &str = "name: cool\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\nguards:\n  cooldown: 10m\nsteps:\n  - name: s\n    run: \"true\"\n";

/// The firing fixture as another episode: this fingerprint.
fn firing(fingerprint: &str) -> untoil::trigger::alert::Notification {
    let mut n =
        untoil::trigger::alert::Notification::from_json(&crate::common::fixture("firing.json"))
            .expect("fixture");
    for a in &mut n.alerts {
        a.fingerprint = fingerprint.to_string();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_episode_skipped_by_a_cooldown_runs_once_on_a_resend_after_it() {
    let w = world(&[("cool", COOL_ALERT)]);
    let admission = &w.engine.admission;
    let first = admission
        .notification(untoil::trigger::source::ALERTMANAGER, &firing("a"))
        .await
        .expect("first");
    assert_eq!(first.accepted.len(), 1);
    w.clock.advance(chrono::Duration::minutes(1));
    // Another episode inside the cooldown: skipped.
    let second = admission
        .notification(untoil::trigger::source::ALERTMANAGER, &firing("b"))
        .await
        .expect("second");
    assert_eq!(second.accepted.len(), 1);
    let skipped_id = second.accepted[0].clone();
    // Re-sent while the cooldown still refuses: a duplicate, no second skipped record.
    w.clock.advance(chrono::Duration::minutes(4));
    let early = admission
        .notification(untoil::trigger::source::ALERTMANAGER, &firing("b"))
        .await
        .expect("early");
    assert_eq!((early.accepted.len(), early.duplicates), (0, 1));
    assert_eq!(runs(&w).await.len(), 2);
    // Re-sent once the cooldown allows it: it runs, and says which skipped run it retries.
    w.clock.advance(chrono::Duration::minutes(6));
    let after = admission
        .notification(untoil::trigger::source::ALERTMANAGER, &firing("b"))
        .await
        .expect("after");
    assert_eq!(after.accepted.len(), 1, "{after:?}");
    let again = w
        .engine
        .store
        .get_run(&after.accepted[0])
        .await
        .expect("get")
        .expect("the run");
    assert_eq!(again.status, RunStatus::Queued);
    assert_eq!(again.retry_of, Some(skipped_id.clone()));
    // Never twice: the next re-send is a duplicate, even after another cooldown.
    w.clock.advance(chrono::Duration::minutes(30));
    let third = admission
        .notification(untoil::trigger::source::ALERTMANAGER, &firing("b"))
        .await
        .expect("third");
    assert_eq!((third.accepted.len(), third.duplicates), (0, 1));
    let statuses: Vec<RunStatus> = runs(&w).await.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![RunStatus::Queued, RunStatus::Skipped, RunStatus::Queued]
    );
    // The episode's runs are the one that runs, for verification and cancel_on_resolve.
    let episode = firing("b").alerts[0].episode();
    assert_eq!(
        w.engine
            .store
            .runs_of_episode(&episode)
            .await
            .expect("runs of episode"),
        vec![after.accepted[0].clone()]
    );
}

const VERIFIED_ONLY: &str = "name: fix\nowner: t\ntoil: {manual_minutes: 10}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\nverify: {alert_resolves_within: 15m, credit: verified_only}\nsteps:\n  - name: s\n    run: \"true\"\n";

/// An Alertmanager notification of one DiskFull alert on `instance` (its own fingerprint),
/// started at t0, firing or resolved at `ends`.
fn disk_full(
    instance: &str,
    resolved_at: Option<DateTime<Utc>>,
) -> untoil::trigger::alert::Notification {
    let status = if resolved_at.is_some() {
        "resolved"
    } else {
        "firing"
    };
    let ends = resolved_at.map_or("0001-01-01T00:00:00Z".to_string(), |t| t.to_rfc3339());
    let body = serde_json::json!({
        "receiver": "untoil", "status": status, "version": "4", "groupKey": "g",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "DiskFull", "instance": instance},
            "annotations": {},
            "startsAt": t0().to_rfc3339(),
            "endsAt": ends,
            "generatorURL": "",
            "fingerprint": format!("fp-{instance}"),
        }],
    });
    untoil::trigger::alert::Notification::from_json(body.to_string().as_bytes())
        .expect("a notification")
}

/// The run of the alert on `instance`, once `done` holds for it.
async fn run_of(w: &World, instance: &str, done: impl Fn(&RunRecord) -> bool) -> RunRecord {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = find_run_of(w, instance).await
            && done(&r)
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the run of {instance}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn find_run_of(w: &World, instance: &str) -> Option<RunRecord> {
    runs(w).await.into_iter().find(|r| {
        r.alert
            .as_ref()
            .is_some_and(|a| a.alert.labels.get("instance").map(String::as_str) == Some(instance))
    })
}

/// Today's rollup of the runbook `fix`, as `untoil report` sums it.
async fn rollup_of_fix(w: &World) -> untoil::ledger::rollup::Rollup {
    let day = w.clock.now().date_naive();
    let mut total = untoil::ledger::rollup::Rollup::default();
    for (k, r) in w
        .engine
        .store
        .rollups(day, day, false)
        .await
        .expect("rollups")
    {
        if k.runbook == "fix" {
            total.merge(&r);
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_only_credit_waits_for_the_verdict_and_the_rollups_follow_it() {
    let w = world(&[("fix", VERIFIED_ONLY)]);
    let workers = tokio::spawn(w.engine.workers.clone().work());
    for host in ["a", "b"] {
        w.engine
            .admission
            .notification(
                untoil::trigger::source::ALERTMANAGER,
                &disk_full(host, None),
            )
            .await
            .expect("accepted");
    }
    let finished = |r: &RunRecord| r.status == RunStatus::Succeeded;
    let a = run_of(&w, "a", finished).await;
    let b = run_of(&w, "b", finished).await;
    for run in [&a, &b] {
        let credit = run.toil.clone().unwrap_or_default();
        assert_eq!((credit.minutes, credit.held), (0.0, Some(10.0)), "{run:?}");
        assert!(
            credit.reason.contains("awaiting verification"),
            "{}",
            credit.reason
        );
        assert_eq!(
            run.verify_by,
            run.finished_at.map(|f| f + chrono::Duration::minutes(15))
        );
    }
    let held = rollup_of_fix(&w).await;
    assert_eq!((held.succeeded, held.toil_milli_minutes), (2, 0));

    // a's alert resolves within the window: verified, credited, and the rollups say so.
    w.clock.advance(chrono::Duration::minutes(5));
    let resolved = w.clock.now();
    w.engine
        .admission
        .notification(
            untoil::trigger::source::ALERTMANAGER,
            &disk_full("a", Some(resolved)),
        )
        .await
        .expect("accepted");
    let a = run_of(&w, "a", |r| r.verification.is_some()).await;
    assert_eq!(a.verification.as_ref().map(|v| v.verified), Some(true));
    assert_eq!(a.toil.as_ref().map(|t| t.minutes), Some(10.0));
    let after_a = rollup_of_fix(&w).await;
    assert_eq!(
        (
            after_a.runs,
            after_a.succeeded,
            after_a.verified,
            after_a.unverified
        ),
        (2, 2, 1, 0)
    );
    assert_eq!(after_a.toil_milli_minutes, 10_000);

    // b's never does: at the end of its window it becomes unverified, with nothing credited.
    until("b's window timer", || async { w.clock.sleepers() >= 1 }).await;
    w.clock
        .advance(chrono::Duration::minutes(10) - chrono::Duration::seconds(1));
    assert_eq!(
        find_run_of(&w, "b").await.and_then(|r| r.verification),
        None
    );
    w.clock.advance(chrono::Duration::seconds(2));
    let b = run_of(&w, "b", |r| r.verification.is_some()).await;
    assert_eq!(b.verification.as_ref().map(|v| v.verified), Some(false));
    assert_eq!(b.toil.as_ref().map(|t| t.minutes), Some(0.0));
    assert!(
        b.toil
            .as_ref()
            .is_some_and(|t| t.reason.contains("unverified")),
        "{b:?}"
    );
    let after_b = rollup_of_fix(&w).await;
    assert_eq!(
        (after_b.runs, after_b.verified, after_b.unverified),
        (2, 1, 1)
    );
    assert_eq!(after_b.toil_milli_minutes, 10_000);

    // A late resolve does not flip the verdict.
    w.engine
        .admission
        .notification(
            untoil::trigger::source::ALERTMANAGER,
            &disk_full("b", Some(w.clock.now())),
        )
        .await
        .expect("accepted");
    let b = find_run_of(&w, "b").await.expect("b");
    assert_eq!(b.verification.as_ref().map(|v| v.verified), Some(false));
    assert_eq!(rollup_of_fix(&w).await, after_b);
    w.engine.queue.close();
    workers.await.expect("workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_still_open_at_a_restart_ends_on_time_after_it() {
    let root = tempfile::tempdir().expect("tempdir");
    write_runbooks(root.path(), &[("fix", VERIFIED_ONLY)]);
    {
        let w = world_at(root.path(), t0());
        let workers = tokio::spawn(w.engine.workers.clone().work());
        w.engine
            .admission
            .notification(untoil::trigger::source::ALERTMANAGER, &disk_full("a", None))
            .await
            .expect("accepted");
        run_of(&w, "a", |r| r.status == RunStatus::Succeeded).await;
        w.engine.queue.close();
        workers.await.expect("workers");
    }
    // untoil is back 5 minutes later: the window (15m) is re-armed from the store.
    let w = world_at(root.path(), t0() + chrono::Duration::minutes(5));
    let reconciled = w
        .engine
        .store
        .reconcile(Arc::new(|_: &mut RunRecord| {}))
        .await
        .expect("reconcile");
    assert_eq!(reconciled.awaiting_verdict.len(), 1);
    w.engine.resume(&reconciled).await.expect("resume");
    until("the re-armed timer", || async { w.clock.sleepers() >= 1 }).await;
    w.clock.advance(chrono::Duration::minutes(11));
    let a = run_of(&w, "a", |r| r.verification.is_some()).await;
    assert_eq!(a.verification.map(|v| v.verified), Some(false));
    let reconciled = w
        .engine
        .store
        .reconcile(Arc::new(|_: &mut RunRecord| {}))
        .await
        .expect("reconcile");
    assert!(reconciled.awaiting_verdict.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_during_the_run_verifies_it_when_it_finishes_without_waiting_for_the_window() {
    let root = tempfile::tempdir().expect("tempdir");
    let go = root.path().join("go");
    // The step ends when the test creates `go`: the resolve arrives while it runs.
    let fix = format!(
        "name: fix\nowner: t\ntoil: {{manual_minutes: 10}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nverify: {{alert_resolves_within: 15m, credit: verified_only}}\nsteps:\n  - name: wait\n    run: while [ ! -e {} ]; do sleep 0.01; done\n",
        go.display()
    );
    write_runbooks(root.path(), &[("fix", &fix)]);
    let w = world_at(root.path(), t0());
    let workers = tokio::spawn(w.engine.workers.clone().work());
    w.engine
        .admission
        .notification(untoil::trigger::source::ALERTMANAGER, &disk_full("a", None))
        .await
        .expect("accepted");
    run_of(&w, "a", |r| r.status == RunStatus::Running).await;
    w.clock.advance(chrono::Duration::minutes(1));
    let resolved = w.clock.now();
    let outcome = w
        .engine
        .admission
        .notification(
            untoil::trigger::source::ALERTMANAGER,
            &disk_full("a", Some(resolved)),
        )
        .await
        .expect("accepted");
    assert_eq!(outcome.verified, 0, "not yet: the run has not finished");
    w.clock.advance(chrono::Duration::minutes(1));
    std::fs::write(&go, "").expect("go");
    // Decided when the run finishes, the clock never reaching the window's end.
    let a = run_of(&w, "a", |r| r.verification.is_some()).await;
    let v = a.verification.clone().expect("a verdict");
    assert!(v.verified, "{a:?}");
    assert_eq!(v.resolved_at, Some(resolved));
    assert_eq!(a.toil.as_ref().map(|t| t.minutes), Some(10.0));
    assert_eq!(
        untoil::report::human::verdict(&a).as_deref(),
        Some("verified: alert resolved while the run was running, within the verify window")
    );
    let rollup = rollup_of_fix(&w).await;
    assert_eq!(
        (
            rollup.verified,
            rollup.unverified,
            rollup.toil_milli_minutes
        ),
        (1, 0, 10_000)
    );
    // Its window's end changes nothing.
    w.clock.advance(chrono::Duration::minutes(20));
    let a = find_run_of(&w, "a").await.expect("a");
    assert_eq!(a.verification.map(|v| v.verified), Some(true));
    w.engine.queue.close();
    workers.await.expect("workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_resolved_before_the_run_started_cleared_on_its_own_and_is_not_credited() {
    let w = world(&[("fix", VERIFIED_ONLY)]);
    let workers = tokio::spawn(w.engine.workers.clone().work());
    // The alert started at t0; its run starts a minute later.
    w.clock.advance(chrono::Duration::minutes(1));
    w.engine
        .admission
        .notification(untoil::trigger::source::ALERTMANAGER, &disk_full("a", None))
        .await
        .expect("accepted");
    let a = run_of(&w, "a", |r| r.status == RunStatus::Succeeded).await;
    assert_eq!(a.started_at, Some(t0() + chrono::Duration::minutes(1)));
    // Its resolve says it ended 30 s after it started: before the run did.
    let ended = t0() + chrono::Duration::seconds(30);
    w.engine
        .admission
        .notification(
            untoil::trigger::source::ALERTMANAGER,
            &disk_full("a", Some(ended)),
        )
        .await
        .expect("accepted");
    let a = run_of(&w, "a", |r| r.verification.is_some()).await;
    let v = a.verification.clone().expect("a verdict");
    assert!(!v.verified, "{a:?}");
    assert_eq!(v.resolved_at, Some(ended));
    assert_eq!(a.toil.as_ref().map(|t| t.minutes), Some(0.0));
    assert_eq!(
        untoil::report::human::verdict(&a).as_deref(),
        Some("unverified: alert resolved before the run started: it cleared on its own")
    );
    let rollup = rollup_of_fix(&w).await;
    assert_eq!(
        (
            rollup.verified,
            rollup.unverified,
            rollup.toil_milli_minutes
        ),
        (0, 1, 0)
    );
    w.engine.queue.close();
    workers.await.expect("workers");
}

const DEFAULT_SOURCE: &str = "name: am\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\nsteps:\n  - name: s\n    run: \"true\"\n";
const BOTH_SOURCES: &str = "name: both\nowner: t\ntoil: {manual_minutes: 1}\ntriggers:\n  - alert: {source: [alertmanager, grafana], matchers: ['alertname=\"DiskFull\"']}\nsteps:\n  - name: s\n    run: \"true\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_fingerprint_from_two_sources_is_two_alerts_and_only_runbooks_taking_a_source_run()
{
    use untoil::trigger::source::{ALERTMANAGER, GRAFANA};
    let w = world(&[("am", DEFAULT_SOURCE), ("both", BOTH_SOURCES)]);
    let admission = &w.engine.admission;
    // Grafana's alert runs only the runbook that names Grafana: the default is Alertmanager.
    let grafana = admission
        .notification(GRAFANA, &firing("x"))
        .await
        .expect("grafana");
    assert_eq!((grafana.accepted.len(), grafana.unmatched), (1, 0));
    let run = w
        .engine
        .store
        .get_run(&grafana.accepted[0])
        .await
        .expect("get")
        .expect("run");
    assert_eq!(run.runbook, "both");
    match &run.cause {
        Cause::Alert {
            source,
            fingerprint,
            ..
        } => assert_eq!(
            (source.as_str(), fingerprint.as_str()),
            (GRAFANA, "grafana/x")
        ),
        other => panic!("cause {other:?}"),
    }
    // The same fingerprint from Alertmanager is another alert: not a duplicate of Grafana's.
    let am = admission
        .notification(ALERTMANAGER, &firing("x"))
        .await
        .expect("alertmanager");
    assert_eq!((am.accepted.len(), am.duplicates), (2, 0), "{am:?}");
    for id in &am.accepted {
        let run = w.engine.store.get_run(id).await.expect("get").expect("run");
        assert!(
            matches!(&run.cause, Cause::Alert { source, fingerprint, .. } if source == ALERTMANAGER && fingerprint == "x"),
            "{:?}",
            run.cause
        );
    }
    // Re-sent by each source: duplicates of their own episodes.
    let again = admission
        .notification(GRAFANA, &firing("x"))
        .await
        .expect("again");
    assert_eq!((again.accepted.len(), again.duplicates), (0, 1));
    let episodes = w
        .engine
        .store
        .alerts(
            t0() - chrono::Duration::days(1),
            t0() + chrono::Duration::days(1),
        )
        .await
        .expect("alerts");
    let mut seen: Vec<(String, String)> = episodes
        .iter()
        .map(|a| (a.source.clone(), a.fingerprint.clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (ALERTMANAGER.to_string(), "x".to_string()),
            (GRAFANA.to_string(), "grafana/x".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_admitted_for_a_caller_that_went_away_still_joins_the_queue() {
    let w = world(&[("am", DEFAULT_SOURCE)]);
    // A start with nanoseconds: no episode look-up first, so the one poll below reaches the
    // store's write, and the caller (a client that hung up) is dropped while it is under way.
    // A thread descheduled on a busy machine may find the write done at its one poll: then the
    // caller did not go away, and another alert tries again.
    let mut tries = 0;
    loop {
        tries += 1;
        let mut n = firing(&format!("gone-{tries}"));
        for a in &mut n.alerts {
            a.starts_at += chrono::Duration::nanoseconds(1);
        }
        let admitted = tokio::time::timeout(
            Duration::ZERO,
            w.engine
                .admission
                .notification(untoil::trigger::source::ALERTMANAGER, &n),
        )
        .await;
        if admitted.is_err() {
            break;
        }
        assert!(tries < 20, "the write was done within one poll 20 times");
    }
    until("the run stored", || async { runs(&w).await.len() == tries }).await;
    // Stored queued and queued here too: a worker takes it, not only the next start.
    let run = runs(&w).await.pop().expect("the last run");
    assert_eq!(run.status, RunStatus::Queued);
    until("the run queued", || async { w.engine.queue.knows(&run.id) }).await;
}

const ONE_STEP: &str =
    "name: fix\nowner: t\ntoil: {manual_minutes: 1}\nsteps:\n  - name: s\n    run: \"true\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_runs_waiting_makes_one_end_durable_with_the_next_claim() {
    let w = world(&[("fix", ONE_STEP)]);
    let tester = tester();
    for _ in 0..10 {
        w.engine
            .admission
            .manual("fix", Default::default(), &tester, None)
            .await
            .expect("queued");
    }
    let before = w.sled.flushes();
    let worker = tokio::spawn(w.engine.workers.clone().work());
    until("every run finished", || async {
        runs(&w)
            .await
            .iter()
            .all(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    w.engine.queue.close();
    worker.await.expect("the worker ends with the queue");
    // Each claim is flushed before its first step and carries the previous run's end with it;
    // the last end is flushed alone when no run is waiting: 11, where a flush per claim and
    // one per end made 20.
    assert_eq!(w.sled.flushes() - before, 11);
}
