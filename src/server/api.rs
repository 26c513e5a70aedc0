//! The HTTP API: runbooks, runs (start, follow, cancel) and reports. JSON in and out; the same
//! report code as the CLI, so numbers match exactly.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::daemon::Daemon;
use crate::report::backlog;
use crate::report::query::{Dim, Format, Period};
use crate::report::toil;
use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::run::status::RunStatus;
use crate::runbook::model::{Runbook, Trigger};
use crate::store::{RunFilter, Store};

use super::{Caller, accept_error, error};

fn runbook_json(rb: &Runbook, errors: usize) -> serde_json::Value {
    let now = Utc::now();
    let triggers: Vec<serde_json::Value> = rb
        .triggers
        .iter()
        .map(|t| match t {
            Trigger::Schedule(s) => serde_json::json!({
                "kind": "schedule",
                "schedule": s.schedule.expression(),
                "timezone": s.schedule.timezone().to_string(),
                "next_fire": s.schedule.next_after(now).map(|t| t.to_rfc3339()),
                "catchup": s.catchup.map(crate::runbook::model::format_duration),
            }),
            Trigger::Alert(a) => serde_json::json!({
                "kind": "alert",
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

fn errors_of(d: &Daemon, rb: &Runbook) -> usize {
    let file = rb.source.display().to_string();
    d.with_catalog_state(|c| {
        c.errors_json
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["file"] == file.as_str() && e["severity"] == "error")
                    .count()
            })
            .unwrap_or(0)
    })
    .unwrap_or(0)
}

pub async fn runbooks(State(d): State<Arc<Daemon>>) -> Response {
    let list: Vec<serde_json::Value> = d
        .catalog()
        .iter()
        .map(|rb| runbook_json(rb, errors_of(&d, rb)))
        .collect();
    Json(list).into_response()
}

pub async fn runbook(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> Response {
    match d.catalog().get(&name) {
        Some(rb) => Json(runbook_json(rb, errors_of(&d, rb))).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no runbook named `{name}`")),
    }
}

pub async fn runbook_errors(State(d): State<Arc<Daemon>>) -> Response {
    let (json, text) = d
        .with_catalog_state(|c| (c.errors_json.clone(), c.errors_text.clone()))
        .unwrap_or_default();
    Json(serde_json::json!({ "diagnostics": json, "text": text })).into_response()
}

#[derive(Debug, Deserialize, Default)]
pub struct StartRun {
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    user: Option<String>,
    /// An Alertmanager payload: run as its matching alerts would.
    #[serde(default)]
    alert: Option<serde_json::Value>,
}

pub async fn start_run(
    State(d): State<Arc<Daemon>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body = match optional_json::<StartRun>(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let user = body.user.unwrap_or(caller.0);
    let notification = match body
        .alert
        .map(|v| crate::trigger::alert::Notification::from_json(v.to_string().as_bytes()))
    {
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Some(Ok(n)) => Some(n),
        None => None,
    };
    let daemon = d.clone();
    let result = tokio::task::spawn_blocking(move || {
        daemon.accept_manual(&name, body.params, &user, notification.as_ref())
    })
    .await;
    match result {
        Ok(Ok(ids)) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "id": ids.first(), "ids": ids, "status": "queued" })),
        )
            .into_response(),
        Ok(Err(e)) => accept_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    runbook: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

pub async fn runs(State(d): State<Arc<Daemon>>, Query(q): Query<RunsQuery>) -> Response {
    let status = match q.status.as_deref().map(str::parse::<RunStatus>) {
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let filter = RunFilter {
        runbook: q.runbook,
        status,
        limit: q.limit.unwrap_or(50),
    };
    match d.store.list_runs(&filter) {
        Ok(runs) => Json(runs).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn run(State(d): State<Arc<Daemon>>, Path(id): Path<String>) -> Response {
    match d.store.get_run(&RunId(id.clone())) {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run with id {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Streams a run's events as NDJSON until it finishes (one `run_finished` line if it already has).
pub async fn run_events(State(d): State<Arc<Daemon>>, Path(id): Path<String>) -> Response {
    let id = RunId(id);
    let subscription = d.follow(&id);
    let record = match d.store.get_run(&id) {
        Ok(Some(r)) => r,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no run with id {id}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let line = |e: &RunEvent| {
        let mut s = serde_json::to_string(e).unwrap_or_default();
        s.push('\n');
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(s))
    };
    let finished = RunEvent::RunFinished {
        record: Box::new(record.clone()),
    };
    let body = match subscription {
        Some((history, rx)) if !record.status.is_final() => {
            let steps = d
                .catalog()
                .get(&record.runbook)
                .map_or(0, |rb| rb.steps.len());
            let started = RunEvent::RunStarted {
                id: record.id.clone(),
                runbook: record.runbook.clone(),
                steps,
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
        // Already over (or not running here): replay it from its record, so a follower that
        // arrives late sees the same steps and output as one that was there.
        _ => {
            let mut replay = replay_record(&record);
            replay.push(finished);
            Body::from_stream(tokio_stream::iter(
                replay.iter().map(line).collect::<Vec<_>>(),
            ))
        }
    };
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

pub async fn cancel(State(d): State<Arc<Daemon>>, Path(id): Path<String>) -> Response {
    let id = RunId(id);
    if d.cancel(&id) {
        return (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "id": id, "cancelling": true })),
        )
            .into_response();
    }
    match d.store.get_run(&id) {
        Ok(Some(r)) => error(
            StatusCode::CONFLICT,
            format!(
                "run {id} is {}; only queued or running runs can be cancelled",
                r.status
            ),
        ),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run with id {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    /// Comma-separated dimensions.
    by: Option<String>,
    since: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    /// Comma-separated labels (backlog).
    label: Option<String>,
    assume_minutes: Option<f64>,
}

fn period(q: &ReportQuery) -> Result<Period, String> {
    let day = |s: &str| {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| format!("`{s}` is not a date such as 2026-11-01"))
    };
    match (&q.from, &q.to) {
        (Some(f), Some(t)) => Ok(Period {
            from: day(f)?,
            to: day(t)?,
        }),
        (None, None) => {
            let since = q.since.as_deref().unwrap_or("30d");
            let d = crate::runbook::model::parse_duration(since)
                .map_err(|e| format!("since `{since}`: {e}"))?;
            Ok(Period::since(d, Utc::now()))
        }
        _ => Err("give both `from` and `to`, or `since`".into()),
    }
}

fn format_of(q: &ReportQuery) -> Result<Format, String> {
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Format::Json),
        "csv" => Ok(Format::Csv),
        "markdown" => Ok(Format::Markdown),
        "table" => Ok(Format::Table),
        other => Err(format!(
            "unknown format `{other}`; expected json, csv, markdown or table"
        )),
    }
}

fn rendered(format: Format, text: String) -> Response {
    let mime = match format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Markdown => "text/markdown; charset=utf-8",
        Format::Table => "text/plain; charset=utf-8",
    };
    ([(header::CONTENT_TYPE, mime)], text).into_response()
}

pub async fn toil_report(State(d): State<Arc<Daemon>>, Query(q): Query<ReportQuery>) -> Response {
    let (period, format) = match (period(&q), format_of(&q)) {
        (Ok(p), Ok(f)) => (p, f),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mut by = Vec::new();
    for name in
        q.by.as_deref()
            .unwrap_or("team")
            .split(',')
            .filter(|s| !s.is_empty())
    {
        match <Dim as clap::ValueEnum>::from_str(name.trim(), true) {
            Ok(dim) => by.push(dim),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown dimension `{name}`; expected team, service, runbook, cause, day, week or month"
                    ),
                );
            }
        }
    }
    match toil::toil_report(d.store.as_ref() as &dyn Store, period, &by) {
        Ok(r) => rendered(format, r.render(format)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn unautomated(State(d): State<Arc<Daemon>>, Query(q): Query<ReportQuery>) -> Response {
    let (period, format) = match (period(&q), format_of(&q)) {
        (Ok(p), Ok(f)) => (p, f),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let labels: Vec<String> = q
        .label
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let (from, to) = period.instants();
    match d.store.alerts(from, to) {
        Ok(alerts) => {
            let b = backlog::backlog(period, &alerts, &labels, q.assume_minutes.unwrap_or(15.0));
            rendered(format, b.render(format, &labels))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct Decision {
    /// Who decides (default: the authenticated caller).
    by: Option<String>,
}

/// Approves or denies, recording `by` from the body or else the authenticated caller.
async fn decide(
    d: Arc<Daemon>,
    caller: Caller,
    id: String,
    body: &[u8],
    approve: bool,
) -> Response {
    let by = match optional_json::<Decision>(body) {
        Ok(b) => b.by.unwrap_or(caller.0),
        Err(r) => return *r,
    };
    let daemon = d.clone();
    match tokio::task::spawn_blocking(move || daemon.decide(&RunId(id), approve, &by)).await {
        Ok(Ok(record)) => Json(record).into_response(),
        Ok(Err(e)) => accept_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn approve(
    State(d): State<Arc<Daemon>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    decide(d, caller, id, &body, true).await
}

pub async fn deny(
    State(d): State<Arc<Daemon>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    decide(d, caller, id, &body, false).await
}

/// Runs waiting for approval, with what they would execute (dry-run rendering).
pub async fn approvals(State(d): State<Arc<Daemon>>) -> Response {
    let filter = RunFilter {
        runbook: None,
        status: Some(RunStatus::PendingApproval),
        limit: 0,
    };
    let runs = match d.store.list_runs(&filter) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let catalog = d.catalog();
    let list: Vec<serde_json::Value> = runs
        .into_iter()
        .map(|r| {
            let rb = catalog.get(&r.runbook);
            let expires = rb.map(|rb| {
                r.created_at + chrono::Duration::from_std(rb.guards.approval_timeout).unwrap_or_default()
            });
            let plan = rb.and_then(|rb| {
                let mut req = crate::exec::executor::RunRequest::manual(rb.clone(), "approval");
                req.cause = r.cause.clone();
                req.params = r.params.clone();
                req.alert = r.alert.clone();
                req.dry_run = true;
                d.executor.prepare(req).ok().map(|p| {
                    d.executor
                        .plan(&p)
                        .into_iter()
                        .map(|s| serde_json::json!({"name": s.name, "kind": s.kind, "when": s.when, "detail": s.detail}))
                        .collect::<Vec<_>>()
                })
            });
            serde_json::json!({ "run": r, "expires_at": expires, "plan": plan })
        })
        .collect();
    Json(list).into_response()
}

pub async fn breakers(State(d): State<Arc<Daemon>>) -> Response {
    match d.store.guard_states() {
        Ok(states) => Json(
            states
                .into_iter()
                .map(|(runbook, key, s)| {
                    serde_json::json!({
                        "runbook": runbook, "key": key, "open": s.breaker.is_some(),
                        "opened_at": s.breaker.as_ref().map(|b| b.opened_at),
                        "reason": s.breaker.as_ref().map(|b| b.reason.clone()),
                        "consecutive_failures": s.consecutive_failures,
                        "last_start": s.last_start,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct Reset {
    key: Option<String>,
}

pub async fn reset_breaker(
    State(d): State<Arc<Daemon>>,
    Path(runbook): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let key = match optional_json::<Reset>(&body) {
        Ok(b) => b.key,
        Err(r) => return *r,
    };
    let daemon = d.clone();
    match tokio::task::spawn_blocking(move || daemon.reset_breakers(&runbook, key.as_deref())).await
    {
        Ok(Ok(keys)) => Json(serde_json::json!({ "reset": keys })).into_response(),
        Ok(Err(e)) => accept_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A JSON body that may be empty (then the defaults apply).
fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
        ))
    })
}

/// The events of a finished run, rebuilt from its record (steps, their output, their results).
fn replay_record(record: &crate::run::record::RunRecord) -> Vec<RunEvent> {
    let mut events = vec![RunEvent::RunStarted {
        id: record.id.clone(),
        runbook: record.runbook.clone(),
        steps: record.steps.len(),
    }];
    for (index, step) in record.steps.iter().enumerate() {
        let ran = step.status != Some(crate::run::status::StepStatus::Skipped);
        if ran {
            events.push(RunEvent::StepStarted {
                index,
                name: step.name.clone(),
                attempt: step.attempts.max(1),
                detail: step.kind.clone(),
            });
            for (stream, text) in [("stdout", &step.stdout), ("stderr", &step.stderr)] {
                for l in text.lines() {
                    events.push(RunEvent::Output {
                        index,
                        stream: stream.into(),
                        line: l.to_string(),
                    });
                }
            }
        }
        events.push(RunEvent::StepFinished {
            index,
            result: Box::new(step.clone()),
        });
    }
    events
}
