//! Where a run is in its life, and how a step ended.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, waiting for a worker.
    Queued,
    /// Waiting for a person to approve it.
    PendingApproval,
    /// Running.
    Running,
    /// Every step succeeded (or was allowed to fail).
    Succeeded,
    /// It found nothing to do (a step's declared no-op condition held): a success that credits
    /// no toil.
    Noop,
    /// A step failed.
    Failed,
    /// Cancelled by a person or a resolved alert.
    Cancelled,
    /// The run exceeded its timeout.
    TimedOut,
    /// The process running it died; found at the next start.
    Interrupted,
    /// Not run, with a reason (guard, denied or expired approval).
    Skipped,
}

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            RunStatus::Queued | RunStatus::PendingApproval | RunStatus::Running
        )
    }

    /// Whether the run ended well: succeeded, or found nothing to do. What the success rate and
    /// the failure breaker count as a success.
    pub fn is_success(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Noop)
    }

    /// Whether the run counts against the success rate: failed or timed out (not cancelled by a
    /// person, not interrupted by a shutdown or crash).
    pub fn is_failure(self) -> bool {
        matches!(self, RunStatus::Failed | RunStatus::TimedOut)
    }

    /// The name used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::PendingApproval => "pending_approval",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Noop => "noop",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Skipped => "skipped",
        }
    }

    /// All statuses, for parsing and help texts.
    pub const ALL: [RunStatus; 10] = [
        RunStatus::Queued,
        RunStatus::PendingApproval,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Noop,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::TimedOut,
        RunStatus::Interrupted,
        RunStatus::Skipped,
    ];
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = RunStatus::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown status `{s}`; expected one of {}", all.join(", "))
            })
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It did what it should.
    Succeeded,
    /// It failed (non-zero exit, unexpected HTTP status, plugin failure, render error).
    Failed,
    /// It ran past its timeout and was killed.
    TimedOut,
    /// Its `when` was false.
    Skipped,
    /// The run was cancelled while it ran, or before it started.
    Cancelled,
}

impl StepStatus {
    /// The name used in templates, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::TimedOut => "timed_out",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
