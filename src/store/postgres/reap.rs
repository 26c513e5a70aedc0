//! The reaper's query: what replicas whose lease expired left behind, taken over by a live one.
//! Any replica may run it at any time, and several at once: rows are locked `FOR UPDATE SKIP
//! LOCKED`, so each orphan is taken by one of them, and a run a live owner is writing (its row
//! locked) waits for the next round, when its owner's lease shows whether it is still held.

use deadpool_postgres::GenericClient;
use tracing::error;

use crate::run::record::RunRecord;
use crate::store::error::StoreError;
use crate::store::postgres::lease;
use crate::store::postgres::rows::decode;
use crate::store::postgres::tx::Fail;
use crate::store::postgres::write::Writer;
use crate::store::{Change, Reconciled};

/// Running runs whose owner's lease expired (or that have no owner: left by a daemon before
/// leases), for the reaper to interrupt.
const ORPHANED_RUNNING: &str = "SELECT r.id, r.record::text FROM runs r \
     WHERE r.active AND r.status = 'running' AND NOT EXISTS ( \
         SELECT 1 FROM replicas p WHERE p.id = r.lease_owner AND p.expires_at > now()) \
     ORDER BY r.id FOR UPDATE OF r SKIP LOCKED";

/// Queued runs and runs waiting for approval whose admitting replica's lease expired (or that
/// have none), for the reaper to adopt.
const ORPHANED_WAITING: &str = "SELECT r.id, r.record::text FROM runs r \
     WHERE r.active AND r.status IN ('queued', 'pending_approval') AND NOT EXISTS ( \
         SELECT 1 FROM replicas p WHERE p.id = r.admitted_by AND p.expires_at > now()) \
     ORDER BY r.id FOR UPDATE OF r SKIP LOCKED";

/// How long the row of a replica whose lease expired is kept (for operators to see) before the
/// reaper deletes it; runs naming a deleted replica count as orphaned all the same.
const FORGET_AFTER_SECS: f64 = 24.0 * 3600.0;

/// The locked runs of a query of (id, record), complete, less those whose record (or
/// notification) does not decode: each is logged, with its id and why, and left where it is,
/// so that one corrupt row does not keep every reaping round from taking over the others.
async fn orphans(
    tx: &impl GenericClient,
    w: &Writer<'_>,
    sql: &str,
) -> Result<Vec<RunRecord>, Fail> {
    let st = tx.prepare_cached(sql).await?;
    let mut out = Vec::new();
    for row in tx.query(&st, &[]).await? {
        let id: String = row.try_get(0)?;
        let text: String = row.try_get(1)?;
        let decoded = match decode::<RunRecord>(&format!("run {id}"), &text) {
            Ok(mut run) => w.notes.rehydrate(tx, &id, &mut run).await.map(|()| run),
            Err(e) => Err(e),
        };
        match decoded {
            Ok(run) => out.push(run),
            Err(Fail::Store(e @ StoreError::Corrupt { .. })) => error!(
                run_id = %id,
                "cannot take over run {id} of a dead replica: {e}; it is skipped by every reaping until its row in `runs` is repaired or deleted"
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Takes over, as replica `me`, what replicas that died left: their running runs are ended by
/// `interrupt` (recorded and counted, held by no one), their queued and waiting runs adopted
/// (`admitted_by = me`) and returned for `me` to queue or wait on. Nothing is done while `me`'s
/// own lease is not live: a replica that may itself be taken for dead must not take over.
pub async fn reap(
    tx: &impl GenericClient,
    w: &mut Writer<'_>,
    me: &str,
    interrupt: &Change,
) -> Result<Reconciled, Fail> {
    let mut out = Reconciled::default();
    if !lease::live(tx, me).await? {
        return Ok(out);
    }
    for mut run in orphans(tx, w, ORPHANED_RUNNING).await? {
        interrupt(&mut run);
        w.finish(tx, &run).await?;
        out.interrupted.push(run.id.clone());
    }
    for run in orphans(tx, w, ORPHANED_WAITING).await? {
        lease::adopt(tx, me, &run.id).await?;
        match run.status {
            crate::run::status::RunStatus::Queued => out.queued.push(run),
            _ => out.pending_approval.push(run),
        }
    }
    tx.execute(
        "DELETE FROM replicas WHERE expires_at < now() - make_interval(secs => $1)",
        &[&FORGET_AFTER_SECS],
    )
    .await?;
    Ok(out)
}
