//! `POST /api/v1/alerts/alertmanager`: the Alertmanager webhook receiver.
//!
//! Answers 200 only once the accepted runs are durably queued; duplicates (re-sends, HA peers,
//! restarts) are acknowledged without a second run. 400 for malformed payloads, 413 past the
//! body limit, 503 with Retry-After when the queue is full, so Alertmanager retries and nothing
//! is dropped.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::daemon::Daemon;
use crate::trigger::alert::Notification;

use super::{accept_error, error};

pub async fn receive(State(d): State<Arc<Daemon>>, body: Bytes) -> Response {
    let started = std::time::Instant::now();
    let response = answer(&d, body).await;
    d.metrics.webhook(started.elapsed().as_secs_f64());
    response
}

async fn answer(d: &Arc<Daemon>, body: Bytes) -> Response {
    let notification = match Notification::from_json(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let daemon = d.clone();
    // Store writes flush to disk: keep them off the async workers.
    let outcome =
        tokio::task::spawn_blocking(move || daemon.accept_notification(&notification)).await;
    match outcome {
        Ok(Ok(o)) => {
            tracing::info!(
                accepted = o.accepted.len(),
                duplicates = o.duplicates,
                unmatched = o.unmatched,
                verified = o.verified,
                "alert notification"
            );
            (StatusCode::OK, axum::Json(o)).into_response()
        }
        Ok(Err(e)) => accept_error(e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("receiver failed: {e}"),
        ),
    }
}
