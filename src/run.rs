//! Runs and their results: what the executor produces and the store records.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, Notification};

/// A run's id: a ULID, so ids sort by creation time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl RunId {
    /// A new id for now.
    pub fn new() -> RunId {
        RunId(ulid::Ulid::new().to_string())
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What started a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// A person, by hand.
    Manual {
        /// Who (login name or API identity).
        user: String,
    },
    /// A schedule fire.
    Schedule {
        /// The fire time it runs for.
        at: DateTime<Utc>,
    },
    /// An Alertmanager alert.
    Alert {
        /// The alert's fingerprint.
        fingerprint: String,
        /// When the alert started (full precision).
        starts_at: DateTime<Utc>,
        /// The alert's labels.
        labels: BTreeMap<String, String>,
    },
}

impl Cause {
    /// `manual`, `schedule` or `alert`.
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::Manual { .. } => "manual",
            Cause::Schedule { .. } => "schedule",
            Cause::Alert { .. } => "alert",
        }
    }
}

/// The alert a run acts on, with the notification that carried it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertContext {
    /// The alert.
    pub alert: Alert,
    /// Its notification (receiver, group labels, ...), without the other alerts.
    pub notification: Notification,
}

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

    /// The name used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::PendingApproval => "pending_approval",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Skipped => "skipped",
        }
    }

    /// All statuses, for parsing and help texts.
    pub const ALL: [RunStatus; 9] = [
        RunStatus::Queued,
        RunStatus::PendingApproval,
        RunStatus::Running,
        RunStatus::Succeeded,
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

/// The result of one step. Outputs are capped and secrets already redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StepResult {
    /// Step name.
    pub name: String,
    /// `shell`, `http` or `plugin`.
    pub kind: String,
    /// How it ended.
    pub status: Option<StepStatus>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// How long it took, all attempts included.
    pub duration_ms: u64,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// Exit code of the process (shell and plugin steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Captured standard output (capped).
    #[serde(default)]
    pub stdout: String,
    /// Captured standard error (capped).
    #[serde(default)]
    pub stderr: String,
    /// stdout (or the HTTP body) parsed as JSON, when it is JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// HTTP response status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// HTTP response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// HTTP response body (capped).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// Plugin outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<serde_json::Value>,
    /// Plugin message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Why it failed or was skipped, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Toil credit of this step when it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toil_minutes: Option<f64>,
}

impl StepResult {
    /// The view of this result that later templates read as `steps.NAME`.
    pub fn template_value(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "status": self.status.map(StepStatus::as_str).unwrap_or("pending"),
            "duration_ms": self.duration_ms,
            "attempts": self.attempts,
            "exit_code": self.exit_code,
            "stdout": self.stdout.trim_end_matches('\n'),
            "stderr": self.stderr.trim_end_matches('\n'),
            "json": self.json,
        });
        if let Some(map) = v.as_object_mut() {
            if self.kind == "http" {
                map.insert("http_status".into(), self.http_status.into());
                map.insert("headers".into(), serde_json::json!(self.headers));
                map.insert("body".into(), self.body.clone().into());
            }
            if self.kind == "plugin" {
                map.insert(
                    "outputs".into(),
                    self.outputs.clone().unwrap_or(serde_json::json!({})),
                );
                map.insert("message".into(), self.message.clone().into());
            }
        }
        v
    }
}

/// Everything about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unique, time-sortable id.
    pub id: RunId,
    /// Runbook name.
    pub runbook: String,
    /// Content hash of the runbook version it ran.
    pub version: String,
    /// Owning team.
    pub owner: String,
    /// Service.
    #[serde(default)]
    pub service: Option<String>,
    /// What started it.
    pub cause: Cause,
    /// Rendered parameters.
    pub params: BTreeMap<String, String>,
    /// Where it is.
    pub status: RunStatus,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it started running.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Step results, in order.
    #[serde(default)]
    pub steps: Vec<StepResult>,
    /// Step running now (for runs found `running` after a crash).
    #[serde(default)]
    pub current_step: Option<String>,
    /// Process group of the step running now, so a restart can kill what a crash left.
    #[serde(default)]
    pub current_pgid: Option<u32>,
    /// A dry run executes nothing and credits nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Whether the run needed a person's approval.
    #[serde(default)]
    pub approval_required: bool,
    /// Why the run failed or was skipped, for humans.
    #[serde(default)]
    pub error: Option<String>,
    /// The alert the run acts on.
    #[serde(default)]
    pub alert: Option<AlertContext>,
    /// Toil credited, with how it was computed.
    #[serde(default)]
    pub toil: Option<crate::toil::Credit>,
    /// For alert runs: whether the alert resolved within the runbook's `verify` window.
    #[serde(default)]
    pub verification: Option<Verification>,
    /// The guard key the run counts against (`guards.key`, default the runbook).
    #[serde(default)]
    pub guard_key: Option<String>,
    /// Who approved or denied it, when it needed approval.
    #[serde(default)]
    pub approval: Option<ApprovalDecision>,
}

/// A person's decision on a run waiting for approval (or its expiry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// Approved (true) or denied/expired (false).
    pub approved: bool,
    /// Who decided ("expired" for a timeout).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The outcome of verifying an alert run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// Whether the alert resolved in time.
    pub verified: bool,
    /// When that was decided.
    pub at: DateTime<Utc>,
}

impl RunRecord {
    /// A finished manual run with made-up figures, for stress tests and benchmarks.
    pub fn synthetic(i: usize) -> RunRecord {
        let now = Utc::now();
        RunRecord {
            id: RunId::new(),
            runbook: format!("runbook-{}", i % 20),
            version: "synthetic".into(),
            owner: format!("team-{}", i % 5),
            service: Some(format!("svc-{}", i % 7)),
            cause: Cause::Manual {
                user: "stress".into(),
            },
            params: BTreeMap::new(),
            status: if i % 10 == 0 {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            },
            created_at: now,
            started_at: Some(now),
            finished_at: Some(now + chrono::Duration::milliseconds((i % 5000) as i64)),
            steps: Vec::new(),
            current_step: None,
            current_pgid: None,
            dry_run: false,
            approval_required: false,
            error: None,
            alert: None,
            toil: Some(crate::toil::Credit {
                minutes: if i % 10 == 0 { 0.0 } else { 5.0 },
                baseline: crate::toil::Baseline {
                    manual_minutes: 5.0,
                    ..Default::default()
                },
                reason: "synthetic".into(),
            }),
            verification: None,
            guard_key: None,
            approval: None,
        }
    }

    /// Run duration, start to end.
    pub fn duration_ms(&self) -> Option<u64> {
        match (self.started_at, self.finished_at) {
            (Some(s), Some(f)) => Some((f - s).num_milliseconds().max(0) as u64),
            _ => None,
        }
    }
}

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
