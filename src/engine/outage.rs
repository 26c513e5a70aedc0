//! Store writes a run cannot do without (its claim, its finish), retried through an outage of
//! the store: a database that restarts must neither strand an acknowledged run (queued in the
//! store, but gone from this daemon's queue) nor leave a finished run recorded as running.
//!
//! A failure is not always a write that did not happen: a connection that drops after the
//! database committed loses only the reply. The retry then finds the write done (a claim finds
//! the run `running`, a finish finds the run's lease released), and [`claimed_by_us`] and
//! [`finished_by_us`] tell, from the stored record, whether it was this attempt's own write.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use chrono::{DateTime, Utc};

use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::store::error::StoreError;

/// The first wait before a retry; it doubles up to [`LONGEST`].
const FIRST: Duration = Duration::from_millis(100);
/// The longest wait between tries.
const LONGEST: Duration = Duration::from_secs(5);
/// How long an outage may last before the write is given up (and the run left to the next
/// start's reconciliation, which the error log says).
const GIVE_UP: Duration = Duration::from_secs(600);

/// Runs `attempt` until it succeeds or fails other than by the backend being unavailable
/// (a corrupt record is not retried, nor a lost lease: the run is another replica's now),
/// waiting longer after each failure; `what` names the write in the log.
pub async fn persist<T, F, Fut>(what: &str, attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    persist_noting(what, attempt).await.0
}

/// [`persist`], also saying whether an attempt failed by the backend before the last one: that
/// attempt may have been committed with only its reply lost, so what the last one found may be
/// its own write.
pub async fn persist_noting<T, F, Fut>(what: &str, mut attempt: F) -> (Result<T, StoreError>, bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + GIVE_UP;
    let mut wait = FIRST;
    let mut uncertain = false;
    loop {
        match attempt().await {
            Err(e @ StoreError::Backend { .. }) if Instant::now() + wait < deadline => {
                warn!("cannot {what} ({e}); trying again in {wait:?}");
                uncertain = true;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST);
            }
            other => return (other, uncertain),
        }
    }
}

/// Whether `stored`, found `running` by a claim retried after a lost reply, is that claim's own
/// write: the claim stamps the run's start with `started`, taken once before its first attempt,
/// so a run running with that very start (to the nanosecond) was claimed by it, and its lease is
/// this replica's. Any other claimer, or a reaper that ended the run, left something else.
pub fn claimed_by_us(stored: &RunRecord, started: DateTime<Utc>) -> bool {
    stored.status == RunStatus::Running && stored.started_at == Some(started)
}

/// Whether `stored`, found by a finish retried after a lost reply (refused, the run's lease being
/// released by the finish itself), is the final record `ours` that the first attempt wrote: the
/// same final status at the same end, stamped by this replica's clock. A run another replica
/// ended (interrupted by a reaper) has its own end.
pub fn finished_by_us(stored: &RunRecord, ours: &RunRecord) -> bool {
    stored.status.is_final()
        && stored.status == ours.status
        && stored.finished_at.is_some()
        && stored.finished_at == ours.finished_at
        && stored.steps.len() == ours.steps.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn down() -> StoreError {
        StoreError::Backend {
            path: "postgres://u@h:5432/d".into(),
            reason: "connection refused".into(),
        }
    }

    #[tokio::test]
    async fn an_unavailable_backend_is_tried_again_until_it_answers() {
        let tries = AtomicU32::new(0);
        let got = persist("record the run", || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(down()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(got.ok(), Some(2));
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_backend_failure_before_the_last_attempt_is_noted() {
        let tries = AtomicU32::new(0);
        let (got, uncertain) = persist_noting("claim the run", || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 => Err(down()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!((got.ok(), uncertain), (Some(1), true));
        let (got, uncertain) = persist_noting("claim the run", || async { Ok(7) }).await;
        assert_eq!((got.ok(), uncertain), (Some(7), false));
    }

    fn at(s: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, s)
            .single()
            .expect("a time")
    }

    fn run(status: RunStatus, started: Option<DateTime<Utc>>) -> RunRecord {
        let mut r = RunRecord::synthetic(1);
        r.status = status;
        r.started_at = started;
        r.finished_at = None;
        r
    }

    #[test]
    fn a_retried_claim_is_ours_only_when_the_run_runs_since_our_own_start() {
        assert!(claimed_by_us(&run(RunStatus::Running, Some(at(1))), at(1)));
        // Another claimer's start, or a reaper's end of our claim: not ours to run.
        assert!(!claimed_by_us(&run(RunStatus::Running, Some(at(2))), at(1)));
        assert!(!claimed_by_us(
            &run(RunStatus::Interrupted, Some(at(1))),
            at(1)
        ));
        assert!(!claimed_by_us(&run(RunStatus::Queued, None), at(1)));
    }

    #[test]
    fn a_retried_finish_is_ours_only_when_the_stored_end_is_ours() {
        let mut ours = run(RunStatus::Succeeded, Some(at(1)));
        ours.finished_at = Some(at(5));
        assert!(finished_by_us(&ours.clone(), &ours));
        // The reaper interrupted the run at its own time: the lease was really lost.
        let mut reaped = ours.clone();
        reaped.status = RunStatus::Interrupted;
        reaped.finished_at = Some(at(9));
        assert!(!finished_by_us(&reaped, &ours));
        let mut later = ours.clone();
        later.finished_at = Some(at(6));
        assert!(!finished_by_us(&later, &ours));
        // Still running (fenced for another reason): not finished at all.
        let running = run(RunStatus::Running, Some(at(1)));
        assert!(!finished_by_us(&running, &ours));
    }

    #[tokio::test]
    async fn a_lost_lease_is_not_tried_again() {
        let tries = AtomicU32::new(0);
        let got: Result<(), _> = persist("record the run", || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::LeaseLost {
                run: "r1".into(),
                replica: "a".into(),
            })
        })
        .await;
        assert!(matches!(got, Err(StoreError::LeaseLost { .. })));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_corrupt_record_is_not_tried_again() {
        let tries = AtomicU32::new(0);
        let got: Result<(), _> = persist("record the run", || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Corrupt {
                key: "r1".into(),
                reason: "bad json".into(),
            })
        })
        .await;
        assert!(matches!(got, Err(StoreError::Corrupt { .. })));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }
}
