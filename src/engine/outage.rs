//! Store writes a run cannot do without (its claim, its finish), retried through an outage of
//! the store: a database that restarts must neither strand an acknowledged run (queued in the
//! store, but gone from this daemon's queue) nor leave a finished run recorded as running.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::store::error::StoreError;

/// The first wait before a retry; it doubles up to [`LONGEST`].
const FIRST: Duration = Duration::from_millis(100);
/// The longest wait between tries.
const LONGEST: Duration = Duration::from_secs(5);
/// How long an outage may last before the write is given up (and the run left to the next
/// start's reconciliation, which the error log says).
const GIVE_UP: Duration = Duration::from_secs(600);

/// Runs `attempt` until it succeeds or fails other than by the backend being unavailable
/// (a corrupt record is not retried, nor a lost lease: the run is another replica's now), waiting longer after each failure; `what` names the write
/// in the log.
pub async fn persist<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + GIVE_UP;
    let mut wait = FIRST;
    loop {
        match attempt().await {
            Err(e @ StoreError::Backend { .. }) if Instant::now() + wait < deadline => {
                warn!("cannot {what} ({e}); trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST);
            }
            other => return other,
        }
    }
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
