//! The result of one step.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::run::status::StepStatus;

/// The result of one step. Outputs are capped and secrets already redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StepResult {
    /// Step name.
    pub name: String,
    /// `shell`, `http`, `plugin` or `report`.
    pub kind: String,
    /// How it ended.
    pub status: Option<StepStatus>,
    /// What it ran, rendered and redacted as its outputs are: the command, the request line or
    /// the plugin with its input (empty for a step that never started).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// How long it took: from the first attempt's start to the last one's end, the waits
    /// between retries included.
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
    /// Set when the step found nothing to do (a declared exit status or `noop_when`), and why:
    /// the run ends `noop` after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noop: Option<String>,
    /// A remote step's result on each of its hosts, in the order the hosts were named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostResult>,
}

/// What a remote step did on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HostResult {
    /// The host, as `ssh` was given it (`name` or `name:port`).
    pub host: String,
    /// How it ended there.
    pub status: Option<StepStatus>,
    /// The remote command's exit code (None when it never ran or was stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Its standard output (capped, redacted).
    #[serde(default)]
    pub stdout: String,
    /// Its standard error (capped, redacted).
    #[serde(default)]
    pub stderr: String,
    /// Why it failed there, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took there.
    pub duration_ms: u64,
}

impl StepResult {
    /// Hosts the step succeeded on.
    pub fn hosts_succeeded(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| h.status == Some(StepStatus::Succeeded))
            .count()
    }
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
            if !self.hosts.is_empty() {
                let hosts: Vec<serde_json::Value> = self
                    .hosts
                    .iter()
                    .map(|h| {
                        serde_json::json!({
                            "host": h.host,
                            "status": h.status.map(StepStatus::as_str).unwrap_or("pending"),
                            "exit_code": h.exit_code,
                            "stdout": h.stdout.trim_end_matches('\n'),
                            "stderr": h.stderr.trim_end_matches('\n'),
                            "error": h.error,
                        })
                    })
                    .collect();
                let succeeded = self.hosts_succeeded();
                map.insert("hosts_total".into(), hosts.len().into());
                map.insert("hosts".into(), hosts.into());
                map.insert("hosts_succeeded".into(), succeeded.into());
                map.insert("hosts_failed".into(), (self.hosts.len() - succeeded).into());
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
