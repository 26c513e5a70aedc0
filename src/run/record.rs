//! Everything about one run: what the store keeps and reports read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::run::cause::{AlertContext, Cause};
use crate::run::credit::{Baseline, Credit};
use crate::run::id::RunId;
use crate::run::status::RunStatus;
use crate::run::step::StepResult;

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
    pub toil: Option<Credit>,
    /// For alert runs: whether the alert resolved within the runbook's `verify` window.
    #[serde(default)]
    pub verification: Option<Verification>,
    /// For a succeeded alert run of a runbook with `verify`: when its window ends. Without a
    /// verdict by then the run becomes unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_by: Option<DateTime<Utc>>,
    /// The guard key the run counts against (`guards.key`, default the runbook).
    #[serde(default)]
    pub guard_key: Option<String>,
    /// Who approved or denied it, when it needed approval.
    #[serde(default)]
    pub approval: Option<ApprovalDecision>,
    /// Set when a person ran it in the foreground past its guards (`untoil run --bypass-guards`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypassed: Option<Bypass>,
    /// The run this one runs again: an alert episode's run a guard skipped, come back on a
    /// re-send, or a run of an idempotent runbook interrupted by a crash or shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<RunId>,
}

/// A foreground run that skipped its runbook's approval and stateful guards, and who said so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bypass {
    /// The login name of the process owner (its uid's name, not `$USER`).
    pub by: String,
    /// `$USER`, when it names someone else: only a claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<String>,
    /// The guards it ran without (`approval`, `cooldown`, `max_runs`, `trip_after_failures`).
    pub guards: Vec<String>,
}

impl Bypass {
    /// `alice` or `alice (claimed: bob)`, then what was bypassed.
    pub fn describe(&self) -> String {
        let claim = self
            .claimed
            .as_ref()
            .map(|c| format!(" (claimed: {c})"))
            .unwrap_or_default();
        format!(
            "run by {}{claim} without {}",
            self.by,
            self.guards.join(", ")
        )
    }
}

/// A person's decision on a run waiting for approval (or its expiry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// Approved (true) or denied/expired (false).
    pub approved: bool,
    /// Who decided: the authenticated principal ("expired" for a timeout).
    pub by: String,
    /// The name the request claimed (its body's `by`, the CLI's `$USER`) when it differs from
    /// `by`: recorded beside it, never instead of it. Absent in records before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
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
    /// When the alert resolved, as the verdict took it (its `endsAt`, else the resolve's
    /// arrival); None when the window ended with the alert still firing. Absent in records
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    /// Whether its verification window is open: it has a `verify_by` and no verdict yet.
    pub fn awaits_verdict(&self) -> bool {
        self.verify_by.is_some() && self.verification.is_none()
    }

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
                claimed_user: None,
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
            toil: Some(Credit {
                minutes: if i % 10 == 0 { 0.0 } else { 5.0 },
                baseline: Baseline {
                    manual_minutes: 5.0,
                    ..Default::default()
                },
                reason: "synthetic".into(),
                ..Default::default()
            }),
            verification: None,
            verify_by: None,
            guard_key: None,
            approval: None,
            bypassed: None,
            retry_of: None,
        }
    }

    /// The `instance` label of the alert the run acts on: its cause's, or the alert a person
    /// replayed by hand.
    pub fn instance(&self) -> Option<&str> {
        self.cause.instance().or_else(|| {
            let a = self.alert.as_ref()?;
            a.alert.labels.get("instance").map(String::as_str)
        })
    }

    /// The alert a person replayed by hand (`untoil run --alert`): a manual run with an alert
    /// attached, as `replaying alert NAME FINGERPRINT`. None for other runs.
    pub fn replayed_alert(&self) -> Option<String> {
        let a = self
            .alert
            .as_ref()
            .filter(|_| self.cause.kind() == "manual")?;
        let name = a.alert.labels.get("alertname").map_or("?", String::as_str);
        Some(format!("replaying alert {name} {}", a.alert.fingerprint))
    }

    /// Why the run was skipped (a guard's reason), for a skipped run only.
    pub fn skip_reason(&self) -> Option<&str> {
        (self.status == RunStatus::Skipped)
            .then_some(self.error.as_deref())
            .flatten()
    }

    /// Run duration, start to end.
    pub fn duration_ms(&self) -> Option<u64> {
        match (self.started_at, self.finished_at) {
            (Some(s), Some(f)) => Some((f - s).num_milliseconds().max(0) as u64),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::alert::Notification;

    fn with_alert(cause: Cause) -> RunRecord {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/alertmanager/firing.json"
        );
        let bytes = std::fs::read(path).unwrap_or_default();
        let mut notification = Notification::from_json(&bytes).expect("the firing fixture");
        let alert = notification.alerts.remove(0);
        RunRecord {
            cause,
            alert: Some(AlertContext::new(alert, std::sync::Arc::new(notification))),
            ..RunRecord::synthetic(1)
        }
    }

    #[test]
    fn a_manual_run_with_an_alert_is_a_replay_and_an_alert_run_is_not() {
        let manual = with_alert(Cause::Manual {
            user: "alice".into(),
            claimed_user: None,
        });
        assert_eq!(
            manual.replayed_alert().as_deref(),
            Some("replaying alert DiskFull 1b821551d31d953a")
        );
        assert_eq!(manual.instance(), Some("db-1"), "from the attached alert");
        let a = manual.alert.expect("alert").alert;
        let webhook = with_alert(Cause::of_alert(crate::trigger::source::ALERTMANAGER, &a));
        assert_eq!(webhook.replayed_alert(), None);
        assert_eq!(webhook.instance(), Some("db-1"));
        assert_eq!(RunRecord::synthetic(2).replayed_alert(), None);
    }
}
