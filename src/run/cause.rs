//! What started a run, and the alert it acts on.

use std::collections::BTreeMap;
use std::sync::Arc;

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
///
/// The notification is shared (`Arc`): the runs of one notification hold one copy of it, however
/// big its annotations are. The store keeps each notification once and writes a run's context
/// with `notification_ref` (the stored notification's hash) instead of the notification; every
/// record the store gives out has the notification back and no ref.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "AlertContextWire")]
pub struct AlertContext {
    /// The alert.
    pub alert: Alert,
    /// Its notification (receiver, group labels, ...), without the other alerts.
    pub notification: Arc<Notification>,
    /// Only inside the store: the hash of the stored notification this context refers to; when
    /// set, `notification` is a placeholder and the context is written with the ref alone.
    pub notification_ref: Option<String>,
}

impl AlertContext {
    /// A context of `alert` carried by `notification` (shared between the runs it starts).
    pub fn new(alert: Alert, notification: Arc<Notification>) -> AlertContext {
        AlertContext {
            alert,
            notification,
            notification_ref: None,
        }
    }
}

impl Serialize for AlertContext {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("AlertContext", 2)?;
        st.serialize_field("alert", &self.alert)?;
        // The ref replaces the notification, never both: a stored record holds only the ref.
        match &self.notification_ref {
            Some(r) => st.serialize_field("notification_ref", r)?,
            None => st.serialize_field("notification", &self.notification)?,
        }
        st.end()
    }
}

/// An alert context as written: with its notification inline (API answers, records of schema 3
/// and before) or with a ref to the notification the store keeps (schema 4).
#[derive(Deserialize)]
struct AlertContextWire {
    alert: Alert,
    #[serde(default)]
    notification: Option<Arc<Notification>>,
    #[serde(default)]
    notification_ref: Option<String>,
}

impl TryFrom<AlertContextWire> for AlertContext {
    type Error = String;
    fn try_from(w: AlertContextWire) -> Result<Self, Self::Error> {
        match (w.notification, w.notification_ref) {
            (Some(n), _) => Ok(AlertContext::new(w.alert, n)),
            (None, Some(r)) => Ok(AlertContext {
                alert: w.alert,
                notification: placeholder(),
                notification_ref: Some(r),
            }),
            (None, None) => Err("an alert context without its notification".into()),
        }
    }
}

/// The notification of a context read with a ref, until the store puts the stored one there.
fn placeholder() -> Arc<Notification> {
    static EMPTY: std::sync::LazyLock<Arc<Notification>> = std::sync::LazyLock::new(|| {
        Arc::new(Notification {
            version: String::new(),
            group_key: String::new(),
            truncated_alerts: 0,
            status: crate::trigger::alert::AlertStatus::Firing,
            receiver: String::new(),
            group_labels: BTreeMap::new(),
            common_labels: BTreeMap::new(),
            common_annotations: BTreeMap::new(),
            external_url: String::new(),
            alerts: Vec::new(),
        })
    });
    EMPTY.clone()
}

#[cfg(test)]
mod tests {
    use super::{AlertContext, Arc, BTreeMap, Cause, CauseKind};
    use crate::trigger::alert::Notification;

    fn context() -> AlertContext {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/alertmanager/firing.json"
        ))
        .expect("the firing fixture");
        let n = Notification::from_json(&body).expect("decodes");
        AlertContext::new(n.alerts[0].clone(), Arc::new(n.without_alerts()))
    }

    #[test]
    fn a_context_is_written_whole_or_with_its_ref_alone_and_reads_back_either_way() {
        let ctx = context();
        // As schema 3 stored it and the API answers: the notification inline, no ref.
        let whole = serde_json::to_value(&ctx).expect("json");
        assert!(whole["notification"].is_object());
        assert!(whole.get("notification_ref").is_none());
        let back: AlertContext = serde_json::from_value(whole).expect("decodes");
        assert_eq!(back, ctx);
        // As schema 4 stores it: the ref alone, read back with a placeholder for the store to
        // replace.
        let stored = AlertContext {
            notification_ref: Some("ab".repeat(32)),
            ..ctx.clone()
        };
        let v = serde_json::to_value(&stored).expect("json");
        assert!(v.get("notification").is_none(), "{v}");
        let read: AlertContext = serde_json::from_value(v).expect("decodes");
        assert_eq!(read.notification_ref, stored.notification_ref);
        assert_eq!(read.alert, ctx.alert);
        let neither = serde_json::json!({"alert": serde_json::to_value(&ctx.alert).expect("json")});
        let e = serde_json::from_value::<AlertContext>(neither).expect_err("nothing to read");
        assert!(e.to_string().contains("without its notification"), "{e}");
    }

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
