//! Start-up reconciliation and retention: runs left running by a dead process ended, the rest
//! handed back to be resumed; old run details, episodes and unreferenced notifications removed
//! (rollups stay); expired delivery records removed.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::store::postgres::rows::{decode, nanos};
use crate::store::postgres::tx::Fail;
use crate::store::postgres::write::Writer;
use crate::store::{Change, Reconciled};

/// Locked runs of a query of (id, record), complete.
pub async fn locked_runs(
    tx: &impl GenericClient,
    w: &Writer<'_>,
    sql: &str,
) -> Result<Vec<RunRecord>, Fail> {
    let st = tx.prepare_cached(sql).await?;
    let mut out = Vec::new();
    for row in tx.query(&st, &[]).await? {
        let id: String = row.try_get(0)?;
        let text: String = row.try_get(1)?;
        let mut run: RunRecord = decode(&format!("run {id}"), &text)?;
        w.notes.rehydrate(tx, &id, &mut run).await?;
        out.push(run);
    }
    Ok(out)
}

/// Ends runs left running with `interrupt` (finished, so counted), returns queued and pending
/// runs, and finished runs awaiting a verdict; an index entry whose run has its verdict (or
/// none to wait for) is cleared.
pub async fn reconcile(
    tx: &impl GenericClient,
    w: &mut Writer<'_>,
    interrupt: &Change,
) -> Result<Reconciled, Fail> {
    let mut out = Reconciled::default();
    let active = locked_runs(
        tx,
        w,
        "SELECT id, record::text FROM runs WHERE active ORDER BY id FOR UPDATE",
    )
    .await?;
    // Read before the interrupted runs are finished, as the sled store reads them.
    let verifying = locked_runs(
        tx,
        w,
        "SELECT id, record::text FROM runs WHERE awaits_verdict ORDER BY id FOR UPDATE",
    )
    .await?;
    let mut interrupted = Vec::new();
    for mut run in active {
        match run.status {
            RunStatus::Queued => out.queued.push(run),
            RunStatus::PendingApproval => out.pending_approval.push(run),
            RunStatus::Running => {
                interrupt(&mut run);
                out.interrupted.push(run.id.clone());
                interrupted.push(run);
            }
            _ => {}
        }
    }
    let clear = tx
        .prepare_cached("UPDATE runs SET awaits_verdict = false WHERE id = $1")
        .await?;
    for run in verifying {
        if run.awaits_verdict() {
            out.awaiting_verdict.push(run);
        } else {
            tx.execute(&clear, &[&run.id.0]).await?;
        }
    }
    for run in &interrupted {
        w.finish(tx, run).await?;
    }
    Ok(out)
}

/// Deletes runs created before `before` (not active ones), the episodes first received before
/// it, and every notification no run refers to; returns how many runs.
pub async fn prune(tx: &impl GenericClient, before: DateTime<Utc>) -> Result<usize, Fail> {
    // ULIDs start with the time: every id below this bound was created before `before`.
    let bound = ulid::Ulid::from_parts(before.timestamp_millis().max(0) as u64, 0).to_string();
    let runs = tx
        .execute("DELETE FROM runs WHERE id < $1 AND NOT active", &[&bound])
        .await?;
    tx.execute(
        "DELETE FROM alerts WHERE received_ns < $1",
        &[&nanos(before)],
    )
    .await?;
    sweep(tx).await?;
    Ok(usize::try_from(runs).unwrap_or(usize::MAX))
}

/// Deletes the notifications no run refers to. One a writer has just secured for a run it is
/// writing is skipped (`SKIP LOCKED`: its `FOR KEY SHARE` lock), as is one a run row refers to
/// (a writer that locked that row relies on it); one secured after this read makes the delete
/// fail its foreign key check, and the prune is retried.
async fn sweep(tx: &impl GenericClient) -> Result<u64, Fail> {
    Ok(tx
        .execute(
            "DELETE FROM notifications WHERE hash IN ( \
                 SELECT n.hash FROM notifications n \
                 WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.note = n.hash) \
                 FOR UPDATE SKIP LOCKED)",
            &[],
        )
        .await?)
}

/// Deletes the delivery records expired at `now`; returns how many.
pub async fn prune_deliveries(tx: &impl GenericClient, now: DateTime<Utc>) -> Result<usize, Fail> {
    let n = tx
        .execute(
            "DELETE FROM deliveries WHERE expires_ns <= $1",
            &[&nanos(now)],
        )
        .await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
