//! Grafana Alerting's webhook contact point payload (version "1"), decoded into a [`Notification`].
//!
//! Grafana's payload is Alertmanager's plus a few fields. Each alert's extras (`valueString`,
//! `dashboardURL`, `panelURL`, `silenceURL`, `imageURL`, and `values` as compact JSON text) become
//! annotations of that alert under their own names, so runbooks read them as `alert.annotations.*`;
//! a real annotation of the same name wins, and empty extras are left out. The notification keeps
//! `version: "1"`, so a run's `notification.version` tells a Grafana delivery from an Alertmanager
//! one (nothing downstream of decoding looks at the version). The top-level `orgId`, `title`,
//! `state` and `message` are checked for type and dropped: `state` repeats `status`, and `title` and
//! `message` are text templated for humans.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::trigger::alert::{
    Alert, AlertStatus, Notification, PayloadError, PayloadFormat, check_value, decode_payload,
    deserialize_ends_at, label_fingerprint, null_as_default,
};

/// The annotation names the alert-level extras are stored under, in the order they are added.
pub const EXTRA_ANNOTATIONS: [&str; 6] = [
    "valueString",
    "values",
    "dashboardURL",
    "panelURL",
    "silenceURL",
    "imageURL",
];

/// Decodes a Grafana webhook body, with an error saying what is wrong and where.
pub fn decode(body: &[u8]) -> Result<Notification, PayloadError> {
    let wire: GrafanaWire = decode_payload(body, PayloadFormat::Grafana)?;
    wire.into_notification()
}

/// One webhook notification as Grafana posts it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrafanaWire {
    version: String,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    truncated_alerts: u64,
    status: AlertStatus,
    #[serde(default)]
    receiver: String,
    #[serde(default, deserialize_with = "null_as_default")]
    group_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    common_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL", default)]
    external_url: String,
    #[serde(default, deserialize_with = "null_as_default")]
    alerts: Vec<GrafanaAlertWire>,
    // Checked for type, not kept (see the module documentation).
    #[serde(default, rename = "orgId")]
    _org_id: Option<i64>,
    #[serde(default, rename = "title")]
    _title: Option<String>,
    #[serde(default, rename = "state")]
    _state: Option<String>,
    #[serde(default, rename = "message")]
    _message: Option<String>,
}

/// One alert as Grafana posts it: Alertmanager's fields plus Grafana's extras.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrafanaAlertWire {
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
    #[serde(rename = "silenceURL", default, deserialize_with = "null_as_default")]
    silence_url: String,
    #[serde(rename = "dashboardURL", default, deserialize_with = "null_as_default")]
    dashboard_url: String,
    #[serde(rename = "panelURL", default, deserialize_with = "null_as_default")]
    panel_url: String,
    #[serde(rename = "imageURL", default, deserialize_with = "null_as_default")]
    image_url: String,
    #[serde(default, deserialize_with = "null_as_default")]
    value_string: String,
    #[serde(default)]
    values: serde_json::Value,
}

impl GrafanaAlertWire {
    /// The extras as (annotation name, value), empty ones left out.
    fn extras(&self) -> Vec<(&'static str, String)> {
        let values = match &self.values {
            serde_json::Value::Null => String::new(),
            serde_json::Value::Object(m) if m.is_empty() => String::new(),
            v => v.to_string(),
        };
        [
            ("valueString", self.value_string.clone()),
            ("values", values),
            ("dashboardURL", self.dashboard_url.clone()),
            ("panelURL", self.panel_url.clone()),
            ("silenceURL", self.silence_url.clone()),
            ("imageURL", self.image_url.clone()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }
}

impl GrafanaWire {
    fn into_notification(self) -> Result<Notification, PayloadError> {
        let mut extras = Vec::with_capacity(self.alerts.len());
        let mut alerts = Vec::with_capacity(self.alerts.len());
        for a in self.alerts {
            extras.push(a.extras());
            let fingerprint = if a.fingerprint.is_empty() {
                label_fingerprint(&a.labels)
            } else {
                a.fingerprint
            };
            alerts.push(Alert {
                status: a.status,
                labels: a.labels,
                annotations: a.annotations,
                starts_at: a.starts_at,
                ends_at: a.ends_at,
                generator_url: a.generator_url,
                fingerprint,
            });
        }
        let mut notification = Notification {
            version: self.version,
            group_key: self.group_key,
            truncated_alerts: self.truncated_alerts,
            status: self.status,
            receiver: self.receiver,
            group_labels: self.group_labels,
            common_labels: self.common_labels,
            common_annotations: self.common_annotations,
            external_url: self.external_url,
            alerts,
        };
        // The body's own labels and annotations first, at their own paths; then the extras, at
        // theirs, before they are merged into the annotations.
        notification.check_no_nul()?;
        for (i, (alert, extras)) in notification.alerts.iter_mut().zip(extras).enumerate() {
            for (name, value) in extras {
                check_value(&value, format!("alerts[{i}].{name}"), "annotation value")?;
                alert.annotations.entry(name.to_owned()).or_insert(value);
            }
        }
        Ok(notification)
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

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grafana");

    fn read_fixture(name: &str) -> Vec<u8> {
        let path = format!("{DIR}/{name}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path} is missing: {e}"))
    }

    fn fixture_value(name: &str) -> serde_json::Value {
        serde_json::from_slice(&read_fixture(name))
            .unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
    }

    fn fixture(name: &str) -> Notification {
        decode(&read_fixture(name))
            .unwrap_or_else(|e| panic!("fixture {name} does not decode: {e}"))
    }

    fn decode_value(v: &serde_json::Value) -> Result<Notification, PayloadError> {
        decode(&serde_json::to_vec(v).expect("serializable"))
    }

    fn ann<'a>(a: &'a Alert, name: &str) -> Option<&'a str> {
        a.annotations.get(name).map(String::as_str)
    }

    fn nanos(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Nanos, true)
    }

    #[test]
    fn the_firing_fixture_decodes_with_its_labels_times_and_extras() {
        let n = fixture("firing.json");
        assert_eq!(n.version, "1");
        assert_eq!(n.status, AlertStatus::Firing);
        assert_eq!(n.receiver, "My Super Webhook");
        assert_eq!(n.group_key, "{}:{}");
        assert_eq!(n.external_url, "https://play.grafana.org/");
        assert_eq!(n.alerts.len(), 1);
        let a = &n.alerts[0];
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.name(), "High memory usage");
        assert_eq!(a.labels.get("zone").map(String::as_str), Some("us-1"));
        assert_eq!(a.fingerprint, "c6eadffa33fcdf37", "Grafana's own is kept");
        assert_eq!(nanos(&a.starts_at), "2021-10-12T07:51:03.157076000Z");
        assert_eq!(a.ends_at, None);
        assert_eq!(
            a.generator_url,
            "https://play.grafana.org/alerting/1afz29v7z/edit"
        );
        assert_eq!(
            ann(a, "summary"),
            Some("This alert was triggered for zone us-1")
        );
        assert_eq!(ann(a, "values"), Some(r#"{"B":44.23943737541908,"C":1}"#));
        assert!(
            ann(a, "silenceURL").is_some_and(|u| u.contains("alertmanager=grafana")),
            "{a:?}"
        );
        // Empty in the payload, so not there at all.
        assert_eq!(ann(a, "dashboardURL"), None);
        assert_eq!(ann(a, "panelURL"), None);
        assert_eq!(ann(a, "valueString"), None);
        assert_eq!(ann(a, "imageURL"), None);
        assert!(matches_all(
            &[
                Matcher::parse("team=blue").expect("matcher"),
                Matcher::parse(r#"alertname=~"High .*""#).expect("matcher"),
            ],
            &a.labels
        ));
    }

    #[test]
    fn the_resolved_fixture_is_the_same_episode_as_the_firing_one() {
        let firing = fixture("firing.json");
        let resolved = fixture("resolved.json");
        assert_eq!(resolved.status, AlertStatus::Resolved);
        let (f, r) = (&firing.alerts[0], &resolved.alerts[0]);
        assert_eq!(r.status, AlertStatus::Resolved);
        assert_eq!(r.fingerprint, f.fingerprint);
        assert_eq!(r.starts_at, f.starts_at);
        assert_eq!(r.episode().to_string(), f.episode().to_string());
        let ends = r.ends_at.expect("a resolved alert has an endsAt");
        assert_eq!(nanos(&ends), "2021-10-12T08:06:03.157076000Z");
        assert!(ends > r.starts_at);
        assert_eq!(ann(r, "values"), Some(r#"{"B":12.5,"C":0}"#));
    }

    #[test]
    fn the_grouped_fixture_carries_two_distinct_alerts() {
        let n = fixture("grouped.json");
        assert_eq!(n.alerts.len(), 2);
        assert_eq!(
            n.common_labels.get("team").map(String::as_str),
            Some("blue")
        );
        assert!(n.group_labels.is_empty());
        let names: Vec<&str> = n.alerts.iter().map(Alert::name).collect();
        assert_eq!(names, ["High memory usage", "High CPU usage"]);
        let fps: Vec<&str> = n.alerts.iter().map(|a| a.fingerprint.as_str()).collect();
        assert_eq!(fps, ["c6eadffa33fcdf37", "bc97ff14869b13e3"]);
        assert_ne!(
            n.alerts[0].episode().to_string(),
            n.alerts[1].episode().to_string()
        );
        assert_eq!(
            nanos(&n.alerts[1].starts_at),
            "2021-10-12T07:56:03.157076000Z"
        );
        assert!(n.alerts.iter().all(|a| ann(a, "values").is_some()));
    }

    #[test]
    fn the_with_values_fixture_puts_every_extra_in_the_annotations() {
        let n = fixture("with-values.json");
        let a = &n.alerts[0];
        assert_eq!(ann(a, "ann1"), Some("annv1"));
        assert_eq!(
            ann(a, "valueString"),
            Some("[ metric='' labels={} value=14151.331895396988 ]")
        );
        assert_eq!(ann(a, "values"), Some(r#"{"B":44.23943737541908,"C":1}"#));
        assert_eq!(
            ann(a, "dashboardURL"),
            Some("http://localhost/d/abcd?orgId=1")
        );
        assert_eq!(
            ann(a, "panelURL"),
            Some("http://localhost/d/abcd?orgId=1&viewPanel=efgh")
        );
        assert!(
            ann(a, "silenceURL")
                .is_some_and(|u| u.starts_with("http://localhost/alerting/silence/new"))
        );
        assert_eq!(
            ann(a, "imageURL"),
            Some("http://localhost/public/img/attachments/abcd.png")
        );
        assert_eq!(a.annotations.len(), 7);
        // Nanoseconds as Go writes them, kept.
        assert_eq!(a.starts_at.timestamp_subsec_nanos(), 123_456_789);
        assert_eq!(
            a.episode().to_string(),
            "fac0861a85de433a@2025-06-02T08:15:42.123456789Z"
        );
    }

    #[test]
    fn grafana_sender_fingerprints_equal_the_ones_computed_from_the_labels() {
        // grafana/alerting's sender tests expect these for {alertname=alert1, lbl1=val1}.
        let n = fixture("with-values.json");
        assert_eq!(label_fingerprint(&n.alerts[0].labels), "fac0861a85de433a");
        let mut v = fixture_value("with-values.json");
        v["alerts"][0]
            .as_object_mut()
            .expect("alert object")
            .remove("fingerprint");
        let n = decode_value(&v).expect("valid without fingerprint");
        assert_eq!(n.alerts[0].fingerprint, "fac0861a85de433a");
        v["alerts"][0]["fingerprint"] = serde_json::json!("");
        v["alerts"][0]["labels"]["lbl1"] = serde_json::json!("val2");
        let n = decode_value(&v).expect("valid with empty fingerprint");
        assert_eq!(n.alerts[0].fingerprint, "fab6861a85d5eeb5");
    }

    #[test]
    fn a_real_annotation_wins_over_an_extra_of_the_same_name() {
        let mut v = fixture_value("with-values.json");
        v["alerts"][0]["annotations"]["dashboardURL"] = serde_json::json!("https://mine/d/1");
        v["alerts"][0]["annotations"]["values"] = serde_json::json!("mine");
        let n = decode_value(&v).expect("valid");
        let a = &n.alerts[0];
        assert_eq!(ann(a, "dashboardURL"), Some("https://mine/d/1"));
        assert_eq!(ann(a, "values"), Some("mine"));
        assert_eq!(
            ann(a, "panelURL"),
            Some("http://localhost/d/abcd?orgId=1&viewPanel=efgh")
        );
    }

    #[test]
    fn absent_or_null_extras_and_optional_fields_decode_as_empty() {
        let mut v = fixture_value("with-values.json");
        let alert = v["alerts"][0].as_object_mut().expect("alert object");
        for key in ["values", "imageURL", "endsAt", "generatorURL"] {
            alert.remove(key);
        }
        for key in ["valueString", "dashboardURL", "panelURL", "silenceURL"] {
            alert.insert(key.into(), serde_json::Value::Null);
        }
        let obj = v.as_object_mut().expect("object");
        for key in ["orgId", "title", "state", "message", "groupKey", "receiver"] {
            obj.remove(key);
        }
        obj.insert("commonAnnotations".into(), serde_json::Value::Null);
        let n = decode_value(&v).expect("lenient on omissions");
        let a = &n.alerts[0];
        assert_eq!(a.annotations.len(), 1, "{:?}", a.annotations);
        assert_eq!(a.ends_at, None);
        assert!(n.common_annotations.is_empty());
        v["alerts"][0]["values"] = serde_json::json!({});
        let n = decode_value(&v).expect("empty values");
        assert_eq!(ann(&n.alerts[0], "values"), None);
    }

    #[test]
    fn serialized_notifications_keep_version_1_and_the_extras() {
        let n = fixture("with-values.json");
        let json = serde_json::to_value(&n).expect("serializable");
        assert_eq!(json["version"], "1");
        assert_eq!(
            json["alerts"][0]["annotations"]["panelURL"],
            "http://localhost/d/abcd?orgId=1&viewPanel=efgh"
        );
        assert_eq!(json["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    }

    #[test]
    fn wrong_types_are_rejected_with_the_json_path_and_say_grafana() {
        let cases: &[(&str, serde_json::Value, &str, &str)] = &[
            (
                "/orgId",
                serde_json::json!("one"),
                "orgId",
                "invalid type: string \"one\", expected i64",
            ),
            (
                "/title",
                serde_json::json!(7),
                "title",
                "invalid type: integer `7`",
            ),
            (
                "/alerts/0/startsAt",
                serde_json::json!("yesterday"),
                "alerts[0].startsAt",
                "input contains invalid characters",
            ),
            (
                "/alerts/0/valueString",
                serde_json::json!(1.5),
                "alerts[0].valueString",
                "invalid type: floating point `1.5`",
            ),
            (
                "/alerts/0/dashboardURL",
                serde_json::json!(["x"]),
                "alerts[0].dashboardURL",
                "invalid type: sequence",
            ),
            (
                "/alerts/0/labels/lbl1",
                serde_json::json!(1),
                "alerts[0].labels.lbl1",
                "invalid type: integer `1`",
            ),
            (
                "/alerts/0/status",
                serde_json::json!("pending"),
                "alerts[0].status",
                "unknown variant `pending`",
            ),
        ];
        for (pointer, bad, path, message) in cases {
            let mut v = fixture_value("with-values.json");
            *v.pointer_mut(pointer).expect("pointer exists") = bad.clone();
            let err = decode_value(&v).expect_err(pointer);
            match &err {
                PayloadError::Json {
                    format,
                    path: p,
                    message: msg,
                    ..
                } => {
                    assert_eq!(*format, PayloadFormat::Grafana);
                    assert_eq!(p, path, "{err}");
                    assert!(msg.starts_with(message), "{err}");
                }
                other => panic!("{pointer}: unexpected {other:?}"),
            }
            let text = err.to_string();
            assert!(
                text.starts_with("invalid Grafana webhook payload at "),
                "{text}"
            );
            assert!(text.contains(&format!(" at {path} (line ")), "{text}");
        }
    }

    #[test]
    fn truncated_bodies_and_trailing_garbage_are_rejected_with_positions() {
        let body = read_fixture("grouped.json");
        let err = decode(&body[..body.len() / 2]).expect_err("truncated");
        match &err {
            PayloadError::Json { line, message, .. } => {
                assert!(*line > 1, "{err}");
                assert!(message.starts_with("EOF while parsing"), "{err}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.to_string().contains('?'), "{err}");
        let mut body = body;
        body.extend_from_slice(b" {}");
        let err = decode(&body).expect_err("trailing data");
        assert!(err.to_string().contains("trailing characters"), "{err}");
        assert!(decode(b"").is_err());
    }

    #[test]
    fn missing_required_fields_are_named() {
        for (field, pointer) in [
            ("version", ""),
            ("status", ""),
            ("status", "/alerts/0"),
            ("startsAt", "/alerts/0"),
        ] {
            let mut v = fixture_value("firing.json");
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
    fn an_alertmanager_payload_is_sent_to_its_own_route() {
        let am = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/alertmanager/firing.json"
        ))
        .expect("the Alertmanager fixture");
        let err = decode(&am).expect_err("version 4");
        assert_eq!(
            err,
            PayloadError::UnsupportedGrafanaVersion {
                version: "4".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "unsupported Grafana webhook payload version \"4\": untoil understands version \"1\"; \
             version \"4\" is Alertmanager's webhook payload: post it to /api/v1/alerts/alertmanager"
        );
        let mut v = fixture_value("firing.json");
        v["version"] = serde_json::json!("2");
        v["alerts"] = serde_json::json!("not a list");
        let err = decode_value(&v).expect_err("version 2");
        assert_eq!(
            err.to_string(),
            "unsupported Grafana webhook payload version \"2\": untoil understands version \"1\""
        );
        v["version"] = serde_json::json!(1);
        let err = decode_value(&v).expect_err("numeric version");
        assert!(
            err.to_string()
                .starts_with("invalid Grafana webhook payload at version"),
            "{err}"
        );
    }

    #[test]
    fn a_grafana_payload_posted_as_alertmanager_names_the_grafana_route() {
        let err = Notification::from_json(&read_fixture("firing.json")).expect_err("version 1");
        assert_eq!(
            err,
            PayloadError::UnsupportedVersion {
                version: "1".into()
            }
        );
        let text = err.to_string();
        assert!(
            text.starts_with("unsupported Alertmanager webhook payload version \"1\""),
            "{text}"
        );
        assert!(
            text.ends_with("post it to /api/v1/alerts/grafana"),
            "{text}"
        );
    }

    #[test]
    fn nul_bytes_are_rejected_at_their_own_path() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "/alerts/0/labels",
                "lbl1",
                "val1\u{0}; rm -rf /",
                "label value at alerts[0].labels.lbl1",
            ),
            (
                "/alerts/0/annotations",
                "an\u{0}n",
                "x",
                r"annotation name at alerts[0].annotations.an\0n",
            ),
            (
                "/alerts/0",
                "valueString",
                "a\u{0}b",
                "annotation value at alerts[0].valueString",
            ),
            (
                "/alerts/0",
                "dashboardURL",
                "http://x/\u{0}",
                "annotation value at alerts[0].dashboardURL",
            ),
            (
                "/commonLabels",
                "lbl1",
                "\u{0}",
                "label value at commonLabels.lbl1",
            ),
        ];
        for (pointer, name, value, expected) in cases {
            let mut v = fixture_value("with-values.json");
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
        // A NUL inside `values` is escaped in its JSON text, so it is no raw NUL.
        let mut v = fixture_value("with-values.json");
        v["alerts"][0]["values"] = serde_json::json!({"a\u{0}": 1});
        let n = decode_value(&v).expect("escaped");
        assert!(ann(&n.alerts[0], "values").is_some_and(|s| !s.contains('\0')));
    }

    #[test]
    fn every_fixture_decodes_and_none_decodes_as_alertmanager() {
        for name in [
            "firing.json",
            "resolved.json",
            "grouped.json",
            "with-values.json",
        ] {
            let n = fixture(name);
            assert!(!n.alerts.is_empty(), "{name}");
            assert!(
                n.alerts
                    .iter()
                    .all(|a| !a.fingerprint.is_empty() && !a.labels.is_empty()),
                "{name}"
            );
            assert!(
                Notification::from_json(&read_fixture(name)).is_err(),
                "{name}"
            );
        }
    }
}
