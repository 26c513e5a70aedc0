//! A run in brief, as lists show it: what `GET /api/v1/runs` and `untoil runs` answer. The
//! whole record (the alert's notification, every step's output) is one request away at
//! `GET /api/v1/runs/{id}`; copying it into every list entry made a 50-run answer tens of MB.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::run::cause::Cause;
use crate::run::credit::Credit;
use crate::run::id::RunId;
use crate::run::record::{Bypass, RunRecord, Verification};
use crate::run::status::RunStatus;

/// The most bytes of one text value (a label, the error) a summary carries.
pub const CAP_BYTES: usize = 1024;

/// What a capped value ends with, so nobody takes it for the whole value.
pub const CAP_MARKER: &str = "… [truncated; the full value is in the run record]";

/// One run in brief.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Unique, time-sortable id.
    pub id: RunId,
    /// Where the whole record is (`/api/v1/runs/{id}`).
    pub url: String,
    /// Runbook name.
    pub runbook: String,
    /// What started it; an alert's label values are capped at [`CAP_BYTES`].
    pub cause: Cause,
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
    /// Start to end, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Step running now.
    #[serde(default)]
    pub current_step: Option<String>,
    /// How many step results the record holds.
    #[serde(default)]
    pub step_count: usize,
    /// A dry run executes nothing and credits nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Why the run failed or was skipped, capped at [`CAP_BYTES`].
    #[serde(default)]
    pub error: Option<String>,
    /// The `alertname` label of its alert (the cause's, or the alert replayed by hand), capped.
    #[serde(default)]
    pub alertname: Option<String>,
    /// The `instance` label of its alert (the cause's, or the alert replayed by hand), capped.
    #[serde(default)]
    pub instance: Option<String>,
    /// For a manual run with an alert attached: `replaying alert NAME FINGERPRINT`, capped.
    #[serde(default)]
    pub replayed_alert: Option<String>,
    /// Toil credited, with how it was computed.
    #[serde(default)]
    pub toil: Option<Credit>,
    /// For alert runs: whether the alert resolved within the runbook's `verify` window.
    #[serde(default)]
    pub verification: Option<Verification>,
    /// The run this one runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<RunId>,
    /// Who ran it in the foreground past its guards: small, and a list should not hide it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypassed: Option<Bypass>,
}

impl RunSummary {
    /// The summary of a whole record.
    pub fn of(r: &RunRecord) -> RunSummary {
        RunSummary {
            id: r.id.clone(),
            url: format!("/api/v1/runs/{}", r.id),
            runbook: r.runbook.clone(),
            cause: capped_cause(&r.cause),
            status: r.status,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_ms: r.duration_ms(),
            current_step: r.current_step.as_deref().map(cap),
            step_count: r.steps.len(),
            dry_run: r.dry_run,
            error: r.error.as_deref().map(cap),
            alertname: alertname(r).map(cap),
            instance: r.instance().map(cap),
            replayed_alert: r.replayed_alert().as_deref().map(cap),
            toil: r.toil.clone(),
            verification: r.verification.clone(),
            retry_of: r.retry_of.clone(),
            bypassed: r.bypassed.clone(),
        }
    }

    /// Why the run was skipped (a guard's reason, capped), for a skipped run only.
    pub fn skip_reason(&self) -> Option<&str> {
        (self.status == RunStatus::Skipped)
            .then_some(self.error.as_deref())
            .flatten()
    }
}

/// `s`, or its first [`CAP_BYTES`] (cut at a character boundary) and [`CAP_MARKER`].
pub fn cap(s: &str) -> String {
    if s.len() <= CAP_BYTES {
        return s.to_string();
    }
    let mut end = CAP_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CAP_MARKER}", &s[..end])
}

/// The `alertname` label of the run's alert: its cause's, or the alert replayed by hand.
fn alertname(r: &RunRecord) -> Option<&str> {
    match &r.cause {
        Cause::Alert { labels, .. } => labels.get("alertname").map(String::as_str),
        _ => r
            .alert
            .as_ref()
            .and_then(|a| a.alert.labels.get("alertname").map(String::as_str)),
    }
}

/// The cause with an alert's label values capped (labels are matched on, so keys stay whole).
fn capped_cause(c: &Cause) -> Cause {
    match c {
        Cause::Alert {
            source,
            fingerprint,
            starts_at,
            labels,
        } => Cause::Alert {
            source: source.clone(),
            fingerprint: cap(fingerprint),
            starts_at: *starts_at,
            labels: labels
                .iter()
                .map(|(k, v)| (k.clone(), cap(v)))
                .collect::<BTreeMap<_, _>>(),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_at_a_character_boundary_with_a_marker() {
        assert_eq!(cap("short"), "short");
        let long = "é".repeat(CAP_BYTES);
        let c = cap(&long);
        assert!(c.ends_with(CAP_MARKER), "{c}");
        assert!(c.len() <= CAP_BYTES + CAP_MARKER.len());
        let mut r = RunRecord::synthetic(1);
        r.error = Some("x".repeat(10 * CAP_BYTES));
        let s = RunSummary::of(&r);
        assert_eq!(s.url, format!("/api/v1/runs/{}", r.id));
        assert!(s.error.is_some_and(|e| e.len() < 2 * CAP_BYTES));
    }
}
