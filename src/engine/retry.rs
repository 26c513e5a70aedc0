//! Starting again an interrupted run of an idempotent runbook: once per interrupted run, as a
//! new queued run that names it (`retry_of`), whether a crash (found at the next start) or a
//! shutdown whose grace period ran out interrupted it.

use chrono::{DateTime, Utc};

use crate::engine::lifecycle;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::runbook::model::Runbook;
use crate::store::error::StoreError;
use crate::store::{Admitted, Candidate, Store};
use crate::trigger::key::DedupeKey;

/// Stores the retry of `interrupted` (a run of `rb` as loaded now) as a queued run and returns
/// it; None when the runbook is not idempotent, the run is not one to retry (a dry run, one
/// forced past its guards, a retry that was itself interrupted: a run that kills untoil must
/// not loop) or it was retried before (its retry key is taken).
pub async fn retry(
    store: &dyn Store,
    rb: &Runbook,
    interrupted: &RunRecord,
    now: DateTime<Utc>,
) -> Result<Option<RunRecord>, StoreError> {
    if !rb.idempotent
        || interrupted.status != RunStatus::Interrupted
        || interrupted.dry_run
        || interrupted.bypassed.is_some()
    {
        return Ok(None);
    }
    if let Some(earlier) = &interrupted.retry_of {
        let was = store.get_run(earlier).await?.map(|r| r.status);
        if was == Some(RunStatus::Interrupted) {
            tracing::warn!(run_id = %interrupted.id, "an interrupted retry is not started again");
            return Ok(None);
        }
    }
    // Not through the guards: the retry is the same work they admitted, not a new trigger.
    let candidate = Candidate {
        key: DedupeKey::Retry {
            of: interrupted.id.0.clone(),
        },
        run: lifecycle::retry(rb, interrupted, now),
        gate: None,
    };
    for admitted in store.admit(vec![candidate], Vec::new()).await? {
        if let Admitted::New { run, .. } = admitted {
            tracing::info!(
                run_id = %run.id,
                retry_of = %interrupted.id,
                runbook = %rb.name,
                "an interrupted run of an idempotent runbook starts again"
            );
            return Ok(Some(*run));
        }
    }
    Ok(None)
}
