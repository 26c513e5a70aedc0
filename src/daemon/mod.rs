//! The daemon's state and wiring: catalog (hot reloaded), store, bounded queue, worker pool,
//! scheduler, and the trigger paths (alerts, schedule fires, manual runs) that end in the queue.
//!
//! `run(settings, listener, shutdown)` serves on a listener the caller binds, so tests start the
//! daemon on 127.0.0.1:0.

pub mod reload;
pub mod scheduler;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::exec::executor::{Executor, RunRequest};
use crate::run::cause::{AlertContext, Cause};
use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::runbook::catalog::{self, Catalog, Loaded};
use crate::runbook::diagnostic::Diagnostic;
use crate::runbook::model::{Runbook, Trigger};
use crate::runbook::plugins::Plugins;
use crate::server::auth::Auth;
use crate::store::sled::SledStore;
use crate::store::{AlertReceived, Store, StoreError};
use crate::trigger::alert::{Alert, AlertStatus, Notification};

/// Daemon settings (from flags and environment).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runbooks directory.
    pub runbooks: PathBuf,
    /// Plugins directory.
    pub plugins: PathBuf,
    /// Store directory.
    pub data: PathBuf,
    /// Concurrent runs.
    pub workers: usize,
    /// Runs waiting at most.
    pub queue_capacity: usize,
    /// How long running steps may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Who may call.
    pub auth: Auth,
    /// Largest webhook body.
    pub body_limit: usize,
    /// Time between SIGTERM and SIGKILL for steps.
    pub kill_grace: Duration,
}

impl Settings {
    /// Defaults for the given directories.
    pub fn new(runbooks: PathBuf, plugins: PathBuf, data: PathBuf) -> Settings {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Settings {
            runbooks,
            plugins,
            data,
            workers: cpus * 2,
            queue_capacity: 10_000,
            shutdown_grace: Duration::from_secs(30),
            auth: Auth::default(),
            body_limit: 1024 * 1024,
            kill_grace: crate::exec::executor::DEFAULT_GRACE,
        }
    }
}

/// Events of an active run, so a follower that joins late sees it from the start.
struct Followed {
    history: Vec<RunEvent>,
    live: broadcast::Sender<RunEvent>,
}

/// Events kept per run for late followers (output lines beyond it are only live).
const HISTORY: usize = 2000;

impl Followed {
    fn new() -> Followed {
        Followed {
            history: Vec::new(),
            live: broadcast::channel(1024).0,
        }
    }
}

/// Marks a run active from the moment a worker takes it until it ends, so followers and cancel
/// never fall into a gap between "queued" and "running". Dropping it ends the run's follow
/// channel with the stored final record, whatever path ended the run.
struct Active {
    daemon: Arc<Daemon>,
    id: RunId,
    /// Parked for an overlap slot: `claim_slot` already took it out of `running` (another
    /// worker may have it by now), so this one leaves `running` alone.
    parked: bool,
    /// Still queued: followers keep waiting.
    queued: bool,
}

impl Drop for Active {
    fn drop(&mut self) {
        if !self.parked
            && let Ok(mut r) = self.daemon.running.lock()
        {
            r.remove(&self.id);
        }
        if !self.queued {
            self.daemon.close_followers(&self.id);
        }
    }
}

/// Where a fresh run goes after the guards.
enum Gate {
    Run,
    Skipped,
    Approval,
}

/// Why a trigger was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The run queue is full: try again later.
    #[error("the run queue is full ({0} runs waiting); retry later")]
    QueueFull(usize),
    /// The daemon is shutting down.
    #[error("untoil is shutting down; retry later")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad request (unknown runbook, params).
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the run's state.
    #[error("{0}")]
    Conflict(String),
}

/// What an Alertmanager notification produced.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AlertOutcome {
    /// New runs queued.
    pub accepted: Vec<RunId>,
    /// Runs not created because the same (runbook, fingerprint, startsAt) already has one.
    pub duplicates: usize,
    /// Alerts no runbook handles.
    pub unmatched: usize,
    /// Runs marked verified or unverified by resolved alerts.
    pub verified: usize,
    /// Runs cancelled because their alert resolved.
    pub cancelled: usize,
}

/// The current catalog and the problems of the last reload.
pub struct CatalogState {
    /// Runbooks in service (last good versions of broken files included).
    pub catalog: Arc<Catalog>,
    /// Diagnostics of the last load, rendered.
    pub errors_text: String,
    /// Diagnostics of the last load, as JSON records.
    pub errors_json: serde_json::Value,
    /// Diagnostics of the last load.
    pub diagnostics: Vec<Diagnostic>,
}

/// Shared daemon state.
pub struct Daemon {
    /// Settings.
    pub settings: Settings,
    /// The store.
    pub store: Arc<SledStore>,
    /// The executor.
    pub executor: Arc<Executor>,
    catalog: RwLock<CatalogState>,
    /// Bumped on every catalog reload.
    reloaded: tokio::sync::watch::Sender<u64>,
    queue: mpsc::Sender<RunId>,
    /// The runbook version each queued run was accepted with.
    versions: Mutex<HashMap<RunId, Arc<Runbook>>>,
    running: Mutex<HashMap<RunId, CancellationToken>>,
    /// Per active run: its events so far (bounded) and a channel for live ones.
    followers: Mutex<HashMap<RunId, Followed>>,
    shutting_down: AtomicBool,
    interrupting: AtomicBool,
    /// Prometheus metrics.
    pub metrics: crate::engine::metrics::Metrics,
    renderer: crate::exec::render::Renderer,
    /// Serializes guard read-modify-writes.
    guard_lock: Mutex<()>,
    /// Runs executing per (runbook, guard key).
    by_key: Mutex<HashMap<(String, String), Vec<RunId>>>,
    /// Runs waiting for a slot of their key (`overlap: queue`), in arrival order.
    waiting: Mutex<HashMap<(String, String), std::collections::VecDeque<RunId>>>,
    /// A weak handle to itself, for timers spawned from `&self`.
    me: std::sync::OnceLock<std::sync::Weak<Daemon>>,
}

impl Daemon {
    /// The catalog in service.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .map(|c| c.catalog.clone())
            .unwrap_or_default()
    }

    /// Runs `f` with the catalog state (errors of the last reload).
    pub fn with_catalog_state<T>(&self, f: impl FnOnce(&CatalogState) -> T) -> Option<T> {
        self.catalog.read().ok().map(|c| f(&c))
    }

    /// Whether the daemon stopped accepting work.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Runs waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.settings.queue_capacity - self.queue.capacity()
    }

    /// Runs executing now.
    pub fn running(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Subscribes to a run's events (None when it is not queued or running here).
    /// Returns the events so far and a receiver for the rest, atomically.
    pub fn follow(&self, id: &RunId) -> Option<(Vec<RunEvent>, broadcast::Receiver<RunEvent>)> {
        let mut f = self.followers.lock().ok()?;
        let known = f.contains_key(id)
            || self.versions.lock().ok()?.contains_key(id)
            || self.running.lock().ok()?.contains_key(id);
        if !known {
            return None;
        }
        let entry = f.entry(id.clone()).or_insert_with(Followed::new);
        Some((entry.history.clone(), entry.live.subscribe()))
    }

    /// Ends a run's follow channel with its stored final record (when nothing sent it yet).
    fn close_followers(&self, id: &RunId) {
        let entry = self.followers.lock().ok().and_then(|mut f| f.remove(id));
        if let Some(entry) = entry
            && !entry
                .history
                .iter()
                .any(|e| matches!(e, RunEvent::RunFinished { .. }))
            && let Ok(Some(record)) = self.store.get_run(id)
            && record.status.is_final()
        {
            let _ = entry.live.send(RunEvent::RunFinished {
                record: Box::new(record),
            });
        }
    }

    /// Cancels a queued or running run. Returns false when it is not active here.
    pub fn cancel(&self, id: &RunId) -> bool {
        // Cancelled under the lock: a worker parking the run takes it out of `running` under
        // the same lock and then looks at the token, so the cancel is never missed.
        if let Ok(r) = self.running.lock()
            && let Some(token) = r.get(id)
        {
            token.cancel();
            return true;
        }
        // A queued run: mark it cancelled so the worker skips it.
        let queued = self
            .versions
            .lock()
            .map(|mut v| v.remove(id).is_some())
            .unwrap_or(false);
        if queued && let Ok(Some(mut run)) = self.store.get_run(id) {
            let done = self.finish_unstarted(&mut run).is_ok();
            self.close_followers(id);
            return done;
        }
        false
    }

    /// Records a run that was cancelled before it started.
    fn finish_unstarted(&self, run: &mut RunRecord) -> crate::store::Result<()> {
        run.status = RunStatus::Cancelled;
        run.finished_at = Some(Utc::now());
        run.error = Some("cancelled before it started".into());
        self.store.finish_run(run)
    }

    /// Reloads the catalog; a broken file keeps its last good version in service.
    pub fn reload(&self) {
        let plugins = Plugins::discover(&self.settings.plugins);
        let loaded = catalog::load(std::slice::from_ref(&self.settings.runbooks), &plugins);
        let old = self.catalog();
        let state = merge_reload(&old, loaded);
        let errors = state.diagnostics.iter().filter(|d| d.is_error()).count();
        info!(
            runbooks = state.catalog.len(),
            errors,
            "runbooks loaded from {}",
            self.settings.runbooks.display()
        );
        if errors > 0 {
            warn!(
                "some runbook files have errors and keep their last good version:\n{}",
                state.errors_text
            );
        }
        if let Ok(mut c) = self.catalog.write() {
            *c = state;
        }
        self.reloaded.send_modify(|generation| *generation += 1);
    }

    /// Wakes when the catalog is reloaded (the scheduler restarts its timers then).
    pub fn watch_reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloaded.subscribe()
    }

    fn reserve(&self, n: usize) -> Result<Option<mpsc::PermitIterator<'_, RunId>>, AcceptError> {
        if self.is_shutting_down() {
            return Err(AcceptError::ShuttingDown);
        }
        if n == 0 {
            return Ok(None);
        }
        self.queue
            .try_reserve_many(n)
            .map(Some)
            .map_err(|_| AcceptError::QueueFull(self.queue_depth()))
    }

    /// Queues runs that are not duplicates; returns the ids of the new ones.
    fn admit(
        &self,
        mut runs: Vec<(String, RunRecord, Arc<Runbook>)>,
        alerts: &[AlertReceived],
    ) -> Result<Vec<RunId>, AcceptError> {
        let permits = self.reserve(runs.len())?;
        for (_, run, rb) in runs.iter_mut() {
            run.guard_key = Some(self.guard_key(rb, run));
        }
        let batch: Vec<(String, RunRecord)> = runs
            .iter()
            .map(|(k, r, _)| (k.clone(), r.clone()))
            .collect();
        // Runs and alert episodes reach the disk in one flush before anything is acknowledged.
        let admitted = self.store.enqueue_unique(&batch, alerts)?;
        let mut ids = Vec::new();
        let mut permits = permits;
        for ((_, run, rb), fresh) in runs.into_iter().zip(admitted) {
            if !fresh {
                continue;
            }
            ids.push(run.id.clone());
            // Guards decide after dedupe, so a re-sent alert never counts against them.
            match self.guard_admission(&rb, &run)? {
                Gate::Skipped => continue,
                Gate::Approval => {
                    if let Ok(mut v) = self.versions.lock() {
                        v.insert(run.id.clone(), rb.clone());
                    }
                    self.await_approval(&run.id, run.created_at, rb.guards.approval_timeout);
                    self.notify_approval(&rb, &run);
                    continue;
                }
                Gate::Run => {}
            }
            if let Ok(mut v) = self.versions.lock() {
                v.insert(run.id.clone(), rb);
            }
            if let Some(p) = permits.as_mut().and_then(|p| p.next()) {
                p.send(run.id.clone());
            }
        }
        self.metrics.queue_depth.set(self.queue_depth() as i64);
        Ok(ids)
    }

    /// The guard key of a run: `guards.key` rendered, or the runbook.
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
        match self.renderer.plain(t, &crate::exec::render::context(ctx)) {
            Ok(k) if !k.trim().is_empty() => k.trim().to_string(),
            // A key that cannot render (e.g. a schedule run of an alert-keyed runbook).
            _ => rb.name.clone(),
        }
    }

    /// Applies cooldown, run limits, breakers and approval to a fresh run.
    fn guard_admission(&self, rb: &Runbook, run: &RunRecord) -> Result<Gate, AcceptError> {
        let g = &rb.guards;
        let stateful =
            g.cooldown.is_some() || g.max_runs.is_some() || g.trip_after_failures.is_some();
        if !stateful && !g.approval {
            return Ok(Gate::Run);
        }
        let key = run.guard_key.clone().unwrap_or_else(|| rb.name.clone());
        let _serial = self.guard_lock.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.store.guard_state(&rb.name, &key)?;
        let (admission, next) = crate::guard::admit(&rb.guards, &state, Utc::now());
        if next != state {
            self.store.set_guard_state(&rb.name, &key, &next)?;
        }
        self.metrics.breaker(&rb.name, &key, next.breaker.is_some());
        let mut record = run.clone();
        record.guard_key = Some(key);
        match admission {
            crate::guard::Admission::Skip(reason) => {
                info!(runbook = %rb.name, run_id = %run.id, "trigger skipped: {reason}");
                record.status = RunStatus::Skipped;
                record.finished_at = Some(Utc::now());
                record.error = Some(reason);
                self.store.finish_run(&record)?;
                Ok(Gate::Skipped)
            }
            crate::guard::Admission::Admit if rb.guards.approval => {
                record.status = RunStatus::PendingApproval;
                self.store
                    .set_status(&record.id, RunStatus::PendingApproval, None)?;
                self.metrics.approvals_pending.inc();
                info!(runbook = %rb.name, run_id = %run.id, "run waits for approval");
                Ok(Gate::Approval)
            }
            crate::guard::Admission::Admit => Ok(Gate::Run),
        }
    }

    /// Expires a pending approval after its timeout.
    fn await_approval(&self, id: &RunId, created: DateTime<Utc>, timeout: Duration) {
        // A weak handle: a pending timer must not keep a stopped daemon (and its store lock) alive.
        let Some(me) = self.me.get().cloned() else {
            return;
        };
        let id = id.clone();
        let deadline = created + chrono::Duration::from_std(timeout).unwrap_or_default();
        tokio::spawn(async move {
            let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            if let Some(me) = me.upgrade()
                && !me.is_shutting_down()
            {
                let _ = tokio::task::spawn_blocking(move || me.decide(&id, false, "expired")).await;
            }
        });
    }

    /// Runs the runbook's `on_approval_requested` steps (e.g. a chat message with the run id),
    /// with the pending run's id, params and alert. They are not a run of their own: their
    /// outcome is logged, and they credit no toil.
    fn notify_approval(&self, rb: &Arc<Runbook>, run: &RunRecord) {
        if rb.on_approval_requested.is_empty() {
            return;
        }
        let mut notifier = (**rb).clone();
        notifier.steps = rb.on_approval_requested.clone();
        notifier.timeout = None;
        let req = RunRequest {
            runbook: Arc::new(notifier),
            cause: run.cause.clone(),
            params: run.params.clone(),
            alert: run.alert.clone(),
            dry_run: false,
            approval_required: true,
            id: Some(run.id.clone()),
            created_at: Some(run.created_at),
        };
        let executor = self.executor.clone();
        let id = run.id.clone();
        tokio::spawn(async move {
            match executor.prepare(req) {
                Ok(p) => {
                    let r = executor.execute(p, CancellationToken::new(), None).await;
                    info!(run_id = %id, status = %r.status, "approval request sent (on_approval_requested)");
                }
                Err(e) => warn!(run_id = %id, "on_approval_requested cannot run: {e}"),
            }
        });
    }

    /// Approves or denies a run waiting for approval. Approved runs join the queue.
    pub fn decide(&self, id: &RunId, approve: bool, by: &str) -> Result<RunRecord, AcceptError> {
        let _serial = self.guard_lock.lock().unwrap_or_else(|p| p.into_inner());
        let run = self
            .store
            .get_run(id)?
            .ok_or_else(|| AcceptError::Invalid(format!("no run with id {id}")))?;
        if run.status != RunStatus::PendingApproval {
            return Err(AcceptError::Conflict(format!(
                "run {id} is {}, not waiting for approval",
                run.status
            )));
        }
        let decision = crate::run::record::ApprovalDecision {
            approved: approve,
            by: by.to_string(),
            at: Utc::now(),
        };
        self.metrics.approvals_pending.dec();
        if approve {
            let permit = self
                .queue
                .try_reserve()
                .map_err(|_| AcceptError::QueueFull(self.queue_depth()))?;
            let record = self
                .store
                .set_status(id, RunStatus::Queued, Some(decision))?;
            info!(run_id = %id, "approved by {by}");
            permit.send(id.clone());
            return Ok(record);
        }
        let mut record = run;
        record.status = RunStatus::Skipped;
        record.finished_at = Some(Utc::now());
        record.error = Some(if by == "expired" {
            "approval expired".to_string()
        } else {
            format!("denied by {by}")
        });
        record.approval = Some(decision);
        self.store.finish_run(&record)?;
        if let Ok(mut v) = self.versions.lock() {
            v.remove(id);
        }
        self.close_followers(id);
        info!(run_id = %id, "not approved: {}", record.error.as_deref().unwrap_or(""));
        Ok(record)
    }

    /// Closes breakers of a runbook (one key, or all). Returns the keys reset.
    pub fn reset_breakers(
        &self,
        runbook: &str,
        key: Option<&str>,
    ) -> Result<Vec<String>, AcceptError> {
        let _serial = self.guard_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut reset = Vec::new();
        for (rb, k, state) in self.store.guard_states()? {
            if rb != runbook || key.is_some_and(|want| want != k) {
                continue;
            }
            self.store
                .set_guard_state(&rb, &k, &crate::guard::reset(&state))?;
            self.metrics.breaker(&rb, &k, false);
            reset.push(k);
        }
        info!(runbook, keys = reset.len(), "breakers reset");
        Ok(reset)
    }

    /// Takes a concurrency slot of the run's key, per `concurrency` and `overlap`.
    fn claim_slot(
        &self,
        rb: &Arc<Runbook>,
        key: &(String, String),
        id: &RunId,
        cancel: &CancellationToken,
    ) -> crate::guard::OverlapAction {
        let Ok(mut by_key) = self.by_key.lock() else {
            return crate::guard::OverlapAction::Run;
        };
        let running = by_key.entry(key.clone()).or_default();
        let action = crate::guard::overlap(&rb.guards, running.len());
        if action == crate::guard::OverlapAction::CancelPrevious {
            let tokens: Vec<CancellationToken> = self
                .running
                .lock()
                .map(|r| running.iter().filter_map(|p| r.get(p).cloned()).collect())
                .unwrap_or_default();
            for t in tokens {
                t.cancel();
            }
        }
        if matches!(
            action,
            crate::guard::OverlapAction::Run | crate::guard::OverlapAction::CancelPrevious
        ) {
            running.push(id.clone());
        }
        if action == crate::guard::OverlapAction::Wait {
            // Queued again, with its version, before a release can pick it up: the worker
            // that takes it next must not race this one's clean-up. A cancel from now on
            // finds it queued; one before left the token cancelled (checked below).
            if let Ok(mut v) = self.versions.lock() {
                v.insert(id.clone(), rb.clone());
            }
            if let Ok(mut r) = self.running.lock() {
                r.remove(id);
            }
            if cancel.is_cancelled() {
                if let Ok(mut v) = self.versions.lock() {
                    v.remove(id);
                }
                return action; // not parked: the caller records it cancelled
            }
            // Parked under the slot lock, so the release that frees the slot cannot miss it.
            if let Ok(mut waiting) = self.waiting.lock() {
                waiting
                    .entry(key.clone())
                    .or_default()
                    .push_back(id.clone());
            }
        }
        action
    }

    fn release_slot(&self, key: &(String, String), id: &RunId) {
        if let Ok(mut by_key) = self.by_key.lock()
            && let Some(v) = by_key.get_mut(key)
        {
            v.retain(|r| r != id);
            if v.is_empty() {
                by_key.remove(key);
            }
        }
        self.wake_next(key);
    }

    /// Sends the next run waiting for a slot of `key` back to the queue (it parks again if the
    /// slot is still taken).
    fn wake_next(&self, key: &(String, String)) {
        let next = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.get_mut(key).and_then(|q| q.pop_front()));
        if let Some(next) = next
            && let Err(tokio::sync::mpsc::error::TrySendError::Full(next)) =
                self.queue.try_send(next)
        {
            let queue = self.queue.clone();
            tokio::spawn(async move {
                let _ = queue.send(next).await;
            });
        }
    }

    /// Failure streaks, breaker and metrics after a run ends.
    fn run_ended(&self, rb: &Runbook, key: &str, record: &RunRecord) {
        self.metrics.in_progress.dec();
        self.metrics.queue_depth.set(self.queue_depth() as i64);
        self.metrics.run_finished(
            &rb.name,
            &rb.owner,
            record.status.as_str(),
            record.duration_ms().map(|ms| ms as f64 / 1000.0),
            record.toil.as_ref().map_or(0.0, |t| t.minutes),
        );
        let _serial = self.guard_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(state) = self.store.guard_state(&rb.name, key) {
            let next = crate::guard::finished(&rb.guards, &state, record.status, Utc::now());
            if next != state {
                if next.breaker.is_some() && state.breaker.is_none() {
                    warn!(runbook = %rb.name, key, "circuit breaker opened after repeated failures");
                }
                let _ = self.store.set_guard_state(&rb.name, key, &next);
                self.metrics.breaker(&rb.name, key, next.breaker.is_some());
            }
        }
    }

    /// A queued record for a trigger, params defaulted.
    fn new_run(
        &self,
        rb: &Runbook,
        cause: Cause,
        params: BTreeMap<String, String>,
        alert: Option<AlertContext>,
    ) -> RunRecord {
        let mut all = BTreeMap::new();
        for (name, p) in &rb.params {
            if let Some(v) = params.get(name).or(p.default.as_ref()) {
                all.insert(name.clone(), v.clone());
            }
        }
        RunRecord {
            id: RunId::new(),
            runbook: rb.name.clone(),
            version: rb.version.clone(),
            owner: rb.owner.clone(),
            service: rb.service.clone(),
            cause,
            params: all,
            status: RunStatus::Queued,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            steps: Vec::new(),
            current_step: None,
            current_pgid: None,
            dry_run: false,
            approval_required: rb.guards.approval,
            error: None,
            alert,
            toil: Some(crate::run::credit::Credit {
                minutes: 0.0,
                baseline: crate::ledger::toil::baseline(rb),
                reason: "not finished".into(),
            }),
            verification: None,
            guard_key: None,
            approval: None,
        }
    }

    /// Handles one Alertmanager notification: dedupe, queue, verify, cancel, record.
    pub fn accept_notification(&self, n: &Notification) -> Result<AlertOutcome, AcceptError> {
        let catalog = self.catalog();
        let mut outcome = AlertOutcome::default();
        let mut runs = Vec::new();
        let mut received = Vec::new();
        let mut context = n.clone();
        context.alerts = Vec::new();
        let now = Utc::now();
        for alert in &n.alerts {
            let episode = episode_key(alert);
            let mut matched = Vec::new();
            for rb in catalog.iter() {
                if !rb.accepts_alert(alert) {
                    continue;
                }
                matched.push(rb.name.clone());
                let suffix = if alert.status == AlertStatus::Resolved {
                    ":resolved"
                } else {
                    ""
                };
                let key = format!("alert:{episode}:{}{suffix}", rb.name);
                let cause = Cause::Alert {
                    fingerprint: alert.fingerprint.clone(),
                    starts_at: alert.starts_at,
                    labels: alert.labels.clone(),
                };
                let ctx = AlertContext {
                    alert: alert.clone(),
                    notification: context.clone(),
                };
                let run = self.new_run(rb, cause, BTreeMap::new(), Some(ctx));
                runs.push((key, run, rb.clone()));
            }
            if alert.status == AlertStatus::Resolved {
                let (v, c) = self.resolve(&catalog, alert, &episode, now);
                outcome.verified += v;
                outcome.cancelled += c;
            }
            if matched.is_empty() {
                outcome.unmatched += 1;
            }
            received.push(AlertReceived {
                fingerprint: alert.fingerprint.clone(),
                starts_at: alert.starts_at,
                received_at: now,
                last_seen: now,
                times_received: 1,
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
                matched,
            });
        }
        let wanted = runs.len();
        outcome.accepted = self.admit(runs, &received)?;
        outcome.duplicates = wanted - outcome.accepted.len();
        self.metrics.alerts("received", n.alerts.len() as u64);
        self.metrics
            .alerts("matched", (n.alerts.len() - outcome.unmatched) as u64);
        self.metrics.alerts("unmatched", outcome.unmatched as u64);
        self.metrics
            .alerts("deduplicated", outcome.duplicates as u64);
        Ok(outcome)
    }

    /// A resolved alert verifies the succeeded runs of its episode and cancels running ones
    /// whose trigger asks for it. Returns (verified, cancelled).
    fn resolve(
        &self,
        catalog: &Catalog,
        alert: &Alert,
        episode: &str,
        now: DateTime<Utc>,
    ) -> (usize, usize) {
        let resolved_at = alert.ends_at.unwrap_or(now);
        let ids = self
            .store
            .runs_with_key_prefix(&format!("alert:{episode}:"))
            .unwrap_or_default();
        let (mut verified, mut cancelled) = (0, 0);
        for id in ids {
            let Ok(Some(run)) = self.store.get_run(&id) else {
                continue;
            };
            let Some(rb) = catalog.get(&run.runbook) else {
                continue;
            };
            if !run.status.is_final() {
                let cancel = rb
                    .triggers
                    .iter()
                    .any(|t| matches!(t, Trigger::Alert(a) if a.cancel_on_resolve));
                if cancel && self.cancel(&id) {
                    cancelled += 1;
                }
                continue;
            }
            if run.status != RunStatus::Succeeded || run.verification.is_some() {
                continue;
            }
            if let (Some(v), Some(end)) = (&rb.verify, run.finished_at) {
                let window =
                    chrono::Duration::from_std(v.alert_resolves_within).unwrap_or_default();
                let ok = resolved_at <= end + window;
                if self.store.set_verified(&id, ok, now).is_ok() {
                    verified += 1;
                }
            }
        }
        (verified, cancelled)
    }

    /// Queues a manual run; with a notification, one run per alert of it that the runbook
    /// accepts, as that alert would (`untoil run --alert` through the daemon).
    pub fn accept_manual(
        &self,
        name: &str,
        params: BTreeMap<String, String>,
        user: &str,
        notification: Option<&Notification>,
    ) -> Result<Vec<RunId>, AcceptError> {
        let catalog = self.catalog();
        let Some(rb) = catalog.get(name).cloned() else {
            let hint = crate::runbook::diagnostic::did_you_mean(name, catalog.names())
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            return Err(AcceptError::Invalid(format!(
                "no runbook named `{name}`{hint}"
            )));
        };
        // Check params now, so the caller gets the error rather than a failed run.
        let mut req = RunRequest::manual(rb.clone(), user);
        req.params = params.clone();
        req.dry_run = true;
        self.executor
            .prepare(req)
            .map_err(|e| AcceptError::Invalid(e.to_string()))?;
        let runs: Vec<RunRecord> = match notification {
            None => vec![self.new_run(
                &rb,
                Cause::Manual {
                    user: user.to_string(),
                },
                params,
                None,
            )],
            Some(n) => {
                let mut context = n.clone();
                context.alerts = Vec::new();
                let runs: Vec<RunRecord> = n
                    .alerts
                    .iter()
                    .filter(|a| rb.accepts_alert(a))
                    .map(|a| {
                        let cause = Cause::Alert {
                            fingerprint: a.fingerprint.clone(),
                            starts_at: a.starts_at,
                            labels: a.labels.clone(),
                        };
                        let ctx = AlertContext {
                            alert: a.clone(),
                            notification: context.clone(),
                        };
                        self.new_run(&rb, cause, params.clone(), Some(ctx))
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
        let batch = runs
            .into_iter()
            .map(|run| (format!("manual:{}", run.id), run, rb.clone()))
            .collect();
        self.admit(batch, &[])
    }

    /// Queues a schedule fire unless it was queued before (across restarts).
    pub fn accept_fire(
        &self,
        rb: &Arc<Runbook>,
        trigger: usize,
        at: DateTime<Utc>,
    ) -> Result<Option<RunId>, AcceptError> {
        let key = format!("{}{}", fire_prefix(rb, trigger), fire_stamp(at));
        let run = self.new_run(rb, Cause::Schedule { at }, BTreeMap::new(), None);
        Ok(self
            .admit(vec![(key, run, rb.clone())], &[])?
            .into_iter()
            .next())
    }

    /// Executes one queued run.
    async fn execute(self: &Arc<Self>, id: RunId) {
        // Active before it leaves `versions`, so it is never unknown while it moves on.
        let cancel = CancellationToken::new();
        if let Ok(mut r) = self.running.lock() {
            r.insert(id.clone(), cancel.clone());
        }
        let mut active = Active {
            daemon: self.clone(),
            id: id.clone(),
            parked: false,
            queued: false,
        };
        let pinned = self.versions.lock().ok().and_then(|mut v| v.remove(&id));
        let Ok(Some(mut record)) = self.store.get_run(&id) else {
            return;
        };
        // The guard key: concurrency slots and overlap queues are per (runbook, key).
        let key = (
            record.runbook.clone(),
            record
                .guard_key
                .clone()
                .unwrap_or_else(|| record.runbook.clone()),
        );
        if record.status != RunStatus::Queued {
            // Cancelled while queued. If a release woke it, the wake-up passes on.
            self.wake_next(&key);
            return;
        }
        let rb = match pinned.or_else(|| self.catalog().get(&record.runbook).cloned()) {
            Some(rb) => rb,
            None => {
                record.status = RunStatus::Failed;
                record.finished_at = Some(Utc::now());
                record.error = Some(format!("runbook `{}` is no longer loaded", record.runbook));
                let _ = self.store.finish_run(&record);
                return;
            }
        };
        match self.claim_slot(&rb, &key, &id, &cancel) {
            crate::guard::OverlapAction::Run => {}
            crate::guard::OverlapAction::CancelPrevious => {
                info!(run_id = %id, "overlap: cancelling the running run(s) of key {}", key.1);
            }
            crate::guard::OverlapAction::Wait if cancel.is_cancelled() => {
                active.parked = true;
                let _ = self.finish_unstarted(&mut record);
                return;
            }
            crate::guard::OverlapAction::Wait => {
                // Parked by claim_slot (queued again when a run of its key ends), which also
                // took it out of `running`: nothing for `active` to undo.
                active.parked = true;
                active.queued = true;
                return;
            }
            crate::guard::OverlapAction::Skip => {
                record.status = RunStatus::Skipped;
                record.finished_at = Some(Utc::now());
                record.error = Some(format!(
                    "overlap: a run of key `{}` is already running (overlap: skip)",
                    key.1
                ));
                let _ = self.store.finish_run(&record);
                return;
            }
        }
        self.metrics.in_progress.inc();
        let guard_key = record.guard_key.clone();
        let approval = record.approval.clone();
        let span = info_span!("run", run_id = %id, runbook = %rb.name);
        let this = self.clone();
        async move {
            let req = RunRequest {
                runbook: rb.clone(),
                cause: record.cause.clone(),
                params: record.params.clone(),
                alert: record.alert.clone(),
                dry_run: false,
                approval_required: record.approval_required,
                id: Some(id.clone()),
                created_at: Some(record.created_at),
            };
            let prepared = match this.executor.prepare(req) {
                Ok(p) => p,
                Err(e) => {
                    warn!("run cannot start: {e}");
                    record.status = RunStatus::Failed;
                    record.finished_at = Some(Utc::now());
                    record.error = Some(e.to_string());
                    this.run_ended(&rb, &key.1, &record);
                    let _ = this.store.finish_run(&record);
                    this.release_slot(&key, &id);
                    return;
                }
            };
            let redactor = prepared.redactor().clone();
            let (tx, rx) = mpsc::unbounded_channel();
            let store: Arc<dyn Store> = this.store.clone();
            // Before each event is recorded: the final record completed (and turned
            // `interrupted` when cancelled by a shutdown), guards and metrics counted.
            let relay = {
                let this = this.clone();
                let id = id.clone();
                let name = rb.name.clone();
                let (rb, slot) = (rb.clone(), key.clone());
                move |event: &mut RunEvent| {
                    if let RunEvent::RunFinished { record } = event {
                        record.guard_key = guard_key.clone();
                        record.approval = approval.clone();
                        if this.interrupting.load(Ordering::SeqCst)
                            && record.status == RunStatus::Cancelled
                        {
                            record.status = RunStatus::Interrupted;
                            record.error = Some(
                                "interrupted: untoil shut down before the run finished".into(),
                            );
                            record.toil = record.toil.as_ref().map(|c| {
                                crate::ledger::toil::credit(
                                    &c.baseline,
                                    RunStatus::Interrupted,
                                    &record.steps,
                                    false,
                                    record.approval_required,
                                )
                            });
                        }
                        // Guards and metrics count the run before its final record is
                        // visible: whoever sees it finished also sees the breaker it opened.
                        this.run_ended(&rb, &slot.1, record);
                        // Its slot too: a trigger sent on seeing it finished must not be
                        // skipped as overlapping it.
                        this.release_slot(&slot, &id);
                    }
                    if let RunEvent::Output { line, .. } = &event {
                        info!(run_id = %id, runbook = %name, "{}", redactor.redact(line));
                    }
                }
            };
            // After each event is recorded: to the run's followers.
            let fanout = {
                let this = this.clone();
                let id = id.clone();
                move |event: RunEvent| {
                    if let Ok(mut f) = this.followers.lock() {
                        let entry = f.entry(id.clone()).or_insert_with(Followed::new);
                        if entry.history.len() < HISTORY
                            || matches!(event, RunEvent::RunFinished { .. })
                        {
                            entry.history.push(event.clone());
                        }
                        let _ = entry.live.send(event);
                    }
                }
            };
            let recorder = tokio::spawn(crate::engine::recorder::record(
                store,
                id.clone(),
                rx,
                relay,
                fanout,
            ));
            // Durably `running` before any step starts: a crash can interrupt it, never repeat it.
            let store = this.store.clone();
            let rid = id.clone();
            if let Ok(Err(e)) =
                tokio::task::spawn_blocking(move || store.start_run(&rid, Utc::now())).await
            {
                error!("cannot mark the run running: {e}");
            }
            info!("run started");
            let record = this.executor.execute(prepared, cancel, Some(tx)).await;
            if let Ok(Err(e)) = recorder.await {
                error!("cannot record the run: {e}");
            }
            drop(active);
            info!(status = %record.status, "run finished");
        }
        .instrument(span)
        .await;
    }
}

/// `fingerprint@startsAt` at full precision.
pub fn episode_key(alert: &Alert) -> String {
    format!(
        "{}@{}",
        alert.fingerprint,
        alert
            .starts_at
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    )
}

/// Dedupe-key prefix of a schedule trigger's fires.
pub fn fire_prefix(rb: &Runbook, trigger: usize) -> String {
    let expr = match rb.triggers.get(trigger) {
        Some(Trigger::Schedule(s)) => {
            format!("{} {}", s.schedule.expression(), s.schedule.timezone())
        }
        _ => String::new(),
    };
    format!("fire:{}:{trigger}:{expr}:", rb.name)
}

/// Fixed-width UTC stamp, so dedupe keys sort by time.
pub fn fire_stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Keeps the last good version of runbooks whose file now fails validation.
fn merge_reload(old: &Catalog, loaded: Loaded) -> CatalogState {
    let broken: HashSet<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| loaded.sources.name(d.primary.file))
        .collect();
    let mut catalog = loaded.catalog.clone();
    for rb in old.iter() {
        if catalog.get(&rb.name).is_none() && broken.contains(&rb.source.display().to_string()) {
            catalog.insert(rb.clone());
        }
    }
    CatalogState {
        catalog: Arc::new(catalog),
        errors_text: loaded.sources.render(&loaded.diagnostics),
        errors_json: loaded.sources.render_json(&loaded.diagnostics),
        diagnostics: loaded.diagnostics,
    }
}

/// Starts the daemon on `listener` and serves until `shutdown` resolves; then stops accepting,
/// lets running steps finish up to the grace period, and interrupts the rest.
pub async fn run<F>(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    std::fs::create_dir_all(&settings.data)?;
    let data = settings.data.clone();
    let store = Arc::new(tokio::task::spawn_blocking(move || SledStore::open(&data)).await??);
    let reconciled = store.reconcile()?;
    // Their step processes die before anything new starts.
    let killed = crate::exec::process::kill_leftovers(&reconciled.interrupted);
    if !reconciled.interrupted.is_empty() || !killed.is_empty() {
        warn!(
            interrupted = reconciled.interrupted.len(),
            killed_process_groups = killed.len(),
            "runs left running by a previous untoil were marked interrupted"
        );
    }
    let executor = Arc::new(
        Executor::new(Plugins::discover(&settings.plugins))
            .map_err(anyhow::Error::msg)?
            .with_grace(settings.kill_grace),
    );
    let capacity = settings.queue_capacity.max(reconciled.queued.len()).max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let daemon = Arc::new(Daemon {
        settings: Settings {
            queue_capacity: capacity,
            ..settings
        },
        store,
        executor,
        reloaded: tokio::sync::watch::channel(0).0,
        catalog: RwLock::new(CatalogState {
            catalog: Arc::new(Catalog::default()),
            errors_text: String::new(),
            errors_json: serde_json::json!([]),
            diagnostics: Vec::new(),
        }),
        queue: tx,
        versions: Mutex::new(HashMap::new()),
        running: Mutex::new(HashMap::new()),
        followers: Mutex::new(HashMap::new()),
        shutting_down: AtomicBool::new(false),
        interrupting: AtomicBool::new(false),
        metrics: crate::engine::metrics::Metrics::new(),
        renderer: crate::exec::render::Renderer::new(),
        guard_lock: Mutex::new(()),
        by_key: Mutex::new(HashMap::new()),
        waiting: Mutex::new(HashMap::new()),
        me: std::sync::OnceLock::new(),
    });
    let _ = daemon.me.set(Arc::downgrade(&daemon));
    daemon.reload();
    // Queued runs from before the restart resume first.
    for run in &reconciled.queued {
        // Known as queued (for followers and cancel), with the runbook as loaded now.
        if let (Some(rb), Ok(mut v)) = (daemon.catalog().get(&run.runbook), daemon.versions.lock())
        {
            v.insert(run.id.clone(), rb.clone());
        }
        let _ = daemon.queue.try_send(run.id.clone());
    }
    if !reconciled.queued.is_empty() {
        info!(queued = reconciled.queued.len(), "resuming queued runs");
    }
    // Approvals survive restarts; their expiry timers are re-armed.
    for run in &reconciled.pending_approval {
        let timeout = daemon
            .catalog()
            .get(&run.runbook)
            .map_or(crate::runbook::model::DEFAULT_APPROVAL_TIMEOUT, |rb| {
                rb.guards.approval_timeout
            });
        daemon.metrics.approvals_pending.inc();
        daemon.await_approval(&run.id, run.created_at, timeout);
    }

    let stop = CancellationToken::new();
    let workers = spawn_workers(&daemon, rx, &stop);
    let scheduler = tokio::spawn(crate::daemon::scheduler::run(daemon.clone(), stop.clone()));
    let (watcher, reloader) = crate::daemon::reload::watch(daemon.clone(), stop.clone());

    let app = crate::server::app(daemon.clone());
    let addr = listener.local_addr()?;
    info!("untoil listening on http://{addr} (API at http://{addr}/api/v1, health at /healthz)");
    let d2 = daemon.clone();
    let server_stop = stop.clone();
    let graceful = async move {
        shutdown.await;
        info!("shutting down: no new work is accepted");
        d2.shutting_down.store(true, Ordering::SeqCst);
        server_stop.cancel();
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let server = tokio::spawn(async move { server.await });

    stop.cancelled().await;
    let _ = scheduler.await;
    drop(watcher);
    let _ = reloader.await;
    // Let running runs finish up to the grace period, then interrupt them.
    let deadline = tokio::time::Instant::now() + daemon.settings.shutdown_grace;
    let mut workers = workers;
    let all_done = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout_at(deadline, all_done).await.is_err() {
        warn!(
            running = daemon.running(),
            "shutdown grace expired: interrupting running runs"
        );
        daemon.interrupting.store(true, Ordering::SeqCst);
        let tokens: Vec<CancellationToken> = daemon
            .running
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        for t in tokens {
            t.cancel();
        }
        while workers.join_next().await.is_some() {}
    }
    let _ = server.await;
    // Connection and helper tasks can hold the daemon for a moment after the server future
    // ends; the store (and its directory lock) goes only with the last of them. Wait briefly,
    // so that a caller starting again on the same directory finds it free.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&daemon) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    info!("stopped; queued runs stay queued for the next start");
    Ok(())
}

fn spawn_workers(
    daemon: &Arc<Daemon>,
    rx: mpsc::Receiver<RunId>,
    stop: &CancellationToken,
) -> tokio::task::JoinSet<()> {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..daemon.settings.workers.max(1) {
        let rx = rx.clone();
        let daemon = daemon.clone();
        let stop = stop.clone();
        set.spawn(async move {
            loop {
                let next = {
                    let mut rx = rx.lock().await;
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => None,
                        id = rx.recv() => id,
                    }
                };
                let Some(id) = next else {
                    return;
                };
                daemon.execute(id).await;
            }
        });
    }
    set
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
