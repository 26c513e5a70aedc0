//! Every page rendered from values an attacker could choose (runbook names, alert labels, step
//! output, ...): they come out escaped, never as markup.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{NaiveDate, TimeZone, Utc};

use crate::exec::executor::PlannedStep;
use crate::identity::approvers::Approvers;
use crate::ledger::rollup::Rollup;
use crate::report::backlog::{Backlog, BacklogRow};
use crate::report::period::Period;
use crate::report::query::Dim;
use crate::report::toil::{Figures, Row, ToilReport};
use crate::run::cause::{AlertContext, Cause};
use crate::run::credit::Credit;
use crate::run::record::{ApprovalDecision, RunRecord, Verification};
use crate::run::status::{RunStatus, StepStatus};
use crate::run::step::StepResult;
use crate::runbook::diagnostic::{Kind, Record, Severity};
use crate::server::api::approvals::Waiting;
use crate::server::api::runbooks::{RunbookInfo, ToilInfo, TriggerInfo};
use crate::server::dashboard::overview::Overview;
use crate::server::dashboard::runbooks::{Line, OpenBreaker};
use crate::server::dashboard::runs::Runs;
use crate::server::dashboard::{approvals, backlog, layout, overview, run, runbooks, runs};
use crate::trigger::alert::Notification;

const HOSTILE: &str = "<script>alert(\"x\")</script> & 'q'";
const ESCAPED: &str = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'q'";

fn h() -> String {
    HOSTILE.to_string()
}

/// The page shows the hostile value, escaped, and nowhere as it is.
fn assert_escaped(page: &str, html: &str) {
    assert!(html.contains(ESCAPED), "{page}: not shown escaped:\n{html}");
    assert!(!html.contains("<script>"), "{page}: a script tag:\n{html}");
    assert!(
        !html.contains("alert(\"x\")"),
        "{page}: a raw quote:\n{html}"
    );
    assert!(!html.contains(" & 'q'"), "{page}: a raw ampersand:\n{html}");
}

fn period() -> Period {
    let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default();
    Period {
        from: d("2026-11-01"),
        to: d("2026-11-30"),
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("alertname".to_string(), h()), (h(), h())])
}

/// An alert run with a hostile value wherever a record carries text.
fn hostile_run() -> RunRecord {
    let at = Utc
        .with_ymd_and_hms(2026, 11, 28, 14, 0, 0)
        .single()
        .unwrap_or_default();
    let notification = serde_json::json!({
        "receiver": HOSTILE, "status": "firing", "version": "4", "groupKey": HOSTILE,
        "alerts": [{
            "status": "firing", "labels": labels(), "annotations": { "summary": HOSTILE },
            "startsAt": "2026-11-28T13:59:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": HOSTILE, "fingerprint": HOSTILE,
        }],
    });
    let mut n = Notification::from_json(notification.to_string().as_bytes()).expect("payload");
    let alert = n.alerts.remove(0);
    let mut r = RunRecord::synthetic(1);
    r.runbook = h();
    r.owner = h();
    r.service = Some(h());
    r.cause = Cause::Alert {
        source: crate::trigger::source::ALERTMANAGER.into(),
        fingerprint: h(),
        starts_at: alert.starts_at,
        labels: labels(),
    };
    r.params = BTreeMap::from([(h(), h())]);
    r.status = RunStatus::Succeeded;
    r.started_at = Some(at);
    r.finished_at = Some(at);
    r.error = Some(h());
    r.alert = Some(AlertContext::new(alert, std::sync::Arc::new(n)));
    r.toil = Some(Credit {
        minutes: 30.0,
        reason: h(),
        ..Credit::default()
    });
    r.approval = Some(ApprovalDecision {
        approved: true,
        by: h(),
        claimed_by: Some(format!("{HOSTILE}!")),
        at,
    });
    r.verification = Some(Verification {
        verified: true,
        at,
        resolved_at: Some(at),
    });
    r.steps = vec![StepResult {
        name: h(),
        kind: h(),
        status: Some(StepStatus::Succeeded),
        command: h(),
        stdout: h(),
        stderr: h(),
        body: h(),
        message: h(),
        error: Some(h()),
        exit_code: Some(0),
        toil_minutes: Some(1.0),
        ..StepResult::default()
    }];
    r
}

#[test]
fn the_overview_escapes_series_names() {
    let mut figures = Figures::of(&Rollup::default());
    figures.toil_hours = 1.0;
    let report = ToilReport {
        period: period(),
        by: vec![Dim::Team, Dim::Week],
        causes: Vec::new(),
        rows: vec![Row {
            group: vec![h(), "2026-W48".into()],
            rollup: Rollup::default(),
            figures: figures.clone(),
            previous: None,
            change: None,
        }],
        total: figures,
        total_rollup: Rollup::default(),
        previous: None,
        notes: Vec::new(),
    };
    let backlog = Backlog {
        period: period(),
        rows: Vec::new(),
        not_remediated: Vec::new(),
        alerts_received: 0,
        alerts_handled: 0,
        alerts_not_remediated: 0,
        coverage: None,
    };
    let html = overview::render(&Overview {
        period: "30d",
        by: "team",
        report: &report,
        backlog: &backlog,
    })
    .into_string();
    assert_escaped("overview", &html);
    assert!(
        html.contains(&format!("data-series=\"{ESCAPED}\"")),
        "{html}"
    );
}

#[test]
fn the_overview_cards_show_ttr_median_and_p90_the_change_and_legacy_notes() {
    use crate::report::toil::aggregate;
    let key = |month: u32, day: u32| crate::ledger::rollup::RollupKey {
        day: NaiveDate::from_ymd_opt(2026, month, day).unwrap_or_default(),
        owner: "team-a".into(),
        service: String::new(),
        runbook: "disk".into(),
        cause: "alert".into(),
    };
    let mut now = Rollup {
        runs: 12,
        succeeded: 10,
        failed: 2,
        legacy_runs: 2,
        ..Rollup::default()
    };
    for ms in [60_000u64; 9].into_iter().chain([4 * 86_400_000]) {
        now.remediations += 1;
        now.remediate_ms_sum += ms;
        now.remediate_ms.record(ms);
    }
    let before = Rollup {
        runs: 6,
        succeeded: 6,
        ..Rollup::default()
    };
    let p = period();
    let previous = p.previous().unwrap_or(p);
    let report = aggregate(p, &[Dim::Team, Dim::Week], [(key(11, 20), now)]).compared(&aggregate(
        previous,
        &[Dim::Team, Dim::Week],
        [(key(10, 12), before)],
    ));
    let backlog = Backlog {
        period: p,
        rows: Vec::new(),
        alerts_received: 0,
        alerts_handled: 0,
        coverage: None,
        not_remediated: Vec::new(),
        alerts_not_remediated: 0,
    };
    let html = overview::render(&Overview {
        period: "30d",
        by: "team",
        report: &report,
        backlog: &backlog,
    })
    .into_string();
    // The median, not the mean (which one four-day-old alert makes 9 h 37 min).
    assert!(html.contains("id=\"ttr-median\">1 min<"), "{html}");
    assert!(html.contains("id=\"ttr-p90\">1 min<"), "{html}");
    assert!(!html.contains("9 h 37 min"), "{html}");
    assert!(
        html.contains("data-figure=\"runs\">+6 (+100%) vs the previous"),
        "{html}"
    );
    assert!(html.contains("id=\"report-notes\""), "{html}");
    assert!(html.contains("2 runs counted before"), "{html}");
}

#[test]
fn the_backlog_escapes_alert_labels() {
    let row = BacklogRow {
        source: crate::trigger::source::ALERTMANAGER.into(),
        group: labels(),
        count: 2,
        last_seen: Utc::now(),
        minutes_each: 15.0,
        estimated_minutes: 30.0,
        runbooks: Vec::new(),
        outcomes: BTreeMap::new(),
    };
    let b = Backlog {
        period: period(),
        rows: vec![row.clone()],
        not_remediated: vec![BacklogRow {
            source: crate::trigger::source::ALERTMANAGER.into(),
            runbooks: vec![h()],
            outcomes: BTreeMap::from([(h(), 1)]),
            ..row
        }],
        alerts_received: 2,
        alerts_handled: 0,
        alerts_not_remediated: 0,
        coverage: Some(0.0),
    };
    assert_escaped("backlog", &backlog::render("30d", &b).into_string());
}

#[test]
fn the_runbooks_page_escapes_names_triggers_problems_and_breakers() {
    let info = RunbookInfo {
        name: h(),
        description: h(),
        owner: h(),
        service: Some(h()),
        tags: vec![h()],
        toil: ToilInfo {
            manual_minutes: 1.0,
            approval_minutes: 0.0,
        },
        triggers: vec![
            TriggerInfo::Schedule {
                text: h(),
                schedule: h(),
                timezone: h(),
                next_fire: None,
                catchup: None,
            },
            TriggerInfo::Alert {
                text: h(),
                sources: vec!["alertmanager".into()],
                matchers: vec![h()],
                on: "firing".into(),
                cancel_on_resolve: false,
            },
        ],
        next_fire: None,
        params: BTreeMap::new(),
        steps: Vec::new(),
        approval_required: true,
        approvers: Some(Approvers {
            users: vec![h()],
            groups: vec![],
        }),
        file: h(),
        version: h(),
        errors: 1,
    };
    let line = Line {
        info,
        problems: vec![Record {
            file: h(),
            line: 1,
            column: 1,
            end_line: 1,
            end_column: 2,
            severity: Severity::Error,
            code: Kind::InvalidValue,
            message: h(),
            label: h(),
            help: Vec::new(),
            related: Vec::new(),
        }],
        last: Some(hostile_run()),
        saved_hours: 1.0,
        breakers: vec![OpenBreaker {
            key: h(),
            reason: h(),
        }],
    };
    let html = runbooks::render(&[line], Some(HOSTILE)).into_string();
    assert_escaped("runbooks", &html);
    assert!(
        html.contains(&format!("data-runbook=\"{ESCAPED}\"")),
        "{html}"
    );
    assert!(
        html.contains(&format!("name=\"key\" value=\"{ESCAPED}\"")),
        "{html}"
    );
    assert!(
        html.contains("/ui/breakers/%3Cscript%3Ealert%28%22x%22%29"),
        "path components are percent-encoded: {html}"
    );
}

#[test]
fn the_runs_page_escapes_filters_and_runs() {
    let run = hostile_run();
    let mut skipped = hostile_run();
    skipped.status = RunStatus::Skipped;
    skipped.error = Some(h());
    if let Cause::Alert { labels, .. } = &mut skipped.cause {
        labels.insert("instance".into(), h());
    }
    let names = vec![h()];
    let html = runs::render(&Runs {
        names: &names,
        runbook: Some(HOSTILE),
        status: None,
        cause: None,
        error: Some(HOSTILE),
        runs: &[run, skipped],
    })
    .into_string();
    assert_escaped("runs", &html);
    assert!(
        html.contains(&format!("<option selected>{ESCAPED}</option>")),
        "{html}"
    );
    // The alert's instance in its column, a skipped run's reason under its status.
    assert!(
        html.contains(&format!("<td class=\"instance\">{ESCAPED}</td>")),
        "{html}"
    );
    assert!(
        html.contains(&format!("skip-reason\">{ESCAPED}</div>")),
        "{html}"
    );
    assert_eq!(html.matches("skip-reason").count(), 1, "{html}");
}

#[test]
fn the_run_page_escapes_facts_steps_and_output() {
    let html = run::render(&hostile_run()).into_string();
    assert_escaped("run", &html);
    for part in [
        "pre class=\"output stdout\"",
        "pre class=\"output command\"",
        "id=\"ttr\"",
        "Summary",
        "Verified",
    ] {
        assert!(html.contains(part), "{part} in {html}");
    }
}

#[test]
fn the_run_page_says_remediated_only_for_succeeded_runs_and_names_noop_and_interrupted() {
    let ok = run::render(&hostile_run()).into_string();
    // Alert 13:59, run ended 14:00.
    assert!(ok.contains("<span id=\"ttr\">1 min</span>"), "{ok}");
    assert!(ok.contains("verified: alert resolved"), "{ok}");
    assert!(!ok.contains("status-note"), "{ok}");
    for (status, note) in [
        (RunStatus::Noop, "found nothing to do"),
        (RunStatus::Interrupted, "not counted as a failure"),
    ] {
        let mut r = hostile_run();
        r.status = status;
        r.verification = Some(Verification {
            verified: false,
            at: Utc
                .with_ymd_and_hms(2026, 11, 28, 14, 15, 0)
                .single()
                .unwrap_or_default(),
            resolved_at: None,
        });
        let html = run::render(&r).into_string();
        let name = status.as_str();
        assert!(
            html.contains(&format!("<span class=\"status {name}\">{name}</span>")),
            "{html}"
        );
        assert!(html.contains(note), "{html}");
        assert!(html.contains("<span id=\"ttr\">-</span>"), "{html}");
        assert!(
            html.contains("unverified: alert still firing when the verify window ended"),
            "{html}"
        );
    }
}

#[test]
fn the_approvals_page_escapes_plans_and_causes() {
    let mut manual = hostile_run();
    manual.cause = Cause::Manual {
        user: h(),
        claimed_user: Some(format!("{HOSTILE}!")),
    };
    let plan = vec![PlannedStep {
        name: h(),
        kind: h(),
        when: Some(h()),
        detail: h(),
        problem: Some(h()),
        noop: Some(h()),
    }];
    let list = [
        Waiting {
            run: hostile_run(),
            expires_at: None,
            plan: Some(plan),
            approvers: Some(Approvers {
                users: vec![h()],
                groups: vec![h()],
            }),
        },
        Waiting {
            run: manual,
            expires_at: Some(Utc::now()),
            plan: None,
            approvers: None,
        },
    ];
    let html = approvals::render(&list).into_string();
    assert_escaped("approvals", &html);
    assert!(html.contains(&format!("(claimed: {ESCAPED}!)")), "{html}");
    assert!(html.contains("may be decided by"), "{html}");
    assert!(html.contains(&format!("Would fail: {ESCAPED}")), "{html}");
    assert!(html.contains("name=\"csrf\""), "{html}");
}

#[test]
fn the_frame_and_the_error_page_escape_titles_and_messages() {
    let body = maud::html! { p { (HOSTILE) } };
    let html = layout::frame("0af", "runs", &format!("Run {HOSTILE}"), 2, body).into_string();
    assert!(
        html.contains(&format!("<title>Run {ESCAPED} · untoil</title>")),
        "{html}"
    );
    assert!(html.contains("id=\"nav-runs\" class=\"active\""), "{html}");
    assert!(html.contains(">Approvals (2)</a>"), "{html}");
    let error = layout::error_body(StatusCode::NOT_FOUND, HOSTILE).into_string();
    assert_escaped("error", &error);
}
