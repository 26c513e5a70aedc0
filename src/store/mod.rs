//! The run store: every run, every alert received, and rollups for reports.
//!
//! [`Store`] offers whole operations (enqueue, start, record a step, finish, reconcile,
//! query, aggregate), never get/put, so that another backend (PostgreSQL, for several daemons)
//! can implement the same contract. [`sled::SledStore`] is the embedded backend and the only
//! code that touches sled.

pub mod sled;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::histogram::Histogram;
use crate::run::{RunId, RunRecord, RunStatus, StepResult};

/// Version of the on-disk layout this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A store operation that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store.
    #[error(
        "the store at {path} is in use by another untoil process (the daemon?); stop it, or run this command against the daemon's API"
    )]
    Locked {
        /// The store directory.
        path: String,
    },
    /// The store was written by a newer untoil.
    #[error(
        "the store at {path} has schema version {found}, newer than this untoil understands ({supported}); upgrade untoil"
    )]
    NewerSchema {
        /// The store directory.
        path: String,
        /// Version on disk.
        found: u32,
        /// Version this build writes.
        supported: u32,
    },
    /// A run id that is not in the store.
    #[error("no run with id {0}")]
    NoSuchRun(String),
    /// A record that cannot be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The database failed.
    #[error("store error at {path}: {reason}")]
    Backend {
        /// The store directory.
        path: String,
        /// What the backend said.
        reason: String,
    },
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// One alert episode received from Alertmanager, matched to runbooks or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertReceived {
    /// Alert fingerprint.
    pub fingerprint: String,
    /// When the alert started (identifies the episode with the fingerprint).
    pub starts_at: DateTime<Utc>,
    /// When untoil first received it.
    pub received_at: DateTime<Utc>,
    /// When it was last received (re-sends).
    pub last_seen: DateTime<Utc>,
    /// How many notifications carried it.
    pub times_received: u64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Runbooks it started runs of; empty when nothing handles it.
    pub matched: Vec<String>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this runbook.
    pub runbook: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Most recent first, at most this many.
    pub limit: usize,
}

/// Rollup group: one UTC day (or month) of one runbook for one cause, with its owner and service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RollupKey {
    /// UTC day the run started.
    pub day: NaiveDate,
    /// Owning team at the time.
    pub owner: String,
    /// Service at the time ("" when none).
    pub service: String,
    /// Runbook.
    pub runbook: String,
    /// manual, schedule or alert.
    pub cause: String,
}

/// Counters of one rollup group. Toil is kept in thousandths of a minute so that sums are
/// exact and a report's totals always equal the sum over its runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    /// Finished runs (dry and skipped runs are not counted).
    pub runs: u64,
    /// Succeeded runs.
    pub succeeded: u64,
    /// Failed, timed out or interrupted runs.
    pub failed: u64,
    /// Cancelled runs.
    pub cancelled: u64,
    /// Toil saved, in 1/1000 minute.
    pub toil_milli_minutes: u64,
    /// Run durations in ms.
    pub durations: Histogram,
    /// Alert runs with a time to remediate.
    pub remediations: u64,
    /// Sum of times to remediate (alert start to run end), ms.
    pub remediate_ms_sum: u64,
}

impl Rollup {
    /// Adds another group's counters.
    pub fn merge(&mut self, o: &Rollup) {
        self.runs += o.runs;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.cancelled += o.cancelled;
        self.toil_milli_minutes += o.toil_milli_minutes;
        self.durations.merge(&o.durations);
        self.remediations += o.remediations;
        self.remediate_ms_sum += o.remediate_ms_sum;
    }

    /// The contribution of one finished run, or None when it does not count (dry, skipped,
    /// not finished).
    pub fn of_run(run: &RunRecord) -> Option<(RollupKey, Rollup)> {
        if run.dry_run || !run.status.is_final() || run.status == RunStatus::Skipped {
            return None;
        }
        let day = run.started_at.unwrap_or(run.created_at).date_naive();
        let key = RollupKey {
            day,
            owner: run.owner.clone(),
            service: run.service.clone().unwrap_or_default(),
            runbook: run.runbook.clone(),
            cause: run.cause.kind().to_string(),
        };
        let mut r = Rollup {
            runs: 1,
            ..Default::default()
        };
        match run.status {
            RunStatus::Succeeded => r.succeeded = 1,
            RunStatus::Cancelled => r.cancelled = 1,
            _ => r.failed = 1,
        }
        r.toil_milli_minutes = milli_minutes(run.toil.as_ref().map_or(0.0, |t| t.minutes));
        if let Some(ms) = run.duration_ms() {
            r.durations.record(ms);
        }
        if let (crate::run::Cause::Alert { starts_at, .. }, Some(end)) =
            (&run.cause, run.finished_at)
        {
            let ms = (end - *starts_at).num_milliseconds();
            if ms >= 0 && run.status == RunStatus::Succeeded {
                r.remediations = 1;
                r.remediate_ms_sum = ms as u64;
            }
        }
        Some((key, r))
    }
}

/// Minutes as whole thousandths, the unit rollups add up exactly.
pub fn milli_minutes(minutes: f64) -> u64 {
    if minutes.is_finite() && minutes > 0.0 {
        (minutes * 1000.0).round() as u64
    } else {
        0
    }
}

/// What reconciliation found at start-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciled {
    /// Runs left `running` by a dead process, now `interrupted`.
    pub interrupted: Vec<RunId>,
    /// Runs still queued, oldest first, for the daemon to resume.
    pub queued: Vec<RunRecord>,
    /// Runs waiting for approval, to re-arm their expiry.
    pub pending_approval: Vec<RunRecord>,
}

/// The run store contract. Every method that changes state returns only once the change is
/// durable (flushed), so callers may acknowledge it.
pub trait Store: Send + Sync {
    /// Records a new run as queued.
    fn enqueue_run(&self, run: &RunRecord) -> Result<()>;
    /// Enqueues runs that are not duplicates: each run comes with a dedupe key (e.g. runbook +
    /// alert fingerprint + startsAt, or runbook + schedule fire); a key seen before, across
    /// re-sends and restarts, does not create a second run. Returns, per run, whether it was
    /// enqueued. One flush for the whole batch.
    /// The alert episodes received with them are recorded in the same flush.
    fn enqueue_unique(
        &self,
        runs: &[(String, RunRecord)],
        alerts: &[AlertReceived],
    ) -> Result<Vec<bool>>;
    /// The greatest dedupe key starting with `prefix` (e.g. the last recorded schedule fire).
    fn last_key(&self, prefix: &str) -> Result<Option<String>>;
    /// Run ids whose dedupe key starts with `prefix`.
    fn runs_with_key_prefix(&self, prefix: &str) -> Result<Vec<RunId>>;
    /// Records a run's verification: whether its alert resolved within the runbook's window.
    fn set_verified(&self, id: &RunId, verified: bool, at: DateTime<Utc>) -> Result<()>;
    /// Changes a run's status without finishing it (queued <-> pending approval), with a note.
    fn set_status(
        &self,
        id: &RunId,
        status: RunStatus,
        approval: Option<crate::run::ApprovalDecision>,
    ) -> Result<RunRecord>;
    /// The guard state of a (runbook, key).
    fn guard_state(&self, runbook: &str, key: &str) -> Result<crate::guard::KeyState>;
    /// Stores the guard state of a (runbook, key).
    fn set_guard_state(
        &self,
        runbook: &str,
        key: &str,
        state: &crate::guard::KeyState,
    ) -> Result<()>;
    /// Every stored guard state: (runbook, key, state).
    fn guard_states(&self) -> Result<Vec<(String, String, crate::guard::KeyState)>>;
    /// Records an alert episode received (idempotent per fingerprint and start).
    fn record_alert(&self, alert: &AlertReceived) -> Result<()>;
    /// Marks a run running, durably, before its first step starts: after a crash it is then
    /// `interrupted`, never run a second time.
    fn start_run(&self, id: &RunId, started_at: DateTime<Utc>) -> Result<()>;
    /// Records the step now running and its process group (shown while it runs; not flushed).
    fn step_started(&self, id: &RunId, step: &str, pgid: Option<u32>) -> Result<()>;
    /// Records a finished step. Progress: made durable by the next flush, not on its own.
    fn record_step(&self, id: &RunId, step: &StepResult) -> Result<()>;
    /// Records a finished run and updates the rollups in the same transaction.
    fn finish_run(&self, run: &RunRecord) -> Result<()>;
    /// Records many finished runs with one flush (imports, benchmarks).
    fn finish_runs(&self, runs: &[RunRecord]) -> Result<()>;
    /// At start-up: runs left running become interrupted (their process groups are killed),
    /// queued runs are returned to be resumed.
    fn reconcile(&self) -> Result<Reconciled>;
    /// One run.
    fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>>;
    /// Runs, most recent first.
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    /// Rollup groups of the days in [from, to] (inclusive). With `by_month`, calendar months
    /// that lie wholly inside the range come as one group per month (keyed by its first day),
    /// which is far fewer groups; use it when the report does not group by day or week.
    fn rollups(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        by_month: bool,
    ) -> Result<Vec<(RollupKey, Rollup)>>;
    /// Alert episodes first received in [from, to).
    fn alerts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<AlertReceived>>;
    /// Deletes run details started before `before`; rollups stay. Returns how many.
    fn prune(&self, before: DateTime<Utc>) -> Result<usize>;
}
