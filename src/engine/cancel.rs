//! Cancelling a run: a running run is told to stop (its processes are killed and it ends as
//! cancelled); a run that has not started (queued, parked, or waiting for approval) ends as
//! cancelled at once.

use std::sync::Arc;

use crate::engine::clock::Clock;
use crate::engine::followers::Followers;
use crate::engine::pending::Pending;
use crate::engine::queue::{Cancel, Queue};
use crate::engine::unstarted::end_unstarted;
use crate::run::id::RunId;
use crate::run::status::RunStatus;
use crate::store::Store;
use crate::store::error::StoreError;

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
}

impl Canceller {
    /// Cancels a run queued, waiting for approval or running here. Returns false when it is
    /// none of those.
    pub async fn cancel(&self, id: &RunId) -> Result<bool, StoreError> {
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
}
