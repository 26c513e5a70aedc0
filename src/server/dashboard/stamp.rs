//! The stamp: a signature of what the pages show, which the page script polls to know when to
//! refresh.

use std::fmt::Write as _;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::engine::Engine;
use crate::run::id::RunId;
use crate::server::dashboard::form;
use crate::server::state::Shared;
use crate::store::RunFilter;

/// A signature of what the pages show that changes when runs are created or finish, when
/// approvals come and go and when breakers change.
///
/// Pages take it before they read anything, so a change made while a page is being rendered
/// makes the page's stamp stale and the next poll refreshes it. `run` adds that run's own state
/// (the run page of a run older than the latest 50). A store error leaves its part out: the
/// stamp then changes when the store is back, and the page refreshes.
pub async fn signature(engine: &Engine, run: Option<&str>) -> String {
    use sha2::Digest;
    let store = &engine.store;
    let mut h = sha2::Sha256::new();
    let filter = RunFilter {
        runbook: None,
        status: None,
        limit: 50,
        ..RunFilter::default()
    };
    for r in store.list_runs(&filter).await.unwrap_or_default() {
        h.update(format!("{}:{}:{};", r.id, r.status, r.steps.len()));
    }
    if let Some(id) = run
        && let Ok(Some(r)) = store.get_run(&RunId(id.to_string())).await
    {
        h.update(format!("run {}:{}:{};", r.id, r.status, r.steps.len()));
    }
    for (rb, key, s) in store.guard_states().await.unwrap_or_default() {
        h.update(format!("{rb}:{key}:{};", s.breaker.is_some()));
    }
    h.finalize()[..12].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `GET /ui/stamp[?run=ID]`: the current [`signature`], as plain text.
pub async fn current(State(d): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let run = form::query(q).remove("run");
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        signature(&d.engine, run.as_deref()).await,
    )
        .into_response()
}
