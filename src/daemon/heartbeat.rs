//! A replica's heartbeat: its lease renewed every third of its length, and the replica fenced
//! (the daemon told to stop its steps and stop) once it could not renew for most of it. By
//! then the others may soon take it for dead and take over its runs; a replica paused or cut
//! off from the database must have stopped its steps before that happens, not after.

use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::store::postgres::PgStore;

/// Why a replica fenced itself.
#[derive(Debug, thiserror::Error)]
pub enum Fenced {
    /// The database says the lease expired (the replica was paused, or its renewals failed
    /// longer than the lease).
    #[error(
        "this replica's lease expired before it could renew it (paused, or cut off from the database); other replicas take over its runs: stopping its steps and exiting, to be restarted as a new replica"
    )]
    Expired,
    /// Renewals failed for most of the lease.
    #[error(
        "this replica could not renew its lease for {0:?} (last error: {1}); other replicas will take over its runs: stopping its steps and exiting, to be restarted as a new replica once the database answers"
    )]
    Unrenewed(Duration, String),
}

/// How long a replica may go without a renewal before it fences itself: five sixths of the
/// lease, which leaves a sixth for its steps to be killed before any other replica may reap.
pub fn fence_after(ttl: Duration) -> Duration {
    ttl * 5 / 6
}

/// Renews `replica`'s lease of `ttl` until it cannot; returns why it must fence itself.
pub async fn keep(replica: PgStore, ttl: Duration) -> Fenced {
    let every = ttl / 3;
    // Measured from before each request: the database may have renewed from a later instant,
    // never an earlier one, so this errs towards fencing early.
    let mut renewed = Instant::now();
    let mut last_error = String::from("none");
    let mut conn = None;
    loop {
        // Never past the fencing deadline: renewals that fail fast (connection refused) must
        // not leave the check for after the lease has expired.
        let deadline = renewed + fence_after(ttl);
        let now = Instant::now();
        if now >= deadline {
            return Fenced::Unrenewed(now - renewed, last_error);
        }
        tokio::time::sleep(every.min(deadline - now)).await;
        let asked = Instant::now();
        if asked >= deadline {
            return Fenced::Unrenewed(asked - renewed, last_error);
        }
        let budget = fence_after(ttl).saturating_sub(asked - renewed);
        match tokio::time::timeout(budget, replica.renew(&mut conn, ttl)).await {
            Ok(Ok(true)) => renewed = asked,
            Ok(Ok(false)) => return Fenced::Expired,
            Ok(Err(e)) => {
                warn!("cannot renew this replica's lease: {e}");
                last_error = e.to_string();
            }
            Err(_) => last_error = "the database did not answer in time".into(),
        }
        let since = renewed.elapsed();
        if since >= fence_after(ttl) {
            return Fenced::Unrenewed(since, last_error);
        }
    }
}
