//! Copying a sled store into a PostgreSQL database (`untoil store copy`), idempotently, and
//! checking afterwards that both give the same report totals and hold as many items.
//!
//! What is copied is what the source holds, as it holds it: whole run records (active ones as
//! they are: queued, pending approval, running; a daemon on the target reconciles them as it
//! would after a restart), dedupe keys (so a re-sent alert is not run again after the move),
//! alert episodes, guard states, signed-webhook delivery records, and the daily and monthly
//! rollups as stored, never recomputed from runs (runs may have been pruned while their
//! rollups stay). The target keeps its own store id: daemons and clients that opened it know it
//! by that id, and the source's id stays the sled store's.
//!
//! The target must be empty or a copy of this same source (recorded at the first copy), so
//! that re-running a copy is safe and its totals can be checked exactly; see
//! [`crate::store::postgres::import`] for how each write is idempotent.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::id::RunId;
use crate::store::Store;
use crate::store::counts::Counts;
use crate::store::error::StoreError;
use crate::store::postgres::PgStore;
use crate::store::postgres::import::{self, Claim, awaiting_contribution};
use crate::store::sled::SledStore;
use crate::store::sled::export;

/// Items per transaction: large enough that a copy is not dominated by round trips, small
/// enough that one transaction stays short and a failure loses little work.
pub const BATCH: usize = 500;

/// Why a copy could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source or writing the target failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The target is a copy of another store.
    #[error(
        "the database {target} is a copy of another store (id {other}), not of this one (id {ours}); copy into an empty database, or drop that copy first"
    )]
    OtherSource {
        /// The target's name (URL without password).
        target: String,
        /// The store it was copied from.
        other: String,
        /// This source's id.
        ours: String,
    },
    /// The target holds runs or rollups of its own.
    #[error(
        "the database {target} already holds runs, rollups or guard states of its own (daemons use it); copy into an empty database, so that nothing mixes with the copy and its totals can be checked"
    )]
    InUse {
        /// The target's name.
        target: String,
    },
    /// A blocking read of the source could not run.
    #[error("reading the source store failed: {0}")]
    Task(String),
}

/// How far a copy has got, for progress reports.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// What is being copied ("runs", "alert episodes", ...).
    pub what: &'a str,
    /// How many read from the source so far.
    pub read: u64,
    /// How many of those were new to the target.
    pub new: u64,
}

/// What a copy read from the source and how much of it was new to the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Read from the source.
    pub read: Counts,
    /// Inserted into the target (zero everywhere on a second copy).
    pub new: Counts,
    /// Daily and monthly rollup groups written to the import shard.
    pub rollup_groups: u64,
}

/// Runs `f` with the source on a blocking thread (sled scans block).
async fn blocking<T: Send + 'static>(
    source: &SledStore,
    f: impl FnOnce(&SledStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, CopyError> {
    let s = source.clone();
    Ok(tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| CopyError::Task(e.to_string()))??)
}

/// Copies everything `source` holds into `target`, in transactions of [`BATCH`] items, calling
/// `progress` after each.
pub async fn copy(
    source: &SledStore,
    target: &PgStore,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Copied, CopyError> {
    match target.import_claim(source.id()).await? {
        Claim::Granted => {}
        Claim::OtherSource(other) => {
            return Err(CopyError::OtherSource {
                target: target.name().to_string(),
                other,
                ours: source.id().to_string(),
            });
        }
        Claim::InUse => {
            return Err(CopyError::InUse {
                target: target.name().to_string(),
            });
        }
    }
    let mut out = Copied::default();
    let report = |what: &str, read: u64, new: u64| progress(Progress { what, read, new });

    // Runs first (with their notifications), noting what runs awaiting a verdict contribute.
    let mut held_daily: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
    let mut held_monthly: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
    let mut after: Option<RunId> = None;
    loop {
        let from = after.clone();
        let page = blocking(source, move |s| s.export_runs(from.as_ref(), BATCH)).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for run in &page {
            if let Some((day, month, part)) = awaiting_contribution(run) {
                held_daily.entry(day).or_default().merge(&part);
                held_monthly.entry(month).or_default().merge(&part);
            }
        }
        out.new.runs += target.import_runs(&page).await?;
        out.read.runs += page.len() as u64;
        report("runs", out.read.runs, out.new.runs);
    }

    let mut after: Option<Vec<u8>> = None;
    loop {
        let from = after.clone();
        let page = blocking(source, move |s| s.export_dedupe(from.as_deref(), BATCH)).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        out.new.dedupe += target.import_dedupe(&page).await?;
        out.read.dedupe += page.len() as u64;
        report("dedupe keys", out.read.dedupe, out.new.dedupe);
    }

    let mut after: Option<Vec<u8>> = None;
    loop {
        let from = after.clone();
        let page = blocking(source, move |s| s.export_alerts(from.as_deref(), BATCH)).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let alerts: Vec<_> = page.into_iter().map(|(_, a)| a).collect();
        out.new.alerts += target.import_alerts(&alerts).await?;
        out.read.alerts += alerts.len() as u64;
        report("alert episodes", out.read.alerts, out.new.alerts);
    }

    let guards = source.guard_states().await?;
    for chunk in guards.chunks(BATCH) {
        out.new.guards += target.import_guards(chunk).await?;
        out.read.guards += chunk.len() as u64;
        report("guard states", out.read.guards, out.new.guards);
    }

    let deliveries = blocking(source, |s| s.export_deliveries()).await?;
    for chunk in deliveries.chunks(BATCH) {
        out.new.deliveries += target.import_deliveries(chunk).await?;
        out.read.deliveries += chunk.len() as u64;
        report("delivery records", out.read.deliveries, out.new.deliveries);
    }

    for (period, held, what) in [
        (export::Period::Daily, held_daily, "daily rollups"),
        (export::Period::Monthly, held_monthly, "monthly rollups"),
    ] {
        let table = match period {
            export::Period::Daily => import::Period::Daily,
            export::Period::Monthly => import::Period::Monthly,
        };
        let mut groups = blocking(source, move |s| s.export_rollups(period)).await?;
        for (key, counters) in &mut groups {
            if let Some(part) = held.get(key) {
                counters.subtract(part);
            }
        }
        let mut done = 0;
        for chunk in groups.chunks(BATCH) {
            target.import_rollups(table, chunk).await?;
            done += chunk.len() as u64;
            report(what, done, done);
        }
        out.rollup_groups += done;
    }
    Ok(out)
}

/// A report's totals of one runbook over all time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Finished runs.
    pub runs: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Found nothing to do.
    pub noop: u64,
    /// Failed or timed out.
    pub failed: u64,
    /// Interrupted.
    pub interrupted: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Toil saved, in 1/1000 minute.
    pub toil_milli_minutes: u64,
}

impl Totals {
    fn add(&mut self, r: &Rollup) {
        self.runs += r.runs;
        self.succeeded += r.succeeded;
        self.noop += r.noop;
        self.failed += r.failed;
        self.interrupted += r.interrupted;
        self.cancelled += r.cancelled;
        self.toil_milli_minutes += r.toil_milli_minutes;
    }
}

/// The first and last day a report over all time covers (before any untoil, after any run).
fn all_time() -> (NaiveDate, NaiveDate) {
    (
        NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN),
        NaiveDate::from_ymd_opt(2999, 12, 31).unwrap_or(NaiveDate::MAX),
    )
}

/// Every runbook's totals over all time, as a report reads them (`by_month`: from the monthly
/// rollups, as reports over long periods do; else from the daily ones).
pub async fn totals(
    store: &dyn Store,
    by_month: bool,
) -> Result<BTreeMap<String, Totals>, StoreError> {
    let (from, to) = all_time();
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for (key, r) in store.rollups(from, to, by_month).await? {
        out.entry(key.runbook).or_default().add(&r);
    }
    Ok(out)
}

/// What differs between the source and the target after a copy, one line each (empty: they
/// match): the items each holds, and every runbook's report totals from the daily and the
/// monthly rollups.
pub async fn check(source: &SledStore, target: &PgStore) -> Result<Vec<String>, CopyError> {
    let mut diffs = Vec::new();
    let a = blocking(source, |s| Ok(s.export_counts())).await?;
    let b = target.import_counts().await?;
    for (what, x, y) in [
        ("runs", a.runs, b.runs),
        ("dedupe keys", a.dedupe, b.dedupe),
        ("alert episodes", a.alerts, b.alerts),
        ("guard states", a.guards, b.guards),
        ("delivery records", a.deliveries, b.deliveries),
    ] {
        if x != y {
            diffs.push(format!("{what}: {x} in the source, {y} in the target"));
        }
    }
    for (by_month, which) in [(false, "daily"), (true, "monthly")] {
        let x = totals(source, by_month).await?;
        let y = totals(target, by_month).await?;
        let names: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for name in names {
            let (p, q) = (
                x.get(name).copied().unwrap_or_default(),
                y.get(name).copied().unwrap_or_default(),
            );
            if p != q {
                diffs.push(format!(
                    "report totals of runbook `{name}` ({which} rollups): source {p:?}, target {q:?}"
                ));
            }
        }
    }
    Ok(diffs)
}
