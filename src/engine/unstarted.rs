//! Ending a run that never started (cancelled while queued, skipped by `overlap: skip`, its
//! runbook gone): one atomic transition from the statuses it may still be in, then its
//! followers get the final record.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::engine::followers::Followers;
use crate::engine::lifecycle;
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::store::error::StoreError;
use crate::store::{Change, Store, Transition};

/// Ends run `id` with `status` and `reason` if it is still in one of `from`. Returns the run as
/// ended, or None when it was not in those statuses (another path ended or started it).
pub async fn end_unstarted(
    store: &dyn Store,
    followers: &Followers,
    id: &RunId,
    from: &[RunStatus],
    (status, reason): (RunStatus, String),
    at: DateTime<Utc>,
) -> Result<Option<RunRecord>, StoreError> {
    let change: Change = Arc::new(move |r: &mut RunRecord| {
        lifecycle::end(r, status, Some(reason.clone()), at);
    });
    match store.transition(id, from, change).await? {
        Transition::Done(record) => {
            followers.close(id, &record);
            Ok(Some(*record))
        }
        Transition::Refused(status) => {
            if status.is_final() {
                close_ended(store, followers, id).await;
            }
            Ok(None)
        }
        Transition::Missing => Ok(None),
    }
}

/// Gives followers here the final record of a run that ended by another path (in a fleet,
/// cancelled through another replica while queued or waiting here): they would wait for it
/// otherwise.
pub async fn close_ended(store: &dyn Store, followers: &Followers, id: &RunId) {
    match store.get_run(id).await {
        Ok(Some(record)) if record.status.is_final() => followers.close(id, &record),
        Ok(_) => {}
        Err(e) => tracing::warn!(run_id = %id, "cannot read the run that ended elsewhere: {e}"),
    }
}

/// Why a run whose runbook is no longer loaded fails.
pub fn gone(runbook: &str) -> String {
    format!("runbook `{runbook}` is no longer loaded")
}
