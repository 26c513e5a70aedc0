//! The toil dashboard: server-rendered HTML pages at `/` and `/ui/...` (overview, automation
//! backlog, runbooks, runs, approvals). Pages read the same typed functions the API answers
//! from (reports, store, catalog, approvals), so the numbers match exactly, and render them
//! with maud, which escapes every inserted value. Assets are embedded; the only script refreshes
//! a page when runs change. Actions are form POSTs guarded by a per-process CSRF token, behind
//! the server's host and Origin / Sec-Fetch-Site checks. Docs: docs/dashboard.md.
//!
//! This file is the router only: what pages share lives in sibling files (layout, csrf, form,
//! format, parts, period, chart, stamp), so no child imports its parent.

pub mod actions;
pub mod approvals;
pub mod assets;
pub mod backlog;
pub mod challenge;
pub mod chart;
pub mod csrf;
pub mod form;
pub mod format;
pub mod layout;
pub mod overview;
pub mod parts;
pub mod period;
pub mod run;
pub mod runbooks;
pub mod runs;
pub mod stamp;
#[cfg(test)]
mod tests;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::server::state::Shared;

/// The dashboard's routes, behind the same authentication as the API.
pub fn router(daemon: Shared) -> Router<Shared> {
    Router::new()
        .route("/", get(overview::page))
        .route("/ui/backlog", get(backlog::page))
        .route("/ui/runbooks", get(runbooks::page))
        .route("/ui/runs", get(runs::page))
        .route("/ui/runs/{id}", get(run::page))
        .route("/ui/approvals", get(approvals::page))
        .route("/ui/stamp", get(stamp::current))
        .route("/ui/assets/app.css", get(assets::css))
        .route("/ui/assets/app.js", get(assets::js))
        .route("/ui/runs/{id}/approve", post(actions::approve))
        .route("/ui/runs/{id}/deny", post(actions::deny))
        .route("/ui/breakers/{runbook}/reset", post(actions::reset))
        .layer(middleware::from_fn_with_state(
            daemon,
            crate::server::authenticate::authenticate,
        ))
        .layer(middleware::from_fn(challenge::basic))
}
