//! The engine between triggers and the executor, in units with one job each:
//! - [`admission`]: triggers become runs (dedupe and guard keys, guard decisions, one write);
//! - [`queue`]: queued runs and concurrency slots, one state per run under one lock;
//! - [`fleet_queue`]: on a database a fleet shares, the bound on the runs queued there;
//! - [`approvals`] and [`pending`]: runs waiting for a person;
//! - [`worker`]: a run claimed, executed, finished; [`recorder`] writes its progress;
//! - [`followers`]: a run's events for whoever follows it; [`cancel`]; [`resolve`];
//! - [`fleet`]: what replicas tell each other (cancel, [`remote`] follow, [`forward`]);
//! - [`lifecycle`]: how a run is born and how it ends (the one place toil is credited);
//! - [`retry`]: an interrupted run of an idempotent runbook started again;
//! - [`runbooks`] in service, [`clock`], [`metrics`], [`error`].
//!
//! Each unit's lock is its own and none is held while another unit is called. [`Engine`] is the
//! handle the server and the daemon's tasks get.

pub mod admission;
pub mod approvals;
pub mod cancel;
pub mod clock;
pub mod error;
pub mod fleet;
pub mod fleet_queue;
pub mod followers;
pub mod forward;
pub mod lifecycle;
pub mod metrics;
pub mod outage;
pub mod pending;
pub mod queue;
pub mod recorder;
pub mod remote;
pub mod resolve;
pub mod retry;
pub mod runbooks;
pub mod unstarted;
pub mod verdicts;
pub mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::mpsc;

use crate::engine::admission::Admission;
use crate::engine::approvals::{Approvals, Parts};
use crate::engine::cancel::Canceller;
use crate::engine::clock::Clock;
use crate::engine::error::AcceptError;
use crate::engine::fleet::Fleet;
use crate::engine::fleet_queue::{FRESH_FOR, FleetQueue};
use crate::engine::followers::{Followers, Subscription};
use crate::engine::metrics::Metrics;
use crate::engine::pending::Pending;
use crate::engine::queue::Queue;
use crate::engine::runbooks::Runbooks;
use crate::engine::unstarted::{end_unstarted, gone};
use crate::engine::verdicts::Verdicts;
use crate::engine::worker::Workers;
use crate::exec::executor::Executor;
use crate::exec::render::Renderer;
use crate::guard;
use crate::identity::actor::Actor;
use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::store::signals::Signals;
use crate::store::{Change, Reconciled, Store, Transition};

/// The engine's parts, shared.
pub struct Engine {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The runbooks in service.
    pub runbooks: Arc<Runbooks>,
    /// The queue.
    pub queue: Arc<Queue>,
    /// Triggers to runs.
    pub admission: Arc<Admission>,
    /// Runs waiting for a person.
    pub approvals: Arc<Approvals>,
    /// Cancels runs.
    pub canceller: Arc<Canceller>,
    /// Followers of runs in progress.
    pub followers: Arc<Followers>,
    /// The workers.
    pub workers: Arc<Workers>,
    /// The executor.
    pub executor: Arc<Executor>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Ends of verification windows.
    pub verdicts: Arc<Verdicts>,
    /// The other replicas of the fleet (None on sled).
    pub fleet: Option<Arc<Fleet>>,
}

/// A subscription to a run's events, or the run as it ended.
pub enum Following {
    /// In progress here: events so far, then live ones.
    Live(RunRecord, Subscription),
    /// In progress on another replica of the fleet: its events as they arrive from there,
    /// ending with `RunFinished`.
    Remote(RunRecord, mpsc::Receiver<RunEvent>),
    /// Ended (or not in progress here, on one node): its record.
    Ended(RunRecord),
}

impl Engine {
    /// An engine over `store`, with a queue of `capacity` (on a store a fleet shares, the
    /// fleet's queued runs are bounded by it too).
    pub fn new(
        store: Arc<dyn Store>,
        runbooks: Arc<Runbooks>,
        executor: Arc<Executor>,
        clock: Arc<dyn Clock>,
        capacity: usize,
    ) -> Engine {
        Engine::in_fleet(store, runbooks, executor, clock, capacity, None)
    }

    /// An engine over `store`, with a queue of `capacity`, as a replica of a fleet reached
    /// through `signals` (None: one node).
    pub fn in_fleet(
        store: Arc<dyn Store>,
        runbooks: Arc<Runbooks>,
        executor: Arc<Executor>,
        clock: Arc<dyn Clock>,
        capacity: usize,
        signals: Option<Arc<dyn Signals>>,
    ) -> Engine {
        let fleet = signals.map(|s| Arc::new(Fleet::new(s)));
        let queue = Arc::new(Queue::new(capacity));
        let followers = Arc::new(Followers::default());
        let metrics = Arc::new(Metrics::new());
        let pending = Arc::new(Pending::counted(metrics.approvals_pending.clone()));
        let approvals = Approvals::new(Parts {
            pending: pending.clone(),
            store: store.clone(),
            queue: queue.clone(),
            followers: followers.clone(),
            runbooks: runbooks.clone(),
            clock: clock.clone(),
            executor: executor.clone(),
        });
        let canceller = Arc::new(Canceller {
            queue: queue.clone(),
            pending,
            store: store.clone(),
            followers: followers.clone(),
            clock: clock.clone(),
            fleet: fleet.clone(),
        });
        let verdicts = Verdicts::new(store.clone(), clock.clone(), metrics.clone(), queue.clone());
        let admission = Arc::new(Admission {
            store: store.clone(),
            queue: queue.clone(),
            fleet: FleetQueue::new(capacity, FRESH_FOR),
            approvals: approvals.clone(),
            runbooks: runbooks.clone(),
            canceller: canceller.clone(),
            metrics: metrics.clone(),
            verdicts: verdicts.clone(),
            clock: clock.clone(),
            renderer: Renderer::new(),
            executor: executor.clone(),
        });
        let workers = Arc::new(Workers {
            queue: queue.clone(),
            store: store.clone(),
            executor: executor.clone(),
            followers: followers.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            interrupting: AtomicBool::new(false),
            verdicts: verdicts.clone(),
        });
        Engine {
            store,
            runbooks,
            queue,
            admission,
            approvals,
            canceller,
            followers,
            workers,
            executor,
            metrics,
            clock,
            verdicts,
            fleet,
        }
    }

    /// Starts again, once, the runs reconciliation found interrupted whose runbook (as loaded
    /// now) is `idempotent` (see [`retry::retry`]). Returns the new queued runs, for
    /// [`Engine::resume`].
    pub async fn retry_interrupted(
        &self,
        interrupted: &[RunId],
    ) -> Result<Vec<RunRecord>, AcceptError> {
        let catalog = self.runbooks.catalog();
        let now = self.clock.now();
        let mut retries = Vec::new();
        for id in interrupted {
            let Some(run) = self.store.get_run(id).await? else {
                continue;
            };
            let Some(rb) = catalog.get(&run.runbook) else {
                continue;
            };
            if let Some(again) = retry::retry(&*self.store, rb, &run, now).await? {
                retries.push(again);
            }
        }
        Ok(retries)
    }

    /// Takes back what a previous daemon left: queued runs join the queue (with the runbook as
    /// loaded now; a run whose runbook is gone fails), runs waiting for approval wait again, and
    /// so does a queued run that needs an approval it never got.
    pub async fn resume(&self, reconciled: &Reconciled) -> Result<(), AcceptError> {
        let catalog = self.runbooks.catalog();
        for run in &reconciled.queued {
            if run.approval_required && !run.approval.as_ref().is_some_and(|a| a.approved) {
                self.unapproved(run).await?;
                continue;
            }
            // Already queued here (a replica adopting a run it also took by approval).
            if self.queue.knows(&run.id) {
                continue;
            }
            if let Some(rb) = catalog.get(&run.runbook) {
                let key = run.guard_key.clone().unwrap_or_else(|| rb.name.clone());
                self.queue
                    .resume(run.id.clone(), rb.clone(), (rb.name.clone(), key));
            } else {
                end_unstarted(
                    &*self.store,
                    &self.followers,
                    &run.id,
                    &[RunStatus::Queued],
                    (RunStatus::Failed, gone(&run.runbook)),
                    self.clock.now(),
                )
                .await?;
            }
        }
        for run in &reconciled.pending_approval {
            self.approvals.resume(run);
        }
        for run in &reconciled.awaiting_verdict {
            self.verdicts.watch(run).await;
        }
        Ok(())
    }

    /// A queued run that needs approval and has none: stored before its guards decided, by an
    /// untoil that wrote the run and the decision apart (the first release's daemon, `untoil
    /// run` in the foreground before this release) and died in between. It waits for approval
    /// now rather than run unapproved.
    async fn unapproved(&self, run: &RunRecord) -> Result<(), AcceptError> {
        let wait: Change = Arc::new(|r: &mut RunRecord| r.status = RunStatus::PendingApproval);
        if let Transition::Done(run) = self
            .store
            .transition(&run.id, &[RunStatus::Queued], wait)
            .await?
        {
            tracing::warn!(
                run_id = %run.id,
                runbook = %run.runbook,
                "a queued run needs an approval it never got: it waits for one"
            );
            self.approvals.resume(&run);
        }
        Ok(())
    }

    /// Whether a run is in progress here: queued or running (the queue knows it), waiting for
    /// approval, or between its slot's release and its final write (it has events).
    pub fn in_progress_here(&self, id: &RunId) -> bool {
        self.queue.knows(id) || self.canceller.pending.contains(id) || self.followers.has_events(id)
    }

    /// Follows a run: its events from the start and live ones while it is in progress here (or
    /// on another replica of the fleet), else its record. None when there is no such run.
    pub async fn follow(&self, id: &RunId) -> Result<Option<Following>, AcceptError> {
        // Subscribed before the record is read: a run that ends in between is seen ended in the
        // record or reaches the subscriber with its final record.
        let subscription = self.followers.subscribe(id);
        let record = self.store.get_run(id).await;
        let here = self.in_progress_here(id);
        match (record, &self.fleet) {
            (Ok(Some(r)), _) if !r.status.is_final() && here => {
                Ok(Some(Following::Live(r, subscription)))
            }
            // Not final and not here: in progress on another replica.
            (Ok(Some(r)), Some(fleet)) if !r.status.is_final() => {
                self.followers.forget(id, subscription.1);
                let events = remote::follow(fleet.clone(), self.store.clone(), id.clone());
                Ok(Some(Following::Remote(r, events)))
            }
            (other, _) => {
                self.followers.forget(id, subscription.1);
                Ok(other?.map(Following::Ended))
            }
        }
    }

    /// Closes the breakers of a runbook (one key, or all), logging who did. Returns the keys
    /// reset.
    pub async fn reset_breakers(
        &self,
        runbook: &str,
        key: Option<&str>,
        actor: &Actor,
    ) -> Result<Vec<String>, AcceptError> {
        let reset = self
            .store
            .update_guards(runbook, key, Arc::new(guard::reset))
            .await?;
        for (k, _) in &reset {
            self.metrics.breaker(runbook, k, false);
        }
        tracing::info!(
            runbook,
            keys = reset.len(),
            "breakers reset by {}",
            actor.shown()
        );
        Ok(reset.into_iter().map(|(k, _)| k).collect())
    }
}
