//! The run store: every run, every alert episode received, guard state, and the rollups reports
//! read.
//!
//! [`Store`] is the one seam between untoil and its database. Each operation is a whole intent
//! (admit runs with their guard decisions, move a run from one status to the next, record its
//! progress, finish it with its rollups and guard state, reconcile after a crash), never get
//! and put, so that every backend keeps the same promises: the embedded sled store
//! ([`sled::SledStore`], the only code that touches sled) and a database shared by several
//! daemons. Policy stays out of the store: guard decisions and a finished run's toil credit come
//! in as pure functions or finished records; the store only applies them atomically.
//!
//! # Durability and blocking
//! Every method that changes state, except step progress, returns only once the change is
//! durable, so callers may acknowledge it. Methods are `async`: a backend that blocks (sled's
//! flush waits for the disk) does that on blocking threads of its own, never on the async
//! runtime's workers, so callers may await any method anywhere.

pub mod copy;
pub mod counts;
pub mod database;
pub mod error;
pub mod postgres;
pub mod rules;
pub mod signals;
pub mod sled;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::guard::KeyState;
use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::cause::CauseKind;
use crate::run::id::RunId;
use crate::run::record::{RunRecord, Verification};
use crate::run::status::RunStatus;
use crate::run::step::StepResult;
use crate::store::error::StoreError;
use crate::trigger::key::{DedupeKey, Episode, Fire};

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// One alert episode received from a source, matched to runbooks or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertReceived {
    /// The source it came from; episodes stored before sources existed were Alertmanager's.
    #[serde(default = "crate::trigger::source::default_source")]
    pub source: String,
    /// Alert fingerprint (namespaced `source/fingerprint` for sources other than Alertmanager).
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
    /// Whether it was received firing; false for an episode only its resolve was received of,
    /// which is no alert anyone had to handle (records before this field were all counted).
    #[serde(default = "received_firing")]
    pub firing: bool,
}

/// Episodes stored before [`AlertReceived::firing`] existed count as firing, as they did.
fn received_firing() -> bool {
    true
}

impl AlertReceived {
    /// The episode this is.
    pub fn episode(&self) -> Episode {
        Episode::new(&self.fingerprint, self.starts_at)
    }
}

/// A signed webhook's delivery, remembered until `expires_at` so that the sender's retry of it is
/// acknowledged and not run again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The source that sent it.
    pub source: String,
    /// The sender's delivery id.
    pub id: String,
    /// When untoil received it.
    pub received_at: DateTime<Utc>,
    /// Until when a repeat is refused (the receipt plus the source's `delivery.keep`).
    pub expires_at: DateTime<Utc>,
}

impl Delivery {
    /// Whether this record still refuses a repeat received at `at`.
    pub fn refuses_at(&self, at: DateTime<Utc>) -> bool {
        self.expires_at > at
    }
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this runbook.
    pub runbook: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only runs with one of these causes (empty: any cause).
    pub causes: Vec<CauseKind>,
    /// Most recent first, at most this many (0: all).
    pub limit: usize,
}

/// A guard's decision on a new run, as a pure function of its (runbook, key) state: it sets the
/// run's status (queued, pending approval, or a final `skipped` with its reason) and returns the
/// state to keep. The store applies it in the same write that admits the run, so a crash can
/// never leave a run admitted without its decision.
pub type Decide = Arc<dyn Fn(&KeyState, &mut RunRecord) -> KeyState + Send + Sync>;

/// A pure change of a (runbook, key)'s guard state.
pub type Update = Arc<dyn Fn(&KeyState) -> KeyState + Send + Sync>;

/// A pure change of a run record (a backend may apply it more than once to fresh copies).
pub type Change = Arc<dyn Fn(&mut RunRecord) + Send + Sync>;

/// The guard state a write reads and replaces.
#[derive(Clone)]
pub struct GuardOf<F> {
    /// The runbook.
    pub runbook: String,
    /// The guard key (`guards.key` rendered, or the runbook's name).
    pub key: String,
    /// What to do with its state.
    pub apply: F,
}

/// A run to admit unless its dedupe key was seen before.
pub struct Candidate {
    /// What the run is unique for.
    pub key: DedupeKey,
    /// The run: `queued`, or `running` when its caller executes it at once (`untoil run` in
    /// the foreground), never waiting in a queue.
    pub run: RunRecord,
    /// The guards' decision, for runbooks with guards or approval.
    pub gate: Option<GuardOf<Decide>>,
}

/// What became of a candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Admitted {
    /// Its key was seen before: no new run.
    Duplicate,
    /// A new run, as stored (queued, pending approval or skipped), with the guard state after
    /// the decision when it had one.
    New {
        /// The run.
        run: Box<RunRecord>,
        /// The (runbook, key) guard state after the decision.
        guard: Option<KeyState>,
    },
}

/// What a [`Store::transition`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The change was applied; the run as stored now.
    Done(Box<RunRecord>),
    /// The run is in another status; nothing changed.
    Refused(RunStatus),
    /// No such run.
    Missing,
}

/// A guard state before and after a write.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardChanged {
    /// Before.
    pub before: KeyState,
    /// After.
    pub after: KeyState,
}

/// What reconciliation found at start-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciled {
    /// Runs left `running` by a dead process, now ended by the caller's change.
    pub interrupted: Vec<RunId>,
    /// Runs still queued, oldest first, for the daemon to resume.
    pub queued: Vec<RunRecord>,
    /// Runs waiting for approval, to re-arm their expiry.
    pub pending_approval: Vec<RunRecord>,
    /// Finished alert runs awaiting their verification verdict (`verify_by` set, no verdict
    /// yet), to re-arm the end of their window.
    pub awaiting_verdict: Vec<RunRecord>,
}

/// A point in a store's writes (see [`Store::finish_unflushed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark(pub u64);

impl Mark {
    /// Writes already durable.
    pub const DURABLE: Mark = Mark(0);
}

/// The run store contract (see the module documentation for durability and blocking).
#[async_trait]
pub trait Store: Send + Sync {
    /// What identifies this store (stable across restarts and upgrades), so that a client can
    /// tell whether a daemon serves the store it means.
    fn id(&self) -> &str;

    /// Admits runs whose dedupe key was not seen before, across re-sends and restarts, each with
    /// its guard decision applied to its (runbook, key) state, and merges the alert episodes
    /// received with them; one durable write for all. Candidates are decided in order, so two
    /// with the same key (HA peers posting at once) admit one run, and two with the same guard
    /// key see each other's decisions. One result per candidate.
    async fn admit(
        &self,
        candidates: Vec<Candidate>,
        alerts: Vec<AlertReceived>,
    ) -> Result<Vec<Admitted>>;

    /// [`Store::admit`] for the runs of one signed webhook delivery: None, writing nothing (no
    /// run, no alert episode), when its (source, id) is recorded and the record has not expired
    /// at `delivery.received_at`; otherwise records the delivery (replacing an expired record)
    /// in the same durable write that admits the runs, so that a crash keeps both or neither.
    /// Concurrent calls with one delivery admit once.
    async fn admit_delivery(
        &self,
        delivery: Delivery,
        candidates: Vec<Candidate>,
        alerts: Vec<AlertReceived>,
    ) -> Result<Option<Vec<Admitted>>>;

    /// Applies `change` to a run that is in one of the statuses `from`, atomically with respect
    /// to every other write of that run, and durably; a change that ends the run counts it in the
    /// rollups. This is how a run is claimed (queued -> running, before its first step: a crash
    /// then interrupts it, never repeats it), approved, denied, expired or cancelled unstarted.
    async fn transition(
        &self,
        id: &RunId,
        from: &[RunStatus],
        change: Change,
    ) -> Result<Transition>;

    /// Records the step running now and its process group. Progress: durable with the next
    /// durable write, not on its own.
    async fn step_started(&self, id: &RunId, step: &str, pgid: Option<u32>) -> Result<()>;

    /// Records a finished step. Progress, like [`Store::step_started`].
    async fn record_step(&self, id: &RunId, step: &StepResult) -> Result<()>;

    /// Records a finished run (its final record, credit included), adds it to the rollups (once,
    /// even if finished again) and applies its guard update, in one durable write: whoever sees
    /// the run finished also sees the breaker it opened. Returns the guard state change.
    async fn finish(
        &self,
        run: RunRecord,
        guard: Option<GuardOf<Update>>,
    ) -> Result<Option<GuardChanged>>;

    /// [`Store::finish`] without waiting for the disk: the write is made (visible, atomic) and is
    /// durable once a later durable write of this store returns, or [`Store::durable_to`] with
    /// the returned mark does. A worker finishes this way and then claims its next run: one
    /// flush makes both durable. A store whose every write is durable at once finishes as
    /// [`Store::finish`] does.
    async fn finish_unflushed(
        &self,
        run: RunRecord,
        guard: Option<GuardOf<Update>>,
    ) -> Result<(Option<GuardChanged>, Mark)> {
        Ok((self.finish(run, guard).await?, Mark::DURABLE))
    }

    /// Returns once the writes made before `mark` was taken are durable (at once if they are).
    async fn durable_to(&self, mark: Mark) -> Result<()> {
        let _ = mark;
        Ok(())
    }

    /// Records many finished runs in one durable write (imports, reconciliation, benchmarks).
    async fn finish_many(&self, runs: Vec<RunRecord>) -> Result<()>;

    /// Records whether a succeeded alert run's alert resolved within its runbook's window, with
    /// its credit as the verdict makes it (`ledger::toil::verdict`) and its rollups changed to
    /// match, in one durable write. The first verdict stands: returns false, changing nothing,
    /// for a run that has one.
    async fn set_verified(&self, id: &RunId, verification: Verification) -> Result<bool>;

    /// Applies `update` to the guard state of every key of `runbook` (or only `key`) that has one;
    /// returns the keys and their new states.
    async fn update_guards(
        &self,
        runbook: &str,
        key: Option<&str>,
        update: Update,
    ) -> Result<Vec<(String, KeyState)>>;

    /// At start-up, before any run starts: runs left `running` by a dead process are ended by
    /// `interrupt` (which sets their final status and credit) and recorded; queued and pending
    /// runs are returned to be resumed, and finished runs awaiting a verification verdict to
    /// have their window's end re-armed.
    async fn reconcile(&self, interrupt: Change) -> Result<Reconciled>;

    /// The runs started for an alert episode (firing and resolved).
    async fn runs_of_episode(&self, episode: &Episode) -> Result<Vec<RunId>>;

    /// The known episode of `fingerprint` that `starts_at` names: the episode itself when it is
    /// known at that instant; else, when `starts_at` has no digits below the millisecond (as
    /// Alertmanager's API and `amtool` give it), the earliest episode whose full-precision
    /// `startsAt` truncates to it. None when no known episode matches.
    async fn episode_at_millis(
        &self,
        fingerprint: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<Option<Episode>>;

    /// The latest fire of a schedule that was admitted (for catch-up after downtime).
    async fn last_fire(&self, fire: &Fire) -> Result<Option<DateTime<Utc>>>;

    /// One run.
    async fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>>;

    /// Runs, most recent first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;

    /// Rollup groups of the days in [from, to] (inclusive). With `by_month`, calendar months
    /// that lie wholly inside the range come as one group per month (keyed by its first day),
    /// which is far fewer groups; use it when the report does not group by day or week.
    async fn rollups(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        by_month: bool,
    ) -> Result<Vec<(RollupKey, Rollup)>>;

    /// Alert episodes first received in [from, to).
    async fn alerts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<AlertReceived>>;

    /// Every stored guard state: (runbook, key, state).
    async fn guard_states(&self) -> Result<Vec<(String, String, KeyState)>>;

    /// Deletes run details and alert episodes from before `before`; rollups stay. Returns how
    /// many runs.
    async fn prune(&self, before: DateTime<Utc>) -> Result<usize>;

    /// Deletes the delivery records that expired at or before `now`, durably. Returns how many.
    async fn prune_deliveries(&self, now: DateTime<Utc>) -> Result<usize>;

    /// How many runs are queued in the whole fleet, for a store that a fleet of daemons shares
    /// (admission bounds the fleet's queue by it); None for a store whose queued runs are one
    /// daemon's (sled: its in-memory queue bounds them alone).
    async fn fleet_queued(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}
