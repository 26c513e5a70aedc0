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

use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::run::step::StepResult;

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
        approval: Option<crate::run::record::ApprovalDecision>,
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
