//! `GET /ui/runs`: recent runs, filtered by runbook, status and cause.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use maud::{Markup, html};

use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::server::api::runs::RunsQuery;
use crate::server::dashboard::form;
use crate::server::dashboard::format::{enc, span, time};
use crate::server::dashboard::layout::{page as framed, store_failure};
use crate::server::dashboard::parts::status_badge;
use crate::server::dashboard::stamp::signature;
use crate::server::state::Shared;

/// Runs read from the store for one page (filtered by the store).
const READ: usize = 500;
/// Runs shown at most.
const SHOWN: usize = 100;
/// The causes a run can have.
const CAUSES: [&str; 3] = ["manual", "schedule", "alert"];

/// What the runs page shows.
pub struct Runs<'a> {
    /// Runbook names, for the filter.
    pub names: &'a [String],
    /// The runbook filter.
    pub runbook: Option<&'a str>,
    /// The status filter.
    pub status: Option<&'a str>,
    /// The cause filter.
    pub cause: Option<&'a str>,
    /// Why the filter is wrong, if it is.
    pub error: Option<&'a str>,
    /// The runs of the runbook and status filters, most recent first.
    pub runs: &'a [RunRecord],
}

/// `GET /ui/runs?runbook=&status=&cause=`.
pub async fn page(State(d): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let stamp = signature(&d.engine, None).await;
    let q = form::query(q);
    let want = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let (runbook, status, cause) = (want("runbook"), want("status"), want("cause"));
    let filter = RunsQuery {
        runbook: runbook.clone(),
        status: status.clone(),
        cause: cause.clone(),
        limit: Some(READ),
    }
    .filter();
    // A wrong filter is said on the page, above an empty list.
    let (runs, error) = match filter {
        Ok(f) => match d.engine.store.list_runs(&f).await {
            Ok(runs) => (runs, None),
            Err(e) => return store_failure(e),
        },
        Err(e) => (Vec::new(), Some(e)),
    };
    let names: Vec<String> = d
        .engine
        .runbooks
        .catalog()
        .names()
        .map(String::from)
        .collect();
    let body = render(&Runs {
        names: &names,
        runbook: runbook.as_deref(),
        status: status.as_deref(),
        cause: cause.as_deref(),
        error: error.as_deref(),
        runs: &runs,
    });
    framed(&d.engine, &stamp, "runs", "Runs", body)
}

/// A filter: a select of `options` with `all` first, `current` selected.
fn select<'a>(
    name: &str,
    options: impl IntoIterator<Item = &'a str>,
    current: Option<&str>,
) -> Markup {
    html! {
        label {
            (name) " "
            select name=(name) {
                option value="" { "all" }
                @for o in options {
                    option selected[current == Some(o)] { (o) }
                }
            }
        }
        " "
    }
}

/// The runs page's content.
pub fn render(r: &Runs) -> Markup {
    let shown: Vec<&RunRecord> = r
        .runs
        .iter()
        .filter(|run| r.cause.is_none_or(|c| run.cause.kind() == c))
        .take(SHOWN)
        .collect();
    html! {
        h1 { "Runs" }
        form class="toolbar" method="get" action="/ui/runs" id="filters" {
            (select("runbook", r.names.iter().map(String::as_str), r.runbook))
            (select("status", RunStatus::ALL.iter().map(|s| s.as_str()), r.status))
            (select("cause", CAUSES, r.cause))
            button type="submit" { "Filter" }
        }
        @if let Some(e) = r.error {
            p class="error" { (e) }
        }
        div class="panel" {
            table id="runs" {
                thead {
                    tr {
                        th { "Run" }
                        th { "Runbook" }
                        th { "Cause" }
                        th { "Instance" }
                        th { "Status" }
                        th { "Created" }
                        th class="num" { "Duration" }
                        th class="num" { "Toil credited" }
                    }
                }
                tbody {
                    @for run in &shown {
                        tr data-run=(run.id) data-status=(run.status) {
                            td { a href={ "/ui/runs/" (enc(&run.id.0)) } { code { (run.id) } } }
                            td { (run.runbook) }
                            td { (run.cause.shown_kind()) }
                            td class="instance" { (run.instance().unwrap_or("-")) }
                            td {
                                (status_badge(run.status.as_str()))
                                @if let Some(why) = run.skip_reason() {
                                    div class="muted skip-reason" { (why) }
                                }
                            }
                            td { (time(run.created_at)) }
                            td class="num" { (span(run.started_at, run.finished_at)) }
                            td class="num" {
                                @match &run.toil {
                                    Some(t) => { (format!("{:.1}", t.minutes)) " min" }
                                    None => "-",
                                }
                            }
                        }
                    }
                    @if shown.is_empty() {
                        tr { td colspan="8" class="muted" { "No runs match." } }
                    }
                }
            }
        }
    }
}
