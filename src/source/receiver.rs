//! A defined source ready to receive: its definition with the secret read and the verifier
//! built, and what one request to it becomes (an alert notification and its delivery), or why
//! it is refused (401: the signature; 400: the body).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use http::HeaderMap;

use crate::source::definition::{Kind, SecretRef, SourceDef, VerifySpec};
use crate::source::pagerduty;
use crate::source::secret::{Secret, SecretError};
use crate::source::verify::{Preset, Verified, Verifier, VerifyError};
use crate::trigger::alert::{AlertStatus, Notification};
use crate::trigger::grafana;

/// A defined source as the server uses it.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// The definition.
    pub def: SourceDef,
    /// Checks signatures; None: the source takes untoil's bearer token (grafana kind only).
    pub verifier: Option<Verifier>,
}

/// Why a source could not be made ready (its secret); never the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The secret could not be read or decoded.
    #[error("source `{source_name}` ({path}): {error}")]
    Secret {
        /// The source.
        source_name: String,
        /// Its file.
        path: String,
        /// What went wrong.
        error: SecretError,
    },
    /// The verification block does not make a working verifier.
    #[error("source `{source_name}` ({path}): {error}")]
    Verify {
        /// The source.
        source_name: String,
        /// Its file.
        path: String,
        /// What is missing.
        error: VerifyError,
    },
}

/// A request the source refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The signature is missing, malformed, stale or wrong (401; nothing runs).
    #[error("signature check failed: {0}")]
    Signature(#[from] VerifyError),
    /// The signature is valid but the body is not what the source expects (400).
    #[error("{0}")]
    Body(String),
}

/// What one accepted request carries.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its alerts (empty when the source ignores this event).
    pub notification: Notification,
    /// The sender's delivery id, when there is one.
    pub delivery_id: Option<String>,
}

impl Receiver {
    /// Reads the source's secret and builds its verifier.
    pub fn build(def: SourceDef) -> Result<Receiver, ReceiverError> {
        let verifier = match &def.verify {
            None => None,
            Some(spec) => Some(verifier(&def, spec)?),
        };
        Ok(Receiver { def, verifier })
    }

    /// Checks a request's signature (when the source has one) and decodes its body.
    pub fn receive(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Received, Refused> {
        let verified = match &self.verifier {
            Some(v) => v.verify(headers, body, now)?,
            None => Verified::default(),
        };
        let mut delivery_id = verified.delivery_id;
        if let Some(h) = &self.def.delivery.id_header {
            delivery_id = headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .filter(|v| !v.is_empty());
        }
        let notification = match self.def.kind {
            Kind::Grafana => grafana::decode(body).map_err(|e| Refused::Body(e.to_string()))?,
            Kind::PagerDuty => {
                let json = json_body(body)?;
                delivery_id = pagerduty::delivery_id(&json).map(str::to_string);
                let alert = pagerduty::map(&json, now).map_err(|e| Refused::Body(e.to_string()))?;
                notification(&self.def.name, alert.into_iter().collect())
            }
            Kind::Webhook => {
                let json = json_body(body)?;
                let alert = match &self.def.map {
                    Some(m) => m
                        .map(&json, delivery_id.as_deref(), now)
                        .map_err(|e| Refused::Body(e.to_string()))?,
                    None => None,
                };
                notification(&self.def.name, alert.into_iter().collect())
            }
        };
        Ok(Received {
            notification,
            delivery_id,
        })
    }
}

fn verifier(def: &SourceDef, spec: &VerifySpec) -> Result<Verifier, ReceiverError> {
    let path = def.path.display().to_string();
    let secret = match &spec.secret {
        SecretRef::File(p) => Secret::from_file(p),
        SecretRef::Env(v) => Secret::from_env(v),
    }
    .map_err(|error| ReceiverError::Secret {
        source_name: def.name.clone(),
        path: path.clone(),
        error,
    })?;
    let preset: Preset = spec.preset.parse().map_err(|_| ReceiverError::Verify {
        source_name: def.name.clone(),
        path: path.clone(),
        error: VerifyError::NotConfigured("unknown preset"),
    })?;
    let mut v = Verifier::new(preset, vec![secret]);
    v.header = spec.header.clone();
    v.prefix = spec.prefix.clone();
    v.timestamp_header = spec.timestamp_header.clone();
    v.tolerance = spec.tolerance;
    v.check().map_err(|error| ReceiverError::Verify {
        source_name: def.name.clone(),
        path,
        error,
    })?;
    Ok(v)
}

/// The body as JSON, or where it is not.
fn json_body(body: &[u8]) -> Result<serde_json::Value, Refused> {
    serde_json::from_slice(body).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full);
        Refused::Body(format!(
            "invalid JSON body (line {}, column {}): {message}",
            e.line(),
            e.column()
        ))
    })
}

/// A notification of a mapped source: its alerts, the source as receiver.
fn notification(source: &str, alerts: Vec<crate::trigger::alert::Alert>) -> Notification {
    let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    };
    Notification {
        version: "4".into(),
        group_key: String::new(),
        truncated_alerts: 0,
        status,
        receiver: source.to_string(),
        group_labels: BTreeMap::new(),
        common_labels: BTreeMap::new(),
        common_annotations: BTreeMap::new(),
        external_url: String::new(),
        alerts,
    }
}

/// The defined sources of a daemon, by name: ready, or why not (a secret that cannot be read
/// keeps that one source answering 503 until it is fixed, never the others).
#[derive(Debug, Default)]
pub struct Receivers {
    by_name: BTreeMap<String, Result<Receiver, String>>,
}

impl Receivers {
    /// Makes every definition of a catalog ready.
    pub fn build(catalog: &crate::source::catalog::SourceCatalog) -> Receivers {
        let by_name = catalog
            .iter()
            .map(|d| {
                let r = Receiver::build(d.clone()).map_err(|e| e.to_string());
                (d.name.clone(), r)
            })
            .collect();
        Receivers { by_name }
    }

    /// The source named `name`: None when undefined, Err when it could not be made ready.
    pub fn get(&self, name: &str) -> Option<Result<&Receiver, &str>> {
        self.by_name
            .get(name)
            .map(|r| r.as_ref().map_err(String::as_str))
    }

    /// Every defined source's name and whether it is ready (the error otherwise).
    pub fn states(&self) -> impl Iterator<Item = (&str, Result<&Receiver, &str>)> {
        self.by_name
            .iter()
            .map(|(n, r)| (n.as_str(), r.as_ref().map_err(String::as_str)))
    }

    /// Whether a source of that name is defined.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}
