//! The store contract, checked against every backend ([`backends`]): what `Store` promises in
//! its documentation (whole intents, dedupe, guard decisions in the admitting write, atomic
//! transitions, rollups counted once, reconciliation, retention), whatever database keeps it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use untoil::guard::{Breaker, KeyState};
use untoil::ledger::rollup::{Rollup, milli_minutes};
use untoil::ledger::toil::credit;
use untoil::report::period::Period;
use untoil::report::query::Dim;
use untoil::report::toil::toil_report;
use untoil::run::cause::{AlertContext, Cause};
use untoil::run::credit::Baseline;
use untoil::run::id::RunId;
use untoil::run::record::{RunRecord, Verification};
use untoil::run::status::{RunStatus, StepStatus};
use untoil::run::step::StepResult;
use untoil::store::postgres::PgStore;
use untoil::store::sled::SledStore;
use untoil::store::{
    Admitted, AlertReceived, Candidate, Change, Decide, Delivery, GuardOf, RunFilter, Store,
    Transition, Update,
};
use untoil::trigger::alert::Notification;
use untoil::trigger::key::{DedupeKey, Episode, Fire};
use untoil::trigger::schedule::Schedule;

/// A kind of store under test.
pub trait Backend: Send + Sync {
    /// Its name, in failure messages.
    fn name(&self) -> &'static str;
    /// Opens the store kept under `dir` (a new one the first time).
    fn open(&self, dir: &Path) -> Arc<dyn Store>;
    /// What the closed store under `dir` holds of notifications and progress, where the backend
    /// can tell (None: the checks of its layout are skipped).
    fn stored(&self, _dir: &Path) -> Option<Stored> {
        None
    }
}

/// What a closed store holds, by its own layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Notifications kept.
    pub notifications: usize,
    /// Progress events kept.
    pub progress: usize,
    /// Bytes of run records and notifications (keys and values).
    pub bytes: usize,
}

struct Sled;

impl Backend for Sled {
    fn name(&self) -> &'static str {
        "sled"
    }
    fn open(&self, dir: &Path) -> Arc<dyn Store> {
        Arc::new(SledStore::open(dir).unwrap_or_else(|e| panic!("sled store: {e}")))
    }
    fn stored(&self, dir: &Path) -> Option<Stored> {
        let db = crate::common::raw_sled(dir);
        let tree = |n: &str| db.open_tree(n).expect("tree");
        let bytes = |t: &sled::Tree| -> usize {
            t.iter()
                .map(|i| i.map(|(k, v)| k.len() + v.len()).expect("reads"))
                .sum()
        };
        let (runs, notifications) = (tree("runs"), tree("notifications"));
        Some(Stored {
            notifications: notifications.len(),
            progress: tree("progress").len(),
            bytes: bytes(&runs) + bytes(&notifications),
        })
    }
}

/// PostgreSQL: one cluster per test (started at the first open, stopped when the backend is
/// dropped), one database per store directory, so that reopening a directory reopens its store.
#[derive(Default)]
pub struct Postgres {
    cluster: std::sync::OnceLock<crate::pgcluster::Cluster>,
    databases: std::sync::Mutex<BTreeMap<std::path::PathBuf, String>>,
}

impl Postgres {
    /// The cluster, started on first use.
    pub fn cluster(&self) -> &crate::pgcluster::Cluster {
        self.cluster.get_or_init(crate::pgcluster::Cluster::start)
    }

    /// The database kept for `dir`, created the first time.
    pub fn database(&self, dir: &Path) -> String {
        let cluster = self.cluster();
        let mut dbs = self.databases.lock().unwrap_or_else(|p| p.into_inner());
        let next = format!("store_{}", dbs.len());
        dbs.entry(dir.to_path_buf())
            .or_insert_with(|| {
                cluster.create_database(&next);
                next
            })
            .clone()
    }
}

/// A pool of connections to `url` (no TLS: the test cluster listens on loopback only).
pub fn pg_pool(url: &str) -> deadpool_postgres::Pool {
    let config: tokio_postgres::Config = url.parse().expect("a database URL");
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    deadpool_postgres::Pool::builder(manager)
        .max_size(16)
        .build()
        .expect("a pool")
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own: `Backend::open` is
/// called both inside tests' runtimes (where blocking on one is refused) and outside them.
/// Connections the pool made there close with that runtime; the pool replaces them.
pub fn on_own_runtime<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f)
        })
        .join()
        .expect("opening thread")
    })
}

impl Backend for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn open(&self, dir: &Path) -> Arc<dyn Store> {
        let db = self.database(dir);
        let cluster = self.cluster();
        let pool = pg_pool(&cluster.url(&db));
        let name = cluster.url_without_password(&db);
        let store = on_own_runtime(PgStore::open(pool, name))
            .unwrap_or_else(|e| panic!("postgres store: {e}\n{}", cluster.log()));
        Arc::new(store)
    }
}

/// Every backend the contract is checked against.
pub fn backends() -> Vec<Box<dyn Backend>> {
    vec![Box::new(Sled), Box::new(Postgres::default())]
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, h, m, 0)
        .single()
        .unwrap_or_default()
}

/// A queued run of `runbook`, as admission makes it.
fn queued(runbook: &str, i: usize) -> RunRecord {
    RunRecord {
        runbook: runbook.into(),
        status: RunStatus::Queued,
        started_at: None,
        finished_at: None,
        ..RunRecord::synthetic(i)
    }
}

fn manual(run: RunRecord) -> Candidate {
    Candidate {
        key: DedupeKey::Manual {
            run: run.id.0.clone(),
        },
        run,
        gate: None,
    }
}

fn alert_key(fingerprint: &str, runbook: &str) -> DedupeKey {
    DedupeKey::Alert {
        episode: Episode::new(fingerprint, at(14, 43)),
        runbook: runbook.into(),
        resolved: false,
    }
}

fn episode(fingerprint: &str) -> AlertReceived {
    let now = Utc::now();
    AlertReceived {
        source: untoil::trigger::source::ALERTMANAGER.into(),
        fingerprint: fingerprint.into(),
        starts_at: at(14, 43),
        received_at: now,
        last_seen: now,
        times_received: 1,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        matched: vec!["rb".into()],
        firing: true,
    }
}

fn new_runs(admitted: &[Admitted]) -> Vec<RunRecord> {
    admitted
        .iter()
        .filter_map(|a| match a {
            Admitted::New { run, .. } => Some((**run).clone()),
            Admitted::Duplicate => None,
        })
        .collect()
}

fn change(f: impl Fn(&mut RunRecord) + Send + Sync + 'static) -> Change {
    Arc::new(f)
}

fn today_rollup_runs(
    rollups: &[(
        untoil::ledger::rollup::RollupKey,
        untoil::ledger::rollup::Rollup,
    )],
) -> u64 {
    rollups.iter().map(|(_, r)| r.runs).sum()
}

async fn counted_today(store: &dyn Store) -> u64 {
    let today = Utc::now().date_naive();
    let r = store
        .rollups(
            today.pred_opt().unwrap_or(today),
            today.succ_opt().unwrap_or(today),
            false,
        )
        .await
        .expect("rollups");
    today_rollup_runs(&r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_admits_one_run_across_calls_within_a_call_and_across_reopening() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let key = alert_key("fp", "rb");
        let (a, c) = (queued("rb", 1), queued("rb", 2));
        let first = store
            .admit(
                vec![
                    Candidate {
                        key: key.clone(),
                        run: a.clone(),
                        gate: None,
                    },
                    Candidate {
                        key: key.clone(),
                        run: c.clone(),
                        gate: None,
                    },
                ],
                vec![],
            )
            .await
            .expect("admit");
        assert_eq!(new_runs(&first).len(), 1, "{}", b.name());
        assert_eq!(first[1], Admitted::Duplicate, "{}", b.name());
        assert!(store.get_run(&a.id).await.expect("get").is_some());
        assert!(store.get_run(&c.id).await.expect("get").is_none());
        let id = store.id().to_string();
        drop(store);
        let store = b.open(dir.path());
        assert_eq!(store.id(), id, "{}: the store keeps its id", b.name());
        let again = store
            .admit(
                vec![Candidate {
                    key,
                    run: queued("rb", 3),
                    gate: None,
                }],
                vec![],
            )
            .await
            .expect("admit");
        assert_eq!(again, vec![Admitted::Duplicate], "{}", b.name());
        assert_eq!(
            store
                .runs_of_episode(&Episode::new("fp", at(14, 43)))
                .await
                .expect("episode"),
            vec![a.id.clone()],
            "{}",
            b.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admissions_and_finishes_queue_each_key_once_count_every_delivery_and_each_run_once()
 {
    const TASKS: usize = 16;
    const KEYS: usize = 40;
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        // Every task offers every key (as HA peers and re-sends do), starting at a different one.
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..TASKS {
            let store = store.clone();
            tasks.spawn(async move {
                let mut admitted = Vec::new();
                for i in 0..KEYS {
                    let k = (i + t) % KEYS;
                    let c = Candidate {
                        key: alert_key(&format!("fp{k}"), "rb"),
                        run: queued("rb", k),
                        gate: None,
                    };
                    let got = store
                        .admit(vec![c], vec![episode(&format!("fp{k}"))])
                        .await
                        .expect("admit");
                    for run in new_runs(&got) {
                        admitted.push((k, run.id));
                    }
                }
                admitted
            });
        }
        let mut admitted = Vec::new();
        while let Some(r) = tasks.join_next().await {
            admitted.extend(r.expect("admitting task"));
        }
        admitted.sort();
        let keys: Vec<usize> = admitted.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            (0..KEYS).collect::<Vec<_>>(),
            "{}: one run per key",
            b.name()
        );
        assert_eq!(
            store
                .list_runs(&RunFilter::default())
                .await
                .expect("list")
                .len(),
            KEYS,
            "{}: no run stored beyond the admitted ones",
            b.name()
        );
        let episodes = store
            .alerts(
                Utc::now() - chrono::Duration::hours(1),
                Utc::now() + chrono::Duration::hours(1),
            )
            .await
            .expect("alerts");
        assert_eq!(episodes.len(), KEYS);
        for e in &episodes {
            assert_eq!(
                e.times_received,
                TASKS as u64,
                "{}: {}: every delivery counted",
                b.name(),
                e.fingerprint
            );
        }

        // Every admitted run finished by every task at once, while admissions go on: each run
        // is final and counted once in the rollups.
        let finals: Arc<Vec<RunRecord>> = Arc::new(
            admitted
                .iter()
                .map(|(k, id)| {
                    let now = Utc::now();
                    RunRecord {
                        id: id.clone(),
                        status: RunStatus::Succeeded,
                        started_at: Some(now),
                        finished_at: Some(now),
                        ..queued("rb", *k)
                    }
                })
                .collect(),
        );
        let mut finishers = tokio::task::JoinSet::new();
        for t in 0..8 {
            let (store, finals) = (store.clone(), finals.clone());
            finishers.spawn(async move {
                for i in 0..finals.len() {
                    store
                        .finish(finals[(i + t * 5) % finals.len()].clone(), None)
                        .await
                        .expect("finish");
                    store
                        .admit(vec![manual(queued("rb", 10_000 + t * 100 + i))], vec![])
                        .await
                        .expect("admit while finishing");
                }
            });
        }
        while let Some(r) = finishers.join_next().await {
            r.expect("finishing task");
        }
        for run in finals.iter() {
            let stored = store.get_run(&run.id).await.expect("get").expect("stored");
            assert_eq!(stored.status, RunStatus::Succeeded);
        }
        assert_eq!(
            counted_today(&*store).await,
            KEYS as u64,
            "{}: each run counted once",
            b.name()
        );
        let reconciled = store.reconcile(change(|_| {})).await.expect("reconcile");
        assert_eq!(
            reconciled.queued.len(),
            8 * KEYS,
            "{}: only the extra runs are still queued",
            b.name()
        );
    }
}

/// A gate that admits at most `limit` runs per key, counting them in the guard state, and
/// skips the rest with a reason; runs it admits wait for approval when `approval`.
fn counting_gate(runbook: &str, key: &str, limit: u32, approval: bool) -> GuardOf<Decide> {
    let decide: Decide = Arc::new(move |state: &KeyState, run: &mut RunRecord| {
        let mut next = state.clone();
        if state.consecutive_failures >= limit {
            run.status = RunStatus::Skipped;
            run.error = Some(format!("limit {limit} reached"));
            run.finished_at = Some(Utc::now());
            return next;
        }
        next.consecutive_failures += 1;
        if approval {
            run.status = RunStatus::PendingApproval;
        }
        next
    });
    GuardOf {
        runbook: runbook.into(),
        key: key.into(),
        apply: decide,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_decisions_are_made_in_the_admitting_write_one_after_another_per_key() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..12 {
            let store = store.clone();
            tasks.spawn(async move {
                let c = Candidate {
                    key: DedupeKey::Manual {
                        run: format!("m{t}"),
                    },
                    run: queued("rb", t),
                    gate: Some(counting_gate("rb", "k", 5, t % 2 == 0)),
                };
                store.admit(vec![c], vec![]).await.expect("admit")
            });
        }
        let mut statuses = Vec::new();
        while let Some(r) = tasks.join_next().await {
            for run in new_runs(&r.expect("task")) {
                statuses.push(run.status);
            }
        }
        let skipped = statuses
            .iter()
            .filter(|s| **s == RunStatus::Skipped)
            .count();
        assert_eq!(skipped, 7, "{}: {statuses:?}", b.name());
        let states = store.guard_states().await.expect("states");
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].2.consecutive_failures, 5, "{}", b.name());
        // What each decision wrote is what is stored: skipped runs are final (not active, not
        // counted), the others queued or pending.
        let reconciled = store.reconcile(change(|_| {})).await.expect("reconcile");
        assert_eq!(
            reconciled.queued.len() + reconciled.pending_approval.len(),
            5,
            "{}",
            b.name()
        );
        let all = store.list_runs(&RunFilter::default()).await.expect("list");
        for r in all.iter().filter(|r| r.status == RunStatus::Skipped) {
            assert_eq!(r.error.as_deref(), Some("limit 5 reached"));
        }
        assert_eq!(
            counted_today(&*store).await,
            0,
            "skipped runs are not counted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_applies_only_from_the_statuses_named_and_counts_an_ending_once() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let run = queued("rb", 1);
        let id = run.id.clone();
        store.admit(vec![manual(run)], vec![]).await.expect("admit");
        let missing = store
            .transition(&RunId("nope".into()), &[RunStatus::Queued], change(|_| {}))
            .await
            .expect("transition");
        assert_eq!(missing, Transition::Missing, "{}", b.name());
        let claim = change(|r| {
            r.status = RunStatus::Running;
            r.started_at = Some(Utc::now());
        });
        let claimed = store
            .transition(&id, &[RunStatus::Queued], claim.clone())
            .await
            .expect("claim");
        assert!(matches!(&claimed, Transition::Done(r) if r.status == RunStatus::Running));
        // A second claim (another worker, a cancel) finds it running.
        let again = store
            .transition(&id, &[RunStatus::Queued], claim)
            .await
            .expect("claim again");
        assert_eq!(
            again,
            Transition::Refused(RunStatus::Running),
            "{}",
            b.name()
        );
        // Progress, then the finish with a guard update.
        store
            .step_started(&id, "s", Some(1234))
            .await
            .expect("progress");
        let step = StepResult {
            name: "s".into(),
            status: Some(StepStatus::Succeeded),
            ..Default::default()
        };
        store.record_step(&id, &step).await.expect("step");
        let mut done = store.get_run(&id).await.expect("get").expect("stored");
        assert_eq!(done.steps, vec![step]);
        assert_eq!(done.current_pgid, None);
        done.status = RunStatus::Failed;
        done.finished_at = Some(Utc::now());
        let update: Update = Arc::new(|s: &KeyState| KeyState {
            consecutive_failures: s.consecutive_failures + 1,
            breaker: Some(Breaker {
                opened_at: Utc::now(),
                reason: "r".into(),
            }),
            ..s.clone()
        });
        let guard = GuardOf {
            runbook: "rb".into(),
            key: "k".into(),
            apply: update.clone(),
        };
        let changed = store
            .finish(done.clone(), Some(guard))
            .await
            .expect("finish")
            .expect("a guard change");
        assert!(changed.before.breaker.is_none() && changed.after.breaker.is_some());
        // Finished again (a retried write): counted once; a final run refuses transitions.
        store
            .finish(done.clone(), None)
            .await
            .expect("finish again");
        assert_eq!(counted_today(&*store).await, 1, "{}", b.name());
        let refused = store
            .transition(
                &id,
                &[RunStatus::Queued, RunStatus::Running],
                change(|_| {}),
            )
            .await
            .expect("transition");
        assert_eq!(refused, Transition::Refused(RunStatus::Failed));
        // Verification may change a final run and does not count it again.
        store
            .set_verified(
                &id,
                Verification {
                    verified: true,
                    at: Utc::now(),
                    resolved_at: None,
                },
            )
            .await
            .expect("verify");
        let verified = store.get_run(&id).await.expect("get").expect("stored");
        assert_eq!(verified.verification.map(|v| v.verified), Some(true));
        assert_eq!(counted_today(&*store).await, 1, "{}", b.name());
        // An unstarted run ended by a transition is counted when its status counts.
        let other = queued("rb", 2);
        let other_id = other.id.clone();
        store
            .admit(vec![manual(other)], vec![])
            .await
            .expect("admit");
        let cancelled = store
            .transition(
                &other_id,
                &[RunStatus::Queued],
                change(|r| {
                    r.status = RunStatus::Cancelled;
                    r.finished_at = Some(Utc::now());
                }),
            )
            .await
            .expect("cancel");
        assert!(matches!(cancelled, Transition::Done(_)));
        assert_eq!(counted_today(&*store).await, 2, "{}", b.name());
        let reset = store
            .update_guards("rb", None, Arc::new(untoil::guard::reset))
            .await
            .expect("reset");
        assert_eq!(reset.len(), 1);
        assert!(reset[0].1.breaker.is_none());
        assert_eq!(reset[0].1.consecutive_failures, 0);
        let none = store
            .update_guards("rb", Some("other"), Arc::new(untoil::guard::reset))
            .await
            .expect("reset");
        assert!(none.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_ends_running_runs_with_the_callers_change_and_returns_the_rest() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = b.open(dir.path());
            let (r, q, p) = (queued("rb", 1), queued("rb", 2), queued("rb", 3));
            let (rid, pid) = (r.id.clone(), p.id.clone());
            store
                .admit(vec![manual(r), manual(q), manual(p)], vec![])
                .await
                .expect("admit");
            claim(&*store, &rid).await;
            store
                .step_started(&rid, "second", None)
                .await
                .expect("progress");
            store
                .transition(
                    &pid,
                    &[RunStatus::Queued],
                    change(|r| r.status = RunStatus::PendingApproval),
                )
                .await
                .expect("pending");
        }
        let store = b.open(dir.path());
        let interrupt = change(|r| {
            r.error = Some(format!(
                "stopped in {}",
                r.current_step.clone().unwrap_or_default()
            ));
            r.status = RunStatus::Interrupted;
            r.finished_at = Some(Utc::now());
        });
        let rec = store.reconcile(interrupt.clone()).await.expect("reconcile");
        assert_eq!(rec.interrupted.len(), 1, "{}", b.name());
        assert_eq!(rec.queued.len(), 1);
        assert_eq!(rec.pending_approval.len(), 1);
        let run = store
            .get_run(&rec.interrupted[0])
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(run.status, RunStatus::Interrupted);
        assert_eq!(run.error.as_deref(), Some("stopped in second"));
        assert_eq!(counted_today(&*store).await, 1);
        let again = store.reconcile(interrupt).await.expect("again");
        assert!(again.interrupted.is_empty(), "{}", b.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_fire_of_a_schedule_is_its_latest_admitted_one() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let every5 = Fire::new(
            "tick",
            0,
            &Schedule::parse("*/5 * * * *", chrono_tz::UTC).expect("cron"),
        );
        let every10 = Fire::new(
            "tick",
            0,
            &Schedule::parse("*/10 * * * *", chrono_tz::UTC).expect("cron"),
        );
        assert_eq!(store.last_fire(&every5).await.expect("last"), None);
        for (fire, t) in [
            (&every5, at(10, 5)),
            (&every5, at(10, 15)),
            (&every10, at(11, 0)),
        ] {
            let c = Candidate {
                key: DedupeKey::Fire {
                    fire: fire.clone(),
                    at: t,
                },
                run: queued("tick", 1),
                gate: None,
            };
            store.admit(vec![c], vec![]).await.expect("admit");
        }
        assert_eq!(
            store.last_fire(&every5).await.expect("last"),
            Some(at(10, 15)),
            "{}",
            b.name()
        );
        assert_eq!(
            store.last_fire(&every10).await.expect("last"),
            Some(at(11, 0))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_filters_by_runbook_and_status_most_recent_first() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let mut ids = Vec::new();
        for i in 0..6 {
            let mut run = RunRecord::synthetic(i);
            run.runbook = if i % 2 == 0 { "even" } else { "odd" }.into();
            run.id = RunId(ulid::Ulid::from_parts(1_800_000_000_000 + i as u64, 0).to_string());
            ids.push(run.id.clone());
            store.finish_many(vec![run]).await.expect("finish");
        }
        let even = store
            .list_runs(&RunFilter {
                runbook: Some("even".into()),
                ..Default::default()
            })
            .await
            .expect("list");
        let got: Vec<RunId> = even.iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            got,
            vec![ids[4].clone(), ids[2].clone(), ids[0].clone()],
            "{}",
            b.name()
        );
        let failed = store
            .list_runs(&RunFilter {
                status: Some(RunStatus::Failed),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(failed.len(), 1, "synthetic run 0 failed");
        let two = store
            .list_runs(&RunFilter {
                limit: 2,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].id, ids[5]);
    }
}

#[tokio::test]
async fn listing_by_a_status_of_runs_not_yet_ended_finds_exactly_those_most_recent_first() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        // Finished runs before, between and after the unended ones: the list must skip them.
        store
            .finish_many((0..3).map(RunRecord::synthetic).collect())
            .await
            .expect("finish");
        let runs: Vec<RunRecord> = (0..5).map(|i| queued("rb", i)).collect();
        let ids: Vec<RunId> = runs.iter().map(|r| r.id.clone()).collect();
        store
            .admit(runs.into_iter().map(manual).collect(), vec![])
            .await
            .expect("admit");
        store
            .finish_many((3..6).map(RunRecord::synthetic).collect())
            .await
            .expect("finish");
        for id in [&ids[1], &ids[3]] {
            let claimed = claim(&*store, id).await;
            assert!(matches!(claimed, Transition::Done(_)), "{}", b.name());
        }
        let listed = |status: RunStatus, limit: usize| {
            let store = &store;
            async move {
                store
                    .list_runs(&RunFilter {
                        status: Some(status),
                        limit,
                        ..Default::default()
                    })
                    .await
                    .expect("list")
                    .into_iter()
                    .map(|r| r.id)
                    .collect::<Vec<RunId>>()
            }
        };
        assert_eq!(
            listed(RunStatus::Queued, 0).await,
            vec![ids[4].clone(), ids[2].clone(), ids[0].clone()],
            "{}",
            b.name()
        );
        assert_eq!(
            listed(RunStatus::Queued, 2).await,
            vec![ids[4].clone(), ids[2].clone()],
            "{}",
            b.name()
        );
        assert_eq!(
            listed(RunStatus::Running, 0).await,
            vec![ids[3].clone(), ids[1].clone()],
            "{}",
            b.name()
        );
        // A run that ends leaves the list of its old status.
        let mut done = store.get_run(&ids[3]).await.expect("get").expect("stored");
        done.status = RunStatus::Succeeded;
        done.finished_at = Some(Utc::now());
        store.finish(done, None).await.expect("finish");
        assert_eq!(
            listed(RunStatus::Running, 0).await,
            vec![ids[1].clone()],
            "{}",
            b.name()
        );
        assert!(listed(RunStatus::PendingApproval, 0).await.is_empty());
    }
}

const STATUSES: [RunStatus; 7] = [
    RunStatus::Succeeded,
    RunStatus::Noop,
    RunStatus::Failed,
    RunStatus::Cancelled,
    RunStatus::TimedOut,
    RunStatus::Interrupted,
    RunStatus::Skipped,
];

/// One finished run, drawn.
#[derive(Debug, Clone)]
pub struct Spec {
    pub day: u32,
    pub team: u8,
    pub runbook: u8,
    pub cause: u8,
    pub status: usize,
    pub manual: u16,
    pub approval: u16,
    pub step_minutes: Vec<Option<u16>>,
    pub step_ok: Vec<bool>,
    pub approval_required: bool,
    pub dry_run: bool,
    pub duration_ms: u32,
    pub finish_twice: bool,
    /// The verify verdict: 0 none, 1 verified, 2 unverified.
    pub verdict: u8,
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
        0u8..3,
    )
        .prop_map(
            |(
                (day, team, runbook, cause, status),
                (manual, approval),
                steps,
                (ar, dry, dur, twice),
                verdict,
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
                    verdict,
                }
            },
        )
}

/// Builds a finished run as the engine would, toil credit included. Estimates are in tenths so
/// that fractional minutes are exercised.
pub fn build(i: usize, s: &Spec) -> RunRecord {
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
        ..Default::default()
    };
    let status = STATUSES[s.status];
    let cause = match s.cause {
        0 => Cause::Manual {
            user: "u".into(),
            claimed_user: None,
        },
        1 => Cause::Schedule { at: start },
        _ => Cause::Alert {
            source: untoil::trigger::source::ALERTMANAGER.into(),
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
        verification: match s.verdict {
            1 => Some(Verification {
                verified: true,
                at: start,
                resolved_at: None,
            }),
            2 => Some(Verification {
                verified: false,
                at: start,
                resolved_at: None,
            }),
            _ => None,
        },
        verify_by: None,
        guard_key: None,
        approval: None,
        bypassed: None,
        retry_of: None,
    }
}

/// The spec of an old, succeeded manual run (for retention tests).
pub fn old_run() -> RunRecord {
    build(
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
            verdict: 0,
        },
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn report_totals_equal_the_sum_over_the_recorded_runs() {
    // One set of backends for all the cases (each case opens a store of its own): a PostgreSQL
    // cluster started per case would cost more than the cases themselves.
    let backends = backends();
    let rt = runtime();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop::collection::vec(spec(), 1..60), |specs| {
        for b in &backends {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = b.open(dir.path());
            let (raw, reports) = rt.block_on(async {
                for (i, s) in specs.iter().enumerate() {
                    let run = build(i, s);
                    store.finish(run.clone(), None).await.expect("finish");
                    if s.finish_twice {
                        store.finish(run, None).await.expect("finish again");
                    }
                }
                let period = Period {
                    from: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap_or_default(),
                    to: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap_or_default(),
                };
                let raw = store.list_runs(&RunFilter::default()).await.expect("list");
                let mut reports = Vec::new();
                for by in [
                    vec![],
                    vec![Dim::Team],
                    vec![Dim::Runbook, Dim::Cause],
                    vec![Dim::Team, Dim::Month],
                    vec![Dim::Week],
                ] {
                    reports.push(toil_report(&*store, period, &by).await.expect("report"));
                }
                (raw, reports)
            });
            prop_assert_eq!(raw.len(), specs.len());
            // Recompute from raw runs, independently of the rollup code.
            let counted: Vec<&RunRecord> = raw
                .iter()
                .filter(|r| !r.dry_run && r.status != RunStatus::Skipped)
                .collect();
            let runs = counted.len() as u64;
            let with =
                |s: &[RunStatus]| counted.iter().filter(|r| s.contains(&r.status)).count() as u64;
            let succeeded = with(&[RunStatus::Succeeded]);
            let noop = with(&[RunStatus::Noop]);
            let failed = with(&[RunStatus::Failed, RunStatus::TimedOut]);
            let interrupted = with(&[RunStatus::Interrupted]);
            let cancelled = with(&[RunStatus::Cancelled]);
            let verdicts = |v: bool| {
                counted
                    .iter()
                    .filter(|r| r.verification.as_ref().is_some_and(|x| x.verified == v))
                    .count() as u64
            };
            let toil: u64 = counted
                .iter()
                .map(|r| milli_minutes(r.toil.as_ref().map_or(0.0, |t| t.minutes)))
                .sum();
            // Times to remediate: alert start to the end of succeeded alert runs only.
            let mut ttrs: Vec<u64> = counted
                .iter()
                .filter(|r| r.status == RunStatus::Succeeded)
                .filter_map(|r| match (&r.cause, r.finished_at) {
                    (Cause::Alert { starts_at, .. }, Some(end)) => {
                        u64::try_from((end - *starts_at).num_milliseconds()).ok()
                    }
                    _ => None,
                })
                .collect();
            ttrs.sort_unstable();
            // The value at rank ceil(q * n), as the histogram defines its quantiles.
            let exact = |q: f64| {
                (!ttrs.is_empty()).then(|| {
                    ttrs[((q * ttrs.len() as f64).ceil() as usize).clamp(1, ttrs.len()) - 1]
                })
            };
            let near = |est: Option<u64>, exact: Option<u64>| match (est, exact) {
                (Some(e), Some(x)) => (e as f64 - x as f64).abs() <= x as f64 / 32.0 + 1.0,
                (None, None) => true,
                _ => false,
            };
            let rate = (succeeded + noop + failed > 0)
                .then(|| (succeeded + noop) as f64 / (succeeded + noop + failed) as f64);
            for report in &reports {
                let t = &report.total;
                prop_assert_eq!(t.runs, runs);
                prop_assert_eq!(
                    (t.succeeded, t.noop, t.failed, t.interrupted, t.cancelled),
                    (succeeded, noop, failed, interrupted, cancelled)
                );
                prop_assert_eq!(t.runs, succeeded + noop + failed + interrupted + cancelled);
                prop_assert_eq!(t.success_rate, rate);
                prop_assert_eq!(
                    (t.verified, t.unverified),
                    (verdicts(true), verdicts(false))
                );
                prop_assert_eq!(t.remediations, ttrs.len() as u64);
                prop_assert_eq!(
                    t.mttr_ms,
                    (!ttrs.is_empty()).then(|| ttrs.iter().sum::<u64>() / ttrs.len() as u64)
                );
                prop_assert!(
                    near(t.ttr_median_ms, exact(0.5)),
                    "median {:?} vs {:?}",
                    t.ttr_median_ms,
                    exact(0.5)
                );
                prop_assert!(
                    near(t.ttr_p90_ms, exact(0.9)),
                    "p90 {:?} vs {:?}",
                    t.ttr_p90_ms,
                    exact(0.9)
                );
                prop_assert_eq!(t.legacy_runs, 0);
                prop_assert_eq!(report.total_rollup.toil_milli_minutes, toil);
                let row_sum: u64 = report
                    .rows
                    .iter()
                    .map(|r| r.rollup.toil_milli_minutes)
                    .sum();
                prop_assert_eq!(row_sum, toil);
                let row_runs: u64 = report.rows.iter().map(|r| r.figures.runs).sum();
                prop_assert_eq!(row_runs, runs);
                // Taking every run's contribution out leaves nothing; putting it back restores
                // the totals (what a late verdict does to one run).
                let mut rest = report.total_rollup.clone();
                for r in &counted {
                    if let Some((_, c)) = Rollup::of_run(r) {
                        rest.subtract(&c);
                    }
                }
                prop_assert_eq!(&rest, &Rollup::default());
                for r in &counted {
                    if let Some((_, c)) = Rollup::of_run(r) {
                        rest.merge(&c);
                    }
                }
                prop_assert_eq!(&rest, &report.total_rollup);
            }
            // Per team, the rows equal the raw sums too.
            for row in &reports[1].rows {
                let team = &row.group[0];
                let raw_team: u64 = counted
                    .iter()
                    .filter(|r| &r.owner == team)
                    .map(|r| milli_minutes(r.toil.as_ref().map_or(0.0, |t| t.minutes)))
                    .sum();
                prop_assert_eq!(row.rollup.toil_milli_minutes, raw_team);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_old_run_details_but_keeps_report_totals() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let old = old_run();
        store.finish(old.clone(), None).await.expect("finish");
        let recent = RunRecord::synthetic(3);
        store.finish(recent.clone(), None).await.expect("finish");
        let removed = store
            .prune(Utc::now() - chrono::Duration::days(1))
            .await
            .expect("prune");
        assert_eq!(removed, 1, "{}", b.name());
        assert!(store.get_run(&old.id).await.expect("get").is_none());
        assert!(store.get_run(&recent.id).await.expect("get").is_some());
        let period = Period {
            from: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap_or_default(),
            to: Utc::now().date_naive(),
        };
        let report = toil_report(&*store, period, &[]).await.expect("report");
        assert_eq!(
            report.total.runs,
            2,
            "{}: rollups survive pruning",
            b.name()
        );
        assert_eq!(report.total_rollup.toil_milli_minutes, 10_000 + 5_000);
    }
}

/// A gate that skips while `open` says so (a guard that refuses), leaving the state alone.
fn refusing_gate(open: Arc<std::sync::atomic::AtomicBool>) -> GuardOf<Decide> {
    let decide: Decide = Arc::new(move |state: &KeyState, run: &mut RunRecord| {
        if open.load(std::sync::atomic::Ordering::SeqCst) {
            run.status = RunStatus::Skipped;
            run.error = Some("cooldown".into());
            run.finished_at = Some(Utc::now());
        }
        let mut next = state.clone();
        next.consecutive_failures += 1;
        next
    });
    GuardOf {
        runbook: "rb".into(),
        key: "k".into(),
        apply: decide,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_skipped_episode_is_admitted_once_more_when_the_guard_allows_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let refusing = Arc::new(AtomicBool::new(true));
        let send = |i: usize| Candidate {
            key: alert_key("fp", "rb"),
            run: queued("rb", i),
            gate: Some(refusing_gate(refusing.clone())),
        };
        let first = new_runs(&store.admit(vec![send(1)], vec![]).await.expect("admit"));
        assert_eq!(first[0].status, RunStatus::Skipped, "{}", b.name());
        // Refused again: a duplicate, and the guard state is left as the first decision left it.
        let again = store.admit(vec![send(2)], vec![]).await.expect("admit");
        assert_eq!(again, vec![Admitted::Duplicate], "{}", b.name());
        let states = store.guard_states().await.expect("states");
        assert_eq!(states[0].2.consecutive_failures, 1, "{}", b.name());
        // Allowed: one new run, which says which run it retries; two re-sends at once admit one.
        refusing.store(false, Ordering::SeqCst);
        let back = store
            .admit(vec![send(3), send(4)], vec![])
            .await
            .expect("admit");
        let runs = new_runs(&back);
        assert_eq!(runs.len(), 1, "{}: {back:?}", b.name());
        assert_eq!(runs[0].status, RunStatus::Queued);
        assert_eq!(runs[0].retry_of, Some(first[0].id.clone()), "{}", b.name());
        assert_eq!(
            store
                .get_run(&runs[0].id)
                .await
                .expect("get")
                .map(|r| r.retry_of),
            Some(Some(first[0].id.clone())),
            "{}: stored with it",
            b.name()
        );
        let later = store.admit(vec![send(5)], vec![]).await.expect("admit");
        assert_eq!(later, vec![Admitted::Duplicate], "{}", b.name());
        // Other keys never come back: a manual or schedule key is not sent again.
        let m = DedupeKey::Manual { run: "m".into() };
        refusing.store(true, Ordering::SeqCst);
        let skipped = Candidate {
            key: m.clone(),
            run: queued("rb", 6),
            gate: Some(refusing_gate(refusing.clone())),
        };
        store.admit(vec![skipped], vec![]).await.expect("admit");
        refusing.store(false, Ordering::SeqCst);
        let retry = Candidate {
            key: m,
            run: queued("rb", 7),
            gate: Some(refusing_gate(refusing.clone())),
        };
        let r = store.admit(vec![retry], vec![]).await.expect("admit");
        assert_eq!(r, vec![Admitted::Duplicate], "{}", b.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_episode_is_found_by_its_start_truncated_to_milliseconds() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let full = at(14, 43) + chrono::Duration::nanoseconds(695_089_778);
        let mut e = episode("fp");
        e.starts_at = full;
        let mut other = episode("fp2");
        other.starts_at = full;
        store.admit(vec![], vec![e, other]).await.expect("admit");
        let ms = at(14, 43) + chrono::Duration::milliseconds(695);
        let want = Some(Episode::new("fp", full));
        assert_eq!(store.episode_at_millis("fp", ms).await.expect("find"), want);
        assert_eq!(
            store.episode_at_millis("fp", full).await.expect("find"),
            want
        );
        // Another millisecond, another fingerprint's prefix, or a start with digits below the
        // millisecond that is no known episode: none.
        let next = ms + chrono::Duration::milliseconds(1);
        assert_eq!(
            store.episode_at_millis("fp", next).await.expect("find"),
            None
        );
        assert_eq!(store.episode_at_millis("f", ms).await.expect("find"), None);
        let near = full + chrono::Duration::nanoseconds(1);
        assert_eq!(
            store.episode_at_millis("fp", near).await.expect("find"),
            None,
            "{}",
            b.name()
        );
    }
}

/// A delivery of `source` with id `id`, received at `received_at` and kept for `keep_minutes`.
fn delivery(source: &str, id: &str, received_at: DateTime<Utc>, keep_minutes: i64) -> Delivery {
    Delivery {
        source: source.into(),
        id: id.into(),
        received_at,
        expires_at: received_at + chrono::Duration::minutes(keep_minutes),
    }
}

/// How many notifications carried the episode of `fingerprint` (0: none stored).
async fn times_received(store: &dyn Store, fingerprint: &str) -> u64 {
    store
        .alerts(
            Utc::now() - chrono::Duration::hours(1),
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .expect("alerts")
        .iter()
        .filter(|e| e.fingerprint == fingerprint)
        .map(|e| e.times_received)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_admits_once_until_it_expires_and_is_remembered_across_reopening() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let t0 = Utc::now();
        let first = queued("rb", 1);
        let got = store
            .admit_delivery(
                delivery("github-ci", "d-1", t0, 60),
                vec![manual(first.clone())],
                vec![episode("fp-d")],
            )
            .await
            .expect("admit");
        let got = got.unwrap_or_else(|| panic!("{}: a first delivery admits", b.name()));
        assert_eq!(new_runs(&got).len(), 1, "{}", b.name());
        assert_eq!(times_received(&*store, "fp-d").await, 1);

        // The sender's retry, with a run and an episode that would otherwise be new: nothing.
        let retry = queued("rb", 2);
        let again = store
            .admit_delivery(
                delivery("github-ci", "d-1", t0 + chrono::Duration::minutes(1), 60),
                vec![manual(retry.clone())],
                vec![episode("fp-d"), episode("fp-other")],
            )
            .await
            .expect("admit");
        assert_eq!(again, None, "{}: a repeat is refused", b.name());
        assert!(store.get_run(&retry.id).await.expect("get").is_none());
        assert_eq!(
            times_received(&*store, "fp-d").await,
            1,
            "{}: a refused delivery merges no alert",
            b.name()
        );
        assert_eq!(times_received(&*store, "fp-other").await, 0);

        // The same id from another source is another delivery.
        let other = store
            .admit_delivery(
                delivery("grafana", "d-1", t0, 60),
                vec![manual(queued("rb", 3))],
                vec![],
            )
            .await
            .expect("admit");
        assert!(other.is_some(), "{}: ids are per source", b.name());

        drop(store);
        let store = b.open(dir.path());
        let after_reopen = store
            .admit_delivery(
                delivery("github-ci", "d-1", t0 + chrono::Duration::minutes(2), 60),
                vec![manual(queued("rb", 4))],
                vec![],
            )
            .await
            .expect("admit");
        assert_eq!(
            after_reopen,
            None,
            "{}: remembered across reopening",
            b.name()
        );

        // Once its record expired, the id admits again, and its new record refuses repeats.
        let later = t0 + chrono::Duration::minutes(60);
        let renewed = queued("rb", 5);
        let got = store
            .admit_delivery(
                delivery("github-ci", "d-1", later, 60),
                vec![manual(renewed.clone())],
                vec![episode("fp-d")],
            )
            .await
            .expect("admit");
        assert!(got.is_some(), "{}: an expired record is replaced", b.name());
        assert!(store.get_run(&renewed.id).await.expect("get").is_some());
        assert_eq!(times_received(&*store, "fp-d").await, 2);
        let repeat = store
            .admit_delivery(
                delivery(
                    "github-ci",
                    "d-1",
                    later + chrono::Duration::minutes(59),
                    60,
                ),
                vec![manual(queued("rb", 6))],
                vec![],
            )
            .await
            .expect("admit");
        assert_eq!(repeat, None, "{}", b.name());
        assert_eq!(
            store
                .list_runs(&RunFilter::default())
                .await
                .expect("list")
                .len(),
            3,
            "{}: runs of the first, the other source's and the renewed delivery only",
            b.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_deliveries_admit_exactly_once() {
    const TASKS: usize = 16;
    const IDS: usize = 12;
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let t0 = Utc::now();
        // Every task posts every delivery (a sender retrying while the first try is in flight),
        // each time with a run of its own, so only the delivery id can tell them apart.
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..TASKS {
            let store = store.clone();
            tasks.spawn(async move {
                let mut admitted = Vec::new();
                for i in 0..IDS {
                    let k = (i + t) % IDS;
                    let got = store
                        .admit_delivery(
                            delivery("github-ci", &format!("d-{k}"), t0, 60),
                            vec![manual(queued("rb", 1000 * t + k))],
                            vec![episode(&format!("fp{k}"))],
                        )
                        .await
                        .expect("admit");
                    if let Some(got) = got {
                        admitted.push((k, new_runs(&got).len()));
                    }
                }
                admitted
            });
        }
        let mut admitted = Vec::new();
        while let Some(r) = tasks.join_next().await {
            admitted.extend(r.expect("delivering task"));
        }
        admitted.sort();
        assert_eq!(
            admitted,
            (0..IDS).map(|k| (k, 1)).collect::<Vec<_>>(),
            "{}: each delivery admitted once, with its run",
            b.name()
        );
        assert_eq!(
            store
                .list_runs(&RunFilter::default())
                .await
                .expect("list")
                .len(),
            IDS,
            "{}: no run of a refused delivery stored",
            b.name()
        );
        for k in 0..IDS {
            assert_eq!(
                times_received(&*store, &format!("fp{k}")).await,
                1,
                "{}: only the admitted delivery's alert merged",
                b.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_only_expired_delivery_records() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let now = Utc::now();
        let hour_ago = now - chrono::Duration::hours(1);
        for (id, received_at, keep) in [
            ("expired", hour_ago, 30),
            ("expires-now", hour_ago, 60),
            ("kept", hour_ago, 120),
        ] {
            let got = store
                .admit_delivery(delivery("github-ci", id, received_at, keep), vec![], vec![])
                .await
                .expect("admit");
            assert!(got.is_some(), "{}: {id}", b.name());
        }
        let run = queued("rb", 1);
        store
            .admit(vec![manual(run.clone())], vec![])
            .await
            .expect("admit");
        assert_eq!(
            store.prune_deliveries(now).await.expect("prune"),
            2,
            "{}: records expired at or before now",
            b.name()
        );
        assert_eq!(store.prune_deliveries(now).await.expect("prune"), 0);
        assert!(store.get_run(&run.id).await.expect("get").is_some());
        // The kept record still refuses its repeat, after reopening too.
        drop(store);
        let store = b.open(dir.path());
        let repeat = store
            .admit_delivery(
                delivery("github-ci", "kept", hour_ago, 120),
                vec![manual(queued("rb", 2))],
                vec![],
            )
            .await
            .expect("admit");
        assert_eq!(repeat, None, "{}: an unexpired record stays", b.name());
        // A pruned one is gone even for a repeat that claims its original receipt.
        let pruned = store
            .admit_delivery(
                delivery("github-ci", "expired", hour_ago, 30),
                vec![manual(queued("rb", 3))],
                vec![],
            )
            .await
            .expect("admit");
        assert!(
            pruned.is_some(),
            "{}: a pruned record refuses nothing",
            b.name()
        );
    }
}

/// The Alertmanager fixture with `annotation` as a common annotation of `size` bytes and `alerts`
/// alerts (distinct fingerprints and instances).
pub fn big_notification(size: usize, alerts: usize) -> Notification {
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alertmanager/firing.json"),
    )
    .expect("fixture");
    let mut n = Notification::from_json(&body).expect("decodes");
    n.common_annotations
        .insert("description".into(), "x".repeat(size));
    let first = n.alerts[0].clone();
    n.alerts = (0..alerts)
        .map(|i| {
            let mut a = first.clone();
            a.fingerprint = format!("{:016x}", 0xfeed_0000 + i);
            a.labels.insert("instance".into(), format!("db-{i}"));
            a
        })
        .collect();
    n
}

/// Queued alert runs of `runbook` for every alert of `n`, sharing its notification as admission
/// makes them share it.
pub fn alert_candidates(runbook: &str, n: &Notification) -> Vec<Candidate> {
    let shared = Arc::new(n.without_alerts());
    n.alerts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut run = queued(runbook, i);
            run.cause = Cause::of_alert(untoil::trigger::source::ALERTMANAGER, a);
            run.alert = Some(AlertContext::new(a.clone(), shared.clone()));
            Candidate {
                key: DedupeKey::Alert {
                    episode: a.episode(),
                    runbook: runbook.into(),
                    resolved: false,
                },
                run,
                gate: None,
            }
        })
        .collect()
}

async fn all_runs(store: &dyn Store) -> Vec<RunRecord> {
    store.list_runs(&RunFilter::default()).await.expect("list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_stored_once_for_its_runs_and_every_read_gives_them_whole() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A 900 KB annotation and 50 alerts: the body of issue 16's amplification.
        let n = big_notification(900 * 1024, 50);
        let body = serde_json::to_vec(&n).expect("json").len();
        let mut admitted = {
            let store = b.open(dir.path());
            let admitted = new_runs(
                &store
                    .admit(alert_candidates("rb", &n), vec![])
                    .await
                    .expect("admit"),
            );
            assert_eq!(admitted.len(), 50, "{}", b.name());
            for r in &admitted {
                let got = store.get_run(&r.id).await.expect("get").expect("stored");
                assert_eq!(&got, r, "{}", b.name());
            }
            // Claimed, and one finished: records rewritten, still whole.
            let first = admitted[0].id.clone();
            let claimed = match store
                .transition(
                    &first,
                    &[RunStatus::Queued],
                    change(|r| r.status = RunStatus::Running),
                )
                .await
                .expect("claim")
            {
                Transition::Done(r) => *r,
                other => panic!("{}: {other:?}", b.name()),
            };
            assert_eq!(claimed.alert, admitted[0].alert);
            let mut done = claimed;
            done.status = RunStatus::Succeeded;
            done.finished_at = Some(Utc::now());
            store.finish(done.clone(), None).await.expect("finish");
            let mut listed = all_runs(&*store).await;
            listed.sort_by(|a, b| a.id.cmp(&b.id));
            let mut want = admitted.clone();
            want[0] = done;
            assert_eq!(listed, want, "{}", b.name());
            want
        };
        if let Some(stored) = b.stored(dir.path()) {
            assert_eq!(stored.notifications, 1, "{}", b.name());
            assert!(
                stored.bytes < 2 * body,
                "{}: {} bytes stored for a {body}-byte body",
                b.name(),
                stored.bytes
            );
        }
        // Reopened: the same records, sharing one notification in memory.
        let store = b.open(dir.path());
        let mut listed = all_runs(&*store).await;
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        admitted.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(listed, admitted, "{}", b.name());
        let shared = |r: &RunRecord| r.alert.as_ref().map(|a| a.notification.clone());
        let (a, z) = (shared(&listed[0]), shared(&listed[49]));
        assert!(
            matches!((&a, &z), (Some(a), Some(z)) if Arc::ptr_eq(a, z)),
            "{}",
            b.name()
        );
        // Another notification is another entry; the same one again is none.
        let other = big_notification(10, 1);
        store
            .admit(alert_candidates("other", &other), vec![])
            .await
            .expect("admit");
        let mut again = big_notification(900 * 1024, 1);
        again.alerts[0].fingerprint = "0000000000000fff".into();
        store
            .admit(alert_candidates("again", &again), vec![])
            .await
            .expect("admit");
        drop(store);
        if let Some(stored) = b.stored(dir.path()) {
            assert_eq!(stored.notifications, 2, "{}", b.name());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_read_while_a_run_runs_and_dropped_once_it_ends() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let step = |name: &str, out: &str| StepResult {
            name: name.into(),
            kind: "shell".into(),
            status: Some(StepStatus::Succeeded),
            stdout: out.into(),
            ..Default::default()
        };
        let (rid, cid) = {
            let store = b.open(dir.path());
            let n = big_notification(10, 2);
            let runs = new_runs(
                &store
                    .admit(alert_candidates("rb", &n), vec![])
                    .await
                    .expect("admit"),
            );
            let (rid, cid) = (runs[0].id.clone(), runs[1].id.clone());
            for id in [&rid, &cid] {
                claim(&*store, id).await;
                store.step_started(id, "a", None).await.expect("progress");
                store
                    .step_started(id, "a", Some(41))
                    .await
                    .expect("progress");
                store
                    .record_step(id, &step("a", "first"))
                    .await
                    .expect("progress");
                store
                    .step_started(id, "b", Some(42))
                    .await
                    .expect("progress");
                store
                    .record_step(id, &step("b", "second"))
                    .await
                    .expect("progress");
                store
                    .record_step(id, &step("a", "again"))
                    .await
                    .expect("progress");
                store
                    .step_started(id, "c", Some(43))
                    .await
                    .expect("progress");
                store.step_started(id, "c", None).await.expect("progress");
            }
            let check = |r: &RunRecord| {
                let steps: Vec<(&str, &str)> = r
                    .steps
                    .iter()
                    .map(|s| (s.name.as_str(), s.stdout.as_str()))
                    .collect();
                assert_eq!(steps, [("a", "again"), ("b", "second")], "{}", b.name());
                assert_eq!(r.current_step.as_deref(), Some("c"));
                assert_eq!(r.current_pgid, Some(43));
                assert!(r.alert.is_some());
            };
            let got = store.get_run(&rid).await.expect("get").expect("stored");
            check(&got);
            let listed = store
                .list_runs(&RunFilter {
                    status: Some(RunStatus::Running),
                    ..Default::default()
                })
                .await
                .expect("list");
            assert_eq!(listed.len(), 2);
            listed.iter().for_each(check);
            let by_runbook = store
                .list_runs(&RunFilter {
                    runbook: Some("rb".into()),
                    ..Default::default()
                })
                .await
                .expect("list");
            by_runbook.iter().for_each(check);

            // Cancelled while running: the final record keeps every step recorded.
            let cancelled = match store
                .transition(
                    &cid,
                    &[RunStatus::Running],
                    change(|r| {
                        r.status = RunStatus::Cancelled;
                        r.finished_at = Some(Utc::now());
                    }),
                )
                .await
                .expect("cancel")
            {
                Transition::Done(r) => *r,
                other => panic!("{}: {other:?}", b.name()),
            };
            assert_eq!(cancelled.steps.len(), 2, "{}", b.name());
            assert_eq!(
                store.get_run(&cid).await.expect("get").expect("stored"),
                cancelled
            );
            (rid, cid)
        };
        if let Some(stored) = b.stored(dir.path()) {
            assert_eq!(stored.progress, 8, "{}: the running run's alone", b.name());
        }
        // A restart: reconciliation sees the process group the progress recorded.
        let store = b.open(dir.path());
        let rec = store
            .reconcile(change(|r| {
                r.error = Some(format!(
                    "in {:?} pgid {:?} after {} steps",
                    r.current_step,
                    r.current_pgid,
                    r.steps.len()
                ));
                r.status = RunStatus::Interrupted;
                r.finished_at = Some(Utc::now());
            }))
            .await
            .expect("reconcile");
        assert_eq!(rec.interrupted, vec![rid.clone()], "{}", b.name());
        let run = store.get_run(&rid).await.expect("get").expect("stored");
        assert_eq!(
            run.error.as_deref(),
            Some("in Some(\"c\") pgid Some(43) after 2 steps")
        );
        // Progress recorded after the end is ignored.
        store
            .record_step(&rid, &step("late", ""))
            .await
            .expect("progress");
        let after = store.get_run(&rid).await.expect("get").expect("stored");
        assert_eq!(after, run, "{}", b.name());
        assert!(store.get_run(&cid).await.expect("get").is_some());
        drop(store);
        if let Some(stored) = b.stored(dir.path()) {
            assert_eq!(stored.progress, 1, "{}: only the late event", b.name());
        }
        // Prune takes what is left over.
        let store = b.open(dir.path());
        store
            .prune(Utc::now() - chrono::Duration::days(1))
            .await
            .expect("prune");
        drop(store);
        if let Some(stored) = b.stored(dir.path()) {
            assert_eq!(stored.progress, 0, "{}", b.name());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unflushed_finish_reads_finished_at_once_and_its_progress_goes_once_it_is_durable() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ended, running) = {
            let store = b.open(dir.path());
            let runs = new_runs(
                &store
                    .admit(alert_candidates("rb", &big_notification(10, 2)), vec![])
                    .await
                    .expect("admit"),
            );
            for r in &runs {
                claim(&*store, &r.id).await;
                store
                    .step_started(&r.id, "a", Some(41))
                    .await
                    .expect("progress");
            }
            let before = counted_today(&*store).await;
            let mut ended = store
                .get_run(&runs[0].id)
                .await
                .expect("get")
                .expect("stored");
            ended.status = RunStatus::Succeeded;
            ended.finished_at = Some(Utc::now());
            (ended.current_step, ended.current_pgid) = (None, None);
            let (_, mark) = store
                .finish_unflushed(ended.clone(), None)
                .await
                .expect("finish");
            // Seen ended, and counted, by every read at once.
            let read = store
                .get_run(&ended.id)
                .await
                .expect("get")
                .expect("stored");
            assert_eq!(read.status, RunStatus::Succeeded, "{}", b.name());
            assert_eq!(read.current_pgid, None, "{}: no progress on top", b.name());
            assert_eq!(counted_today(&*store).await, before + 1, "{}", b.name());
            store.durable_to(mark).await.expect("durable");
            store
                .durable_to(mark)
                .await
                .expect("durable again: nothing to do");
            (ended.id, runs[1].id.clone())
        };
        if let Some(stored) = b.stored(dir.path()) {
            assert_eq!(stored.progress, 1, "{}: the running run's alone", b.name());
        }
        let store = b.open(dir.path());
        let read = store.get_run(&ended).await.expect("get").expect("stored");
        assert_eq!(read.status, RunStatus::Succeeded, "{}", b.name());
        let still = store.get_run(&running).await.expect("get").expect("stored");
        assert_eq!(still.current_pgid, Some(41), "{}", b.name());
    }
}

/// Claims queued run `id`, as a worker does.
async fn claim(store: &dyn Store, id: &RunId) -> Transition {
    store
        .transition(
            id,
            &[RunStatus::Queued],
            change(|r| r.status = RunStatus::Running),
        )
        .await
        .expect("claim")
}

/// Admits `n` manual runs of `rb` and claims them all.
async fn running_runs(store: &dyn Store, n: usize) -> Vec<RunRecord> {
    let runs = new_runs(
        &store
            .admit((0..n).map(|i| manual(queued("rb", i))).collect(), vec![])
            .await
            .expect("admit"),
    );
    for r in &runs {
        claim(store, &r.id).await;
    }
    runs
}

/// A worker's end of `run`: unflushed, no guard update; its mark.
async fn worker_finish(store: &dyn Store, run: &RunRecord) -> untoil::store::Mark {
    let mut ended = run.clone();
    ended.status = RunStatus::Succeeded;
    ended.started_at = Some(Utc::now());
    ended.finished_at = Some(Utc::now());
    store.finish_unflushed(ended, None).await.expect("finish").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_finish_is_counted_once_after_a_crash_and_when_finished_again() {
    use untoil::store::sled::tally::TALLY_EVERY;
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, alert) = {
            let store = b.open(dir.path());
            let runs = running_runs(&*store, 1).await;
            // And an alert run, whose record refers to its stored notification.
            let alert = new_runs(
                &store
                    .admit(alert_candidates("rb", &big_notification(10, 1)), vec![])
                    .await
                    .expect("admit"),
            )
            .remove(0);
            claim(&*store, &alert.id).await;
            let alert = store
                .get_run(&alert.id)
                .await
                .expect("get")
                .expect("stored");
            worker_finish(&*store, &runs[0]).await;
            let mark = worker_finish(&*store, &alert).await;
            store.durable_to(mark).await.expect("durable");
            // Closed like a crash would: nothing read the rollups, nothing else was written.
            (runs[0].clone(), alert)
        };
        if b.name() == "sled" {
            // The ends are on disk and not yet counted: what reopening has to tally.
            let db = crate::common::raw_sled(dir.path());
            let tree = |n: &str| db.open_tree(n).expect("tree");
            for id in [&first.id, &alert.id] {
                assert!(tree("active").contains_key(id.0.as_bytes()).expect("read"));
            }
            assert_eq!(tree("rollups").len(), 0);
        }
        let store = b.open(dir.path());
        assert_eq!(counted_today(&*store).await, 2, "{}", b.name());
        let read = store
            .get_run(&alert.id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(read.status, RunStatus::Succeeded, "{}", b.name());
        assert_eq!(
            read.alert.and_then(|a| a
                .notification
                .common_annotations
                .get("description")
                .cloned()),
            Some("x".repeat(10)),
            "{}: whole",
            b.name()
        );
        let mut again = store
            .get_run(&first.id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(again.status, RunStatus::Succeeded, "{}", b.name());
        again.finished_at = Some(Utc::now());
        store.finish(again, None).await.expect("finish again");
        assert_eq!(counted_today(&*store).await, 2, "{}: once", b.name());
        // Ends waiting for their tally are bounded without any read: a tally of their own.
        let n = TALLY_EVERY + 3;
        let runs = running_runs(&*store, n).await;
        let mut mark = None;
        for r in &runs {
            mark = Some(worker_finish(&*store, r).await);
        }
        store
            .durable_to(mark.expect("finished"))
            .await
            .expect("durable");
        drop(store);
        if b.name() == "sled" {
            let db = crate::common::raw_sled(dir.path());
            let active = db.open_tree("active").expect("tree").len();
            assert!(active < TALLY_EVERY, "{active} untallied ends");
            drop(db);
        }
        let store = b.open(dir.path());
        assert_eq!(counted_today(&*store).await, 2 + n as u64, "{}", b.name());
        let running = store
            .list_runs(&RunFilter {
                status: Some(RunStatus::Running),
                ..Default::default()
            })
            .await
            .expect("list");
        assert!(running.is_empty(), "{}", b.name());
    }
}

/// A finished alert run of `n`'s first alert, created at `created` (its id says when).
fn finished_alert_run(n: &Notification, created: DateTime<Utc>, i: usize) -> RunRecord {
    let mut c = alert_candidates("rb", n).remove(0);
    c.run.id =
        RunId(ulid::Ulid::from_parts(created.timestamp_millis() as u64, i as u128).to_string());
    c.run.created_at = created;
    c.run.status = RunStatus::Succeeded;
    c.run.started_at = Some(created);
    c.run.finished_at = Some(created);
    c.run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_the_notifications_no_run_refers_to_and_keeps_the_others() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = Utc::now() - chrono::Duration::days(30);
        let (only_old, shared) = (big_notification(100, 1), big_notification(200, 1));
        let gone = finished_alert_run(&only_old, old, 1);
        let old_shared = finished_alert_run(&shared, old, 2);
        let recent = finished_alert_run(&shared, Utc::now(), 3);
        {
            let store = b.open(dir.path());
            store
                .finish_many(vec![gone.clone(), old_shared.clone(), recent.clone()])
                .await
                .expect("finish");
            let removed = store
                .prune(Utc::now() - chrono::Duration::days(1))
                .await
                .expect("prune");
            assert_eq!(removed, 2, "{}", b.name());
            assert_eq!(
                store.get_run(&recent.id).await.expect("get"),
                Some(recent.clone())
            );
            // The removed notification comes back with the next run that refers to it.
            let again = finished_alert_run(&only_old, Utc::now(), 4);
            store.finish(again.clone(), None).await.expect("finish");
            assert_eq!(
                store.get_run(&again.id).await.expect("get"),
                Some(again.clone()),
                "{}",
                b.name()
            );
            store
                .prune(Utc::now() - chrono::Duration::days(1))
                .await
                .expect("prune");
            assert_eq!(all_runs(&*store).await.len(), 2);
        }
        if let Some(stored) = b.stored(dir.path()) {
            assert_eq!(stored.notifications, 2, "{}", b.name());
        }
        let store = b.open(dir.path());
        store
            .prune(Utc::now() + chrono::Duration::days(1))
            .await
            .expect("prune all");
        assert!(all_runs(&*store).await.is_empty());
        drop(store);
        if let Some(stored) = b.stored(dir.path()) {
            assert_eq!(stored.notifications, 0, "{}", b.name());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_during_prune_never_leave_a_ref_without_its_notification() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let n = big_notification(50, 1);
        let old = Utc::now() - chrono::Duration::days(30);
        let mut ids = Vec::new();
        for round in 0..10usize {
            // An old run of the notification, pruned while new runs of it are admitted.
            store
                .finish(finished_alert_run(&n, old, round), None)
                .await
                .expect("finish");
            let admits = (0..4usize).map(|j| {
                let store = store.clone();
                let mut n = n.clone();
                n.alerts[0].fingerprint = format!("{:016x}", round * 10 + j);
                tokio::spawn(async move {
                    new_runs(
                        &store
                            .admit(alert_candidates("rb", &n), vec![])
                            .await
                            .expect("admit"),
                    )
                })
            });
            // Spawned now, before the prune: a lazy iterator would start them only after it.
            let admits: Vec<_> = admits.collect();
            let prune = {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .prune(Utc::now() - chrono::Duration::days(1))
                        .await
                        .expect("prune")
                })
            };
            for a in admits {
                ids.extend(a.await.expect("task").into_iter().map(|r| r.id));
            }
            prune.await.expect("task");
        }
        for id in &ids {
            let run = store.get_run(id).await.expect("no dangling ref");
            assert!(run.is_some_and(|r| r.alert.is_some()), "{}", b.name());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_that_changes_the_notification_stores_the_new_one_with_the_record() {
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = {
            let store = b.open(dir.path());
            let runs = new_runs(
                &store
                    .admit(alert_candidates("rb", &big_notification(10, 1)), vec![])
                    .await
                    .expect("admit"),
            );
            let id = runs[0].id.clone();
            let replaced = Arc::new(big_notification(20, 1).without_alerts());
            let new = replaced.clone();
            let done = store
                .transition(
                    &id,
                    &[RunStatus::Queued],
                    change(move |r| {
                        r.status = RunStatus::PendingApproval;
                        if let Some(a) = r.alert.as_mut() {
                            a.notification = new.clone();
                        }
                    }),
                )
                .await
                .expect("transition");
            assert!(matches!(done, Transition::Done(_)), "{}", b.name());
            let got = store.get_run(&id).await.expect("get").expect("stored");
            assert_eq!(got.alert.map(|a| a.notification), Some(replaced));
            store
                .prune(Utc::now() - chrono::Duration::days(1))
                .await
                .expect("prune");
            id
        };
        if let Some(stored) = b.stored(dir.path()) {
            assert_eq!(stored.notifications, 1, "{}: the first one swept", b.name());
        }
        let store = b.open(dir.path());
        assert!(store.get_run(&id).await.expect("get").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_nul_characters_from_senders_work_like_any_other() {
    // A label or payload may carry NUL: a fingerprint, a guard key rendered from labels and a
    // delivery id made of it are keys like any other.
    for b in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = b.open(dir.path());
        let fp = "src/fp\0x";
        let gate = counting_gate("rb", "k\0x", 5, false);
        let c = Candidate {
            key: alert_key(fp, "rb"),
            run: queued("rb", 1),
            gate: Some(gate.clone()),
        };
        let mut e = episode(fp);
        e.labels.insert("nul".into(), "a\0b".into());
        let got = store
            .admit_delivery(
                delivery("github-ci", "d\0-1", Utc::now(), 60),
                vec![c],
                vec![e.clone()],
            )
            .await
            .expect("admit")
            .unwrap_or_else(|| panic!("{}: a first delivery admits", b.name()));
        let runs = new_runs(&got);
        assert_eq!(runs.len(), 1, "{}", b.name());
        assert_eq!(
            store
                .runs_of_episode(&Episode::new(fp, at(14, 43)))
                .await
                .expect("episode"),
            vec![runs[0].id.clone()],
            "{}",
            b.name()
        );
        let states = store.guard_states().await.expect("states");
        assert_eq!(states[0].1, "k\0x", "{}", b.name());
        let alerts = store
            .alerts(
                Utc::now() - chrono::Duration::hours(1),
                Utc::now() + chrono::Duration::hours(1),
            )
            .await
            .expect("alerts");
        assert_eq!(alerts, vec![e], "{}", b.name());
        assert_eq!(
            store
                .episode_at_millis(fp, at(14, 43))
                .await
                .expect("episode"),
            Some(Episode::new(fp, at(14, 43))),
            "{}",
            b.name()
        );
        let again = store
            .admit_delivery(
                delivery("github-ci", "d\0-1", Utc::now(), 60),
                vec![],
                vec![],
            )
            .await
            .expect("admit");
        assert_eq!(again, None, "{}", b.name());
    }
}
