//! Fires schedule triggers at their crontab times (the same code as `untoil next`), with timers
//! on the engine's clock rather than a polling tick. Each fire is admitted under its dedupe key,
//! so a restart never runs the same fire twice; after downtime, the latest missed fire runs once
//! if it is within the trigger's `catchup` window.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::engine::admission::Admission;
use crate::engine::clock::Clock;
use crate::engine::error::AcceptError;
use crate::engine::runbooks::Runbooks;
use crate::runbook::model::{Runbook, Trigger};
use crate::store::Store;
use crate::trigger::key::{Fire, stamp};

/// What the scheduler needs: where fires go, the runbooks, the store (for catch-up) and time.
pub struct Scheduler {
    /// Admits fires.
    pub admission: Arc<Admission>,
    /// The runbooks in service.
    pub runbooks: Arc<Runbooks>,
    /// The store, for the last fire of each schedule.
    pub store: Arc<dyn Store>,
    /// The clock fires are timed by.
    pub clock: Arc<dyn Clock>,
}

/// Runs every schedule of the runbooks in service until `stop`; restarts them when the runbooks
/// are reloaded.
pub async fn run(s: Arc<Scheduler>, stop: CancellationToken) {
    let mut reloads = s.runbooks.watch();
    loop {
        reloads.mark_unchanged();
        let generation = stop.child_token();
        let catalog = s.runbooks.catalog();
        let mut tasks = tokio::task::JoinSet::new();
        for rb in catalog.iter() {
            for (i, t) in rb.triggers.iter().enumerate() {
                if matches!(t, Trigger::Schedule(_)) {
                    tasks.spawn(fire_loop(s.clone(), rb.clone(), i, generation.clone()));
                }
            }
        }
        // Restart when the runbooks are reloaded; stop when the daemon stops.
        tokio::select! {
            _ = stop.cancelled() => {
                generation.cancel();
                while tasks.join_next().await.is_some() {}
                return;
            }
            _ = reloads.changed() => {}
        }
        generation.cancel();
        while tasks.join_next().await.is_some() {}
    }
}

async fn fire_loop(s: Arc<Scheduler>, rb: Arc<Runbook>, index: usize, stop: CancellationToken) {
    let Some(Trigger::Schedule(trigger)) = rb.triggers.get(index) else {
        return;
    };
    let fire = Fire::new(&rb.name, index, &trigger.schedule);
    let now = s.clock.now();
    // Catch up: the latest fire missed while untoil was down, if recent enough.
    if let Some(window) = trigger.catchup {
        match s.store.last_fire(&fire).await {
            Ok(Some(last)) => {
                let window = chrono::Duration::from_std(window).unwrap_or_default();
                let from = last.max(now - window);
                if let Some(missed) = trigger.schedule.due(from, now).last() {
                    let at = missed.with_timezone(&Utc);
                    info!(runbook = %rb.name, fire = %at, "catching up a fire missed during downtime");
                    admit(&s, &rb, &fire, at).await;
                }
            }
            Ok(None) => {}
            Err(e) => warn!(runbook = %rb.name, "cannot read the last fire for catch-up: {e}"),
        }
    }
    let mut after = now;
    loop {
        let Some(next) = trigger.schedule.next_after(after) else {
            return;
        };
        let next = next.with_timezone(&Utc);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = s.clock.sleep_until(next) => {}
        }
        admit(&s, &rb, &fire, next).await;
        after = next;
    }
}

async fn admit(s: &Scheduler, rb: &Arc<Runbook>, fire: &Fire, at: DateTime<Utc>) {
    let lateness_ms = (s.clock.now() - at).num_milliseconds();
    match s.admission.fire(rb, fire, at).await {
        Ok(Some(id)) => {
            info!(runbook = %rb.name, run_id = %id, fire = %stamp(at), lateness_ms, "schedule fired")
        }
        Ok(None) => info!(runbook = %rb.name, fire = %stamp(at), "fire already ran; skipped"),
        Err(AcceptError::ShuttingDown) => {}
        Err(e) => warn!(runbook = %rb.name, fire = %stamp(at), "fire not queued: {e}"),
    }
}
