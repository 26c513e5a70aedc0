//! Human approval: a run of a runbook with `guards.approval` waits until a person approves it
//! (it joins the queue) or denies it, or until it expires; a denial or an expiry ends it as
//! skipped with who decided.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::engine::clock::Clock;
use crate::engine::error::AcceptError;
use crate::engine::followers::Followers;
use crate::engine::lifecycle;
use crate::engine::pending::Pending;
use crate::engine::queue::Queue;
use crate::engine::runbooks::Runbooks;
use crate::engine::unstarted::{end_unstarted, gone};
use crate::exec::executor::Executor;
use crate::exec::plan::Plan;
use crate::exec::recorder::Discard;
use crate::identity::actor::Actor;
use crate::identity::approvers::Approvers;
use crate::identity::{claim, principal};
use crate::run::id::RunId;
use crate::run::record::{ApprovalDecision, RunRecord};
use crate::run::status::RunStatus;
use crate::runbook::model::{DEFAULT_APPROVAL_TIMEOUT, Runbook};
use crate::store::{Change, Store, Transition};

/// Who decides when an approval times out (a name no principal may have).
pub const EXPIRED: &str = principal::EXPIRED;

/// Approvals of this daemon's runs.
pub struct Approvals {
    pending: Arc<Pending>,
    store: Arc<dyn Store>,
    queue: Arc<Queue>,
    followers: Arc<Followers>,
    runbooks: Arc<Runbooks>,
    clock: Arc<dyn Clock>,
    executor: Arc<Executor>,
    /// A weak handle to itself, for expiry timers: a pending timer must not keep a stopped
    /// daemon (and its store) alive.
    me: Weak<Approvals>,
}

/// What an [`Approvals`] works with.
pub struct Parts {
    /// Runs waiting.
    pub pending: Arc<Pending>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The queue approved runs join.
    pub queue: Arc<Queue>,
    /// Followers, told when a run is denied.
    pub followers: Arc<Followers>,
    /// The runbooks in service (for runs resumed after a restart).
    pub runbooks: Arc<Runbooks>,
    /// The clock approvals expire by.
    pub clock: Arc<dyn Clock>,
    /// Runs `on_approval_requested` steps.
    pub executor: Arc<Executor>,
}

impl Approvals {
    /// Approvals over `parts`.
    pub fn new(parts: Parts) -> Arc<Approvals> {
        Arc::new_cyclic(|me| Approvals {
            pending: parts.pending,
            store: parts.store,
            queue: parts.queue,
            followers: parts.followers,
            runbooks: parts.runbooks,
            clock: parts.clock,
            executor: parts.executor,
            me: me.clone(),
        })
    }

    /// How many runs wait for approval.
    pub fn count(&self) -> usize {
        self.pending.len()
    }

    /// A run now waits for approval, until `created_at` plus the runbook's approval timeout
    /// (the default one when its runbook is no longer loaded).
    pub fn wait(&self, run: &RunRecord, runbook: Option<Arc<Runbook>>) {
        let timeout = runbook
            .as_ref()
            .map_or(DEFAULT_APPROVAL_TIMEOUT, |rb| rb.guards.approval_timeout);
        self.pending.add(run.id.clone(), runbook);
        let deadline = run.created_at + chrono::Duration::from_std(timeout).unwrap_or_default();
        let (me, clock, id) = (self.me.clone(), self.clock.clone(), run.id.clone());
        tokio::spawn(async move {
            clock.sleep_until(deadline).await;
            if let Some(me) = me.upgrade()
                && !me.queue.is_closed()
                && me.pending.contains(&id)
            {
                match me.record(&id, false, EXPIRED, None).await {
                    // Ended meanwhile by another replica (approved or cancelled there).
                    Ok(_) | Err(AcceptError::Conflict(_)) => {}
                    Err(e) => warn!(run_id = %id, "cannot expire the approval: {e}"),
                }
            }
        });
    }

    /// A run found waiting at start-up: waits again, with the runbook as loaded now.
    pub fn resume(&self, run: &RunRecord) {
        self.wait(run, self.runbooks.catalog().get(&run.runbook).cloned());
    }

    /// Runs the runbook's `on_approval_requested` steps (e.g. a chat message with the run id),
    /// with the pending run's id, params and alert. They are not a run of their own: their
    /// outcome is logged, and they credit no toil.
    pub fn notify(&self, rb: &Arc<Runbook>, run: &RunRecord) {
        if rb.on_approval_requested.is_empty() {
            return;
        }
        let mut notifier = (**rb).clone();
        notifier.steps = rb.on_approval_requested.clone();
        notifier.timeout = None;
        let executor = self.executor.clone();
        let mut record = run.clone();
        tokio::spawn(async move {
            let id = record.id.clone();
            match Plan::of(Arc::new(notifier), &record) {
                Ok(plan) => {
                    executor
                        .execute(&plan, &mut record, CancellationToken::new(), &mut Discard)
                        .await;
                    info!(run_id = %id, status = %record.status, "approval request sent (on_approval_requested)");
                }
                Err(e) => warn!(run_id = %id, "on_approval_requested cannot run: {e}"),
            }
        });
    }

    /// Approves (the run joins the queue) or denies a run waiting for approval, recording the
    /// principal who decided and its claim beside it. Refused (`Forbidden`, nothing changed)
    /// when the runbook names approvers and the principal is not one of them. Returns the run as
    /// stored.
    pub async fn decide(
        &self,
        id: &RunId,
        approve: bool,
        actor: &Actor,
    ) -> Result<RunRecord, AcceptError> {
        if let Some(rb) = self.runbook_of(id).await?
            && let Some(approvers) = &rb.guards.approvers
        {
            approvers
                .check(&rb.name, approve, &actor.principal)
                .map_err(AcceptError::Forbidden)?;
        }
        self.record(id, approve, actor.name(), actor.claimed.clone())
            .await
    }

    /// The runbook a decision on run `id` applies to: the version it waits with, else (a run
    /// this daemon does not hold as waiting) the one in service under its name.
    async fn runbook_of(&self, id: &RunId) -> Result<Option<Arc<Runbook>>, AcceptError> {
        if self.pending.contains(id) {
            return Ok(self.pending.runbook(id));
        }
        Ok(self
            .store
            .get_run(id)
            .await?
            .and_then(|run| self.runbooks.catalog().get(&run.runbook).cloned()))
    }

    /// Records a decision by `by` (a principal's name, or [`EXPIRED`]) with the claim its
    /// request made.
    async fn record(
        &self,
        id: &RunId,
        approve: bool,
        by: &str,
        claimed_by: Option<String>,
    ) -> Result<RunRecord, AcceptError> {
        let shown = claim::shown(by, claimed_by.as_deref());
        let decision = ApprovalDecision {
            approved: approve,
            by: by.to_string(),
            claimed_by,
            at: self.clock.now(),
        };
        let (result, reservation) = if approve {
            let mut reservation = self
                .queue
                .reserve(1)
                .map_err(|f| AcceptError::QueueFull(f.waiting))?;
            let change: Change = Arc::new(move |r: &mut RunRecord| {
                r.status = RunStatus::Queued;
                r.approval = Some(decision.clone());
            });
            let t = self
                .store
                .transition(id, &[RunStatus::PendingApproval], change)
                .await?;
            let mut t = t;
            if let Transition::Done(run) = &t {
                info!(run_id = %id, "approved by {shown}");
                let rb = self
                    .pending
                    .runbook(id)
                    .or_else(|| self.runbooks.catalog().get(&run.runbook).cloned());
                match rb {
                    Some(rb) => {
                        let key = run.guard_key.clone().unwrap_or_else(|| rb.name.clone());
                        reservation.push(id.clone(), rb.clone(), (rb.name.clone(), key));
                    }
                    // Its runbook is gone (removed while the run waited): it cannot run.
                    None => {
                        let failed = end_unstarted(
                            &*self.store,
                            &self.followers,
                            id,
                            &[RunStatus::Queued],
                            (RunStatus::Failed, gone(&run.runbook)),
                            self.clock.now(),
                        )
                        .await?;
                        if let Some(failed) = failed {
                            t = Transition::Done(Box::new(failed));
                        }
                    }
                }
            }
            (t, Some(reservation))
        } else {
            let reason = if by == EXPIRED {
                "approval expired".to_string()
            } else {
                format!("denied by {shown}")
            };
            let now = decision.at;
            let change: Change = Arc::new(move |r: &mut RunRecord| {
                r.approval = Some(decision.clone());
                lifecycle::end(r, RunStatus::Skipped, Some(reason.clone()), now);
            });
            let t = self
                .store
                .transition(id, &[RunStatus::PendingApproval], change)
                .await?;
            if let Transition::Done(run) = &t {
                self.followers.close(id, run);
                info!(run_id = %id, "not approved: {}", run.error.as_deref().unwrap_or(""));
            }
            (t, None)
        };
        drop(reservation);
        // Decided, or ended elsewhere (cancelled, or decided on another replica): it no longer
        // waits here.
        self.pending.remove(id);
        match result {
            Transition::Done(run) => Ok(*run),
            Transition::Refused(status) => Err(AcceptError::Conflict(format!(
                "run {id} is {status}, not waiting for approval"
            ))),
            Transition::Missing => Err(AcceptError::NotFound(id.to_string())),
        }
    }

    /// Who may decide on a run waiting here, as the runbook version it waits with says (for
    /// display; None: anyone, or it does not wait here).
    pub fn approvers_of(&self, id: &RunId) -> Option<Approvers> {
        self.pending
            .runbook(id)
            .and_then(|rb| rb.guards.approvers.clone())
    }

    /// The approval timeout of a run waiting here (for display).
    pub fn timeout_of(&self, id: &RunId) -> Option<Duration> {
        self.pending
            .runbook(id)
            .map(|rb| rb.guards.approval_timeout)
    }
}
