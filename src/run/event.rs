//! Progress of a run as it happens.

use serde::{Deserialize, Serialize};

use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::step::StepResult;

/// Progress of a run, streamed to whoever watches it (`untoil run`, the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run started.
    RunStarted {
        /// Run id.
        id: RunId,
        /// Runbook.
        runbook: String,
        /// Number of steps.
        steps: usize,
    },
    /// A step started (attempt counts from 1).
    StepStarted {
        /// Step index.
        index: usize,
        /// Step name.
        name: String,
        /// Attempt number.
        attempt: u32,
        /// What runs, rendered and redacted (command, request line, plugin name).
        detail: String,
    },
    /// A step's process started, in its own process group.
    ProcessStarted {
        /// Step index.
        index: usize,
        /// Process group id (the process's pid).
        pgid: u32,
    },
    /// A line a step printed.
    Output {
        /// Step index.
        index: usize,
        /// `stdout` or `stderr`.
        stream: String,
        /// The line, redacted.
        line: String,
    },
    /// A step ended.
    StepFinished {
        /// Step index.
        index: usize,
        /// Its result.
        result: Box<StepResult>,
    },
    /// The run ended.
    RunFinished {
        /// The whole record.
        record: Box<RunRecord>,
    },
}
