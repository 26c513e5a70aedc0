//! What started a run, and the alert it acts on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::trigger::alert::{Alert, Notification};

/// What started a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// A person, by hand.
    Manual {
        /// Who: the authenticated principal (`anonymous` when the daemon has no authentication;
        /// the operating-system user for a run in the foreground).
        user: String,
        /// The name the request claimed (its body's `user`, the CLI's `$USER`) when it differs
        /// from `user`: recorded beside it, never instead of it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claimed_user: Option<String>,
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
    /// The cause of a run for an alert: its fingerprint, when it started, its labels.
    pub fn of_alert(alert: &Alert) -> Cause {
        Cause::Alert {
            fingerprint: alert.fingerprint.clone(),
            starts_at: alert.starts_at,
            labels: alert.labels.clone(),
        }
    }

    /// Who started a manual run, with the claim beside it (`alice (claimed: bob)`); None for
    /// other causes.
    pub fn requested_by(&self) -> Option<String> {
        match self {
            Cause::Manual { user, claimed_user } => {
                Some(crate::identity::claim::shown(user, claimed_user.as_deref()))
            }
            _ => None,
        }
    }

    /// The `instance` label of the alert that started the run (None for other causes, or an
    /// alert without one).
    pub fn instance(&self) -> Option<&str> {
        match self {
            Cause::Alert { labels, .. } => labels.get("instance").map(String::as_str),
            _ => None,
        }
    }

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
