//! Fires schedule triggers at their crontab times (the same code as `untoil next`), with tokio
//! timers rather than a polling tick. Each fire is queued under a dedupe key, so a restart never
//! runs the same fire twice; after downtime, the latest missed fire runs once if it is within
//! the trigger's `catchup` window.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::daemon::{AcceptError, Daemon, fire_prefix, fire_stamp};
use crate::runbook::model::{Runbook, Trigger};
use crate::store::Store;

/// Runs every schedule of the catalog until `stop`; restarts them when the catalog reloads.
pub async fn run(daemon: Arc<Daemon>, stop: CancellationToken) {
    let mut reloads = daemon.watch_reloads();
    loop {
        reloads.mark_unchanged();
        let generation = stop.child_token();
        let catalog = daemon.catalog();
        let mut tasks = tokio::task::JoinSet::new();
        for rb in catalog.iter() {
            for (i, t) in rb.triggers.iter().enumerate() {
                if matches!(t, Trigger::Schedule(_)) {
                    tasks.spawn(fire_loop(daemon.clone(), rb.clone(), i, generation.clone()));
                }
            }
        }
        // Restart when the catalog is reloaded; stop when the daemon stops.
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

fn last_fire(daemon: &Daemon, prefix: &str) -> Option<DateTime<Utc>> {
    let key = daemon.store.last_key(prefix).ok().flatten()?;
    DateTime::parse_from_rfc3339(key.strip_prefix(prefix)?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

async fn fire_loop(daemon: Arc<Daemon>, rb: Arc<Runbook>, index: usize, stop: CancellationToken) {
    let Some(Trigger::Schedule(trigger)) = rb.triggers.get(index) else {
        return;
    };
    let prefix = fire_prefix(&rb, index);
    let now = Utc::now();
    // Catch up: the latest fire missed while untoil was down, if recent enough.
    if let (Some(window), Some(last)) = (trigger.catchup, last_fire(&daemon, &prefix)) {
        let window = chrono::Duration::from_std(window).unwrap_or_default();
        let from = last.max(now - window);
        if let Some(missed) = trigger.schedule.due(from, now).last() {
            let at = missed.with_timezone(&Utc);
            info!(runbook = %rb.name, fire = %at, "catching up a fire missed during downtime");
            fire(&daemon, &rb, index, at);
        }
    }
    let mut after = now;
    loop {
        let Some(next) = trigger.schedule.next_after(after) else {
            return;
        };
        let next = next.with_timezone(&Utc);
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        fire(&daemon, &rb, index, next);
        after = next;
    }
}

fn fire(daemon: &Daemon, rb: &Arc<Runbook>, index: usize, at: DateTime<Utc>) {
    let lateness_ms = (Utc::now() - at).num_milliseconds();
    match daemon.accept_fire(rb, index, at) {
        Ok(Some(id)) => {
            info!(runbook = %rb.name, run_id = %id, fire = %fire_stamp(at), lateness_ms, "schedule fired")
        }
        Ok(None) => info!(runbook = %rb.name, fire = %fire_stamp(at), "fire already ran; skipped"),
        Err(AcceptError::ShuttingDown) => {}
        Err(e) => warn!(runbook = %rb.name, fire = %fire_stamp(at), "fire not queued: {e}"),
    }
}
