//! The Alertmanager webhook payload (version "4") that Alertmanager posts to untoil.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::trigger::key::Episode;

/// Whether an alert (or a whole notification) is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The alert is active.
    Firing,
    /// The alert has ended.
    Resolved,
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        })
    }
}

/// One webhook notification as Alertmanager posts it.
///
/// Maps, strings and `alerts` that are absent or `null` (Go's nil maps and slices) decode as
/// empty; everything present must have the right type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Payload format version; untoil supports only "4".
    pub version: String,
    /// Identifies the alert group (route and group labels).
    #[serde(default)]
    pub group_key: String,
    /// How many alerts Alertmanager left out because of the receiver's `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// Firing if at least one alert of the group fires.
    pub status: AlertStatus,
    /// The Alertmanager receiver that sent this notification.
    #[serde(default)]
    pub receiver: String,
    /// The labels the group is grouped by.
    #[serde(default, deserialize_with = "null_as_default")]
    pub group_labels: BTreeMap<String, String>,
    /// Labels shared by all alerts of the notification.
    #[serde(default, deserialize_with = "null_as_default")]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations shared by all alerts of the notification.
    #[serde(default, deserialize_with = "null_as_default")]
    pub common_annotations: BTreeMap<String, String>,
    /// Link back to the Alertmanager that sent the notification.
    #[serde(rename = "externalURL", default)]
    pub external_url: String,
    /// The alerts of the group.
    #[serde(default, deserialize_with = "null_as_default")]
    pub alerts: Vec<Alert>,
}

/// One alert of a notification.
///
/// When a sender leaves out `fingerprint` (or sends it empty), it is computed from the labels
/// exactly as Alertmanager does (see [`label_fingerprint`]), so it stays stable across deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "AlertWire")]
pub struct Alert {
    /// Whether this alert fires or has resolved.
    pub status: AlertStatus,
    /// The alert's labels (including `alertname`).
    pub labels: BTreeMap<String, String>,
    /// The alert's annotations (summary, runbook, ...).
    pub annotations: BTreeMap<String, String>,
    /// When the alert started, at the precision Alertmanager stamped (up to nanoseconds).
    pub starts_at: DateTime<Utc>,
    /// When the alert ended; None for Alertmanager's zero time `0001-01-01T00:00:00Z`.
    #[serde(serialize_with = "serialize_ends_at")]
    pub ends_at: Option<DateTime<Utc>>,
    /// Link to the source of the alert (e.g. the Prometheus expression).
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's hash of the labels, identifying the alert.
    pub fingerprint: String,
}

/// The alert as it appears on the wire, before defaults are filled in.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertWire {
    status: AlertStatus,
    #[serde(default, deserialize_with = "null_as_default")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    annotations: BTreeMap<String, String>,
    starts_at: DateTime<Utc>,
    #[serde(default, deserialize_with = "deserialize_ends_at")]
    ends_at: Option<DateTime<Utc>>,
    #[serde(rename = "generatorURL", default)]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
}

impl From<AlertWire> for Alert {
    fn from(w: AlertWire) -> Self {
        let fingerprint = if w.fingerprint.is_empty() {
            label_fingerprint(&w.labels)
        } else {
            w.fingerprint
        };
        Alert {
            status: w.status,
            labels: w.labels,
            annotations: w.annotations,
            starts_at: w.starts_at,
            ends_at: w.ends_at,
            generator_url: w.generator_url,
            fingerprint,
        }
    }
}

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the labels sorted by name, each name
/// and value followed by a 0xff byte, as 16 lowercase hex digits (Prometheus `LabelSet.Fingerprint`).
pub fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    format!("{hash:016x}")
}

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`) as Unix seconds.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;
/// Go's zero `time.Time` as Alertmanager writes it.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn is_go_zero_time(t: &DateTime<Utc>) -> bool {
    t.timestamp() == GO_ZERO_TIME_UNIX && t.timestamp_subsec_nanos() == 0
}

pub(crate) fn deserialize_ends_at<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let t = Option::<DateTime<Utc>>::deserialize(d)?;
    Ok(t.filter(|t| !is_go_zero_time(t)))
}

fn serialize_ends_at<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => t.serialize(s),
        None => s.serialize_str(GO_ZERO_TIME),
    }
}

pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Which sender's webhook format a body was decoded as (named in error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    /// Alertmanager's webhook payload, version "4".
    #[default]
    Alertmanager,
    /// Grafana Alerting's webhook contact point payload, version "1".
    Grafana,
}

impl PayloadFormat {
    /// The payload version this format's decoder accepts.
    pub fn version(self) -> &'static str {
        match self {
            PayloadFormat::Alertmanager => "4",
            PayloadFormat::Grafana => "1",
        }
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayloadFormat::Alertmanager => "Alertmanager",
            PayloadFormat::Grafana => "Grafana",
        })
    }
}

/// A webhook body that untoil cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The body is not valid JSON or does not have the payload's shape.
    #[error("invalid {format} webhook payload{} (line {line}, column {column}): {message}", at_path(.path))]
    Json {
        /// The format the body was decoded as.
        format: PayloadFormat,
        /// JSON path of the offending value, e.g. `alerts[0].startsAt` (empty for the root).
        path: String,
        /// 1-based line of the error in the body.
        line: usize,
        /// 1-based column of the error in the body.
        column: usize,
        /// serde_json's description of the problem.
        message: String,
    },
    /// The payload's `version` is not "4".
    #[error(
        "unsupported Alertmanager webhook payload version {version:?}: untoil understands version \"4\"{}",
        route_hint(.version, PayloadFormat::Alertmanager)
    )]
    UnsupportedVersion {
        /// The version the payload declared.
        version: String,
    },
    /// A body posted as a Grafana webhook payload whose `version` is not "1".
    #[error(
        "unsupported Grafana webhook payload version {version:?}: untoil understands version \"1\"{}",
        route_hint(.version, PayloadFormat::Grafana)
    )]
    UnsupportedGrafanaVersion {
        /// The version the payload declared.
        version: String,
    },
    /// A label or annotation name or value contains a NUL byte.
    #[error(
        "{what} at {path} contains a NUL byte; rejected because runbooks interpolate labels into shell commands"
    )]
    NulByte {
        /// JSON path of the label, e.g. `alerts[0].labels.instance`.
        path: String,
        /// What contains it: "label name", "label value", "annotation name" or "annotation value".
        what: &'static str,
    },
}

/// Where to post a payload of the other sender's version instead.
fn route_hint(version: &str, expected: PayloadFormat) -> &'static str {
    match (expected, version) {
        (PayloadFormat::Alertmanager, "1") => {
            "; version \"1\" is Grafana Alerting's webhook payload: post it to /api/v1/alerts/grafana"
        }
        (PayloadFormat::Grafana, "4") => {
            "; version \"4\" is Alertmanager's webhook payload: post it to /api/v1/alerts/alertmanager"
        }
        _ => "",
    }
}

fn at_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

/// Reads only the `version` field, so that a payload of another version is reported as such
/// rather than as whatever shape difference serde trips over first.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default)]
    version: Option<String>,
}

impl Notification {
    /// This notification without its alerts: what a run's alert context carries beside its own
    /// alert (the alerts are not copied only to be dropped).
    pub fn without_alerts(&self) -> Notification {
        Notification {
            version: self.version.clone(),
            group_key: self.group_key.clone(),
            truncated_alerts: self.truncated_alerts,
            status: self.status,
            receiver: self.receiver.clone(),
            group_labels: self.group_labels.clone(),
            common_labels: self.common_labels.clone(),
            common_annotations: self.common_annotations.clone(),
            external_url: self.external_url.clone(),
            alerts: Vec::new(),
        }
    }

    /// Decodes a webhook body, with an error saying what is wrong and where.
    pub fn from_json(body: &[u8]) -> Result<Notification, PayloadError> {
        let notification: Notification = decode_payload(body, PayloadFormat::Alertmanager)?;
        if notification.version != "4" {
            return Err(PayloadError::UnsupportedVersion {
                version: notification.version,
            });
        }
        notification.check_no_nul()?;
        Ok(notification)
    }

    /// Rejects NUL bytes in label and annotation names and values.
    pub(crate) fn check_no_nul(&self) -> Result<(), PayloadError> {
        check_map(&self.group_labels, "groupLabels", "label")?;
        check_map(&self.common_labels, "commonLabels", "label")?;
        check_map(&self.common_annotations, "commonAnnotations", "annotation")?;
        for (i, alert) in self.alerts.iter().enumerate() {
            check_map(&alert.labels, &format!("alerts[{i}].labels"), "label")?;
            check_map(
                &alert.annotations,
                &format!("alerts[{i}].annotations"),
                "annotation",
            )?;
        }
        Ok(())
    }
}

/// Decodes a webhook body of `format` into `T`: a `version` other than the format's is reported
/// first (whatever else is wrong), then shape errors with their JSON path, line and column, then
/// trailing data.
pub(crate) fn decode_payload<T: serde::de::DeserializeOwned>(
    body: &[u8],
    format: PayloadFormat,
) -> Result<T, PayloadError> {
    let mut probe = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, VersionProbe>(&mut probe) {
        Ok(VersionProbe {
            version: Some(version),
        }) if version != format.version() => return Err(unsupported(format, version)),
        // A `version` of the wrong type is reported before any other shape problem.
        Err(e) if e.path().to_string() == "version" => {
            return Err(json_error(format, "version".to_owned(), e.inner()));
        }
        // Anything else (syntax errors included) is reported by the full decode below.
        _ => {}
    }

    let mut de = serde_json::Deserializer::from_slice(body);
    let decoded: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde_path_to_error writes the root as "." and a map key it has not read yet
        // as "?"; neither helps the reader.
        let mut path = e.path().to_string();
        while let Some(parent) = path.strip_suffix(".?") {
            path.truncate(parent.len());
        }
        if path == "." || path == "?" {
            path.clear();
        }
        json_error(format, path, e.inner())
    })?;
    de.end()
        .map_err(|e| json_error(format, String::new(), &e))?;
    Ok(decoded)
}

/// The error for a payload declaring another version than `format` understands.
pub(crate) fn unsupported(format: PayloadFormat, version: String) -> PayloadError {
    match format {
        PayloadFormat::Alertmanager => PayloadError::UnsupportedVersion { version },
        PayloadFormat::Grafana => PayloadError::UnsupportedGrafanaVersion { version },
    }
}

/// Rejects a NUL byte in one value, reported at `path` as `what`.
pub(crate) fn check_value(
    value: &str,
    path: String,
    what: &'static str,
) -> Result<(), PayloadError> {
    if value.contains('\0') {
        return Err(PayloadError::NulByte { path, what });
    }
    Ok(())
}

fn check_map(map: &BTreeMap<String, String>, prefix: &str, kind: &str) -> Result<(), PayloadError> {
    for (name, value) in map {
        let what = match (kind, name.contains('\0'), value.contains('\0')) {
            (_, false, false) => continue,
            ("label", true, _) => "label name",
            ("label", false, true) => "label value",
            (_, true, _) => "annotation name",
            (_, false, true) => "annotation value",
        };
        return Err(PayloadError::NulByte {
            path: format!("{prefix}.{}", name.escape_debug()),
            what,
        });
    }
    Ok(())
}

fn json_error(format: PayloadFormat, path: String, e: &serde_json::Error) -> PayloadError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    PayloadError::Json {
        format,
        path,
        line: e.line(),
        column: e.column(),
        message,
    }
}

impl Alert {
    /// The alert's name label.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// The firing episode this alert belongs to: fingerprint and startsAt at full precision.
    pub fn episode(&self) -> Episode {
        Episode::new(&self.fingerprint, self.starts_at)
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::matcher::{Matcher, matches_all};
    use chrono::SecondsFormat;

    fn m(s: &str) -> Matcher {
        Matcher::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e:?}"))
    }

    const FIRING: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alertmanager/firing.json"
    );
    const RESOLVED: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alertmanager/resolved.json"
    );
    const GROUPED: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alertmanager/firing-grouped.json"
    );

    fn read_fixture(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("fixture {path} is missing: {e}"))
    }

    fn fixture_value(path: &str) -> serde_json::Value {
        serde_json::from_slice(&read_fixture(path))
            .unwrap_or_else(|e| panic!("fixture {path} is not JSON: {e}"))
    }

    fn decode(path: &str) -> Notification {
        Notification::from_json(&read_fixture(path))
            .unwrap_or_else(|e| panic!("fixture {path} does not decode: {e}"))
    }

    fn decode_value(v: &serde_json::Value) -> Result<Notification, PayloadError> {
        Notification::from_json(&serde_json::to_vec(v).expect("serializable"))
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_firing_fixture_decodes_with_its_labels_and_times() {
        let n = decode(FIRING);
        assert_eq!(n.version, "4");
        assert_eq!(n.status, AlertStatus::Firing);
        assert_eq!(n.receiver, "runbook");
        assert_eq!(n.group_key, r#"{}:{alertname="DiskFull"}"#);
        assert_eq!(n.truncated_alerts, 0);
        assert_eq!(n.external_url, "http://127.0.0.1:9093");
        assert_eq!(n.group_labels, labels(&[("alertname", "DiskFull")]));
        assert_eq!(
            n.common_labels.get("severity").map(String::as_str),
            Some("critical")
        );
        assert_eq!(n.alerts.len(), 1);
        let a = &n.alerts[0];
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.name(), "DiskFull");
        assert_eq!(a.labels.get("instance").map(String::as_str), Some("db-1"));
        assert_eq!(
            a.annotations.get("runbook").map(String::as_str),
            Some("disk-cleanup")
        );
        assert_eq!(a.fingerprint, "1b821551d31d953a");
        assert_eq!(a.generator_url, "http://127.0.0.1/fire.sh");
        assert_eq!(
            a.starts_at.to_rfc3339_opts(SecondsFormat::Nanos, true),
            "2026-11-28T14:43:50.307000000Z"
        );
        assert_eq!(a.ends_at, None, "0001-01-01T00:00:00Z means not set");
        assert!(matches_all(
            &[
                m("alertname=DiskFull"),
                m(r#"severity=~"critical|warning""#)
            ],
            &a.labels
        ));
    }

    #[test]
    fn the_resolved_fixture_has_the_same_fingerprint_and_start_as_the_firing_one() {
        let firing = decode(FIRING);
        let resolved = decode(RESOLVED);
        assert_eq!(resolved.status, AlertStatus::Resolved);
        let (f, r) = (&firing.alerts[0], &resolved.alerts[0]);
        assert_eq!(r.status, AlertStatus::Resolved);
        assert_eq!(r.fingerprint, f.fingerprint);
        assert_eq!(r.starts_at, f.starts_at);
        assert_eq!(r.episode().to_string(), f.episode().to_string());
        let ends = r.ends_at.expect("resolved alert has an endsAt");
        assert_eq!(
            ends.to_rfc3339_opts(SecondsFormat::Millis, true),
            "2026-11-28T14:43:53.791Z"
        );
        assert!(ends > r.starts_at);
    }

    #[test]
    fn the_grouped_fixture_carries_three_distinct_alerts() {
        let n = decode(GROUPED);
        assert_eq!(n.alerts.len(), 3);
        assert!(n.alerts.iter().all(|a| a.name() == "HighLatency"));
        let mut keys: Vec<String> = n.alerts.iter().map(|a| a.episode().to_string()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 3, "each alert is its own episode");
        assert!(!n.common_labels.contains_key("instance"));
        let api = [m("service=api"), m(r#"instance=~"inst-[12]""#)];
        let matched = n
            .alerts
            .iter()
            .filter(|a| matches_all(&api, &a.labels))
            .count();
        assert_eq!(matched, 2);
    }

    #[test]
    fn computed_fingerprints_equal_the_ones_alertmanager_sent() {
        for path in [FIRING, RESOLVED, GROUPED] {
            for a in decode(path).alerts {
                assert_eq!(label_fingerprint(&a.labels), a.fingerprint, "in {path}");
            }
        }
    }

    #[test]
    fn a_missing_or_empty_fingerprint_is_computed_from_the_labels() {
        let mut v = fixture_value(FIRING);
        let alert = &mut v["alerts"][0];
        alert
            .as_object_mut()
            .expect("alert object")
            .remove("fingerprint");
        let n = decode_value(&v).expect("valid without fingerprint");
        assert_eq!(n.alerts[0].fingerprint, "1b821551d31d953a");

        v["alerts"][0]["fingerprint"] = serde_json::json!("");
        let n = decode_value(&v).expect("valid with empty fingerprint");
        assert_eq!(n.alerts[0].fingerprint, "1b821551d31d953a");
    }

    #[test]
    fn nanosecond_starts_at_keeps_full_precision() {
        let mut v = fixture_value(FIRING);
        v["alerts"][0]["startsAt"] = serde_json::json!("2026-11-28T15:34:26.695089778Z");
        let n = decode_value(&v).expect("valid");
        let a = &n.alerts[0];
        assert_eq!(a.starts_at.timestamp_subsec_nanos(), 695_089_778);
        assert_eq!(
            a.episode().to_string(),
            "1b821551d31d953a@2026-11-28T15:34:26.695089778Z"
        );
        // The same instant truncated to milliseconds is a different instant and episode.
        let mut truncated = v.clone();
        truncated["alerts"][0]["startsAt"] = serde_json::json!("2026-11-28T15:34:26.695Z");
        let t = decode_value(&truncated).expect("valid");
        assert_ne!(t.alerts[0].starts_at, a.starts_at);
        assert_ne!(t.alerts[0].episode().to_string(), a.episode().to_string());
    }

    #[test]
    fn the_same_instant_written_differently_gives_the_same_episode_key() {
        let base = decode(FIRING);
        let mut v = fixture_value(FIRING);
        v["alerts"][0]["startsAt"] = serde_json::json!("2026-11-28T15:43:50.307000000+01:00");
        let shifted = decode_value(&v).expect("valid");
        assert_eq!(shifted.alerts[0].starts_at, base.alerts[0].starts_at);
        assert_eq!(
            shifted.alerts[0].episode().to_string(),
            base.alerts[0].episode().to_string()
        );
    }

    #[test]
    fn ends_at_zero_time_round_trips_as_none_and_back() {
        let n = decode(FIRING);
        let json = serde_json::to_value(&n).expect("serializable");
        assert_eq!(json["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(
            json["alerts"][0]["generatorURL"],
            "http://127.0.0.1/fire.sh"
        );
        assert_eq!(json["externalURL"], "http://127.0.0.1:9093");
        assert_eq!(json["alerts"][0]["startsAt"], "2026-11-28T14:43:50.307Z");
        let again = decode_value(&json).expect("re-decodes");
        assert_eq!(again, n);

        let resolved = decode(RESOLVED);
        let json = serde_json::to_value(&resolved).expect("serializable");
        assert_eq!(json["alerts"][0]["endsAt"], "2026-11-28T14:43:53.791Z");
        assert_eq!(decode_value(&json).expect("re-decodes"), resolved);
    }

    #[test]
    fn absent_or_null_optional_fields_decode_as_empty() {
        let mut v = fixture_value(FIRING);
        let obj = v.as_object_mut().expect("object");
        for key in [
            "groupKey",
            "truncatedAlerts",
            "receiver",
            "groupLabels",
            "externalURL",
        ] {
            obj.remove(key);
        }
        obj.insert("commonAnnotations".into(), serde_json::Value::Null);
        let alert = v["alerts"][0].as_object_mut().expect("alert object");
        for key in ["annotations", "endsAt", "generatorURL"] {
            alert.remove(key);
        }
        let n = decode_value(&v).expect("lenient on omissions");
        assert!(n.group_labels.is_empty() && n.common_annotations.is_empty());
        assert_eq!(n.group_key, "");
        assert_eq!(n.alerts[0].ends_at, None);
        assert!(n.alerts[0].annotations.is_empty());
        assert_eq!(n.alerts[0].name(), "DiskFull");
    }

    #[test]
    fn a_truncated_body_is_rejected_with_its_position() {
        let body = read_fixture(FIRING);
        let cut = &body[..body.len() / 2];
        let err = Notification::from_json(cut).expect_err("truncated");
        match &err {
            PayloadError::Json { line, message, .. } => {
                assert!(*line > 1, "{err}");
                assert!(message.starts_with("EOF while parsing"), "{err}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("invalid Alertmanager webhook payload"),
            "{err}"
        );
        assert!(
            !err.to_string().contains('?'),
            "no unread-key marker: {err}"
        );
        assert!(Notification::from_json(b"").is_err());
    }

    #[test]
    fn wrong_types_are_rejected_with_the_json_path() {
        let cases: &[(&str, serde_json::Value, &str, &str)] = &[
            (
                "/truncatedAlerts",
                serde_json::json!("zero"),
                "truncatedAlerts",
                "invalid type: string \"zero\", expected u64",
            ),
            (
                "/alerts/0/startsAt",
                serde_json::json!(12345),
                "alerts[0].startsAt",
                "invalid type: integer `12345`",
            ),
            (
                "/alerts/0/startsAt",
                serde_json::json!("yesterday"),
                "alerts[0].startsAt",
                "input contains invalid characters",
            ),
            (
                "/alerts/0/status",
                serde_json::json!("pending"),
                "alerts[0].status",
                "unknown variant `pending`",
            ),
            (
                "/alerts/0/labels",
                serde_json::json!(["a"]),
                "alerts[0].labels",
                "invalid type: sequence",
            ),
            (
                "/alerts/0/labels/instance",
                serde_json::json!(1),
                "alerts[0].labels.instance",
                "invalid type: integer `1`",
            ),
            (
                "/alerts",
                serde_json::json!({}),
                "alerts",
                "invalid type: map, expected a sequence",
            ),
        ];
        for (pointer, bad, path, message) in cases {
            let mut v = fixture_value(FIRING);
            *v.pointer_mut(pointer).expect("pointer exists") = bad.clone();
            let err = decode_value(&v).expect_err(pointer);
            match &err {
                PayloadError::Json {
                    path: p,
                    message: msg,
                    ..
                } => {
                    assert_eq!(p, path, "{err}");
                    assert!(msg.starts_with(message), "{err}");
                }
                other => panic!("{pointer}: unexpected {other:?}"),
            }
            assert!(
                err.to_string().contains(&format!(" at {path} (line ")),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        for (field, pointer) in [
            ("version", ""),
            ("status", "/alerts/0"),
            ("startsAt", "/alerts/0"),
        ] {
            let mut v = fixture_value(FIRING);
            v.pointer_mut(pointer)
                .and_then(serde_json::Value::as_object_mut)
                .expect("object")
                .remove(field);
            let err = decode_value(&v).expect_err(field);
            assert!(
                err.to_string()
                    .contains(&format!("missing field `{field}`")),
                "{err}"
            );
        }
    }

    #[test]
    fn trailing_garbage_after_the_payload_is_rejected() {
        let mut body = read_fixture(FIRING);
        body.extend_from_slice(b" {}");
        let err = Notification::from_json(&body).expect_err("trailing data");
        assert!(err.to_string().contains("trailing characters"), "{err}");
    }

    #[test]
    fn an_unsupported_version_is_rejected_clearly() {
        let mut v = fixture_value(FIRING);
        v["version"] = serde_json::json!("3");
        // Even with another shape, the version is what gets reported.
        v["alerts"] = serde_json::json!("not a list");
        let err = decode_value(&v).expect_err("version 3");
        assert_eq!(
            err,
            PayloadError::UnsupportedVersion {
                version: "3".into()
            }
        );
        assert_eq!(
            err.to_string(),
            r#"unsupported Alertmanager webhook payload version "3": untoil understands version "4""#
        );
        v["version"] = serde_json::json!(4);
        let err = decode_value(&v).expect_err("numeric version");
        assert!(err.to_string().contains("at version"), "{err}");
    }

    #[test]
    fn nul_bytes_in_labels_and_annotations_are_rejected() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "/alerts/0/labels",
                "instance",
                "db-1\u{0}; rm -rf /",
                "label value at alerts[0].labels.instance",
            ),
            (
                "/alerts/0/labels",
                "inst\u{0}ance",
                "db-1",
                r"label name at alerts[0].labels.inst\0ance",
            ),
            (
                "/alerts/0/annotations",
                "summary",
                "a\u{0}b",
                "annotation value at alerts[0].annotations.summary",
            ),
            (
                "/commonLabels",
                "instance",
                "\u{0}",
                "label value at commonLabels.instance",
            ),
        ];
        for (pointer, name, value, expected) in cases {
            let mut v = fixture_value(FIRING);
            v.pointer_mut(pointer)
                .and_then(serde_json::Value::as_object_mut)
                .expect("object")
                .insert((*name).to_owned(), serde_json::json!(value));
            let err = decode_value(&v).expect_err(expected);
            assert!(matches!(err, PayloadError::NulByte { .. }), "{err:?}");
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("{expected} contains a NUL byte")),
                "{text}"
            );
            assert!(!text.contains('\0'));
        }
    }
}
