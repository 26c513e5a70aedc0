//! Records a run's progress as the executor reports it: steps to the store (progress, made
//! durable by the next durable write), output lines to the log, every event to the run's
//! followers once it is stored.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::{error, info};

use crate::engine::followers::Followers;
use crate::exec::recorder::Recorder;
use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::store::Store;

/// The daemon's recorder of one run.
pub struct StoreRecorder {
    store: Arc<dyn Store>,
    followers: Arc<Followers>,
    id: RunId,
    runbook: String,
    step: String,
    failed: bool,
}

impl StoreRecorder {
    /// A recorder of run `id` of `runbook`.
    pub fn new(store: Arc<dyn Store>, followers: Arc<Followers>, id: RunId, runbook: &str) -> Self {
        StoreRecorder {
            store,
            followers,
            id,
            runbook: runbook.to_string(),
            step: String::new(),
            failed: false,
        }
    }
}

#[async_trait]
impl Recorder for StoreRecorder {
    async fn record(&mut self, event: RunEvent) {
        let stored = match &event {
            RunEvent::StepStarted { name, .. } => {
                self.step = name.clone();
                self.store.step_started(&self.id, name, None).await
            }
            RunEvent::ProcessStarted { pgid, .. } => {
                self.store
                    .step_started(&self.id, &self.step, Some(*pgid))
                    .await
            }
            RunEvent::StepFinished { result, .. } => self.store.record_step(&self.id, result).await,
            RunEvent::Output { line, stream, .. } => {
                // Already redacted by the executor.
                info!(run_id = %self.id, runbook = %self.runbook, step = %self.step, stream = %stream, "{line}");
                Ok(())
            }
            RunEvent::RunStarted { .. } | RunEvent::RunFinished { .. } => Ok(()),
        };
        if let Err(e) = stored
            && !self.failed
        {
            // Said once per run: the finish still records the whole run.
            self.failed = true;
            error!(run_id = %self.id, "cannot record the run's progress: {e}");
        }
        self.followers.publish(&self.id, event);
    }
}
