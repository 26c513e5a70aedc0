//! `GET /ui/approvals`: runs waiting for a person, each with what it would run and the buttons
//! to approve or deny it.

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use crate::identity::claim;
use crate::run::cause::Cause;
use crate::server::api::approvals::{Waiting, waiting};
use crate::server::dashboard::csrf;
use crate::server::dashboard::format::{enc, time, time_or_dash};
use crate::server::dashboard::layout::{page as framed, store_failure};
use crate::server::dashboard::parts::label_codes;
use crate::server::dashboard::stamp::signature;
use crate::server::state::Shared;

/// `GET /ui/approvals`.
pub async fn page(State(d): State<Shared>) -> Response {
    let stamp = signature(&d.engine, None).await;
    let list = match waiting(&d.engine).await {
        Ok(list) => list,
        Err(e) => return store_failure(e),
    };
    framed(&d.engine, &stamp, "approvals", "Approvals", render(&list))
}

/// Who or what asked for the run.
fn asked_by(cause: &Cause) -> Markup {
    html! {
        @match cause {
            Cause::Manual { user, claimed_user } => {
                "requested by " (claim::shown(user, claimed_user.as_deref()))
            }
            Cause::Alert { labels, .. } => { "for alert " (label_codes(labels)) }
            Cause::Schedule { at } => { "for the schedule fire at " (time(*at)) }
        }
    }
}

/// One waiting run's panel.
fn panel(a: &Waiting) -> Markup {
    let r = &a.run;
    let id = enc(&r.id.0);
    html! {
        div class="panel approval" data-run=(r.id) {
            h2 { a href={ "/ui/runs/" (id) } { code { (r.id) } } " · " (r.runbook) }
            p class="muted" {
                (asked_by(&r.cause))
                " · created " (time(r.created_at))
                " · expires " (time_or_dash(a.expires_at))
                @if let Some(approvers) = &a.approvers {
                    " · may be decided by " span class="approvers" { (approvers.describe()) }
                }
            }
            table class="plan" {
                thead {
                    tr { th { "Step" } th { "Kind" } th { "When" } th { "Will execute" } }
                }
                tbody {
                    @match &a.plan {
                        Some(plan) => {
                            @for s in plan {
                                tr {
                                    td { (s.name) }
                                    td { (s.kind) }
                                    td { (s.when.as_deref().unwrap_or("")) }
                                    td {
                                        pre class="command" { (s.detail) }
                                        @if let Some(problem) = &s.problem {
                                            p class="error" { "Would fail: " (problem) }
                                        }
                                        @if let Some(noop) = &s.noop {
                                            p class="muted" { (noop) }
                                        }
                                    }
                                }
                            }
                        }
                        None => {
                            tr {
                                td colspan="4" class="error" {
                                    "The plan cannot be rendered (runbook missing or invalid)."
                                }
                            }
                        }
                    }
                }
            }
            // The forms sit in a <p> as they always have; browsers close the <p> before them.
            p {
                form class="inline" method="post" action={ "/ui/runs/" (id) "/approve" } {
                    (csrf::field())
                    button type="submit" class="approve" { "Approve" }
                }
                " "
                form class="inline" method="post" action={ "/ui/runs/" (id) "/deny" } {
                    (csrf::field())
                    button type="submit" class="deny" { "Deny" }
                }
            }
        }
    }
}

/// The approvals page's content.
pub fn render(list: &[Waiting]) -> Markup {
    html! {
        h1 { "Approvals" }
        @if list.is_empty() {
            p class="muted" id="no-approvals" { "No runs are waiting for approval." }
        }
        @for a in list {
            (panel(a))
        }
    }
}
