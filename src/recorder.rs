//! Writes a run's progress to the store as the executor reports it, so that every run is
//! recorded whoever started it, and a crash mid-run leaves a record reconciliation can finish.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::run::{RunEvent, RunId};
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
        let store = store.clone();
        let id2 = id.clone();
        let op = match &event {
            // The caller marks the run running (durably) before executing it.
            RunEvent::RunStarted { .. } => None,
            RunEvent::StepStarted { name, .. } => {
                current_step = name.clone();
                Some(Op::Step(name.clone(), None))
            }
            RunEvent::ProcessStarted { pgid, .. } => {
                Some(Op::Step(current_step.clone(), Some(*pgid)))
            }
            RunEvent::StepFinished { result, .. } => Some(Op::StepDone(result.clone())),
            RunEvent::RunFinished { record } => Some(Op::Finish(record.clone())),
            RunEvent::Output { .. } => None,
        };
        if let Some(op) = op {
            let result = match op {
                // Progress is not flushed (see the Store contract): an in-memory write, cheaper
                // here than a hand-off to a blocking thread and back.
                Op::Step(name, pgid) => store.step_started(&id2, &name, pgid),
                Op::StepDone(step) => store.record_step(&id2, &step),
                // The finish flushes (milliseconds): off the async workers.
                Op::Finish(run) => tokio::task::spawn_blocking(move || store.finish_run(&run))
                    .await
                    .unwrap_or_else(|e| {
                        Err(StoreError::Backend {
                            path: String::new(),
                            reason: format!("store task failed: {e}"),
                        })
                    }),
            };
            if let Err(e) = result
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        after(event);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

enum Op {
    Step(String, Option<u32>),
    StepDone(Box<crate::run::StepResult>),
    Finish(Box<crate::run::RunRecord>),
}
