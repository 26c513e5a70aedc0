//! Workers: each takes the next ready run, claims its concurrency slot and the run itself (durably
//! `running` before its first step: a crash then interrupts it, never repeats it), executes its
//! plan, and finishes it: final record, rollups and guard state in one durable write, then its
//! followers are told.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use tracing::{Instrument, error, info, info_span, warn};

use crate::engine::clock::Clock;
use crate::engine::followers::Followers;
use crate::engine::lifecycle;
use crate::engine::metrics::Metrics;
use crate::engine::outage::{claimed_by_us, finished_by_us, persist, persist_noting};
use crate::engine::queue::{Queue, Slot, Ticket};
use crate::engine::recorder::StoreRecorder;
use crate::engine::retry;
use crate::engine::unstarted::{close_ended, end_unstarted};
use crate::engine::verdicts::Verdicts;
use crate::exec::executor::Executor;
use crate::exec::plan::Plan;
use crate::guard;
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::store::error::StoreError;
use crate::store::{Change, GuardOf, Store, Transition, Update};

/// Executes queued runs.
pub struct Workers {
    /// The queue runs come from.
    pub queue: Arc<Queue>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Runs the steps.
    pub executor: Arc<Executor>,
    /// Followers of runs.
    pub followers: Arc<Followers>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The clock runs are stamped by.
    pub clock: Arc<dyn Clock>,
    /// Set when a shutdown's grace period ran out: runs cancelled then end as interrupted.
    pub interrupting: AtomicBool,
    /// Ends of verification windows of the runs it finishes.
    pub verdicts: Arc<Verdicts>,
}

/// Gives a run's slot back however its worker leaves it.
struct SlotHeld<'a> {
    queue: &'a Queue,
    id: &'a RunId,
    held: bool,
}

impl SlotHeld<'_> {
    fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.queue.finished(self.id);
        }
    }
}

impl Drop for SlotHeld<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl Workers {
    /// Works until the queue closes.
    pub async fn work(self: Arc<Self>) {
        while let Some(ticket) = self.queue.next().await {
            let span = info_span!("run", run_id = %ticket.id, runbook = %ticket.runbook.name);
            self.run(ticket).instrument(span).await;
        }
    }

    /// Interrupts every running run (shutdown after the grace period).
    pub fn interrupt(&self) {
        self.interrupting.store(true, Ordering::SeqCst);
        self.queue.cancel_running();
    }

    /// Ends a run that did not start (cancelled, skipped by `overlap: skip`).
    async fn end_unstarted(&self, id: &RunId, status: RunStatus, reason: String) {
        let ended = end_unstarted(
            &*self.store,
            &self.followers,
            id,
            &[RunStatus::Queued],
            (status, reason),
            self.clock.now(),
        )
        .await;
        if let Err(e) = ended {
            error!("cannot record the run {status}: {e}");
        }
    }

    /// A claim retried after a lost reply that found the run running: the run as stored when
    /// that is the first attempt's own claim (it runs here, under this replica's lease), else the
    /// refusal.
    async fn own_claim(
        &self,
        id: &RunId,
        started: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        let stored = persist("read the claimed run", || self.store.get_run(id)).await?;
        match stored {
            Some(run) if claimed_by_us(&run, started) => {
                info!("the run's claim was committed though its reply was lost: it runs here");
                Ok(Transition::Done(Box::new(run)))
            }
            _ => Ok(Transition::Refused(RunStatus::Running)),
        }
    }

    /// Whether a finish retried after a lost reply, and refused, found the run as the first
    /// attempt recorded it (its reply was lost, not the write).
    async fn own_finish(&self, run: &RunRecord) -> bool {
        match persist("read the finished run", || self.store.get_run(&run.id)).await {
            Ok(Some(stored)) if finished_by_us(&stored, run) => {
                info!("the run's end was committed though its reply was lost");
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!(
                    "cannot tell whether the run's end was recorded before its reply was lost: {e}"
                );
                false
            }
        }
    }

    async fn run(&self, ticket: Ticket) {
        let id = ticket.id.clone();
        let mut slot = SlotHeld {
            queue: &self.queue,
            id: &id,
            held: false,
        };
        match self.queue.claim_slot(&ticket) {
            Slot::Run => {}
            Slot::RunCancelledOthers => {
                info!(
                    "overlap: cancelling the running run(s) of key {}",
                    ticket.key.1
                )
            }
            Slot::Parked => return,
            Slot::Cancelled => {
                return self
                    .end_unstarted(
                        &id,
                        RunStatus::Cancelled,
                        "cancelled before it started".into(),
                    )
                    .await;
            }
            Slot::Skip => {
                let reason = format!(
                    "overlap: a run of key `{}` is already running (overlap: skip)",
                    ticket.key.1
                );
                return self.end_unstarted(&id, RunStatus::Skipped, reason).await;
            }
        }
        slot.held = true;
        let started = self.clock.now();
        let claim: Change = Arc::new(move |r: &mut RunRecord| lifecycle::start(r, started));
        let (claimed, uncertain) = persist_noting("mark the run running", || {
            self.store
                .transition(&id, &[RunStatus::Queued], claim.clone())
        })
        .await;
        let claimed = match claimed {
            Ok(Transition::Refused(RunStatus::Running)) if uncertain => {
                self.own_claim(&id, started).await
            }
            other => other,
        };
        let mut run = match claimed {
            Ok(Transition::Done(run)) => *run,
            // Ended meanwhile (cancelled while queued, by another path): followers here get
            // its end.
            Ok(Transition::Refused(status)) if status.is_final() => {
                return close_ended(&*self.store, &self.followers, &id).await;
            }
            Ok(_) => return,
            // This replica's lease expired: it is fencing itself; another takes the run.
            Err(e @ StoreError::LeaseLost { .. }) => {
                warn!("not starting the run: {e}");
                return;
            }
            Err(e) => {
                error!("cannot mark the run running (it stays queued for the next start): {e}");
                return;
            }
        };
        self.metrics.in_progress.inc();
        info!("run started");
        match Plan::of(ticket.runbook.clone(), &run) {
            Ok(plan) => {
                let mut recorder = StoreRecorder::new(
                    self.store.clone(),
                    self.followers.clone(),
                    id.clone(),
                    ticket.runbook.clone(),
                )
                .stopped_by(ticket.cancel.clone());
                self.executor
                    .execute(&plan, &mut run, ticket.cancel.clone(), &mut recorder)
                    .await;
                let now = self.clock.now();
                if recorder.lease_lost() {
                    // Another replica ended or took the run: its steps were stopped, and what
                    // this one saw of it is not recorded.
                    self.metrics.in_progress.dec();
                    slot.release();
                    self.followers.close(&id, &run);
                    warn!("run abandoned: its lease was lost to another replica");
                    return;
                }
                if self.interrupting.load(Ordering::SeqCst) && run.status == RunStatus::Cancelled {
                    lifecycle::interrupt(&mut run, now, true);
                } else {
                    lifecycle::conclude(&mut run, now);
                    lifecycle::await_verdict(&mut run, &ticket.runbook);
                }
            }
            Err(e) => {
                warn!("run cannot start: {e}");
                lifecycle::end(
                    &mut run,
                    RunStatus::Failed,
                    Some(e.to_string()),
                    self.clock.now(),
                );
            }
        }
        self.metrics.in_progress.dec();
        self.metrics.run_finished(
            &run.runbook,
            &run.owner,
            run.status.as_str(),
            run.duration_ms().map(|ms| ms as f64 / 1000.0),
            run.toil.as_ref().map_or(0.0, |t| t.minutes),
        );
        // The slot first: a trigger sent on seeing this run finished must not be skipped as
        // overlapping it.
        slot.release();
        self.metrics.queue_depth.set(self.queue.depth() as i64);
        let guards = ticket.runbook.guards.clone();
        let stateful = guards.cooldown.is_some()
            || guards.max_runs.is_some()
            || guards.trip_after_failures.is_some();
        let (status, now) = (run.status, self.clock.now());
        let update = stateful.then(|| GuardOf {
            runbook: ticket.key.0.clone(),
            key: ticket.key.1.clone(),
            apply: Arc::new(move |state: &guard::KeyState| {
                guard::finished(&guards, state, status, now)
            }) as Update,
        });
        // Record, rollups and guard state in one write: whoever sees the run finished also sees
        // the breaker it opened.
        let (finished, uncertain) = persist_noting("record the finished run", || {
            self.store.finish(run.clone(), update.clone())
        })
        .await;
        let finished = match finished {
            // The guard change the lost reply carried is not known: its metric waits for the
            // next finish of the key.
            Err(StoreError::LeaseLost { .. }) if uncertain && self.own_finish(&run).await => {
                Ok(None)
            }
            other => other,
        };
        match finished {
            Ok(Some(changed)) => {
                let open = changed.after.breaker.is_some();
                if open && changed.before.breaker.is_none() {
                    warn!(key = %ticket.key.1, "circuit breaker opened after repeated failures");
                }
                self.metrics.breaker(&ticket.key.0, &ticket.key.1, open);
            }
            Ok(None) => {}
            // Another replica ended or took the run: nothing of this end is recorded, and the
            // retry of an interrupted run is the reaper's.
            Err(e @ StoreError::LeaseLost { .. }) => {
                warn!("the run's end is not recorded: {e}");
                self.followers.close(&id, &run);
                return;
            }
            Err(e) => error!("cannot record the run: {e}"),
        }
        self.verdicts.watch(&run).await;
        self.followers.close(&id, &run);
        info!(status = %run.status, "run finished");
        // Interrupted by this shutdown: an idempotent runbook's run waits, queued, for the next
        // start (the queue is closed now; the store resumes it).
        if run.status == RunStatus::Interrupted
            && let Err(e) = retry::retry(&*self.store, &ticket.runbook, &run, now).await
        {
            error!("cannot queue the retry of the interrupted run: {e}");
        }
    }
}
