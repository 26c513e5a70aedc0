//! The reaper every replica runs: on an interval (a third of the lease, with jitter so that
//! replicas do not all ask at once), it takes over what replicas whose lease expired left. Their
//! running runs end interrupted (an idempotent runbook's run is queued again, here), their
//! queued runs join this replica's queue and their runs waiting for approval wait here. Running
//! it on every replica at once is safe: the store gives each orphan to one of them.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::engine::Engine;
use crate::engine::error::AcceptError;
use crate::engine::lifecycle;
use crate::exec::process::kill_leftovers;
use crate::run::record::RunRecord;
use crate::store::Reconciled;
use crate::store::postgres::PgStore;

/// One round: what dead replicas left, taken over by `replica` for `engine`. Returns what was
/// taken (runs interrupted, runs queued and waiting here).
pub async fn once(replica: &PgStore, engine: &Engine) -> Result<Reconciled, AcceptError> {
    let now = engine.clock.now();
    let mut reaped = replica
        .reap(Arc::new(move |r: &mut RunRecord| {
            lifecycle::interrupt(r, now, false)
        }))
        .await?;
    // Step processes of a replica that died on this host die too (only processes carrying
    // those runs' ids in their environment are touched).
    let killed = kill_leftovers(&reaped.interrupted);
    // The adopted runs join this replica's queue first: they are committed as this replica's,
    // and a failure below must not strand them where no one runs them.
    engine.resume(&reaped).await?;
    match engine.retry_interrupted(&reaped.interrupted).await {
        Ok(retries) if !retries.is_empty() => {
            let more = Reconciled {
                queued: retries,
                ..Reconciled::default()
            };
            engine.resume(&more).await?;
            reaped.queued.extend(more.queued);
        }
        Ok(_) => {}
        Err(e) => error!("cannot queue again the interrupted runs of idempotent runbooks: {e}"),
    }
    if !reaped.interrupted.is_empty()
        || !reaped.queued.is_empty()
        || !reaped.pending_approval.is_empty()
    {
        warn!(
            interrupted = reaped.interrupted.len(),
            killed_process_groups = killed.len(),
            queued = reaped.queued.len(),
            pending_approval = reaped.pending_approval.len(),
            "took over the runs of replicas whose lease expired"
        );
    }
    Ok(reaped)
}

/// A pause of `every` plus up to a quarter of it more, from the clock's nanoseconds (replicas
/// started together drift apart; no random generator is needed for that).
fn jittered(every: Duration) -> Duration {
    let quarter = (every / 4).as_millis().max(1) as u64;
    let nanos = u64::from(chrono::Utc::now().timestamp_subsec_nanos());
    every + Duration::from_millis(nanos % quarter)
}

/// How often a replica compacts the rollups of days and months that are over (reports then
/// read one row per group; see `store::postgres::compact`). Every replica does, harmlessly.
const COMPACT_EVERY: Duration = Duration::from_secs(3600);

/// Reaps every third of `ttl` until `stop`, and compacts rollups every [`COMPACT_EVERY`]
/// (first in the first round).
pub async fn run(replica: PgStore, engine: Arc<Engine>, ttl: Duration, stop: CancellationToken) {
    let mut compacted: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(jittered(ttl / 3)) => {}
        }
        if engine.queue.is_closed() {
            return;
        }
        match once(&replica, &engine).await {
            Ok(r) if !r.queued.is_empty() => info!(queued = r.queued.len(), "adopted runs queued"),
            Ok(_) => {}
            Err(e) => error!("cannot take over the runs of dead replicas (tried again later): {e}"),
        }
        if compacted.is_none_or(|at| at.elapsed() >= COMPACT_EVERY) {
            compacted = Some(tokio::time::Instant::now());
            match replica.compact(engine.clock.now().date_naive()).await {
                Ok(0) => {}
                Ok(n) => info!(groups = n, "compacted the rollups of past days and months"),
                Err(e) => warn!("cannot compact rollups (tried again in an hour): {e}"),
            }
        }
    }
}
