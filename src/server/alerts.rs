//! `POST /api/v1/alerts/alertmanager`: the Alertmanager webhook receiver.
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
use crate::trigger::alert::Notification;
use crate::trigger::source::ALERTMANAGER;

/// Where Alertmanager posts (the one route an `alerts` token may use).
pub const PATH: &str = "/api/v1/alerts/alertmanager";

/// `POST /api/v1/alerts/alertmanager`.
pub async fn receive(State(s): State<Shared>, body: Bytes) -> Response {
    let started = std::time::Instant::now();
    let response = answer(&s, body).await;
    s.engine.metrics.webhook(started.elapsed().as_secs_f64());
    response
}

async fn answer(s: &Shared, body: Bytes) -> Response {
    let notification = match Notification::from_json(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match s
        .engine
        .admission
        .notification(ALERTMANAGER, &notification)
        .await
    {
        Ok(o) => {
            tracing::info!(
                accepted = o.accepted.len(),
                duplicates = o.duplicates,
                unmatched = o.unmatched,
                resolved = o.resolved,
                verified = o.verified,
                "alert notification"
            );
            (StatusCode::OK, axum::Json(o)).into_response()
        }
        Err(e) => accept_error(e),
    }
}
