//! The HTTP server: `app(daemon)` returns the axum Router (health, the Alertmanager receiver,
//! the API), testable in-process; `daemon::run` serves it.

mod alerts;
mod api;
pub mod auth;
mod dashboard;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::daemon::{AcceptError, Daemon};

/// The router of a daemon.
pub fn app(daemon: Arc<Daemon>) -> Router {
    let limit = daemon.settings.body_limit;
    let protected = Router::new()
        .route("/api/v1/alerts/alertmanager", post(alerts::receive))
        .route("/api/v1/runbooks", get(api::runbooks))
        .route("/api/v1/runbooks/errors", get(api::runbook_errors))
        .route("/api/v1/runbooks/{name}", get(api::runbook))
        .route("/api/v1/runbooks/{name}/runs", post(api::start_run))
        .route("/api/v1/runs", get(api::runs))
        .route("/api/v1/runs/{id}", get(api::run))
        .route("/api/v1/runs/{id}/events", get(api::run_events))
        .route("/api/v1/runs/{id}/cancel", post(api::cancel))
        .route("/api/v1/reports/toil", get(api::toil_report))
        .route("/api/v1/reports/unautomated", get(api::unautomated))
        .route("/api/v1/runs/{id}/approve", post(api::approve))
        .route("/api/v1/runs/{id}/deny", post(api::deny))
        .route("/api/v1/approvals", get(api::approvals))
        .route("/api/v1/breakers", get(api::breakers))
        .route("/api/v1/breakers/{runbook}/reset", post(api::reset_breaker))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(daemon.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(protected)
        .merge(dashboard::router(daemon.clone()))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(daemon)
}

async fn metrics(State(d): State<Arc<Daemon>>) -> Response {
    d.metrics.queue_depth.set(d.queue_depth() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        d.metrics.render(),
    )
        .into_response()
}

async fn ready(State(d): State<Arc<Daemon>>) -> Response {
    if d.is_shutting_down() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    (StatusCode::OK, "ready\n").into_response()
}

/// The identity of an authenticated caller, for handlers that record who did what.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

async fn authenticate(State(d): State<Arc<Daemon>>, mut req: Request, next: Next) -> Response {
    match d.settings.auth.identify(req.headers()) {
        Some(who) => {
            req.extensions_mut().insert(Caller(who));
            next.run(req).await
        }
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing or invalid credentials: send `Authorization: Bearer <token>` or basic auth",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"untoil\", Basic realm=\"untoil\""),
            );
            r
        }
    }
}

/// A JSON error body: `{"error": "..."}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// Maps a rejected trigger to its HTTP answer (503 with Retry-After when it may pass later).
pub fn accept_error(e: AcceptError) -> Response {
    match e {
        AcceptError::QueueFull(_) | AcceptError::ShuttingDown => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        AcceptError::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
        AcceptError::Conflict(m) => error(StatusCode::CONFLICT, m),
        AcceptError::Store(s) => {
            tracing::error!("store error: {s}");
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store unavailable: {s}"),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}
