//! Cancelling a run: a running run is told to stop (its processes are killed and it ends as
//! cancelled); a run that has not started (queued, parked, or waiting for approval) ends as
//! cancelled at once. In a fleet, a run of another replica is cancelled from here too: one that
//! has not started ends through the store (the replica holding it finds it ended when it
//! claims it, and is signalled to drop it), and one running there is signalled to every replica,
//! again every second while it still runs (for a while: its replica may have missed the first).

use std::sync::Arc;
use std::time::Duration;

use crate::engine::clock::Clock;
use crate::engine::fleet::Fleet;
use crate::engine::followers::Followers;
use crate::engine::pending::Pending;
use crate::engine::queue::{Cancel, Queue};
use crate::engine::unstarted::end_unstarted;
use crate::run::id::RunId;
use crate::run::status::RunStatus;
use crate::store::Store;
use crate::store::error::StoreError;
use crate::store::signals::Signal;

/// Cancels runs of this daemon.
pub struct Canceller {
    /// The queue.
    pub queue: Arc<Queue>,
    /// Runs waiting for approval.
    pub pending: Arc<Pending>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Followers, told when an unstarted run ends.
    pub followers: Arc<Followers>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The other replicas of the fleet (None on sled).
    pub fleet: Option<Arc<Fleet>>,
}

impl Canceller {
    /// Cancels a run queued, waiting for approval or running here, or (in a fleet) on another
    /// replica. Returns false when it is none of those.
    pub async fn cancel(&self, id: &RunId) -> Result<bool, StoreError> {
        if self.cancel_here(id).await? {
            return Ok(true);
        }
        match &self.fleet {
            Some(fleet) => self.cancel_elsewhere(fleet, id).await,
            None => Ok(false),
        }
    }

    /// Cancels a run queued, waiting for approval or running here. Returns false when it is
    /// none of those.
    pub async fn cancel_here(&self, id: &RunId) -> Result<bool, StoreError> {
        let from: &[RunStatus] = match self.queue.cancel(id) {
            Cancel::Signalled => return Ok(true),
            Cancel::Unstarted => &[RunStatus::Queued],
            Cancel::NotHere if self.pending.remove(id) => &[RunStatus::PendingApproval],
            Cancel::NotHere => return Ok(false),
        };
        let ended = end_unstarted(
            &*self.store,
            &self.followers,
            id,
            from,
            (RunStatus::Cancelled, "cancelled before it started".into()),
            self.clock.now(),
        )
        .await?;
        Ok(ended.is_some())
    }

    /// Cancels a run of another replica, as its stored record says it is: one not started ends
    /// now (its replica's claim is then refused), one running is signalled to the fleet.
    async fn cancel_elsewhere(&self, fleet: &Arc<Fleet>, id: &RunId) -> Result<bool, StoreError> {
        let unstarted = [RunStatus::Queued, RunStatus::PendingApproval];
        // Twice at most: a run that starts between the read and the write is running.
        for _ in 0..2 {
            let Some(run) = self.store.get_run(id).await? else {
                return Ok(false);
            };
            match run.status {
                RunStatus::Running => {
                    fleet.send(&Signal::Cancel { run: id.clone() }).await?;
                    tokio::spawn(insist(fleet.clone(), self.store.clone(), id.clone()));
                    return Ok(true);
                }
                s if unstarted.contains(&s) => {
                    let ended = end_unstarted(
                        &*self.store,
                        &self.followers,
                        id,
                        &unstarted,
                        (RunStatus::Cancelled, "cancelled before it started".into()),
                        self.clock.now(),
                    )
                    .await?;
                    if ended.is_some() {
                        // The replica holding it drops it from its queue (or its approvals)
                        // and its followers get the end; one that misses this finds the run
                        // ended when it claims it.
                        if let Err(e) = fleet.send(&Signal::Cancel { run: id.clone() }).await {
                            tracing::debug!(run_id = %id, "cannot tell the fleet the run was cancelled: {e}");
                        }
                        return Ok(true);
                    }
                }
                _ => return Ok(false),
            }
        }
        Ok(false)
    }
}

/// How often, and how many times, a cancel of a run running elsewhere is sent again while the
/// run is still running: the replica running it may have missed it (its listener was
/// reconnecting). A replica that died misses it for good; its run ends as interrupted when its
/// lease expires.
const INSIST_EVERY: Duration = Duration::from_secs(1);
const INSIST_TIMES: u32 = 30;

/// Sends the cancel of run `id` again while its record says it is running.
async fn insist(fleet: Arc<Fleet>, store: Arc<dyn Store>, id: RunId) {
    for _ in 0..INSIST_TIMES {
        tokio::select! {
            () = fleet.closed() => return,
            () = tokio::time::sleep(INSIST_EVERY) => {}
        }
        match store.get_run(&id).await {
            Ok(Some(run)) if run.status == RunStatus::Running => {}
            _ => return,
        }
        if let Err(e) = fleet.send(&Signal::Cancel { run: id.clone() }).await {
            tracing::debug!(run_id = %id, "cannot send the run's cancel again: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fleet::Kept;
    use crate::run::record::RunRecord;
    use crate::store::Change;
    use crate::store::sled::testing::with_running_run;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancel_is_sent_again_while_the_run_runs_and_no_more_once_it_ended() {
        let (_dir, store, id) = with_running_run().await;
        let kept = Arc::new(Kept::default());
        let fleet = Arc::new(Fleet::new(kept.clone()));
        let sent = || kept.0.lock().unwrap_or_else(|p| p.into_inner()).len();
        let insisting = tokio::spawn(insist(fleet.clone(), store.clone(), id.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while sent() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "sent again in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            kept.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .all(|s| matches!(s, Signal::Cancel { run } if *run == id))
        );
        // The run ends (its replica got the cancel): the sending stops.
        let end: Change = Arc::new(|r: &mut RunRecord| r.status = RunStatus::Cancelled);
        store
            .transition(&id, &[RunStatus::Running], end)
            .await
            .expect("end");
        tokio::time::timeout(Duration::from_secs(20), insisting)
            .await
            .expect("stops once the run ended")
            .expect("task");
        let after = sent();
        assert!(after < INSIST_TIMES as usize, "{after}");
    }
}
