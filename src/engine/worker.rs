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
use crate::engine::queue::{Next, Queue, Slot, Ticket};
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
use crate::runbook::model::Runbook;
use crate::store::error::StoreError;
use crate::store::{Change, GuardOf, Mark, Store, Transition, Update};

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

/// A run whose end is written but may not be on disk yet, and what follows once it is.
struct Ending {
    run: RunRecord,
    runbook: Arc<Runbook>,
    mark: Mark,
    now: DateTime<Utc>,
    span: tracing::Span,
}

impl Workers {
    /// Works until the queue closes. A run's end is written unflushed when another run is ready:
    /// that run's claim flushes both (one flush per run instead of two under load).
    pub async fn work(self: Arc<Self>) {
        let mut ending: Option<Ending> = None;
        loop {
            // An end already durable (a store that flushes every write) is settled at once.
            let ready = match ending {
                Some(ref e) if e.mark != Mark::DURABLE => self.queue.try_next(),
                _ => Next::Empty,
            };
            let ticket = match ready {
                Next::Ready(ticket) => ticket,
                Next::Empty | Next::Closed => {
                    if let Some(e) = ending.take() {
                        self.settle(e).await;
                    }
                    match self.queue.next().await {
                        Some(ticket) => ticket,
                        None => break,
                    }
                }
            };
            let span = info_span!("run", run_id = %ticket.id, runbook = %ticket.runbook.name);
            ending = self.run(ticket, ending).instrument(span).await;
        }
        if let Some(e) = ending {
            self.settle(e).await;
        }
    }

    /// What follows a run's end once it is durable: its verification window, its followers
    /// told, the retry of an interrupted run.
    async fn settle(&self, e: Ending) {
        let span = e.span.clone();
        async {
            if let Err(err) = self.store.durable_to(e.mark).await {
                error!(
                    "the run's end is written but could not be made durable (a crash now leaves the run interrupted): {err}"
                );
            }
            self.verdicts.watch(&e.run).await;
            self.followers.close(&e.run.id, &e.run);
            info!(status = %e.run.status, "run finished");
            // Interrupted by this shutdown: an idempotent runbook's run waits, queued, for the
            // next start (the queue is closed now; the store resumes it).
            if e.run.status == RunStatus::Interrupted
                && let Err(err) = retry::retry(&*self.store, &e.runbook, &e.run, e.now).await
            {
                error!("cannot queue the retry of the interrupted run: {err}");
            }
        }
        .instrument(span)
        .await
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

    /// Claims and runs `ticket`'s run; `previous`, a run this worker ended, is settled once the
    /// claim's flush made its end durable too. Returns the run's own end, written unflushed.
    async fn run(&self, ticket: Ticket, previous: Option<Ending>) -> Option<Ending> {
        let id = ticket.id.clone();
        let mut slot = SlotHeld {
            queue: &self.queue,
            id: &id,
            held: false,
        };
        let claimed = self.claim(&ticket, &mut slot).await;
        if let Some(previous) = previous {
            self.settle(previous).await;
        }
        self.execute(ticket, claimed?, slot).await
    }

    /// Takes the run's slot and marks it running, durably; None when it does not run here.
    async fn claim(&self, ticket: &Ticket, slot: &mut SlotHeld<'_>) -> Option<RunRecord> {
        let id = ticket.id.clone();
        match self.queue.claim_slot(ticket) {
            Slot::Run => {}
            Slot::RunCancelledOthers => {
                info!(
                    "overlap: cancelling the running run(s) of key {}",
                    ticket.key.1
                )
            }
            Slot::Parked => return None,
            Slot::Cancelled => {
                self.end_unstarted(
                    &id,
                    RunStatus::Cancelled,
                    "cancelled before it started".into(),
                )
                .await;
                return None;
            }
            Slot::Skip => {
                let reason = format!(
                    "overlap: a run of key `{}` is already running (overlap: skip)",
                    ticket.key.1
                );
                self.end_unstarted(&id, RunStatus::Skipped, reason).await;
                return None;
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
        match claimed {
            Ok(Transition::Done(run)) => Some(*run),
            // Ended meanwhile (cancelled while queued, by another path): followers here get
            // its end.
            Ok(Transition::Refused(status)) if status.is_final() => {
                close_ended(&*self.store, &self.followers, &id).await;
                None
            }
            Ok(_) => None,
            // This replica's lease expired: it is fencing itself; another takes the run.
            Err(e @ StoreError::LeaseLost { .. }) => {
                warn!("not starting the run: {e}");
                None
            }
            Err(e) => {
                error!("cannot mark the run running (it stays queued for the next start): {e}");
                None
            }
        }
    }

    /// Executes a claimed run and writes its end, unflushed.
    async fn execute(
        &self,
        ticket: Ticket,
        mut run: RunRecord,
        mut slot: SlotHeld<'_>,
    ) -> Option<Ending> {
        let id = ticket.id.clone();
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
                    return None;
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
        // the breaker it opened. Unflushed: the next claim (or the settling) flushes it.
        let (finished, uncertain) = persist_noting("record the finished run", || {
            self.store.finish_unflushed(run.clone(), update.clone())
        })
        .await;
        let finished = match finished {
            // The guard change the lost reply carried is not known: its metric waits for the
            // next finish of the key.
            Err(StoreError::LeaseLost { .. }) if uncertain && self.own_finish(&run).await => {
                Ok((None, Mark::DURABLE))
            }
            other => other,
        };
        let mut mark = Mark::DURABLE;
        match finished {
            Ok((changed, written)) => {
                mark = written;
                if let Some(changed) = changed {
                    let open = changed.after.breaker.is_some();
                    if open && changed.before.breaker.is_none() {
                        warn!(key = %ticket.key.1, "circuit breaker opened after repeated failures");
                    }
                    self.metrics.breaker(&ticket.key.0, &ticket.key.1, open);
                }
            }
            // Another replica ended or took the run: nothing of this end is recorded, and the
            // retry of an interrupted run is the reaper's.
            Err(e @ StoreError::LeaseLost { .. }) => {
                warn!("the run's end is not recorded: {e}");
                self.followers.close(&id, &run);
                return None;
            }
            Err(e) => error!("cannot record the run: {e}"),
        }
        Some(Ending {
            run,
            runbook: ticket.runbook,
            mark,
            now,
            span: tracing::Span::current(),
        })
    }
}
