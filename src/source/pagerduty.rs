//! The PagerDuty v3 webhook preset (`kind: pagerduty`): an incident event becomes an alert.
//!
//! Labels: `alertname=PagerDutyIncident`, `service` (the service's summary), `service_id`,
//! `urgency`, `priority` (its summary; absent when the incident has none), `title`, `incident`
//! (the incident id) and `event_type`; annotation `html_url`. The fingerprint is the incident
//! id, so every event of one incident is one episode; it starts at the incident's `created_at`
//! and resolves on `incident.resolved`. Events about other resources, and incident events whose
//! data is not the incident itself (notes, responders, status updates), are ignored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::source::mapping::{MapError, check_value, parse_time, scalar_at};
use crate::trigger::alert::{Alert, AlertStatus};

/// The `alertname` of every PagerDuty incident alert.
pub const ALERTNAME: &str = "PagerDutyIncident";

/// The delivery id of an event: its `/event/id`.
pub fn delivery_id(body: &Json) -> Option<&str> {
    body.pointer("/event/id").and_then(Json::as_str)
}

/// Maps a PagerDuty v3 webhook body; None for events that are not about an incident.
pub fn map(body: &Json, received: DateTime<Utc>) -> Result<Option<Alert>, MapError> {
    if body.pointer("/event").is_none_or(|e| !e.is_object()) {
        return Err(MapError::Shape(
            "not a PagerDuty v3 webhook: the body has no `event` object".into(),
        ));
    }
    let resource = body.pointer("/event/resource_type").and_then(Json::as_str);
    let data_type = body.pointer("/event/data/type").and_then(Json::as_str);
    if resource != Some("incident") || data_type != Some("incident") {
        return Ok(None);
    }
    let get = |pointer: &str, what: &str| scalar_at(body, pointer, what);
    let event_type = get("/event/event_type", "label `event_type`")?;
    let incident = get("/event/data/id", "label `incident`")?;
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_string(), ALERTNAME.to_string());
    labels.insert(
        "service".into(),
        get("/event/data/service/summary", "label `service`")?,
    );
    labels.insert(
        "service_id".into(),
        get("/event/data/service/id", "label `service_id`")?,
    );
    labels.insert(
        "urgency".into(),
        get("/event/data/urgency", "label `urgency`")?,
    );
    labels.insert("title".into(), get("/event/data/title", "label `title`")?);
    // An incident without a priority carries `"priority": null` (or none at all).
    if body
        .pointer("/event/data/priority")
        .is_some_and(|p| !p.is_null())
    {
        labels.insert(
            "priority".into(),
            get("/event/data/priority/summary", "label `priority`")?,
        );
    }
    labels.insert("incident".into(), incident.clone());
    labels.insert("event_type".into(), event_type.clone());
    let mut annotations = BTreeMap::new();
    if let Some(url) = body.pointer("/event/data/html_url").and_then(Json::as_str) {
        annotations.insert("html_url".to_string(), url.to_string());
    }
    for (name, value) in labels.iter().chain(annotations.iter()) {
        check_value(value, &format!("`{name}`"))?;
    }
    let what = "`starts_at` (from /event/data/created_at)";
    let starts_at = parse_time(&get("/event/data/created_at", what)?, what)?;
    let status = if event_type == "incident.resolved" {
        AlertStatus::Resolved
    } else {
        AlertStatus::Firing
    };
    Ok(Some(Alert {
        status,
        labels,
        annotations,
        starts_at,
        ends_at: (status == AlertStatus::Resolved).then_some(received),
        generator_url: String::new(),
        fingerprint: incident,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fixture(name: &str) -> Json {
        let path = format!(
            "{}/tests/fixtures/pagerduty/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("fixture");
        serde_json::from_str(&text).expect("fixture is JSON")
    }

    fn received() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn alert(name: &str) -> Alert {
        map(&fixture(name), received())
            .expect("maps")
            .expect("an incident event")
    }

    #[test]
    fn a_triggered_incident_fires() {
        let a = alert("incident.triggered.json");
        let labels: Vec<(&str, &str)> = a
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("alertname", "PagerDutyIncident"),
                ("event_type", "incident.triggered"),
                ("incident", "PGR0VU2"),
                ("priority", "P1"),
                ("service", "API Service"),
                ("service_id", "PF9KMXH"),
                ("title", "A little bump in the road"),
                ("urgency", "high"),
            ]
        );
        assert_eq!(
            a.annotations["html_url"],
            "https://acme.pagerduty.com/incidents/PGR0VU2"
        );
        assert_eq!(a.fingerprint, "PGR0VU2");
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.starts_at.to_rfc3339(), "2020-04-09T15:16:27+00:00");
        assert_eq!(a.ends_at, None);
        assert_eq!(
            delivery_id(&fixture("incident.triggered.json")),
            Some("5ac64822-4adc-4fda-ade0-410becf0de4f")
        );
    }

    #[test]
    fn acknowledged_still_fires_and_resolved_resolves_the_same_episode() {
        let ack = alert("incident.acknowledged.json");
        assert_eq!(ack.status, AlertStatus::Firing);
        assert_eq!(ack.labels["event_type"], "incident.acknowledged");
        assert!(!ack.labels.contains_key("priority"), "priority is null");
        let resolved = alert("incident.resolved.json");
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(resolved.ends_at, Some(received()));
        assert_eq!(resolved.fingerprint, ack.fingerprint);
    }

    #[test]
    fn other_events_are_ignored() {
        assert_eq!(map(&fixture("service.updated.json"), received()), Ok(None));
        let mut note = fixture("incident.triggered.json");
        if let Some(t) = note.pointer_mut("/event/data/type") {
            *t = "incident_note".into();
        }
        assert_eq!(map(&note, received()), Ok(None));
    }

    #[test]
    fn malformed_incidents_name_the_field() {
        assert_eq!(
            map(&serde_json::json!({"messages": []}), received())
                .expect_err("not v3")
                .to_string(),
            "not a PagerDuty v3 webhook: the body has no `event` object"
        );
        let mut body = fixture("incident.triggered.json");
        if let Some(d) = body
            .pointer_mut("/event/data")
            .and_then(Json::as_object_mut)
        {
            d.remove("urgency");
        }
        assert_eq!(
            map(&body, received()).expect_err("no urgency").to_string(),
            "label `urgency`: the body has no value at /event/data/urgency"
        );
        let mut body = fixture("incident.triggered.json");
        if let Some(t) = body.pointer_mut("/event/data/title") {
            *t = "a\u{0}b".into();
        }
        assert_eq!(
            map(&body, received()).expect_err("NUL").to_string(),
            "`title` contains a NUL byte"
        );
        let mut body = fixture("incident.triggered.json");
        if let Some(t) = body.pointer_mut("/event/data/created_at") {
            *t = "now".into();
        }
        assert_eq!(
            map(&body, received()).expect_err("time").to_string(),
            "`starts_at` (from /event/data/created_at): `now` is not an RFC 3339 time such as 2024-05-01T12:00:00Z"
        );
    }
}
