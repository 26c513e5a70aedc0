//! Writes a run's progress to the store as the executor reports it, so that every run is
//! recorded whoever started it, and a crash mid-run leaves a record reconciliation can finish.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::store::{Store, StoreError};

/// Consumes a run's events: each goes through `before` (which may amend it), is recorded, then
/// goes to `after`. Returns the first store error (later events still go to `after`).
///
/// One task does all three, in order: a task per stage with channels between them cost a
/// cross-thread wake-up per event and stage.
pub async fn record(
    store: Arc<dyn Store>,
    id: RunId,
    mut events: UnboundedReceiver<RunEvent>,
    mut before: impl FnMut(&mut RunEvent) + Send,
    mut after: impl FnMut(RunEvent) + Send,
) -> Result<(), StoreError> {
    let mut first_error = None;
    let mut current_step = String::new();
    while let Some(mut event) = events.recv().await {
        before(&mut event);
        let result = match &event {
            // The caller marks the run running (durably) before executing it.
            RunEvent::RunStarted { .. } | RunEvent::Output { .. } => Ok(()),
            // Progress is not flushed (see the Store contract): an in-memory write, cheaper here
            // than a hand-off to a blocking thread and back.
            RunEvent::StepStarted { name, .. } => {
                current_step = name.clone();
                store.step_started(&id, name, None)
            }
            RunEvent::ProcessStarted { pgid, .. } => {
                store.step_started(&id, &current_step, Some(*pgid))
            }
            RunEvent::StepFinished { result, .. } => store.record_step(&id, result),
            // The finish flushes (milliseconds): off the async workers.
            RunEvent::RunFinished { record } => {
                let (store, run) = (store.clone(), record.clone());
                tokio::task::spawn_blocking(move || store.finish_run(&run))
                    .await
                    .unwrap_or_else(|e| {
                        Err(StoreError::Backend {
                            path: String::new(),
                            reason: format!("store task failed: {e}"),
                        })
                    })
            }
        };
        if let Err(e) = result
            && first_error.is_none()
        {
            first_error = Some(e);
        }
        after(event);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
