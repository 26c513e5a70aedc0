//! `GET /`: toil saved in a period (totals, coverage, a weekly chart by team or runbook).

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::report::backlog::{Backlog, backlog_report};
use crate::report::toil::{ToilReport, change_text, toil_report_compared};
use crate::server::api::reports::{assume_minutes, dims, labels, period};
use crate::server::dashboard::chart;
use crate::server::dashboard::form;
use crate::server::dashboard::format::{duration_ms, pct};
use crate::server::dashboard::layout::{error_page, page as framed, store_failure};
use crate::server::dashboard::period::{chosen, report_query, selector};
use crate::server::dashboard::stamp::signature;
use crate::server::state::Shared;

/// What the overview shows.
pub struct Overview<'a> {
    /// The period's label (`30d`).
    pub period: &'a str,
    /// `team` or `runbook`: what the chart's series are.
    pub by: &'a str,
    /// The toil report grouped by (`by`, week).
    pub report: &'a ToilReport,
    /// The automation backlog of the same period (for coverage).
    pub backlog: &'a Backlog,
}

/// `GET /?period=30d&by=team`.
pub async fn page(State(d): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let stamp = signature(&d.engine, None).await;
    let q = form::query(q);
    let (label, since) = chosen(&q);
    let by = match q.get("by").map(String::as_str) {
        Some("runbook") => "runbook",
        _ => "team",
    };
    let rq = report_query(since, Some(format!("{by},week")));
    let (p, dims) = match (period(&rq), dims(&rq)) {
        (Ok(p), Ok(dims)) => (p, dims),
        (Err(e), _) | (_, Err(e)) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let store = &*d.engine.store;
    // The cards set each total against the previous period of the same length.
    let report = match toil_report_compared(store, p, &dims, &[], true).await {
        Ok(r) => r,
        Err(e) => return store_failure(e),
    };
    let backlog = match backlog_report(store, p, &labels(&rq), assume_minutes(&rq)).await {
        Ok(b) => b,
        Err(e) => return store_failure(e),
    };
    let body = render(&Overview {
        period: label,
        by,
        report: &report,
        backlog: &backlog,
    });
    framed(&d.engine, &stamp, "overview", "Overview", body)
}

/// The overview's content.
pub fn render(o: &Overview) -> Markup {
    let (report, backlog, by, period) = (o.report, o.backlog, o.by, o.period);
    // The report's rows are (series, week): hours per series and week for the chart, and per
    // series for the legend. Both maps are sorted by name, so colours agree.
    let mut series: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut per_series: BTreeMap<String, f64> = BTreeMap::new();
    for row in &report.rows {
        let name = row.group.first().cloned().unwrap_or_default();
        let week = row.group.get(1).cloned().unwrap_or_default();
        let hours = row.figures.toil_hours;
        *series
            .entry(name.clone())
            .or_default()
            .entry(week)
            .or_default() += hours;
        *per_series.entry(name).or_default() += hours;
    }
    let weeks = chart::weeks(report.period.from, report.period.to);
    let total = &report.total;
    // "+2 (+25%) vs the previous 30 days", under each card that has a previous period.
    let versus = |key: &str| -> Markup {
        match &report.previous {
            Some(p) => html! {
                div class="change" data-figure=(key) {
                    (change_text(&p.change, key)) " vs the previous " (report.period.days()) " days"
                }
            },
            None => html! {},
        }
    };
    html! {
        h1 { "Toil saved" }
        div class="toolbar" {
            (selector("/", period, &format!("&by={by}")))
            span class="selector" id="by" {
                @for b in ["team", "runbook"] {
                    @if b == by {
                        span { "by " (b) }
                    } @else {
                        a href={ "/?period=" (period) "&by=" (b) } { "by " (b) }
                    }
                }
            }
            span class="muted" { (report.period.from) " .. " (report.period.to) " (UTC days)" }
        }
        div class="cards" {
            div class="card" {
                div class="label" { "Hours saved" }
                div class="value" id="total-hours" data-value=(total.toil_hours) {
                    (format!("{:.2}", total.toil_hours))
                }
                div class="sub" { (format!("{:.1}", total.toil_minutes)) " minutes" }
                (versus("toil_hours"))
            }
            div class="card" {
                div class="label" { "Runs" }
                div class="value" id="total-runs" { (total.runs) }
                div class="sub" id="run-outcomes" {
                    (total.failed) " failed · " (total.interrupted) " interrupted · "
                    (total.noop) " noop · " (total.cancelled) " cancelled"
                }
                (versus("runs"))
            }
            div class="card" {
                div class="label" { "Success rate" }
                div class="value" id="success-rate" { (pct(total.success_rate)) }
                div class="sub" { "succeeded and noop of those that ended well or failed" }
                (versus("success_rate"))
            }
            div class="card" {
                div class="label" { "Time to remediate" }
                div class="value" id="ttr-median" {
                    (total.ttr_median_ms.map(duration_ms).unwrap_or_else(|| "-".into()))
                }
                div class="sub" {
                    "median · p90 "
                    span id="ttr-p90" {
                        (total.ttr_p90_ms.map(duration_ms).unwrap_or_else(|| "-".into()))
                    }
                    " · alert start to the end of a succeeded run"
                }
                (versus("ttr_median_ms"))
            }
            div class="card" {
                div class="label" { "Verified" }
                div class="value" id="verified-share" { (pct(total.verified_share)) }
                div class="sub" {
                    (total.verified) " verified · " (total.unverified) " unverified"
                }
                (versus("verified_share"))
            }
            div class="card" {
                div class="label" { "Coverage" }
                div class="value" id="coverage" { (pct(backlog.coverage)) }
                div class="sub" {
                    (backlog.alerts_handled) " of " (backlog.alerts_received)
                    " alerts handled by automation"
                    @if backlog.alerts_not_remediated > 0 {
                        ", " span id="not-remediated" { (backlog.alerts_not_remediated) }
                        " not fixed by their run"
                    }
                }
            }
        }
        @if !report.notes.is_empty() {
            div class="panel muted" id="report-notes" {
                @for n in &report.notes { p { "* " (n) } }
            }
        }
        div class="panel chart" {
            h2 { "Hours saved per week, by " (by) }
            (chart::svg(&weeks, &series))
            div class="legend" {
                @for (j, (name, hours)) in per_series.iter().enumerate() {
                    span {
                        svg width="10" height="10" aria-hidden="true" {
                            rect width="10" height="10" rx="2" fill=(chart::colour(j)) {}
                        }
                        " " (name) " "
                        span class="muted" { (format!("{hours:.2}")) " h" }
                    }
                }
                @if per_series.is_empty() {
                    span class="muted" { "No toil credited in this period yet." }
                }
            }
        }
    }
}
