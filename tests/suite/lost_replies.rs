//! A claim and a finish whose commit's reply is lost (the connection drops after PostgreSQL
//! committed): the worker's retry finds its own write done (the run already `running` under its
//! lease, the run already finished and its lease released) and goes on as if the reply had come,
//! rather than abandoning a run that no one else may take. The drop is played by a store that
//! commits through a real replica's PgStore and then answers as a broken connection does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use untoil::engine::Engine;
use untoil::engine::clock::{Clock, SystemClock};
use untoil::engine::runbooks::Runbooks;
use untoil::exec::executor::Executor;
use untoil::guard::KeyState;
use untoil::ledger::rollup::{Rollup, RollupKey};
use untoil::run::id::RunId;
use untoil::run::record::{RunRecord, Verification};
use untoil::run::status::RunStatus;
use untoil::run::step::StepResult;
use untoil::runbook::plugins::Plugins;
use untoil::store::error::StoreError;
use untoil::store::postgres::PgStore;
use untoil::store::{
    Admitted, AlertReceived, Candidate, Change, Delivery, GuardChanged, GuardOf, Reconciled,
    RunFilter, Store, Transition, Update,
};
use untoil::trigger::alert::Notification;
use untoil::trigger::key::{Episode, Fire};

use crate::common::{Dirs, until};
use crate::conformance::{Postgres, pg_pool};
use crate::fleet::{alert, lines, marking};

/// A replica's store whose first claim and first finish commit and then lose their reply
/// (`finishes` counts attempts, refused ones too).
struct LosingReplies {
    inner: PgStore,
    claims: AtomicUsize,
    finishes: AtomicUsize,
}

/// What a connection that dropped after the commit answers.
fn dropped() -> StoreError {
    StoreError::Backend {
        path: "test".into(),
        reason: "connection closed (the commit's reply was lost)".into(),
    }
}

#[async_trait]
impl Store for LosingReplies {
    fn id(&self) -> &str {
        self.inner.id()
    }
    async fn admit(
        &self,
        candidates: Vec<Candidate>,
        alerts: Vec<AlertReceived>,
    ) -> Result<Vec<Admitted>, StoreError> {
        self.inner.admit(candidates, alerts).await
    }
    async fn admit_delivery(
        &self,
        delivery: Delivery,
        candidates: Vec<Candidate>,
        alerts: Vec<AlertReceived>,
    ) -> Result<Option<Vec<Admitted>>, StoreError> {
        self.inner
            .admit_delivery(delivery, candidates, alerts)
            .await
    }
    async fn transition(
        &self,
        id: &RunId,
        from: &[RunStatus],
        change: Change,
    ) -> Result<Transition, StoreError> {
        let t = self.inner.transition(id, from, change).await?;
        let claim = matches!(&t, Transition::Done(r) if r.status == RunStatus::Running);
        if claim && self.claims.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(dropped());
        }
        Ok(t)
    }
    async fn step_started(
        &self,
        id: &RunId,
        step: &str,
        pgid: Option<u32>,
    ) -> Result<(), StoreError> {
        self.inner.step_started(id, step, pgid).await
    }
    async fn record_step(&self, id: &RunId, step: &StepResult) -> Result<(), StoreError> {
        self.inner.record_step(id, step).await
    }
    async fn finish(
        &self,
        run: RunRecord,
        guard: Option<GuardOf<Update>>,
    ) -> Result<Option<GuardChanged>, StoreError> {
        let first = self.finishes.fetch_add(1, Ordering::SeqCst) == 0;
        let changed = self.inner.finish(run, guard).await?;
        if first {
            return Err(dropped());
        }
        Ok(changed)
    }
    async fn finish_many(&self, runs: Vec<RunRecord>) -> Result<(), StoreError> {
        self.inner.finish_many(runs).await
    }
    async fn set_verified(
        &self,
        id: &RunId,
        verification: Verification,
    ) -> Result<bool, StoreError> {
        self.inner.set_verified(id, verification).await
    }
    async fn update_guards(
        &self,
        runbook: &str,
        key: Option<&str>,
        update: Update,
    ) -> Result<Vec<(String, KeyState)>, StoreError> {
        self.inner.update_guards(runbook, key, update).await
    }
    async fn reconcile(&self, interrupt: Change) -> Result<Reconciled, StoreError> {
        self.inner.reconcile(interrupt).await
    }
    async fn runs_of_episode(&self, episode: &Episode) -> Result<Vec<RunId>, StoreError> {
        self.inner.runs_of_episode(episode).await
    }
    async fn episode_at_millis(
        &self,
        fingerprint: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<Option<Episode>, StoreError> {
        self.inner.episode_at_millis(fingerprint, starts_at).await
    }
    async fn last_fire(&self, fire: &Fire) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.last_fire(fire).await
    }
    async fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>, StoreError> {
        self.inner.get_run(id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.list_runs(filter).await
    }
    async fn rollups(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        by_month: bool,
    ) -> Result<Vec<(RollupKey, Rollup)>, StoreError> {
        self.inner.rollups(from, to, by_month).await
    }
    async fn alerts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AlertReceived>, StoreError> {
        self.inner.alerts(from, to).await
    }
    async fn guard_states(&self) -> Result<Vec<(String, String, KeyState)>, StoreError> {
        self.inner.guard_states().await
    }
    async fn prune(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.inner.prune(before).await
    }
    async fn prune_deliveries(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.inner.prune_deliveries(now).await
    }
    async fn fleet_queued(&self) -> Result<Option<u64>, StoreError> {
        self.inner.fleet_queued().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_and_a_finish_whose_commit_reply_was_lost_are_taken_as_done_by_their_retry() {
    let pg = Postgres::default();
    let dirs = Dirs::new();
    let db = pg.database(&dirs.path("db"));
    let cluster = pg.cluster();
    let store = PgStore::open(
        pg_pool(&cluster.url(&db)),
        cluster.url_without_password(&db),
    )
    .await
    .expect("opens");
    let replica = store
        .join("test", std::process::id(), Duration::from_secs(60))
        .await
        .expect("joins");
    let losing = Arc::new(LosingReplies {
        inner: replica,
        claims: AtomicUsize::new(0),
        finishes: AtomicUsize::new(0),
    });
    let marker = dirs.path("marker");
    // A verification window: its verdict comes only from a timer the worker arms once it knows
    // the run's end is recorded.
    let rb = marking(&marker, None).replacen(
        "owner: t\n",
        "owner: t\nverify: {alert_resolves_within: 1s}\n",
        1,
    );
    dirs.runbook("marking", &rb);
    let runbooks = Arc::new(Runbooks::new(dirs.path("runbooks"), dirs.path("plugins")));
    runbooks.reload();
    let engine = Engine::new(
        losing.clone(),
        runbooks,
        Arc::new(Executor::new(Plugins::default()).expect("executor")),
        Arc::new(SystemClock) as Arc<dyn Clock>,
        100,
    );
    let worker = tokio::spawn(engine.workers.clone().work());
    let n: Notification = serde_json::from_value(alert("lost-replies")).expect("notification");
    let outcome = engine
        .admission
        .notification(untoil::trigger::source::ALERTMANAGER, &n)
        .await
        .expect("admitted");
    let id = outcome.accepted[0].clone();
    // The run executed once, and its first (committed) end stands.
    let run = until("the run to succeed", || async {
        let r = store.get_run(&id).await.expect("read").expect("stored");
        (r.status == RunStatus::Succeeded).then_some(r)
    })
    .await;
    // The finish's retry, refused (the first attempt released the run's lease), took the end as
    // its own: the verification window was armed, and its end records the verdict.
    let judged = until("the run's verdict", || async {
        let r = store.get_run(&id).await.expect("read").expect("stored");
        r.verification.is_some().then_some(r)
    })
    .await;
    assert_eq!(
        losing.finishes.load(Ordering::SeqCst),
        2,
        "finished, then retried"
    );
    assert_eq!(judged.finished_at, run.finished_at, "the first end stands");
    assert_eq!(lines(&marker), vec![id.0.clone()], "the run executed once");
    assert!(
        losing.claims.load(Ordering::SeqCst) >= 1,
        "the claim was made"
    );
    assert_eq!(engine.queue.running(), 0, "no run left holding a slot");
    engine.queue.close();
    let _ = worker.await;
}
