//! Reports: `GET /api/v1/reports/toil` and `/api/v1/reports/unautomated` (the backlog), in the
//! format asked for.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use crate::report::backlog::backlog_report;
use crate::report::period::Period;
use crate::report::query::{Dim, Format};
use crate::report::toil::toil_report_compared;
use crate::run::cause::CauseKind;
use crate::server::respond::{error, query, store_error};
use crate::server::state::Shared;

/// Query of the report endpoints: what the dashboard and the backlog read. The toil endpoint
/// takes [`ToilQuery`].
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Comma-separated dimensions.
    pub by: Option<String>,
    /// How far back (default 30d).
    pub since: Option<String>,
    /// First day (with `to`).
    pub from: Option<String>,
    /// Last day (with `from`).
    pub to: Option<String>,
    /// json (default), csv, markdown or table.
    pub format: Option<String>,
    /// Comma-separated labels (backlog).
    pub label: Option<String>,
    /// Manual minutes assumed per alert (backlog).
    pub assume_minutes: Option<f64>,
    /// Set the toil report against the previous period of the same length.
    pub compare: Option<bool>,
}

/// Query of `GET /api/v1/reports/toil`: its own parameters only, so an unknown (or a
/// backlog-only) one is refused rather than ignored.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ToilQuery {
    /// Comma-separated dimensions.
    pub by: Option<String>,
    /// How far back (default 30d).
    pub since: Option<String>,
    /// First day (with `to`).
    pub from: Option<String>,
    /// Last day (with `from`).
    pub to: Option<String>,
    /// json (default), csv, markdown or table.
    pub format: Option<String>,
    /// Set the toil report against the previous period of the same length.
    pub compare: Option<bool>,
    /// Only these causes (comma-separated: manual, schedule, alert).
    pub cause: Option<String>,
}

impl ToilQuery {
    /// The causes it asks for (empty: every cause), or why one is unknown.
    pub fn causes(&self) -> Result<Vec<CauseKind>, String> {
        CauseKind::parse_list(self.cause.as_deref().unwrap_or(""))
    }

    /// Its period, format and grouping as the shared report query.
    fn common(&self) -> ReportQuery {
        ReportQuery {
            by: self.by.clone(),
            since: self.since.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            format: self.format.clone(),
            compare: self.compare,
            ..ReportQuery::default()
        }
    }
}

/// The period a query asks for.
pub fn period(q: &ReportQuery) -> Result<Period, String> {
    match (&q.from, &q.to) {
        (Some(f), Some(t)) => Period::between(f, t).map_err(|e| format!("from/to: {e}")),
        (None, None) => {
            let since = q.since.as_deref().unwrap_or("30d");
            Period::parse_since(since, Utc::now()).map_err(|e| format!("since `{since}`: {e}"))
        }
        _ => Err("give both `from` and `to`, or `since`".into()),
    }
}

/// The format a query asks for.
pub fn format_of(q: &ReportQuery) -> Result<Format, String> {
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

/// The dimensions a query groups by (default: team).
pub fn dims(q: &ReportQuery) -> Result<Vec<Dim>, String> {
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
                return Err(format!(
                    "unknown dimension `{name}`; expected team, service, runbook, cause, day, week or month"
                ));
            }
        }
    }
    Ok(by)
}

/// The labels a backlog query groups by.
pub fn labels(q: &ReportQuery) -> Vec<String> {
    q.label
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Manual minutes assumed per backlog alert without a `toil_minutes` annotation (default 15).
pub fn assume_minutes(q: &ReportQuery) -> f64 {
    q.assume_minutes.unwrap_or(15.0)
}

/// `GET /api/v1/reports/toil`.
pub async fn toil(
    State(s): State<Shared>,
    q: Result<Query<ToilQuery>, QueryRejection>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let common = q.common();
    let (period, format, by, causes) = match (
        period(&common),
        format_of(&common),
        dims(&common),
        q.causes(),
    ) {
        (Ok(p), Ok(f), Ok(b), Ok(c)) => (p, f, b, c),
        (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
            return error(StatusCode::BAD_REQUEST, e);
        }
    };
    let compare = q.compare.unwrap_or(false);
    match toil_report_compared(&*s.engine.store, period, &by, &causes, compare).await {
        Ok(r) => rendered(format, r.render(format)),
        Err(e) => store_error(e),
    }
}

/// `GET /api/v1/reports/unautomated`.
pub async fn unautomated(
    State(s): State<Shared>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let (period, format) = match (period(&q), format_of(&q)) {
        (Ok(p), Ok(f)) => (p, f),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let labels = labels(&q);
    match backlog_report(&*s.engine.store, period, &labels, assume_minutes(&q)).await {
        Ok(b) => rendered(format, b.render(format, &labels)),
        Err(e) => store_error(e),
    }
}
