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
    /// An alert from a source (Alertmanager, Grafana, a defined source).
    Alert {
        /// The source the alert came from; runs stored before sources existed were all
        /// Alertmanager's.
        #[serde(default = "crate::trigger::source::default_source")]
        source: String,
        /// The alert's fingerprint (namespaced `source/fingerprint` for sources other than
        /// Alertmanager).
        fingerprint: String,
        /// When the alert started (full precision).
        starts_at: DateTime<Utc>,
        /// The alert's labels.
        labels: BTreeMap<String, String>,
    },
}

impl Cause {
    /// The cause of a run for an alert of `source`: its fingerprint, when it started, its labels.
    pub fn of_alert(source: &str, alert: &Alert) -> Cause {
        Cause::Alert {
            source: source.to_string(),
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

    /// The source of an alert cause (None for other causes).
    pub fn source(&self) -> Option<&str> {
        match self {
            Cause::Alert { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The kind as lists show it: `manual`, `schedule`, `alert`, or `alert (SOURCE)` for an
    /// alert of a source other than Alertmanager, so existing lists read as before.
    pub fn shown_kind(&self) -> String {
        match self.source() {
            Some(s) if s != crate::trigger::source::ALERTMANAGER => format!("alert ({s})"),
            _ => self.kind().to_string(),
        }
    }

    /// `manual`, `schedule` or `alert`.
    pub fn kind(&self) -> &'static str {
        self.which().name()
    }

    /// The kind of this cause, as filters name it.
    pub fn which(&self) -> CauseKind {
        match self {
            Cause::Manual { .. } => CauseKind::Manual,
            Cause::Schedule { .. } => CauseKind::Schedule,
            Cause::Alert { .. } => CauseKind::Alert,
        }
    }
}

/// The kind of a run's cause, as reports and run lists filter by it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// Started by hand (with or without an alert attached).
    Manual,
    /// A schedule fire.
    Schedule,
    /// An Alertmanager alert.
    Alert,
}

impl CauseKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [CauseKind; 3] = [CauseKind::Manual, CauseKind::Schedule, CauseKind::Alert];

    /// `manual`, `schedule` or `alert`.
    pub fn name(self) -> &'static str {
        match self {
            CauseKind::Manual => "manual",
            CauseKind::Schedule => "schedule",
            CauseKind::Alert => "alert",
        }
    }

    /// The kinds of a comma-separated list (`manual,schedule`), without repeats; empty parts
    /// are ignored. Errors name the unknown value and the valid ones.
    pub fn parse_list(list: &str) -> Result<Vec<CauseKind>, String> {
        let mut out: Vec<CauseKind> = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let kind = part.parse::<CauseKind>()?;
            if !out.contains(&kind) {
                out.push(kind);
            }
        }
        Ok(out)
    }

    /// Whether a cause passes a filter of kinds (an empty filter passes all).
    pub fn admits(filter: &[CauseKind], kind: CauseKind) -> bool {
        filter.is_empty() || filter.contains(&kind)
    }
}

impl std::str::FromStr for CauseKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CauseKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown cause `{s}`; expected manual, schedule or alert"))
    }
}

impl std::fmt::Display for CauseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

#[cfg(test)]
mod tests {
    use super::{BTreeMap, Cause, CauseKind};

    #[test]
    fn an_alert_cause_stored_before_sources_reads_back_as_alertmanager() {
        let old = r#"{"kind":"alert","fingerprint":"1b82","starts_at":"2026-11-28T15:34:26Z","labels":{}}"#;
        let cause: Cause = serde_json::from_str(old).expect("old cause");
        assert_eq!(cause.source(), Some(crate::trigger::source::ALERTMANAGER));
        assert_eq!(cause.shown_kind(), "alert");
        let written = serde_json::to_value(&cause).expect("json");
        assert_eq!(written["source"], "alertmanager", "always written");
        let grafana = Cause::Alert {
            source: crate::trigger::source::GRAFANA.into(),
            fingerprint: "grafana/1b82".into(),
            starts_at: chrono::Utc::now(),
            labels: BTreeMap::new(),
        };
        assert_eq!(grafana.shown_kind(), "alert (grafana)");
    }

    #[test]
    fn cause_lists_parse_and_unknown_ones_name_the_valid_kinds() {
        assert_eq!(
            CauseKind::parse_list("manual, schedule,,manual"),
            Ok(vec![CauseKind::Manual, CauseKind::Schedule])
        );
        assert_eq!(CauseKind::parse_list(""), Ok(Vec::new()));
        let e = CauseKind::parse_list("alert,cron").expect_err("cron is no cause");
        assert!(
            e.contains("`cron`") && e.contains("manual, schedule or alert"),
            "{e}"
        );
        assert!(CauseKind::admits(&[], CauseKind::Alert));
        assert!(!CauseKind::admits(&[CauseKind::Manual], CauseKind::Alert));
    }
}
