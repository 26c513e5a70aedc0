//! What a resolved alert does to the runs of its episode: a succeeded run is verified (its alert
//! resolved within the runbook's `verify` window) or not, and a run not yet ended is cancelled
//! when its alert trigger says `cancel_on_resolve`.

use chrono::{DateTime, Utc};
use tracing::warn;

use crate::engine::cancel::Canceller;
use crate::engine::metrics::Metrics;
use crate::run::cause::Cause;
use crate::run::record::Verification;
use crate::run::status::RunStatus;
use crate::runbook::catalog::Catalog;
use crate::runbook::model::Trigger;
use crate::store::Store;
use crate::trigger::alert::Alert;

/// Verifies and cancels the runs of a resolved alert's episode; the minutes a verdict releases
/// (`verify.credit: verified_only`) count in the toil metric then, not at the run's finish.
/// Returns (verified, cancelled).
pub async fn resolved(
    store: &dyn Store,
    catalog: &Catalog,
    canceller: &Canceller,
    metrics: &Metrics,
    alert: &Alert,
    now: DateTime<Utc>,
) -> (usize, usize) {
    let resolved_at = alert.ends_at.unwrap_or(now);
    let ids = store
        .runs_of_episode(&alert.episode())
        .await
        .unwrap_or_default();
    let (mut verified, mut cancelled) = (0, 0);
    for id in ids {
        let Ok(Some(run)) = store.get_run(&id).await else {
            continue;
        };
        let Some(rb) = catalog.get(&run.runbook) else {
            continue;
        };
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
            }
            continue;
        }
        // Only webhook deliveries are verified; a verdict taken stands.
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
        if let Some(deadline) = deadline {
            // A succeeded run has started; the start of its record stands in for one that did not.
            let started = run.started_at.unwrap_or(run.created_at);
            let ok = crate::engine::verdicts::within(started, resolved_at, deadline);
            let verification = Verification {
                verified: ok,
                at: now,
                resolved_at: Some(resolved_at),
            };
            if let Ok(true) = store.set_verified(&id, verification).await {
                verified += 1;
                if let (true, Some(held)) = (ok, run.toil.as_ref().and_then(|t| t.held)) {
                    metrics.toil_released(&run.runbook, &run.owner, held);
                }
            }
        }
    }
    (verified, cancelled)
}
