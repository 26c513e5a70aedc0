//! Admission: the three trigger paths (Alertmanager notifications, schedule fires, manual runs)
//! turned into runs. Each run gets its dedupe key and guard key; the store admits those whose key
//! is new, with the guards' decision (cooldown, run limits, breaker, approval) in the same
//! durable write; admitted runs join the queue or wait for approval.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{info, warn};

use crate::engine::approvals::Approvals;
use crate::engine::cancel::Canceller;
use crate::engine::clock::Clock;
use crate::engine::error::AcceptError;
use crate::engine::fleet_queue::FleetQueue;
use crate::engine::lifecycle;
use crate::engine::metrics::Metrics;
use crate::engine::queue::Queue;
use crate::engine::resolve;
use crate::engine::runbooks::Runbooks;
use crate::engine::verdicts::Verdicts;
use crate::exec::executor::Executor;
use crate::exec::plan::{resolve_params, with_defaults};
use crate::exec::preparation::prepare;
use crate::exec::render::{Renderer, context};
use crate::guard::{self, KeyState};
use crate::identity::actor::Actor;
use crate::run::cause::{AlertContext, Cause};
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::runbook::model::{Overlap, Runbook};
use crate::runbook::suggest::did_you_mean;
use crate::store::{Admitted, AlertReceived, Candidate, Decide, Delivery, GuardOf, Store};
use crate::trigger::alert::{Alert, AlertStatus, Notification};
use crate::trigger::key::{DedupeKey, Fire};
use crate::trigger::source::{ALERTMANAGER, namespaced};

/// What a notification produced.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AlertOutcome {
    /// New runs (queued, waiting for approval, or skipped by a guard).
    pub accepted: Vec<RunId>,
    /// Runs not created because the same (runbook, fingerprint, startsAt) already has one.
    pub duplicates: usize,
    /// Firing alerts no runbook handles (a resolve is never one).
    pub unmatched: usize,
    /// Resolved alerts received (handled or not).
    pub resolved: usize,
    /// Runs marked verified or unverified by resolved alerts.
    pub verified: usize,
    /// Runs cancelled because their alert resolved.
    pub cancelled: usize,
}

/// Admits triggers as runs.
pub struct Admission {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The queue admitted runs join.
    pub queue: Arc<Queue>,
    /// On a store a fleet shares, the bound on the runs queued in it.
    pub fleet: FleetQueue,
    /// Where runs that need approval wait.
    pub approvals: Arc<Approvals>,
    /// The runbooks in service.
    pub runbooks: Arc<Runbooks>,
    /// Cancels runs whose alert resolved.
    pub canceller: Arc<Canceller>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Verdicts of the runs whose alerts resolve.
    pub verdicts: Arc<Verdicts>,
    /// The clock guards decide by.
    pub clock: Arc<dyn Clock>,
    /// Renders guard keys.
    pub renderer: Renderer,
    /// Prepares the runs that would wait for approval (renders their plans).
    pub executor: Arc<Executor>,
}

/// A run to admit: its key, its record, the runbook version it runs.
type Trigger = (DedupeKey, RunRecord, Arc<Runbook>);

impl Admission {
    /// Handles one notification from `source` (a valid source name): each alert runs each
    /// runbook whose trigger takes that source's alerts and accepts it, once per episode; a
    /// resolved alert also verifies its episode's runs and cancels those whose trigger asks for
    /// it. Every alert is recorded, matched or not, in the same write.
    ///
    /// Fingerprints of sources other than Alertmanager are namespaced (`source/fingerprint`)
    /// first, so everything keyed by them (dedupe, episodes, verification, backlog) is per
    /// source, while Alertmanager's keep the encoding stores already hold.
    pub async fn notification(
        self: &Arc<Self>,
        source: &str,
        n: &Notification,
    ) -> Result<AlertOutcome, AcceptError> {
        Ok(self.delivered(source, n, None).await?.unwrap_or_default())
    }

    /// As [`Admission::notification`], for a delivery of a signed source: the delivery id is
    /// recorded in the same durable write as its runs, and a delivery seen before (within its
    /// source's `keep`) gives None, admitting nothing and counting nothing.
    pub async fn delivered(
        self: &Arc<Self>,
        source: &str,
        n: &Notification,
        delivery: Option<Delivery>,
    ) -> Result<Option<AlertOutcome>, AcceptError> {
        let catalog = self.runbooks.catalog();
        let mut outcome = AlertOutcome::default();
        let mut runs = Vec::new();
        let mut received = Vec::new();
        // One copy shared by every run of this notification.
        let notification = Arc::new(n.without_alerts());
        let now = self.clock.now();
        let mut matched_alerts = 0;
        for alert in &n.alerts {
            let mut alert = alert.clone();
            alert.fingerprint = namespaced(source, &alert.fingerprint);
            let alert = &self.known_episode(&alert).await;
            let episode = alert.episode();
            let mut matched = Vec::new();
            for rb in catalog.iter() {
                if !rb.accepts_alert(source, alert) {
                    continue;
                }
                matched.push(rb.name.clone());
                let key = DedupeKey::Alert {
                    episode: episode.clone(),
                    runbook: rb.name.clone(),
                    resolved: alert.status == AlertStatus::Resolved,
                };
                let cause = Cause::of_alert(source, alert);
                let context = AlertContext::new(alert.clone(), notification.clone());
                // A parameter without default fails the run when it starts, not the whole
                // notification.
                let params = with_defaults(rb, &BTreeMap::new());
                let run = lifecycle::new_run(rb, cause, params, Some(context), now);
                runs.push((key, run, rb.clone()));
            }
            if alert.status == AlertStatus::Resolved {
                let (v, c) = resolve::resolved(
                    &*self.store,
                    &catalog,
                    &self.canceller,
                    &self.verdicts,
                    alert,
                    now,
                )
                .await;
                outcome.verified += v;
                outcome.cancelled += c;
            }
            let firing = alert.status == AlertStatus::Firing;
            match (firing, matched.is_empty()) {
                (false, _) => outcome.resolved += 1,
                (true, true) => outcome.unmatched += 1,
                (true, false) => {}
            }
            if !matched.is_empty() {
                matched_alerts += 1;
            }
            received.push(AlertReceived {
                source: source.to_string(),
                fingerprint: alert.fingerprint.clone(),
                starts_at: alert.starts_at,
                received_at: now,
                last_seen: now,
                times_received: 1,
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
                matched,
                firing,
            });
        }
        let wanted = runs.len();
        let Some(accepted) = self.admit(runs, received, delivery).await? else {
            return Ok(None);
        };
        outcome.accepted = accepted;
        outcome.duplicates = wanted - outcome.accepted.len();
        let m = &self.metrics;
        m.alerts(source, "received", n.alerts.len() as u64);
        m.alerts(source, "matched", matched_alerts);
        m.alerts(source, "firing_unmatched", outcome.unmatched as u64);
        m.alerts(source, "resolved", outcome.resolved as u64);
        m.alerts(source, "deduplicated", outcome.duplicates as u64);
        Ok(Some(outcome))
    }

    /// The alert as the episode it belongs to: a `startsAt` at millisecond precision
    /// (Alertmanager's API, `amtool`) names the known episode it truncates from, whose
    /// full-precision start then keys its runs, verification and record. Alerts of no known
    /// episode stay as received.
    ///
    /// Firing alerts too: once anyone posted the alert through Alertmanager's API, Alertmanager
    /// keeps that truncated start and its firing re-sends carry it, which would otherwise be a
    /// new episode and run the fix again. A start with sub-millisecond digits (what Prometheus
    /// sends) cannot be truncated, so the webhook's usual path skips the look-up.
    async fn known_episode(&self, alert: &Alert) -> Alert {
        if alert.status != AlertStatus::Resolved
            && alert.starts_at.timestamp_subsec_nanos() % 1_000_000 != 0
        {
            return alert.clone();
        }
        let found = self
            .store
            .episode_at_millis(&alert.fingerprint, alert.starts_at)
            .await;
        let mut alert = alert.clone();
        match found {
            Ok(Some(e)) => alert.starts_at = e.starts_at,
            Ok(None) => {}
            // Then the resolve counts as received: a store that cannot read fails the write next.
            Err(e) => warn!("cannot look up the episode of an alert at millisecond precision: {e}"),
        }
        alert
    }

    /// Admits a manual run, started by `actor` (its principal recorded as the cause's user, its
    /// claim beside it); with a notification, one run per alert of it that the runbook accepts,
    /// attached (`untoil run --alert` through the daemon): still cause `manual`, only webhook
    /// deliveries are cause `alert`.
    pub async fn manual(
        self: &Arc<Self>,
        name: &str,
        params: BTreeMap<String, String>,
        actor: &Actor,
        notification: Option<&Notification>,
    ) -> Result<Vec<RunId>, AcceptError> {
        let catalog = self.runbooks.catalog();
        let Some(rb) = catalog.get(name).cloned() else {
            let hint = did_you_mean(name, catalog.names())
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            return Err(AcceptError::Invalid(format!(
                "no runbook named `{name}`{hint}"
            )));
        };
        // Checked now, so the caller gets the error rather than a failed run.
        let params =
            resolve_params(&rb, &params).map_err(|e| AcceptError::Invalid(e.to_string()))?;
        let now = self.clock.now();
        let manual = Cause::Manual {
            user: actor.name().to_string(),
            claimed_user: actor.claimed.clone(),
        };
        let runs: Vec<RunRecord> = match notification {
            None => vec![lifecycle::new_run(&rb, manual, params, None, now)],
            Some(n) => {
                let context = Arc::new(n.without_alerts());
                let runs: Vec<RunRecord> = n
                    .alerts
                    .iter()
                    // A replay by hand takes the payload as Alertmanager's, as the CLI does.
                    .filter(|a| rb.accepts_alert(ALERTMANAGER, a))
                    .map(|a| {
                        // A replay by hand: manual, with the alert attached, so templates see
                        // `alert.*` but no time to remediate is computed from its `startsAt`.
                        let ctx = AlertContext::new(a.clone(), context.clone());
                        lifecycle::new_run(&rb, manual.clone(), params.clone(), Some(ctx), now)
                    })
                    .collect();
                if runs.is_empty() {
                    return Err(AcceptError::Invalid(format!(
                        "no alert in the payload matches runbook `{name}`"
                    )));
                }
                runs
            }
        };
        // Manual runs, replays of an alert payload included, are unique by their own id: a
        // replay by hand always runs, whatever webhook episodes exist.
        let batch = runs
            .into_iter()
            .map(|run| {
                let key = DedupeKey::Manual {
                    run: run.id.0.clone(),
                };
                (key, run, rb.clone())
            })
            .collect();
        let ids = self
            .admit(batch, Vec::new(), None)
            .await?
            .unwrap_or_default();
        info!(
            runbook = name,
            runs = ids.len(),
            "manual run requested by {}",
            actor.shown()
        );
        Ok(ids)
    }

    /// Admits a schedule fire unless it was admitted before (across restarts).
    pub async fn fire(
        self: &Arc<Self>,
        rb: &Arc<Runbook>,
        fire: &Fire,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<RunId>, AcceptError> {
        let key = DedupeKey::Fire {
            fire: fire.clone(),
            at,
        };
        let params = with_defaults(rb, &BTreeMap::new());
        let run = lifecycle::new_run(rb, Cause::Schedule { at }, params, None, self.clock.now());
        Ok(self
            .admit(vec![(key, run, rb.clone())], Vec::new(), None)
            .await?
            .unwrap_or_default()
            .into_iter()
            .next())
    }

    /// Admits runs whose key is new, with their guard decisions; queues them or puts them up for
    /// approval. Returns the ids of the new runs.
    ///
    /// On a task of its own: the caller's future may be dropped (a client that hangs up while
    /// its alerts are being written), and a run the store admitted must still join the queue,
    /// or it would stay queued on disk with no worker to take it until the next start.
    async fn admit(
        self: &Arc<Self>,
        runs: Vec<Trigger>,
        alerts: Vec<AlertReceived>,
        delivery: Option<Delivery>,
    ) -> Result<Option<Vec<RunId>>, AcceptError> {
        let this = self.clone();
        tokio::spawn(async move { this.admit_whole(runs, alerts, delivery).await })
            .await
            .unwrap_or_else(|e| match e.try_into_panic() {
                // As if it had run on the caller's task.
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: only by the runtime shutting down.
                Err(_) => Err(AcceptError::ShuttingDown),
            })
    }

    /// [`Admission::admit`], to the end once started.
    async fn admit_whole(
        &self,
        runs: Vec<Trigger>,
        alerts: Vec<AlertReceived>,
        delivery: Option<Delivery>,
    ) -> Result<Option<Vec<RunId>>, AcceptError> {
        if self.queue.is_closed() {
            return Err(AcceptError::ShuttingDown);
        }
        // Room first, so that a run the store admits always has its place.
        let mut reservation = self
            .queue
            .reserve(runs.len())
            .map_err(|f| AcceptError::QueueFull(f.waiting))?;
        // The fleet's queue too, on a store a fleet shares: this replica's queue may be empty
        // while the others' are full.
        let mut fleet = self
            .fleet
            .reserve(runs.len(), || self.store.fleet_queued())
            .await?
            .map_err(|f| AcceptError::FleetQueueFull {
                queued: f.queued,
                capacity: f.capacity,
            })?;
        let now = self.clock.now();
        let mut runbooks = Vec::with_capacity(runs.len());
        let candidates: Vec<Candidate> = runs
            .into_iter()
            .map(|(key, mut run, rb)| {
                let guard_key = self.guard_key(&rb, &run);
                run.guard_key = Some(guard_key.clone());
                // Before anyone is asked: a run that cannot be prepared would fail once approved.
                let unprepared = rb.guards.approval.then(|| {
                    prepare(&self.executor, &rb, &run).err().map(|e| {
                        format!("cannot be prepared, so nobody was asked to approve it: {e}")
                    })
                });
                let running = self.queue.running_of(&(rb.name.clone(), guard_key.clone()));
                let busy = guard::overlap(&rb.guards, running) == guard::OverlapAction::Skip;
                let gate = gate(&rb, &guard_key, now, unprepared.flatten(), busy);
                runbooks.push((rb, guard_key));
                Candidate { key, run, gate }
            })
            .collect();
        let admitted = match delivery {
            None => self.store.admit(candidates, alerts).await?,
            Some(d) => match self.store.admit_delivery(d, candidates, alerts).await? {
                Some(a) => a,
                None => return Ok(None),
            },
        };
        let mut ids = Vec::new();
        for (result, (rb, guard_key)) in admitted.into_iter().zip(runbooks) {
            let Admitted::New { run, guard } = result else {
                continue;
            };
            ids.push(run.id.clone());
            if let Some(state) = &guard {
                self.metrics
                    .breaker(&rb.name, &guard_key, state.breaker.is_some());
            }
            match run.status {
                RunStatus::Queued => {
                    if let Some(f) = &mut fleet {
                        f.used(1);
                    }
                    reservation.push(run.id.clone(), rb.clone(), (rb.name.clone(), guard_key))
                }
                RunStatus::PendingApproval => {
                    info!(runbook = %rb.name, run_id = %run.id, "run waits for approval");
                    self.approvals.wait(&run, Some(rb.clone()));
                    self.approvals.notify(&rb, &run);
                }
                RunStatus::Failed => warn!(
                    runbook = %rb.name,
                    run_id = %run.id,
                    "run failed: {}",
                    run.error.as_deref().unwrap_or("")
                ),
                status => info!(
                    runbook = %rb.name,
                    run_id = %run.id,
                    "trigger {status}: {}",
                    run.error.as_deref().unwrap_or("")
                ),
            }
        }
        self.metrics.queue_depth.set(self.queue.depth() as i64);
        Ok(Some(ids))
    }

    /// The guard key of a run: `guards.key` rendered, or the runbook's name.
    fn guard_key(&self, rb: &Runbook, run: &RunRecord) -> String {
        let Some(t) = &rb.guards.key else {
            return rb.name.clone();
        };
        let mut ctx = serde_json::json!({
            "params": run.params,
            "run": {"id": run.id.0, "cause": run.cause.kind(), "runbook": rb.name},
        });
        if let (Some(a), Some(map)) = (&run.alert, ctx.as_object_mut()) {
            map.insert(
                "alert".into(),
                serde_json::to_value(&a.alert).unwrap_or_default(),
            );
            map.insert(
                "notification".into(),
                serde_json::to_value(&a.notification).unwrap_or_default(),
            );
        }
        match self.renderer.plain(t, &context(ctx)) {
            Ok(k) if !k.trim().is_empty() => k.trim().to_string(),
            // A key that cannot render (e.g. a schedule run of an alert-keyed runbook).
            _ => rb.name.clone(),
        }
    }
}

/// The guards' decision on a new run of `rb`, for runbooks with stateful guards, approval or
/// `overlap: skip`: cooldown, run limits and the breaker decide first; an admitted run of a
/// runbook that needs approval waits for it, or fails when it cannot be prepared (`unprepared`
/// says why), counted by no guard as it never starts. `busy`: a run starting now would be
/// skipped as overlapping; only a come-back of a guard-skipped episode is refused for it here
/// (the store then counts the re-send a duplicate), a first trigger is decided when it starts.
fn gate(
    rb: &Arc<Runbook>,
    key: &str,
    now: chrono::DateTime<chrono::Utc>,
    unprepared: Option<String>,
    busy: bool,
) -> Option<GuardOf<Decide>> {
    let g = &rb.guards;
    let stateful = g.cooldown.is_some() || g.max_runs.is_some() || g.trip_after_failures.is_some();
    let overlap_skip = g.concurrency.is_some() && g.overlap == Overlap::Skip;
    if !stateful && !g.approval && !overlap_skip {
        return None;
    }
    let runbook = rb.clone();
    let decide: Decide = Arc::new(move |state: &KeyState, run: &mut RunRecord| {
        if busy && run.retry_of.is_some() {
            let reason = "overlap: a run of this key is already running (overlap: skip)";
            lifecycle::end(run, RunStatus::Skipped, Some(reason.into()), now);
            return state.clone();
        }
        let (admission, next) = if stateful {
            guard::admit(&runbook.guards, state, now)
        } else {
            (guard::Admission::Admit, state.clone())
        };
        match admission {
            guard::Admission::Skip(reason) => {
                lifecycle::end(run, RunStatus::Skipped, Some(reason), now);
                next
            }
            guard::Admission::Admit if runbook.guards.approval => match &unprepared {
                Some(reason) => {
                    lifecycle::end(run, RunStatus::Failed, Some(reason.clone()), now);
                    state.clone()
                }
                None => {
                    run.status = RunStatus::PendingApproval;
                    next
                }
            },
            guard::Admission::Admit => next,
        }
    });
    Some(GuardOf {
        runbook: rb.name.clone(),
        key: key.to_string(),
        apply: decide,
    })
}
