//! Leases of the replicas of a fleet: each daemon serving the database registers a row in
//! `replicas` whose `expires_at` it pushes forward on every heartbeat, always by the database's
//! clock (`now()`), so that replicas' clocks need not agree. A run's lease is its owner's: a run
//! `running` is held while its `lease_owner`'s row has not expired.
//!
//! A lease that expired is never renewed: the replica may have been taken for dead and its runs
//! interrupted or adopted, so it must fence itself (stop its steps, stop) rather than go on.
//! Every write of a running run's progress or finish is fenced here, under the run's row lock:
//! it is refused with [`StoreError::LeaseLost`] unless this replica owns the run and its lease
//! is live, so a replica that was paused or cut off cannot record over a newer owner.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use crate::run::id::RunId;
use crate::store::error::StoreError;
use crate::store::postgres::tx::Fail;

/// A lease's length as the database takes it (seconds, fractions kept).
fn seconds(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

/// Registers replica `id` (on `host`, process `pid`) with a lease of `ttl` from now.
pub async fn register(
    tx: &impl GenericClient,
    id: &str,
    host: &str,
    pid: i32,
    ttl: Duration,
) -> Result<(), Fail> {
    tx.execute(
        "INSERT INTO replicas (id, host, pid, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        &[&id, &host, &pid, &seconds(ttl)],
    )
    .await?;
    Ok(())
}

/// Extends replica `id`'s lease to `ttl` from now if it has not expired; false when it had
/// (or the row is gone): the replica must fence itself.
pub async fn renew(tx: &impl GenericClient, id: &str, ttl: Duration) -> Result<bool, Fail> {
    let n = tx
        .execute(
            "UPDATE replicas SET expires_at = now() + make_interval(secs => $2) \
             WHERE id = $1 AND expires_at > now()",
            &[&id, &seconds(ttl)],
        )
        .await?;
    Ok(n == 1)
}

/// Ends replica `id`'s lease now (a clean stop): what its queue held is adopted by the others
/// at their next reaping, not a lease's length later.
pub async fn leave(tx: &impl GenericClient, id: &str) -> Result<(), Fail> {
    tx.execute(
        "UPDATE replicas SET expires_at = least(expires_at, now()) WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Lets go of the runs waiting in replica `id`'s queue or for approval here (a stopping
/// replica, whose queue is closed): the next reaping of any replica adopts them at once,
/// without waiting for this one's lease to end.
pub async fn disown(tx: &impl GenericClient, id: &str) -> Result<u64, Fail> {
    Ok(tx
        .execute(
            "UPDATE runs SET admitted_by = NULL WHERE admitted_by = $1 AND active              AND status IN ('queued', 'pending_approval')",
            &[&id],
        )
        .await?)
}

/// Whether replica `id`'s lease is live now.
pub async fn live(tx: &impl GenericClient, id: &str) -> Result<bool, Fail> {
    let st = tx
        .prepare_cached("SELECT 1 FROM replicas WHERE id = $1 AND expires_at > clock_timestamp()")
        .await?;
    Ok(tx.query_opt(&st, &[&id]).await?.is_some())
}

/// The refusal of a write to run `run` by replica `me`.
pub fn lost(run: &RunId, me: &str) -> Fail {
    Fail::Store(StoreError::LeaseLost {
        run: run.0.clone(),
        replica: me.to_string(),
    })
}

/// Refuses a write to run `run` (whose row the caller locked, finding `owner`) unless replica
/// `me` owns it and its lease is live.
pub async fn fence(
    tx: &impl GenericClient,
    me: &str,
    run: &RunId,
    owner: Option<&str>,
) -> Result<(), Fail> {
    if owner != Some(me) || !live(tx, me).await? {
        return Err(lost(run, me));
    }
    Ok(())
}

/// Takes run `run`, queued or waiting for approval, into replica `me`'s queue (one a replica
/// that died had). The writes that leave a run held otherwise say so with its record
/// ([`crate::store::postgres::write::Writer::put_run`]).
pub async fn adopt(tx: &impl GenericClient, me: &str, run: &RunId) -> Result<(), Fail> {
    let st = tx
        .prepare_cached("UPDATE runs SET admitted_by = $2 WHERE id = $1")
        .await?;
    tx.execute(&st, &[&run.0, &me]).await?;
    Ok(())
}
