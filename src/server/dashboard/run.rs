//! `GET /ui/runs/{id}`: one run's facts (cause, times, approval, toil credit, the alert) and its
//! steps with their output.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::identity::claim;
use crate::report::human;
use crate::run::cause::Cause;
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::run::step::StepResult;
use crate::server::dashboard::format::{duration_ms, enc, span, time, time_or_dash};
use crate::server::dashboard::layout::{error_page, page as framed, store_failure};
use crate::server::dashboard::parts::{cause, label_codes, status_badge};
use crate::server::dashboard::stamp::signature;
use crate::server::state::Shared;

/// `GET /ui/runs/{id}`.
pub async fn page(State(d): State<Shared>, Path(id): Path<String>) -> Response {
    let stamp = signature(&d.engine, Some(&id)).await;
    let r = match d.engine.store.get_run(&RunId(id.clone())).await {
        Ok(Some(r)) => r,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, &format!("no run with id {id}")),
        Err(e) => return store_failure(e),
    };
    framed(&d.engine, &stamp, "runs", &format!("Run {id}"), render(&r))
}

/// The facts table's rows: (name, value).
fn facts(r: &RunRecord) -> Vec<(&'static str, Markup)> {
    let mut facts = vec![
        (
            "Cause",
            html! {
                (cause(&r.cause))
                @if let Some(replay) = r.replayed_alert() { ", " span id="replay" { (replay) } }
            },
        ),
        ("Owner", html! { (r.owner) }),
        ("Service", html! { (r.service.as_deref().unwrap_or("")) }),
        ("Created", html! { (time(r.created_at)) }),
        ("Started", html! { (time_or_dash(r.started_at)) }),
        ("Finished", html! { (time_or_dash(r.finished_at)) }),
    ];
    if let Some(ms) = r.duration_ms() {
        facts.push(("Duration", html! { (duration_ms(ms)) }));
    }
    if let Some(earlier) = &r.retry_of {
        let href = format!("/ui/runs/{}", enc(&earlier.0));
        facts.push((
            "Retries",
            html! { a id="retry-of" href=(href) { code { (earlier.0) } } },
        ));
    }
    if !r.params.is_empty() {
        facts.push((
            "Params",
            html! {
                @for (i, (k, v)) in r.params.iter().enumerate() {
                    @if i > 0 { " " }
                    code { (k) "=" (v) }
                }
            },
        ));
    }
    if r.dry_run {
        facts.push(("Dry run", html! { "yes" }));
    }
    if let Some(a) = &r.approval {
        facts.push((
            "Approval",
            html! {
                (if a.approved { "approved" } else { "denied" }) " by "
                (claim::shown(&a.by, a.claimed_by.as_deref())) " at " (time(a.at))
            },
        ));
    }
    if let Some(b) = &r.bypassed {
        facts.push((
            "Guards",
            html! { span class="error" { "bypassed: " (b.describe()) } },
        ));
    }
    if let Some(e) = &r.error {
        facts.push(("Error", html! { span class="error" { (e) } }));
    }
    facts.push((
        "Toil credited",
        html! {
            @match &r.toil {
                Some(t) => {
                    b id="toil-minutes" { (format!("{:.1}", t.minutes)) " min" }
                    " "
                    span class="muted" { (t.reason) }
                }
                None => span class="muted" { "not yet (credited when the run ends)" },
            }
        },
    ));
    if let Cause::Alert {
        labels, starts_at, ..
    } = &r.cause
    {
        facts.push(("Alert labels", label_codes(labels)));
        if let Some(summary) = r
            .alert
            .as_ref()
            .and_then(|a| a.alert.annotations.get("summary"))
        {
            facts.push(("Summary", html! { (summary) }));
        }
        // Alert start to run end, only for runs that fixed it (the same words as `runs show`).
        let ttr = if r.status == RunStatus::Succeeded {
            span(Some(*starts_at), r.finished_at)
        } else {
            "-".into()
        };
        facts.push(("Time to remediate", html! { span id="ttr" { (ttr) } }));
    }
    if let (Some(v), Some(text)) = (&r.verification, human::verdict(r)) {
        let class = if v.verified {
            "status succeeded"
        } else {
            "status failed"
        };
        facts.push((
            "Verified",
            html! { span id="verdict" class=(class) { (text) } },
        ));
    }
    facts
}

/// What a step ran (redacted), its output, each stream under its name, then its exit code or
/// HTTP status.
fn output(s: &StepResult) -> Markup {
    let streams = [
        ("stdout", s.stdout.as_str()),
        ("stderr", s.stderr.as_str()),
        ("body", s.body.as_str()),
        ("message", s.message.as_str()),
        ("error", s.error.as_deref().unwrap_or("")),
    ];
    html! {
        @if !s.command.is_empty() {
            div class="muted" { "ran" }
            pre class="output command" { (s.command) }
        }
        @for (name, text) in streams {
            @if !text.is_empty() {
                div class="muted" { (name) }
                pre class={ "output " (name) } { (text) }
            }
        }
        @if !s.hosts.is_empty() {
            div class="muted" { "hosts: " (s.hosts_succeeded()) " of " (s.hosts.len()) " succeeded" }
            table class="hosts" {
                @for h in &s.hosts {
                    tr {
                        td { code { (h.host) } }
                        td { (h.status.map(|s| s.as_str()).unwrap_or("?")) }
                        td class="num" { (h.exit_code.map(|c| c.to_string()).unwrap_or_default()) }
                        td { (h.error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        @if let Some(code) = s.exit_code {
            div class="muted" { "exit code " (code) }
        }
        @if let Some(code) = s.http_status {
            div class="muted" { "HTTP " (code) }
        }
    }
}

/// The run page's content.
pub fn render(r: &RunRecord) -> Markup {
    let status = r.status.as_str();
    html! {
        h1 {
            "Run " code { (r.id) } " of "
            a href={ "/ui/runs?runbook=" (enc(&r.runbook)) } { (r.runbook) }
            " "
            span id="run-status" data-status=(status) { (status_badge(status)) }
        }
        @if let Some(note) = human::status_note(r.status) {
            p class="muted" id="status-note" { (status) ": " (note) }
        }
        div class="panel" {
            table id="facts" {
                @for (name, value) in facts(r) {
                    tr { th { (name) } td { (value) } }
                }
            }
        }
        h2 { "Steps" }
        div class="panel" {
            table id="steps" {
                thead {
                    tr {
                        th { "Step" }
                        th { "Kind" }
                        th { "Status" }
                        th class="num" { "Duration" }
                        th class="num" { "Attempts" }
                        th { "Output" }
                    }
                }
                tbody {
                    @for s in &r.steps {
                        tr data-step=(s.name) {
                            td {
                                (s.name)
                                @if let Some(m) = s.toil_minutes {
                                    div class="muted" { (format!("{m:.1}")) " min toil" }
                                }
                            }
                            td { (s.kind) }
                            td { (status_badge(s.status.map_or("running", |st| st.as_str()))) }
                            td class="num" { (duration_ms(s.duration_ms)) }
                            td class="num" { (s.attempts) }
                            td { (output(s)) }
                        }
                    }
                    @if r.steps.is_empty() {
                        tr { td colspan="6" class="muted" { "No steps ran yet." } }
                    }
                }
            }
        }
    }
}
