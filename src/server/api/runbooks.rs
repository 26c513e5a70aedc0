//! Runbooks in service: `GET /api/v1/runbooks`, `/api/v1/runbooks/{name}` and the problems of
//! the last load at `/api/v1/runbooks/errors`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::engine::runbooks::CatalogState;
use crate::runbook::model::{Runbook, Trigger};
use crate::server::respond::error;
use crate::server::state::Shared;

/// A runbook as the API shows it.
pub fn runbook_json(rb: &Runbook, errors: usize) -> serde_json::Value {
    let now = Utc::now();
    let triggers: Vec<serde_json::Value> = rb
        .triggers
        .iter()
        .map(|t| match t {
            Trigger::Schedule(s) => serde_json::json!({
                "kind": "schedule",
                "text": t.describe(),
                "schedule": s.schedule.expression(),
                "timezone": s.schedule.timezone().to_string(),
                "next_fire": s.schedule.next_after(now).map(|t| t.to_rfc3339()),
                "catchup": s.catchup.map(crate::runbook::model::format_duration),
            }),
            Trigger::Alert(a) => serde_json::json!({
                "kind": "alert",
                "text": t.describe(),
                "matchers": a.matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                "on": format!("{:?}", a.on).to_lowercase(),
                "cancel_on_resolve": a.cancel_on_resolve,
            }),
        })
        .collect();
    let next_fire = rb
        .schedules()
        .filter_map(|s| s.schedule.next_after(now))
        .map(|t| t.with_timezone(&Utc))
        .min();
    serde_json::json!({
        "name": rb.name,
        "description": rb.description,
        "owner": rb.owner,
        "service": rb.service,
        "tags": rb.tags,
        "toil": { "manual_minutes": rb.toil.manual_minutes, "approval_minutes": rb.toil.approval_minutes },
        "triggers": triggers,
        "next_fire": next_fire.map(|t| t.to_rfc3339()),
        "params": rb.params.iter().map(|(k, p)| (k.clone(), serde_json::json!({"default": p.default, "description": p.description}))).collect::<BTreeMap<_, _>>(),
        "steps": rb.steps.iter().map(|s| serde_json::json!({"name": s.name, "kind": s.action.kind()})).collect::<Vec<_>>(),
        "approval_required": rb.guards.approval,
        "file": rb.source.display().to_string(),
        "version": rb.version,
        "errors": errors,
    })
}

/// The errors of the last load in a runbook's file.
pub fn errors_of(state: &CatalogState, rb: &Runbook) -> usize {
    let file = rb.source.display().to_string();
    state
        .errors_json
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["file"] == file.as_str() && e["severity"] == "error")
                .count()
        })
        .unwrap_or(0)
}

/// `GET /api/v1/runbooks`.
pub async fn list(State(s): State<Shared>) -> Response {
    let state = s.engine.runbooks.state();
    let list: Vec<serde_json::Value> = state
        .catalog
        .iter()
        .map(|rb| runbook_json(rb, errors_of(&state, rb)))
        .collect();
    Json(list).into_response()
}

/// `GET /api/v1/runbooks/{name}`.
pub async fn one(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let state = s.engine.runbooks.state();
    match state.catalog.get(&name) {
        Some(rb) => Json(runbook_json(rb, errors_of(&state, rb))).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no runbook named `{name}`")),
    }
}

/// `GET /api/v1/runbooks/errors`.
pub async fn errors(State(s): State<Shared>) -> Response {
    let state = s.engine.runbooks.state();
    Json(serde_json::json!({ "diagnostics": state.errors_json, "text": state.errors_text }))
        .into_response()
}
