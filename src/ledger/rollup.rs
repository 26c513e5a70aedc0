//! Rollups: per-day (and per-month) counters of finished runs that reports read, so a report's
//! cost grows with the number of groups, not the number of runs. What one run adds is decided
//! here alone.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ledger::histogram::Histogram;
use crate::run::cause::Cause;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;

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
    /// Runs that found nothing to do (a success that credits nothing).
    #[serde(default)]
    pub noop: u64,
    /// Failed or timed out runs (before schema 3: interrupted ones too, see `legacy_runs`).
    pub failed: u64,
    /// Runs interrupted by a shutdown or crash.
    #[serde(default)]
    pub interrupted: u64,
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
    /// Times to remediate in ms, for the median and 90th percentile.
    #[serde(default)]
    pub remediate_ms: Histogram,
    /// Alert runs whose alert resolved within the runbook's `verify` window.
    #[serde(default)]
    pub verified: u64,
    /// Alert runs whose alert had not resolved when the window ended.
    #[serde(default)]
    pub unverified: u64,
    /// Runs counted before schema 3 whose records were pruned before the migration, so what
    /// schema 3 adds (noop, interrupted apart from failed, time-to-remediate percentiles) is
    /// unknown for them; reports say so rather than guess.
    #[serde(default)]
    pub legacy_runs: u64,
}

impl Rollup {
    /// Adds another group's counters.
    pub fn merge(&mut self, o: &Rollup) {
        self.runs += o.runs;
        self.succeeded += o.succeeded;
        self.noop += o.noop;
        self.failed += o.failed;
        self.interrupted += o.interrupted;
        self.cancelled += o.cancelled;
        self.toil_milli_minutes += o.toil_milli_minutes;
        self.durations.merge(&o.durations);
        self.remediations += o.remediations;
        self.remediate_ms_sum += o.remediate_ms_sum;
        self.remediate_ms.merge(&o.remediate_ms);
        self.verified += o.verified;
        self.unverified += o.unverified;
        self.legacy_runs += o.legacy_runs;
    }

    /// Removes another group's counters (a run's old contribution, before its new one is
    /// merged: a verdict that arrives after the run finished). Saturates at zero.
    pub fn subtract(&mut self, o: &Rollup) {
        self.runs = self.runs.saturating_sub(o.runs);
        self.succeeded = self.succeeded.saturating_sub(o.succeeded);
        self.noop = self.noop.saturating_sub(o.noop);
        self.failed = self.failed.saturating_sub(o.failed);
        self.interrupted = self.interrupted.saturating_sub(o.interrupted);
        self.cancelled = self.cancelled.saturating_sub(o.cancelled);
        self.toil_milli_minutes = self.toil_milli_minutes.saturating_sub(o.toil_milli_minutes);
        self.durations.subtract(&o.durations);
        self.remediations = self.remediations.saturating_sub(o.remediations);
        self.remediate_ms_sum = self.remediate_ms_sum.saturating_sub(o.remediate_ms_sum);
        self.remediate_ms.subtract(&o.remediate_ms);
        self.verified = self.verified.saturating_sub(o.verified);
        self.unverified = self.unverified.saturating_sub(o.unverified);
        self.legacy_runs = self.legacy_runs.saturating_sub(o.legacy_runs);
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
            RunStatus::Noop => r.noop = 1,
            RunStatus::Cancelled => r.cancelled = 1,
            RunStatus::Interrupted => r.interrupted = 1,
            _ => r.failed = 1,
        }
        r.toil_milli_minutes = milli_minutes(run.toil.as_ref().map_or(0.0, |t| t.minutes));
        // An interrupted run's end is when untoil found it dead (the next start, after a
        // crash), not when it stopped: its "duration" would be the downtime.
        if let Some(ms) = run.duration_ms()
            && run.status != RunStatus::Interrupted
        {
            r.durations.record(ms);
        }
        // Only a webhook delivery has a time to remediate: a replay by hand is cause `manual`.
        if let (Cause::Alert { starts_at, .. }, Some(end)) = (&run.cause, run.finished_at) {
            let ms = (end - *starts_at).num_milliseconds();
            if ms >= 0 && run.status == RunStatus::Succeeded {
                r.remediations = 1;
                r.remediate_ms_sum = ms as u64;
                r.remediate_ms.record(ms as u64);
            }
        }
        match &run.verification {
            Some(v) if v.verified => r.verified = 1,
            Some(_) => r.unverified = 1,
            None => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_run_counts_but_its_downtime_is_no_duration() {
        let mut run = RunRecord::synthetic(1);
        run.status = RunStatus::Interrupted;
        let (_, r) = Rollup::of_run(&run).expect("counts");
        assert_eq!((r.runs, r.interrupted, r.failed), (1, 1, 0));
        assert_eq!(r.durations.count(), 0);
        run.status = RunStatus::Failed;
        let (_, r) = Rollup::of_run(&run).expect("counts");
        assert_eq!(r.durations.count(), 1);
    }
}
