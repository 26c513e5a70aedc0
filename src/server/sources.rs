//! `POST /api/v1/sources/{name}`: the endpoint of each defined source (docs/sources.md).
//!
//! A signed source authenticates by its signature alone (GitHub-style senders cannot add a
//! bearer token): a missing, malformed, stale or wrong signature is 401 and nothing runs. A
//! source without `verify` (grafana kind only) takes untoil's credentials like the Alertmanager
//! receiver. Then: 400 for a body the source cannot map (with where), 200 once the runs are
//! durable, 200 with `duplicate_delivery` for a delivery id seen before, 503 with Retry-After
//! when the queue is full or the source's secret could not be read.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::server::authorize;
use crate::server::respond::{accept_error, error};
use crate::server::state::Shared;
use crate::store::Delivery;
use crate::trigger::source::{ALERTMANAGER, GRAFANA, is_valid_name};

/// The route of the defined sources.
pub const ROUTE: &str = "/api/v1/sources/{name}";

/// `POST /api/v1/sources/{name}`.
pub async fn receive(
    State(s): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let response = answer(&s, &name, &headers, &body).await;
    s.engine.metrics.webhook(started.elapsed().as_secs_f64());
    response
}

async fn answer(s: &Shared, name: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let receiver = match s.sources.get(name) {
        Some(Ok(r)) => r,
        Some(Err(why)) => {
            // The reason names the secret's file or variable: the log has it, not the sender.
            tracing::error!(
                source = name,
                "request to a source that is not ready: {why}"
            );
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "source `{name}` is defined but not ready (its secret could not be read); the daemon's log says why"
                ),
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
            return r;
        }
        None => {
            // The name comes from the request: shown only when it is a valid source name.
            let message = if name == ALERTMANAGER || name == GRAFANA {
                format!("`{name}` is built in: post to /api/v1/alerts/{name}")
            } else if is_valid_name(name) {
                format!("no source `{name}` is defined (see docs/sources.md)")
            } else {
                "no such source: source names are a lowercase letter, then lowercase letters, digits or `-` (see docs/sources.md)".to_string()
            };
            return error(StatusCode::NOT_FOUND, message);
        }
    };
    if receiver.verifier.is_none()
        && let Some(refused) = authorize::alerts_refusal(s, headers)
    {
        return refused;
    }
    let now = s.engine.clock.now();
    let received = match receiver.receive(headers, body, now) {
        Ok(r) => r,
        Err(crate::source::receiver::Refused::Signature(e)) => {
            s.engine.metrics.source_refused(name, "signature");
            tracing::warn!(
                source = name,
                "webhook refused: signature check failed: {e}"
            );
            return error(
                StatusCode::UNAUTHORIZED,
                format!("signature check failed: {e}"),
            );
        }
        Err(crate::source::receiver::Refused::Body(m)) => {
            s.engine.metrics.source_refused(name, "body");
            return error(StatusCode::BAD_REQUEST, m);
        }
    };
    let delivery = received.delivery_id.map(|id| Delivery {
        source: name.to_string(),
        id,
        received_at: now,
        expires_at: now
            + chrono::Duration::from_std(receiver.def.delivery.keep)
                .unwrap_or(chrono::Duration::MAX),
    });
    match s
        .engine
        .admission
        .delivered(name, &received.notification, delivery)
        .await
    {
        Ok(Some(o)) => {
            tracing::info!(
                source = name,
                accepted = o.accepted.len(),
                duplicates = o.duplicates,
                unmatched = o.unmatched,
                resolved = o.resolved,
                "source event"
            );
            (StatusCode::OK, axum::Json(o)).into_response()
        }
        Ok(None) => {
            s.engine.metrics.source_refused(name, "duplicate_delivery");
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "duplicate_delivery": true, "accepted": [] })),
            )
                .into_response()
        }
        Err(e) => accept_error(e),
    }
}
