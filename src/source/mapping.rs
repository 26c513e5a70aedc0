//! A defined source's `map:`: how one JSON request body becomes one alert event.
//!
//! Each mapped value is a [`FieldExpr`]: a JSON Pointer (RFC 6901) into the body, a template in
//! the runbooks' language over `{ body: ... }`, or a literal. Values are data, not commands: a
//! template renders without shell quoting (runbooks quote labels when they interpolate them).
//! What a body cannot give (a missing field, an object where a string belongs, a NUL byte, a
//! value over [`MAX_VALUE`]) is a [`MapError`] naming the label and the pointer, which the
//! endpoint answers with 400.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::exec::render::{Renderer, context};
use crate::runbook::template::Template;
use crate::trigger::alert::{Alert, AlertStatus};

/// Longest mapped value accepted (64 KiB): labels are small; a bigger value is a wrong pointer.
pub const MAX_VALUE: usize = 64 * 1024;

/// One renderer for every mapping: building one registers every helper.
static RENDERER: LazyLock<Renderer> = LazyLock::new(Renderer::new);

/// How one mapped value is computed from the body.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldExpr {
    /// A JSON Pointer into the body (a value starting with `/`).
    Pointer(String),
    /// A template over `{ body: <the body> }` (a value containing `{{`).
    Template(Template),
    /// The text itself.
    Literal(String),
}

/// A test on one field of the body: it holds when the field's value is one of `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// JSON Pointer of the field.
    pub field: String,
    /// The values that make the condition hold (numbers and booleans compared as text).
    pub values: Vec<String>,
}

/// The mapping of a `kind: webhook` source.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// The source's name: the default `alertname`.
    pub source: String,
    /// Label name -> value.
    pub labels: BTreeMap<String, FieldExpr>,
    /// Annotation name -> value.
    pub annotations: BTreeMap<String, FieldExpr>,
    /// The episode's dedupe id; None: the delivery id.
    pub id: Option<FieldExpr>,
    /// When the alert started (RFC 3339); None: when untoil received it.
    pub starts_at: Option<FieldExpr>,
    /// When the event resolves the alert; None: always firing.
    pub resolved: Option<Condition>,
    /// Which events count; None: all. Others are acknowledged and ignored.
    pub when: Option<Condition>,
}

/// Why a body could not be mapped (answered with 400; never contains a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The pointer names nothing in the body.
    #[error("{what}: the body has no value at {pointer}")]
    Missing {
        /// What was being mapped (`label \`repo\``).
        what: String,
        /// The JSON Pointer.
        pointer: String,
    },
    /// The pointer names an object, an array or null.
    #[error("{what}: the value at {pointer} is {found}, expected a string, number or boolean")]
    NotScalar {
        /// What was being mapped.
        what: String,
        /// The JSON Pointer.
        pointer: String,
        /// What was found there.
        found: &'static str,
    },
    /// A template failed to render (a variable missing from the body).
    #[error("{what}: {message}")]
    Template {
        /// What was being mapped.
        what: String,
        /// Why.
        message: String,
    },
    /// The value holds a NUL byte (runbooks interpolate labels into commands).
    #[error("{what} contains a NUL byte")]
    Nul {
        /// What was being mapped.
        what: String,
    },
    /// The value is longer than [`MAX_VALUE`].
    #[error("{what} is {len} bytes long, more than the {MAX_VALUE} allowed")]
    TooLong {
        /// What was being mapped.
        what: String,
        /// Its length.
        len: usize,
    },
    /// `starts_at` is not an RFC 3339 time.
    #[error("{what}: `{value}` is not an RFC 3339 time such as 2024-05-01T12:00:00Z")]
    BadTime {
        /// What was being mapped (with its pointer when it has one).
        what: String,
        /// The value, shortened.
        value: String,
    },
    /// Neither a mapped `id` nor a delivery id.
    #[error("no dedupe id: the mapping has no `id` and the request carries no delivery id")]
    NoId,
    /// The body is not the shape a preset expects.
    #[error("{0}")]
    Shape(String),
}

impl FieldExpr {
    /// Reads a value as written in a source file: `/...` a pointer, `{{` a template, else text.
    pub fn parse(text: &str) -> Result<FieldExpr, String> {
        if text.starts_with('/') {
            check_pointer(text)?;
            Ok(FieldExpr::Pointer(text.to_string()))
        } else if text.contains("{{") {
            Template::compile(text)
                .map(FieldExpr::Template)
                .map_err(|e| e.message)
        } else {
            Ok(FieldExpr::Literal(text.to_string()))
        }
    }

    /// The value for `body`; `what` names it in errors.
    pub fn eval(&self, body: &Json, what: &str) -> Result<String, MapError> {
        let value = match self {
            FieldExpr::Pointer(p) => scalar_at(body, p, what)?,
            FieldExpr::Template(t) => {
                let ctx = context(serde_json::json!({ "body": body }));
                RENDERER.plain(t, &ctx).map_err(|e| MapError::Template {
                    what: what.to_string(),
                    message: e.0,
                })?
            }
            FieldExpr::Literal(s) => s.clone(),
        };
        check_value(&value, what)?;
        Ok(value)
    }

    /// The pointer, when it is one (for messages).
    fn pointer(&self) -> Option<&str> {
        match self {
            FieldExpr::Pointer(p) => Some(p),
            _ => None,
        }
    }
}

/// Checks a JSON Pointer's syntax (RFC 6901): starts with `/`, `~` only as `~0` or `~1`.
pub fn check_pointer(p: &str) -> Result<(), String> {
    if !p.is_empty() && !p.starts_with('/') {
        return Err("a JSON Pointer starts with `/`".into());
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(
                "`~` in a JSON Pointer must be written `~0`, and `/` inside a key `~1`".into(),
            );
        }
    }
    Ok(())
}

/// The scalar at `pointer` as text: strings as they are, numbers and booleans written out.
pub fn scalar_at(body: &Json, pointer: &str, what: &str) -> Result<String, MapError> {
    match body.pointer(pointer) {
        None => Err(MapError::Missing {
            what: what.to_string(),
            pointer: pointer.to_string(),
        }),
        Some(v) => scalar_text(v).ok_or_else(|| MapError::NotScalar {
            what: what.to_string(),
            pointer: pointer.to_string(),
            found: json_kind(v),
        }),
    }
}

/// A scalar as text; None for null, objects and arrays.
fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Null | Json::Array(_) | Json::Object(_) => None,
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Refuses NUL bytes and values over [`MAX_VALUE`].
pub fn check_value(value: &str, what: &str) -> Result<(), MapError> {
    if value.contains('\0') {
        return Err(MapError::Nul {
            what: what.to_string(),
        });
    }
    if value.len() > MAX_VALUE {
        return Err(MapError::TooLong {
            what: what.to_string(),
            len: value.len(),
        });
    }
    Ok(())
}

/// Parses an RFC 3339 time; `what` names the field (and its pointer) in the error.
pub fn parse_time(text: &str, what: &str) -> Result<DateTime<Utc>, MapError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| MapError::BadTime {
            what: what.to_string(),
            value: text.chars().take(64).collect(),
        })
}

impl Condition {
    /// Whether the body's field holds one of the values; a missing or non-scalar field does not.
    pub fn holds(&self, body: &Json) -> bool {
        body.pointer(&self.field)
            .and_then(scalar_text)
            .is_some_and(|v| self.values.contains(&v))
    }
}

impl Mapping {
    /// Maps one body: None when `when` does not hold (the event is ignored).
    ///
    /// The fingerprint is the id (the source namespaces it at admission), `alertname` defaults
    /// to the source's name, and a resolved event ends at `received`.
    pub fn map(
        &self,
        body: &Json,
        delivery_id: Option<&str>,
        received: DateTime<Utc>,
    ) -> Result<Option<Alert>, MapError> {
        if let Some(when) = &self.when
            && !when.holds(body)
        {
            return Ok(None);
        }
        let mut labels = BTreeMap::new();
        for (name, expr) in &self.labels {
            labels.insert(name.clone(), expr.eval(body, &what("label", name, expr))?);
        }
        labels
            .entry("alertname".to_string())
            .or_insert_with(|| self.source.clone());
        let mut annotations = BTreeMap::new();
        for (name, expr) in &self.annotations {
            annotations.insert(
                name.clone(),
                expr.eval(body, &what("annotation", name, expr))?,
            );
        }
        let fingerprint = match (&self.id, delivery_id) {
            (Some(expr), _) => expr.eval(body, &what_field("id", expr))?,
            (None, Some(id)) => {
                check_value(id, "the delivery id")?;
                id.to_string()
            }
            (None, None) => return Err(MapError::NoId),
        };
        if fingerprint.is_empty() {
            return Err(MapError::Shape("the dedupe id is empty".into()));
        }
        let starts_at = match &self.starts_at {
            Some(expr) => {
                let w = what_field("starts_at", expr);
                parse_time(&expr.eval(body, &w)?, &w)?
            }
            None => received,
        };
        let status = match &self.resolved {
            Some(c) if c.holds(body) => AlertStatus::Resolved,
            _ => AlertStatus::Firing,
        };
        Ok(Some(Alert {
            status,
            labels,
            annotations,
            starts_at,
            ends_at: (status == AlertStatus::Resolved).then_some(received),
            generator_url: String::new(),
            fingerprint,
        }))
    }
}

/// "label `repo`" (with " at /pointer" for pointers, so messages say where in the body).
fn what(kind: &str, name: &str, expr: &FieldExpr) -> String {
    match expr.pointer() {
        Some(p) => format!("{kind} `{name}` (from {p})"),
        None => format!("{kind} `{name}`"),
    }
}

fn what_field(field: &str, expr: &FieldExpr) -> String {
    match expr.pointer() {
        Some(p) => format!("`{field}` (from {p})"),
        None => format!("`{field}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn expr(s: &str) -> FieldExpr {
        FieldExpr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn received() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn mapping() -> Mapping {
        Mapping {
            source: "ci".into(),
            labels: [("repo".to_string(), expr("/repo/name"))].into(),
            annotations: BTreeMap::new(),
            id: None,
            starts_at: None,
            resolved: None,
            when: None,
        }
    }

    #[test]
    fn values_are_pointers_templates_or_literals() {
        assert_eq!(expr("/a/b"), FieldExpr::Pointer("/a/b".into()));
        assert!(matches!(expr("x-{{body.a}}"), FieldExpr::Template(_)));
        assert_eq!(expr("plain"), FieldExpr::Literal("plain".into()));
        assert_eq!(
            FieldExpr::parse("/a~2b"),
            Err("`~` in a JSON Pointer must be written `~0`, and `/` inside a key `~1`".into())
        );
        assert!(FieldExpr::parse("{{#if}}").is_err());
        assert!(check_pointer("/a~0b/c~1d").is_ok());
    }

    #[test]
    fn a_body_maps_to_an_alert_with_defaults() {
        let body = serde_json::json!({"repo": {"name": "x", "n": 3, "ok": true}});
        let mut m = mapping();
        m.labels.insert("n".into(), expr("/repo/n"));
        m.labels.insert("ok".into(), expr("/repo/ok"));
        m.labels
            .insert("t".into(), expr("{{body.repo.name}}-{{body.repo.n}}"));
        m.annotations.insert("lit".into(), expr("hello"));
        let a = m
            .map(&body, Some("d-1"), received())
            .expect("maps")
            .expect("not ignored");
        assert_eq!(a.labels["alertname"], "ci");
        assert_eq!(a.labels["repo"], "x");
        assert_eq!(a.labels["n"], "3");
        assert_eq!(a.labels["ok"], "true");
        assert_eq!(a.labels["t"], "x-3");
        assert_eq!(a.annotations["lit"], "hello");
        assert_eq!(a.fingerprint, "d-1");
        assert_eq!(a.starts_at, received());
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.ends_at, None);
    }

    #[test]
    fn templates_are_not_shell_quoted() {
        let body = serde_json::json!({"repo": {"name": "it's a; $(x)"}});
        let mut m = mapping();
        m.labels.insert("t".into(), expr("{{body.repo.name}}"));
        let a = m
            .map(&body, Some("d"), received())
            .expect("maps")
            .expect("not ignored");
        assert_eq!(a.labels["t"], "it's a; $(x)");
    }

    #[test]
    fn bad_bodies_name_the_label_and_the_pointer() {
        let m = mapping();
        let err = |body: Json| {
            m.map(&body, Some("d"), received())
                .expect_err("fails")
                .to_string()
        };
        assert_eq!(
            err(serde_json::json!({})),
            "label `repo` (from /repo/name): the body has no value at /repo/name"
        );
        assert_eq!(
            err(serde_json::json!({"repo": {"name": {"a": 1}}})),
            "label `repo` (from /repo/name): the value at /repo/name is an object, expected a string, number or boolean"
        );
        assert_eq!(
            err(serde_json::json!({"repo": {"name": null}})),
            "label `repo` (from /repo/name): the value at /repo/name is null, expected a string, number or boolean"
        );
        assert_eq!(
            err(serde_json::json!({"repo": {"name": "a\u{0}b"}})),
            "label `repo` (from /repo/name) contains a NUL byte"
        );
        assert_eq!(
            err(serde_json::json!({"repo": {"name": "x".repeat(MAX_VALUE + 1)}})),
            "label `repo` (from /repo/name) is 65537 bytes long, more than the 65536 allowed"
        );
        let mut t = mapping();
        t.labels.insert("t".into(), expr("{{body.nope}}"));
        let e = t
            .map(
                &serde_json::json!({"repo": {"name": "x"}}),
                Some("d"),
                received(),
            )
            .expect_err("fails")
            .to_string();
        assert_eq!(
            e,
            "label `t`: template `{{body.nope}}`: variable `body.nope` is not set"
        );
    }

    #[test]
    fn the_id_comes_from_the_mapping_or_the_delivery() {
        let body = serde_json::json!({"repo": {"name": "x"}, "run": {"id": 42}});
        let mut m = mapping();
        assert_eq!(m.map(&body, None, received()), Err(MapError::NoId));
        m.id = Some(expr("/run/id"));
        let a = m
            .map(&body, None, received())
            .expect("maps")
            .expect("not ignored");
        assert_eq!(a.fingerprint, "42");
        m.id = Some(expr("/run/nope"));
        assert_eq!(
            m.map(&body, Some("d"), received())
                .expect_err("fails")
                .to_string(),
            "`id` (from /run/nope): the body has no value at /run/nope"
        );
    }

    #[test]
    fn starts_at_is_rfc3339() {
        let body = serde_json::json!({"repo": {"name": "x"}, "at": "2020-10-05T16:33:24Z", "bad": "yesterday"});
        let mut m = mapping();
        m.starts_at = Some(expr("/at"));
        let a = m
            .map(&body, Some("d"), received())
            .expect("maps")
            .expect("not ignored");
        assert_eq!(a.starts_at.to_rfc3339(), "2020-10-05T16:33:24+00:00");
        m.starts_at = Some(expr("/bad"));
        assert_eq!(
            m.map(&body, Some("d"), received())
                .expect_err("fails")
                .to_string(),
            "`starts_at` (from /bad): `yesterday` is not an RFC 3339 time such as 2024-05-01T12:00:00Z"
        );
    }

    #[test]
    fn when_ignores_and_resolved_resolves() {
        let mut m = mapping();
        m.when = Some(Condition {
            field: "/conclusion".into(),
            values: vec!["failure".into()],
        });
        m.resolved = Some(Condition {
            field: "/action".into(),
            values: vec!["completed".into(), "1".into()],
        });
        let body = |c: &str, a: Json| serde_json::json!({"repo": {"name": "x"}, "conclusion": c, "action": a});
        assert_eq!(
            m.map(&body("success", "x".into()), Some("d"), received()),
            Ok(None)
        );
        assert_eq!(
            m.map(
                &serde_json::json!({"repo": {"name": "x"}}),
                Some("d"),
                received()
            ),
            Ok(None),
            "a missing `when` field does not match"
        );
        let fired = m.map(&body("failure", "requested".into()), Some("d"), received());
        assert_eq!(
            fired.expect("maps").expect("not ignored").status,
            AlertStatus::Firing
        );
        let resolved = m
            .map(&body("failure", "completed".into()), Some("d"), received())
            .expect("maps")
            .expect("not ignored");
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(resolved.ends_at, Some(received()));
        let numeric = m.map(&body("failure", 1.into()), Some("d"), received());
        assert_eq!(
            numeric.expect("maps").expect("not ignored").status,
            AlertStatus::Resolved
        );
    }
}
