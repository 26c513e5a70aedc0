//! The HTTP server: [`app`] returns the axum Router (health, the Alertmanager receiver, the API,
//! the dashboard, and the security [`headers`] on every answer), testable in-process; the daemon
//! serves it with [`listen`].
//!
//! In front of every handler, in this order: the host check (421, `host.rs`; the health checks
//! excepted), the cross-site check (403, `cross_site.rs`), authentication (401) with the
//! credential's scope (403, `authorize.rs`), and for the API's POSTs the content type (415,
//! `content_type.rs`).

pub mod alerts;
pub mod api;
pub mod auth;
pub mod auth_file;
pub mod authenticate;
pub mod authority;
pub mod authorize;
pub mod connection;
pub mod content_type;
pub mod cross_site;
pub mod dashboard;
pub mod headers;
pub mod health;
pub mod host;
pub mod listen;
pub mod refusal;
pub mod respond;
pub mod site;
pub mod sources;
pub mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use crate::server::api::{approvals, breakers, reports, runbooks, runs, store};
use crate::server::state::Shared;

/// The router of a daemon.
pub fn app(state: Shared) -> Router {
    let limit = state.body_limit;
    let protected = Router::new()
        .route(alerts::PATH, post(alerts::receive))
        .route(alerts::GRAFANA_PATH, post(alerts::receive_grafana))
        .route("/api/v1/runbooks", get(runbooks::list))
        .route("/api/v1/runbooks/errors", get(runbooks::errors))
        .route("/api/v1/runbooks/{name}", get(runbooks::one))
        .route("/api/v1/runbooks/{name}/runs", post(runs::start))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/{id}", get(runs::one))
        .route("/api/v1/runs/{id}/events", get(runs::events))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/api/v1/runs/{id}/approve", post(approvals::approve))
        .route("/api/v1/runs/{id}/deny", post(approvals::deny))
        .route("/api/v1/approvals", get(approvals::list))
        .route("/api/v1/reports/toil", get(reports::toil))
        .route("/api/v1/reports/unautomated", get(reports::unautomated))
        .route("/api/v1/breakers", get(breakers::list))
        .route("/api/v1/breakers/{runbook}/reset", post(breakers::reset))
        .route("/api/v1/store", get(store::identity))
        .route("/metrics", get(health::metrics))
        .layer(middleware::from_fn(content_type::require_json))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authenticate::authenticate,
        ));
    // Signed sources authenticate by their signature, not by untoil's credentials (an
    // unsigned one checks them in its handler); JSON only like the API.
    let sources = Router::new()
        .route(sources::ROUTE, post(sources::receive))
        .layer(middleware::from_fn(content_type::require_json));
    Router::new()
        .route("/healthz", get(health::live))
        .merge(sources)
        .route("/readyz", get(health::ready))
        .merge(protected)
        .merge(dashboard::router(state.clone()))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            cross_site::refuse_cross_site,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            host::check_host,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::map_response(headers::secure))
        .with_state(state)
}
