//! Health, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::server::respond::error;
use crate::server::state::Shared;

/// `GET /healthz`: the process answers.
pub async fn live() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 503 once shutting down.
pub async fn ready(State(s): State<Shared>) -> Response {
    if s.engine.queue.is_closed() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    (StatusCode::OK, "ready\n").into_response()
}

/// `GET /metrics`: OpenMetrics text.
pub async fn metrics(State(s): State<Shared>) -> Response {
    let m = &s.engine.metrics;
    m.queue_depth.set(s.engine.queue.depth() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}
