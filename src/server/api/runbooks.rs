//! Runbooks in service: `GET /api/v1/runbooks`, `/api/v1/runbooks/{name}` and the problems of
//! the last load at `/api/v1/runbooks/errors`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::engine::runbooks::CatalogState;
use crate::identity::approvers::Approvers;
use crate::runbook::diagnostic::{Record, Severity};
use crate::runbook::model::{Runbook, Trigger};
use crate::server::respond::error;
use crate::server::state::Shared;
use crate::trigger::matcher::Matcher;

/// A runbook as the API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunbookInfo {
    /// Unique name.
    pub name: String,
    /// One-line description.
    pub description: String,
    /// Owning team.
    pub owner: String,
    /// Service acted on.
    pub service: Option<String>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Toil estimate.
    pub toil: ToilInfo,
    /// What starts a run.
    pub triggers: Vec<TriggerInfo>,
    /// The next schedule fire of any trigger.
    #[serde(serialize_with = "rfc3339")]
    pub next_fire: Option<DateTime<Utc>>,
    /// Declared parameters.
    pub params: BTreeMap<String, ParamInfo>,
    /// Steps, in order.
    pub steps: Vec<StepInfo>,
    /// Whether runs wait for a person's approval.
    pub approval_required: bool,
    /// Who may approve or deny its runs (absent: anyone who may call the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// The file it was loaded from.
    pub file: String,
    /// Content hash of that file.
    pub version: String,
    /// Errors of the last load in its file.
    pub errors: usize,
}

/// A runbook's toil estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToilInfo {
    /// Minutes a person spends doing it by hand.
    pub manual_minutes: f64,
    /// Minutes an approval costs.
    pub approval_minutes: f64,
}

/// A trigger of a runbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerInfo {
    /// A crontab schedule.
    Schedule {
        /// One line for humans.
        text: String,
        /// The crontab expression.
        schedule: String,
        /// Its time zone.
        timezone: String,
        /// Its next fire, in its time zone.
        next_fire: Option<String>,
        /// How far back missed fires are caught up.
        catchup: Option<String>,
    },
    /// Alerts of one or more sources.
    Alert {
        /// One line for humans.
        text: String,
        /// The sources whose alerts it takes (`alertmanager` unless the runbook names others).
        sources: Vec<String>,
        /// The label matchers, all of them, as the runbook's author wrote them.
        matchers: Vec<String>,
        /// firing, resolved or both.
        on: String,
        /// Whether a resolved alert cancels its run.
        cancel_on_resolve: bool,
    },
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamInfo {
    /// Its default.
    pub default: Option<String>,
    /// What it is for.
    pub description: String,
}

/// A step, by name and kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepInfo {
    /// Step name.
    pub name: String,
    /// shell, http, plugin or report.
    pub kind: String,
}

/// Writes an instant as `to_rfc3339` does (`+00:00`), as this API always has.
fn rfc3339<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}

/// A runbook as the API and the dashboard show it, next fires counted from `now`.
pub fn info(rb: &Runbook, errors: usize, now: DateTime<Utc>) -> RunbookInfo {
    let triggers = rb
        .triggers
        .iter()
        .map(|t| match t {
            Trigger::Schedule(s) => TriggerInfo::Schedule {
                text: t.describe(),
                schedule: s.schedule.expression().to_string(),
                timezone: s.schedule.timezone().to_string(),
                next_fire: s.schedule.next_after(now).map(|t| t.to_rfc3339()),
                catchup: s.catchup.map(crate::runbook::model::format_duration),
            },
            Trigger::Alert(a) => TriggerInfo::Alert {
                text: t.describe(),
                sources: a.sources.clone(),
                matchers: a.matchers.iter().map(Matcher::written).collect(),
                on: format!("{:?}", a.on).to_lowercase(),
                cancel_on_resolve: a.cancel_on_resolve,
            },
        })
        .collect();
    let next_fire = rb
        .schedules()
        .filter_map(|s| s.schedule.next_after(now))
        .map(|t| t.with_timezone(&Utc))
        .min();
    RunbookInfo {
        name: rb.name.clone(),
        description: rb.description.clone(),
        owner: rb.owner.clone(),
        service: rb.service.clone(),
        tags: rb.tags.clone(),
        toil: ToilInfo {
            manual_minutes: rb.toil.manual_minutes,
            approval_minutes: rb.toil.approval_minutes,
        },
        triggers,
        next_fire,
        params: rb
            .params
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    ParamInfo {
                        default: p.default.clone(),
                        description: p.description.clone(),
                    },
                )
            })
            .collect(),
        steps: rb
            .steps
            .iter()
            .map(|s| StepInfo {
                name: s.name.clone(),
                kind: s.action.kind().to_string(),
            })
            .collect(),
        approval_required: rb.guards.approval,
        approvers: rb.guards.approvers.clone(),
        file: rb.source.display().to_string(),
        version: rb.version.clone(),
        errors,
    }
}

/// A runbook as the API shows it.
pub fn runbook_json(rb: &Runbook, errors: usize) -> serde_json::Value {
    // Through a Value, whose map sorts the keys: the output stays as it always was.
    serde_json::to_value(info(rb, errors, Utc::now())).unwrap_or_default()
}

/// The errors (not warnings) of the last load in a runbook's file.
pub fn problems_of<'a>(state: &'a CatalogState, rb: &Runbook) -> Vec<&'a Record> {
    let file = rb.source.display().to_string();
    state
        .records
        .iter()
        .filter(|r| r.file == file && r.severity == Severity::Error)
        .collect()
}

/// How many errors the last load found in a runbook's file.
pub fn errors_of(state: &CatalogState, rb: &Runbook) -> usize {
    problems_of(state, rb).len()
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
    Json(serde_json::json!({ "diagnostics": state.records, "text": state.errors_text }))
        .into_response()
}
