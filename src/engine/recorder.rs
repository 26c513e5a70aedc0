//! Records a run's progress as the executor reports it: steps to the store (progress, made
//! durable by the next durable write), output lines to the log, every event to the run's
//! followers as it happens.
//!
//! Each progress write is a small append beside the run's record (docs/store.md), still a
//! store write per event, so writes that would be superseded at once are not made: a step that starts a process is recorded once, with its process group, when
//! the process starts (microseconds after the step starts); a finished step is written when the
//! next step starts, and the last one not at all, as the run's finish (which the worker writes
//! next, with every step) supersedes it. What a crash can lose is the same as before: progress
//! is only durable with the next durable write, and the finish is that write.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::engine::followers::Followers;
use crate::exec::recorder::Recorder;
use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::run::step::StepResult;
use crate::runbook::model::{Action, Runbook};
use crate::store::Store;
use crate::store::error::StoreError;

/// The daemon's recorder of one run.
pub struct StoreRecorder {
    store: Arc<dyn Store>,
    followers: Arc<Followers>,
    id: RunId,
    runbook: Arc<Runbook>,
    step: String,
    /// Finished steps not written yet (written before the next step's start).
    finished: Vec<StepResult>,
    failed: bool,
    /// Cancelled when the run's lease is lost (see [`StoreRecorder::lease_lost`]).
    stop: Option<CancellationToken>,
    lost: bool,
}

impl StoreRecorder {
    /// A recorder of run `id` of `runbook` (the version it runs).
    pub fn new(
        store: Arc<dyn Store>,
        followers: Arc<Followers>,
        id: RunId,
        runbook: Arc<Runbook>,
    ) -> Self {
        StoreRecorder {
            store,
            followers,
            id,
            runbook,
            step: String::new(),
            finished: Vec::new(),
            failed: false,
            stop: None,
            lost: false,
        }
    }

    /// Stops the run by `token` (its cancel token) when a write finds the run's lease lost: a
    /// replica that no longer holds a run must not go on running its steps.
    pub fn stopped_by(mut self, token: CancellationToken) -> Self {
        self.stop = Some(token);
        self
    }

    /// Whether a write found the run's lease lost (another replica ended or took it over):
    /// nothing more of the run may be recorded.
    pub fn lease_lost(&self) -> bool {
        self.lost
    }

    /// Whether step `index` starts processes (and so reports a process group at once).
    fn spawns(&self, index: usize) -> bool {
        self.runbook
            .steps
            .get(index)
            .is_some_and(|s| matches!(s.action, Action::Shell { .. } | Action::Plugin { .. }))
    }

    /// Writes the finished steps not written yet, in order.
    async fn write_finished(&mut self) -> crate::store::Result<()> {
        for step in std::mem::take(&mut self.finished) {
            self.store.record_step(&self.id, &step).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Recorder for StoreRecorder {
    async fn record(&mut self, event: RunEvent) {
        let stored = match &event {
            RunEvent::StepStarted { index, name, .. } => {
                self.step = name.clone();
                match self.write_finished().await {
                    // Written with its process group when the process starts.
                    Ok(()) if self.spawns(*index) => Ok(()),
                    Ok(()) => self.store.step_started(&self.id, name, None).await,
                    Err(e) => Err(e),
                }
            }
            RunEvent::ProcessStarted { pgid, .. } => match self.write_finished().await {
                Ok(()) => {
                    self.store
                        .step_started(&self.id, &self.step, Some(*pgid))
                        .await
                }
                Err(e) => Err(e),
            },
            RunEvent::StepFinished { result, .. } => {
                self.finished.push((**result).clone());
                Ok(())
            }
            RunEvent::Output { line, stream, .. } => {
                // Already redacted by the executor.
                info!(run_id = %self.id, runbook = %self.runbook.name, step = %self.step, stream = %stream, "{line}");
                Ok(())
            }
            RunEvent::RunStarted { .. } | RunEvent::RunFinished { .. } => Ok(()),
        };
        if let Err(e @ StoreError::LeaseLost { .. }) = &stored
            && !self.lost
        {
            self.lost = true;
            error!(run_id = %self.id, "stopping the run's steps: {e}");
            if let Some(t) = &self.stop {
                t.cancel();
            }
        } else if let Err(e) = stored
            && !self.failed
        {
            // Said once per run: the finish still records the whole run.
            self.failed = true;
            error!(run_id = %self.id, "cannot record the run's progress: {e}");
        }
        self.followers.publish(&self.id, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::status::StepStatus;
    use crate::store::sled::testing::with_running_run;

    fn step(name: &str) -> StepResult {
        StepResult {
            name: name.into(),
            status: Some(StepStatus::Succeeded),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_started_process_is_one_write_and_a_finished_step_is_written_when_the_next_starts() {
        let (_dir, store, id) = with_running_run().await;
        let rb = crate::runbook::catalog::one(
            "name: r\nowner: t\ntoil: {manual_minutes: 1}\nsteps:\n  - {name: a, run: 'true'}\n  - {name: b, http: {url: 'http://127.0.0.1:9/'}}\n",
            &Default::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let stored = || async { store.get_run(&id).await.expect("get").expect("run") };
        let mut rec = StoreRecorder::new(
            store.clone(),
            Arc::new(Followers::default()),
            id.clone(),
            rb,
        );
        let started = |index: usize, name: &str| RunEvent::StepStarted {
            index,
            name: name.into(),
            attempt: 1,
            detail: String::new(),
        };
        // A shell step: recorded when its process starts, with its group.
        rec.record(started(0, "a")).await;
        assert_eq!(stored().await.current_step, None);
        rec.record(RunEvent::ProcessStarted { index: 0, pgid: 42 })
            .await;
        let r = stored().await;
        assert_eq!(
            (r.current_step.as_deref(), r.current_pgid),
            (Some("a"), Some(42))
        );
        rec.record(RunEvent::StepFinished {
            index: 0,
            result: Box::new(step("a")),
        })
        .await;
        // An HTTP step starts no process: recorded as it starts, after the step before it.
        rec.record(started(1, "b")).await;
        let r = stored().await;
        assert_eq!(r.current_step.as_deref(), Some("b"));
        assert_eq!(r.steps, vec![step("a")]);
    }
}
