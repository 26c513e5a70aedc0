//! What a resolved alert does to the runs of its episode: a succeeded run is verified (its alert
//! resolved within the runbook's `verify` window) or not, and a run not yet ended is cancelled
//! when its alert trigger says `cancel_on_resolve`, else remembered to be verified when it ends.

use chrono::{DateTime, Utc};
use tracing::warn;

use crate::engine::cancel::Canceller;
use crate::engine::verdicts::Verdicts;
use crate::run::cause::Cause;
use crate::run::status::RunStatus;
use crate::runbook::catalog::Catalog;
use crate::runbook::model::Trigger;
use crate::store::Store;
use crate::trigger::alert::Alert;

/// Verifies and cancels the runs of a resolved alert's episode; the minutes a verdict releases
/// (`verify.credit: verified_only`) count in the toil metric then, not at the run's finish. A
/// run not yet finished has its resolve remembered by `verdicts`, which decides its verdict when
/// it finishes. Returns (verified, cancelled).
pub async fn resolved(
    store: &dyn Store,
    catalog: &Catalog,
    canceller: &Canceller,
    verdicts: &Verdicts,
    alert: &Alert,
    now: DateTime<Utc>,
) -> (usize, usize) {
    let resolved = alert.ends_at.unwrap_or(now);
    let ids = store
        .runs_of_episode(&alert.episode())
        .await
        .unwrap_or_default();
    let (mut verified, mut cancelled) = (0, 0);
    for id in ids {
        let mut resolved_at = resolved;
        let Ok(Some(mut run)) = store.get_run(&id).await else {
            continue;
        };
        let Some(rb) = catalog.get(&run.runbook) else {
            continue;
        };
        // Only webhook deliveries are verified.
        let verifiable = rb.verify.is_some() && matches!(run.cause, Cause::Alert { .. });
        if !run.status.is_final() {
            let cancel = rb
                .triggers
                .iter()
                .any(|t| matches!(t, Trigger::Alert(a) if a.cancel_on_resolve));
            if cancel {
                match canceller.cancel(&id).await {
                    Ok(true) => cancelled += 1,
                    Ok(false) => {}
                    Err(e) => warn!(run_id = %id, "cannot cancel the run of a resolved alert: {e}"),
                }
                continue;
            }
            if !verifiable {
                continue;
            }
            verdicts.resolved_early(&id, resolved);
            // The run may have finished since it was read, its window's end already armed
            // without this resolve: read it again, and decide it here if so.
            match store.get_run(&id).await {
                Ok(Some(now_final)) if now_final.status.is_final() => {
                    run = now_final;
                    match verdicts.take_early(&id) {
                        Some(at) => resolved_at = at,
                        None => continue,
                    }
                }
                _ => continue,
            }
        }
        // A verdict taken stands.
        if run.status != RunStatus::Succeeded
            || run.verification.is_some()
            || !matches!(run.cause, Cause::Alert { .. })
        {
            continue;
        }
        // The window the run finished with, else the runbook's as loaded now.
        let deadline = run.verify_by.or_else(|| {
            let v = rb.verify.as_ref()?;
            let window = chrono::Duration::from_std(v.alert_resolves_within).unwrap_or_default();
            run.finished_at.map(|end| end + window)
        });
        if let Some(deadline) = deadline
            && verdicts.decide(&run, deadline, resolved_at).await
        {
            verified += 1;
        }
    }
    (verified, cancelled)
}
