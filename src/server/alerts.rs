//! `POST /api/v1/alerts/alertmanager`: the Alertmanager webhook receiver, and
//! `POST /api/v1/alerts/grafana`: Grafana Alerting's webhook contact point (source `grafana`;
//! a signed Grafana contact point is a defined source instead, docs/sources.md).
//!
//! Answers 200 only once the accepted runs are durably queued; duplicates (re-sends, HA peers,
//! restarts) are acknowledged without a second run. 400 for malformed payloads, 413 past the
//! body limit, 503 with Retry-After when the queue is full, so Alertmanager retries and nothing
//! is dropped.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::server::respond::{accept_error, error};
use crate::server::state::Shared;
use crate::trigger::alert::{Notification, PayloadError};
use crate::trigger::grafana;
use crate::trigger::source::{ALERTMANAGER, GRAFANA};

/// Where Alertmanager posts (the one route an `alerts` token may use).
pub const PATH: &str = "/api/v1/alerts/alertmanager";

/// Where Grafana's webhook contact point posts (an `alerts` token may use it too).
pub const GRAFANA_PATH: &str = "/api/v1/alerts/grafana";

/// `POST /api/v1/alerts/alertmanager`.
pub async fn receive(State(s): State<Shared>, body: Bytes) -> Response {
    let started = std::time::Instant::now();
    let response = answer(&s, ALERTMANAGER, Notification::from_json(&body)).await;
    s.engine.metrics.webhook(started.elapsed().as_secs_f64());
    response
}

/// `POST /api/v1/alerts/grafana`.
pub async fn receive_grafana(State(s): State<Shared>, body: Bytes) -> Response {
    let started = std::time::Instant::now();
    let response = answer(&s, GRAFANA, grafana::decode(&body)).await;
    s.engine.metrics.webhook(started.elapsed().as_secs_f64());
    response
}

async fn answer(s: &Shared, source: &str, decoded: Result<Notification, PayloadError>) -> Response {
    let notification = match decoded {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match s.engine.admission.notification(source, &notification).await {
        Ok(o) => {
            tracing::info!(
                accepted = o.accepted.len(),
                duplicates = o.duplicates,
                unmatched = o.unmatched,
                resolved = o.resolved,
                verified = o.verified,
                source,
                "alert notification"
            );
            (StatusCode::OK, axum::Json(o)).into_response()
        }
        Err(e) => accept_error(e),
    }
}
