//! `GET /ui/backlog`: alerts no runbook handles, most toil first; then alerts a runbook handles
//! whose runs did not fix them.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::report::backlog::{Backlog, BacklogRow, backlog_report, outcomes};
use crate::server::api::reports::{assume_minutes, labels, period};
use crate::server::dashboard::form;
use crate::server::dashboard::format::{pct, time};
use crate::server::dashboard::layout::{error_page, page as framed, store_failure};
use crate::server::dashboard::period::{chosen, report_query, selector};
use crate::server::dashboard::stamp::signature;
use crate::server::state::Shared;

/// `GET /ui/backlog?period=30d`.
pub async fn page(State(d): State<Shared>, RawQuery(q): RawQuery) -> Response {
    let stamp = signature(&d.engine, None).await;
    let q = form::query(q);
    let (label, since) = chosen(&q);
    let rq = report_query(since, None);
    let p = match period(&rq) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let b = match backlog_report(&*d.engine.store, p, &labels(&rq), assume_minutes(&rq)).await {
        Ok(b) => b,
        Err(e) => return store_failure(e),
    };
    framed(
        &d.engine,
        &stamp,
        "backlog",
        "Automation backlog",
        render(label, &b),
    )
}

/// The backlog page's content for the period labelled `period`.
pub fn render(period: &str, b: &Backlog) -> Markup {
    html! {
        h1 { "Automation backlog" }
        div class="toolbar" {
            (selector("/ui/backlog", period, ""))
            span class="muted" {
                "Alerts no runbook handles, most toil first. Coverage: "
                b id="coverage" { (pct(b.coverage)) }
                " (" (b.alerts_handled) " of " (b.alerts_received) " alerts)"
            }
        }
        div class="panel" {
            table id="backlog" {
                thead {
                    tr {
                        th { "Alert" }
                        th { "Labels" }
                        th class="num" { "Count" }
                        th { "Last seen" }
                        th class="num" { "Minutes each" }
                        th class="num" { "A runbook would save" }
                    }
                }
                tbody {
                    @for r in &b.rows {
                        tr {
                            td { (r.group.get("alertname").map_or("", String::as_str)) (from_source(r)) }
                            td class="muted" { (extra_labels(r)) }
                            td class="num" { (r.count) }
                            td { (time(r.last_seen)) }
                            td class="num" { (format!("{:.1}", r.minutes_each)) }
                            td class="num" { (format!("{:.2}", r.estimated_minutes / 60.0)) " h" }
                        }
                    }
                    @if b.rows.is_empty() {
                        tr {
                            td colspan="6" class="muted" {
                                "Every alert in this period was handled by a runbook."
                            }
                        }
                    }
                }
            }
        }
        h2 { "Handled, but not fixed" }
        p class="muted" {
            "Alerts a runbook handles whose run failed, timed out, was interrupted or was "
            "skipped: toil that still landed on people ("
            b id="not-remediated" { (b.alerts_not_remediated) }
            " of " (b.alerts_handled) " handled alerts), most toil first."
        }
        div class="panel" {
            table id="not-remediated-rows" {
                thead {
                    tr {
                        th { "Alert" }
                        th { "Labels" }
                        th { "Runbooks" }
                        th { "Outcomes" }
                        th class="num" { "Count" }
                        th { "Last seen" }
                        th class="num" { "Minutes each" }
                        th class="num" { "Toil left to people" }
                    }
                }
                tbody {
                    @for r in &b.not_remediated {
                        tr {
                            td { (r.group.get("alertname").map_or("", String::as_str)) (from_source(r)) }
                            td class="muted" { (extra_labels(r)) }
                            td { (r.runbooks.join(", ")) }
                            td { (outcomes(r)) }
                            td class="num" { (r.count) }
                            td { (time(r.last_seen)) }
                            td class="num" { (format!("{:.1}", r.minutes_each)) }
                            td class="num" { (format!("{:.2}", r.estimated_minutes / 60.0)) " h" }
                        }
                    }
                    @if b.not_remediated.is_empty() {
                        tr {
                            td colspan="8" class="muted" {
                                "Every run of a handled alert in this period ran to its end."
                            }
                        }
                    }
                }
            }
        }
    }
}

/// ` (from SOURCE)` for a row of a source other than Alertmanager, which stays unmarked.
fn from_source(r: &BacklogRow) -> String {
    if r.source == crate::trigger::source::ALERTMANAGER {
        String::new()
    } else {
        format!(" (from {})", r.source)
    }
}

/// A row's labels other than alertname, as `k=v, k=v`.
fn extra_labels(r: &BacklogRow) -> String {
    r.group
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
