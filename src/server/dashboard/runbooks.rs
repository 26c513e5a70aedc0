//! `GET /ui/runbooks`: the runbooks in service with their triggers, last run, toil saved,
//! breakers (with a reset button) and the problems of the last load.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use maud::{Markup, html};

use crate::report::query::Dim;
use crate::report::toil::toil_report;
use crate::run::record::RunRecord;
use crate::runbook::diagnostic::Record;
use crate::server::api::runbooks::{RunbookInfo, TriggerInfo, errors_of, info, problems_of};
use crate::server::dashboard::csrf;
use crate::server::dashboard::format::{enc, time, time_or_dash};
use crate::server::dashboard::layout::{error_page, page as framed, store_failure};
use crate::server::dashboard::parts::status_badge;
use crate::server::dashboard::period::days;
use crate::server::dashboard::stamp::signature;
use crate::server::state::Shared;
use crate::store::RunFilter;

/// An open circuit breaker of a runbook.
pub struct OpenBreaker {
    /// The guard key (empty for the runbook's own).
    pub key: String,
    /// Why it opened.
    pub reason: String,
}

/// One runbook's line.
pub struct Line {
    /// The runbook.
    pub info: RunbookInfo,
    /// Errors of the last load in its file.
    pub problems: Vec<Record>,
    /// Its latest run.
    pub last: Option<RunRecord>,
    /// Hours of toil it saved in the last 30 days.
    pub saved_hours: f64,
    /// Its open breakers.
    pub breakers: Vec<OpenBreaker>,
}

/// `GET /ui/runbooks`.
pub async fn page(State(d): State<Shared>) -> Response {
    let stamp = signature(&d.engine, None).await;
    let store = &*d.engine.store;
    let state = d.engine.runbooks.state();
    let guards = match store.guard_states().await {
        Ok(g) => g,
        Err(e) => return store_failure(e),
    };
    let p = match days("30d") {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let saved = match toil_report(store, p, &[Dim::Runbook]).await {
        Ok(r) => r,
        Err(e) => return store_failure(e),
    };
    let now = Utc::now();
    let mut lines = Vec::new();
    for rb in state.catalog.iter() {
        let filter = RunFilter {
            runbook: Some(rb.name.clone()),
            status: None,
            limit: 1,
            ..RunFilter::default()
        };
        let last = match store.list_runs(&filter).await {
            Ok(runs) => runs.into_iter().next(),
            Err(e) => return store_failure(e),
        };
        lines.push(Line {
            info: info(rb, errors_of(&state, rb), now),
            problems: problems_of(&state, rb).into_iter().cloned().collect(),
            last,
            saved_hours: saved
                .rows
                .iter()
                .find(|r| r.group.first() == Some(&rb.name))
                .map_or(0.0, |r| r.figures.toil_hours),
            breakers: guards
                .iter()
                .filter(|(runbook, _, _)| *runbook == rb.name)
                .filter_map(|(_, key, s)| {
                    s.breaker.as_ref().map(|b| OpenBreaker {
                        key: key.clone(),
                        reason: b.reason.clone(),
                    })
                })
                .collect(),
        });
    }
    // Warnings count too: the diagnostics are shown whenever the last load had any.
    let diagnostics = (!state.records.is_empty()).then_some(state.errors_text.as_str());
    framed(
        &d.engine,
        &stamp,
        "runbooks",
        "Runbooks",
        render(&lines, diagnostics),
    )
}

/// The runbooks page's content; `diagnostics` is the text of the last load's problems.
pub fn render(lines: &[Line], diagnostics: Option<&str>) -> Markup {
    html! {
        h1 { "Runbooks" }
        div class="panel" {
            table id="runbooks" {
                thead {
                    tr {
                        th { "Runbook" }
                        th { "Owner" }
                        th { "Service" }
                        th { "Triggers" }
                        th { "Next fire" }
                        th { "Last run" }
                        th class="num" { "Saved (30d)" }
                        th { "Breaker" }
                    }
                }
                tbody {
                    @for l in lines {
                        (line(l))
                    }
                    @if lines.is_empty() {
                        tr { td colspan="8" class="muted" { "No runbooks loaded." } }
                    }
                }
            }
        }
        @if let Some(text) = diagnostics {
            h2 { "Validation diagnostics" }
            div class="panel" { pre id="validation" { (text) } }
        }
    }
}

/// One runbook's table row.
fn line(l: &Line) -> Markup {
    let rb = &l.info;
    html! {
        tr data-runbook=(rb.name) {
            td {
                a href={ "/ui/runs?runbook=" (enc(&rb.name)) } { b { (rb.name) } }
                div class="muted" { (rb.description) }
                @if rb.approval_required {
                    div class="muted" {
                        "approval required"
                        @if let Some(a) = &rb.approvers { ", by " (a.describe()) }
                    }
                }
                @for p in &l.problems {
                    div class="error" { (p.file) ":" (p.line) ": " (p.message) }
                }
            }
            td { (rb.owner) }
            td { (rb.service.as_deref().unwrap_or("")) }
            td {
                @if rb.triggers.is_empty() {
                    span class="muted" { "manual only" }
                }
                @for (i, t) in rb.triggers.iter().enumerate() {
                    @if i > 0 { br; }
                    (trigger(t))
                }
            }
            td { (time_or_dash(rb.next_fire)) }
            td {
                @match &l.last {
                    Some(r) => {
                        a href={ "/ui/runs/" (enc(&r.id.0)) } { (status_badge(r.status.as_str())) }
                        div class="muted" { (time(r.created_at)) }
                    }
                    None => span class="muted" { "never" },
                }
            }
            td class="num" { (format!("{:.2}", l.saved_hours)) " h" }
            td {
                @for b in &l.breakers {
                    div class="breaker" data-key=(b.key) {
                        span class="status open" { "open" }
                        " "
                        span class="muted" {
                            @if !b.key.is_empty() { "key " (b.key) " · " }
                            (b.reason)
                        }
                        " "
                        form class="inline" method="post"
                            action={ "/ui/breakers/" (enc(&rb.name)) "/reset" } {
                            (csrf::field())
                            input type="hidden" name="key" value=(b.key);
                            button type="submit" class="reset" { "Reset" }
                        }
                    }
                }
                @if l.breakers.is_empty() {
                    span class="status closed" { "closed" }
                }
            }
        }
    }
}

/// A trigger as the runbooks table says it.
fn trigger(t: &TriggerInfo) -> Markup {
    html! {
        @match t {
            TriggerInfo::Schedule { schedule, timezone, .. } => {
                "schedule " code { (schedule) } " (" (timezone) ")"
            }
            TriggerInfo::Alert { matchers, sources, .. } => {
                "alert"
                // Alertmanager alone is the default, left out as in `untoil list`.
                @if sources.iter().any(|s| s != crate::trigger::source::ALERTMANAGER) {
                    " from " (sources.join(", "))
                }
                @for m in matchers { " " code { (m) } }
            }
        }
    }
}
