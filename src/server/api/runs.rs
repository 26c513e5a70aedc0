//! Runs: start one (`POST /api/v1/runbooks/{name}/runs`), list, show, follow its events as
//! NDJSON, cancel.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};

use crate::engine::Following;
use crate::identity::principal::Principal;
use crate::run::cause::CauseKind;
use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::run::replay::replay;
use crate::run::status::RunStatus;
use crate::run::summary::RunSummary;
use crate::server::api::actor::actor;
use crate::server::api::body::optional_json;
use crate::server::respond::{accept_error, error, query, store_error};
use crate::server::state::Shared;
use crate::store::RunFilter;
use crate::trigger::alert::Notification;

/// The body of a manual run.
#[derive(Debug, Deserialize, Default)]
pub struct StartRun {
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// Who the caller says starts it: recorded as `claimed_user` beside the principal.
    #[serde(default)]
    user: Option<String>,
    /// An Alertmanager payload: run as its matching alerts would.
    #[serde(default)]
    alert: Option<serde_json::Value>,
}

/// `POST /api/v1/runbooks/{name}/runs`.
pub async fn start(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let mut body = match optional_json::<StartRun>(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let actor = match actor(principal, "user", body.user.take()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let notification = match body
        .alert
        .map(|v| Notification::from_json(v.to_string().as_bytes()))
    {
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Some(Ok(n)) => Some(n),
        None => None,
    };
    match s
        .engine
        .admission
        .manual(&name, body.params, &actor, notification.as_ref())
        .await
    {
        Ok(ids) => {
            let mut answer = serde_json::json!({
                "id": ids.first(), "ids": ids, "status": "queued", "user": actor.name(),
            });
            if let Some(c) = &actor.claimed {
                answer["claimed_user"] = serde_json::json!(c);
            }
            (StatusCode::ACCEPTED, Json(answer)).into_response()
        }
        Err(e) => accept_error(e),
    }
}

/// Query of `GET /api/v1/runs`. An unknown parameter is refused rather than ignored (a
/// misspelt filter would otherwise list every run).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Only this runbook.
    pub runbook: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only these causes (comma-separated: manual, schedule, alert).
    pub cause: Option<String>,
    /// At most this many (default 50).
    pub limit: Option<usize>,
}

impl RunsQuery {
    /// The store filter it asks for, or why it is wrong.
    pub fn filter(self) -> Result<RunFilter, String> {
        let status = match self.status.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse::<RunStatus>()?),
            None => None,
        };
        let causes = CauseKind::parse_list(self.cause.as_deref().unwrap_or(""))?;
        Ok(RunFilter {
            runbook: self.runbook.filter(|r| !r.is_empty()),
            status,
            causes,
            limit: self.limit.unwrap_or(50),
        })
    }
}

/// `GET /api/v1/runs`: a summary per run, not the whole record (whose notification and step
/// output made a 50-run answer tens of MB); `GET /api/v1/runs/{id}` has the rest.
pub async fn list(
    State(s): State<Shared>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Response {
    let filter = match query(q).and_then(|q| q.filter()) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match s.engine.store.list_runs(&filter).await {
        Ok(runs) => Json(runs.iter().map(RunSummary::of).collect::<Vec<_>>()).into_response(),
        Err(e) => store_error(e),
    }
}

/// `GET /api/v1/runs/{id}`.
pub async fn one(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    match s.engine.store.get_run(&RunId(id.clone())).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run with id {id}")),
        Err(e) => store_error(e),
    }
}

fn line(e: &RunEvent) -> Result<Bytes, std::convert::Infallible> {
    let mut s = serde_json::to_string(e).unwrap_or_default();
    s.push('\n');
    Ok(Bytes::from(s))
}

/// `GET /api/v1/runs/{id}/events`: the run's events as NDJSON until it finishes (a run that
/// ended is replayed from its record).
pub async fn events(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let id = RunId(id);
    let following = match s.engine.follow(&id).await {
        Ok(Some(f)) => f,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no run with id {id}")),
        Err(e) => return accept_error(e),
    };
    let body = match following {
        Following::Live(record, (history, rx)) => {
            let started = RunEvent::RunStarted {
                steps: steps_of(&s, &record),
                id: record.id,
                runbook: record.runbook,
            };
            // Everything so far, then live events, until the run finishes.
            let replay: Vec<RunEvent> = if history.is_empty() {
                vec![started]
            } else {
                history
            };
            let finished_in_replay = replay
                .iter()
                .any(|e| matches!(e, RunEvent::RunFinished { .. }));
            let live = BroadcastStream::new(rx).filter_map(|e| e.ok());
            let mut done = false;
            let stream = tokio_stream::iter(replay)
                .chain(live.take_while(move |_| !finished_in_replay))
                .take_while(move |e| {
                    let go = !done;
                    done = matches!(e, RunEvent::RunFinished { .. });
                    go
                })
                .map(move |e| line(&e));
            Body::from_stream(stream)
        }
        // In progress on another replica: its events as they arrive from there; the stream
        // ends with `RunFinished` (or when the client goes).
        Following::Remote(record, rx) => {
            let started = RunEvent::RunStarted {
                steps: steps_of(&s, &record),
                id: record.id,
                runbook: record.runbook,
            };
            let mut done = false;
            // The forwarded history starts with the run's own `RunStarted` (unless it was
            // queued still): the stream gave one already.
            let forwarded =
                ReceiverStream::new(rx).filter(|e| !matches!(e, RunEvent::RunStarted { .. }));
            let stream = tokio_stream::iter([started])
                .chain(forwarded)
                .take_while(move |e| {
                    let go = !done;
                    done = matches!(e, RunEvent::RunFinished { .. });
                    go
                })
                .map(move |e| line(&e));
            Body::from_stream(stream)
        }
        // Already over (or not in progress here): replay it from its record, so a follower that
        // arrives late sees the same steps and output as one that was there.
        Following::Ended(record) => {
            let mut replay = replay(&record);
            replay.push(RunEvent::RunFinished {
                record: Box::new(record),
            });
            Body::from_stream(tokio_stream::iter(
                replay.iter().map(line).collect::<Vec<_>>(),
            ))
        }
    };
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// How many steps the run's runbook has, as loaded here (0 when it is not).
fn steps_of(s: &Shared, record: &crate::run::record::RunRecord) -> usize {
    s.engine
        .runbooks
        .catalog()
        .get(&record.runbook)
        .map_or(0, |rb| rb.steps.len())
}

/// `POST /api/v1/runs/{id}/cancel`.
pub async fn cancel(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let id = RunId(id);
    match s.engine.canceller.cancel(&id).await {
        Ok(true) => {
            return (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "id": id, "cancelling": true })),
            )
                .into_response();
        }
        Ok(false) => {}
        Err(e) => return store_error(e),
    }
    match s.engine.store.get_run(&id).await {
        Ok(Some(r)) => error(
            StatusCode::CONFLICT,
            format!(
                "run {id} is {}; only queued or running runs can be cancelled",
                r.status
            ),
        ),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run with id {id}")),
        Err(e) => store_error(e),
    }
}
