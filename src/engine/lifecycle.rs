//! A run's life from its first record to its last, the same whoever starts it (alert, schedule,
//! person, `untoil run`): it is born queued with its toil baseline, and it ends with its final
//! status, reason and credit. Every ending goes through [`end`], the one place a run is credited.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::ledger::toil;
use crate::run::cause::{AlertContext, Cause};
use crate::run::credit::Credit;
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::runbook::model::Runbook;

/// A new run of `rb`, queued, with the parameters it runs with (complete: defaults applied) and
/// the runbook's toil estimates as they are now.
pub fn new_run(
    rb: &Runbook,
    cause: Cause,
    params: BTreeMap<String, String>,
    alert: Option<AlertContext>,
    now: DateTime<Utc>,
) -> RunRecord {
    RunRecord {
        id: RunId::new(),
        runbook: rb.name.clone(),
        version: rb.version.clone(),
        owner: rb.owner.clone(),
        service: rb.service.clone(),
        cause,
        params,
        status: RunStatus::Queued,
        created_at: now,
        started_at: None,
        finished_at: None,
        steps: Vec::new(),
        current_step: None,
        current_pgid: None,
        dry_run: false,
        approval_required: rb.guards.approval,
        error: None,
        alert,
        toil: Some(Credit {
            minutes: 0.0,
            baseline: toil::baseline(rb),
            reason: "not finished".into(),
            ..Default::default()
        }),
        verification: None,
        verify_by: None,
        guard_key: None,
        approval: None,
        bypassed: None,
        retry_of: None,
    }
}

/// A new queued run that starts `interrupted` (a run of the idempotent runbook `rb`) again: the
/// same cause, parameters, alert and guard key, and the approval it had (it is the same work,
/// not a new trigger), recording which run it retries.
pub fn retry(rb: &Runbook, interrupted: &RunRecord, now: DateTime<Utc>) -> RunRecord {
    let mut run = new_run(
        rb,
        interrupted.cause.clone(),
        interrupted.params.clone(),
        interrupted.alert.clone(),
        now,
    );
    run.guard_key = interrupted.guard_key.clone();
    run.approval = interrupted.approval.clone();
    run.retry_of = Some(interrupted.id.clone());
    run
}

/// Marks a claimed run running from `at`.
pub fn start(run: &mut RunRecord, at: DateTime<Utc>) {
    run.status = RunStatus::Running;
    run.started_at = Some(at);
}

/// Ends a run with `status` and its reason at `at`, and credits it.
pub fn end(run: &mut RunRecord, status: RunStatus, error: Option<String>, at: DateTime<Utc>) {
    run.status = status;
    if error.is_some() {
        run.error = error;
    }
    run.finished_at = Some(at);
    run.current_step = None;
    run.current_pgid = None;
    let prior = run.toil.take().unwrap_or_default();
    // What the executor rendered `toil.per_item.count` to, when it got that far.
    let count = prior
        .items
        .as_ref()
        .and_then(|i| match (i.count, &i.problem) {
            (Some(n), _) => Some(Ok(n)),
            (None, Some(p)) => Some(Err(p.clone())),
            (None, None) => None,
        });
    run.toil = Some(toil::credit_of(
        &prior.baseline,
        &toil::Ending {
            status: run.status,
            steps: &run.steps,
            dry_run: run.dry_run,
            approval_required: run.approval_required,
            alert: matches!(run.cause, Cause::Alert { .. }),
            count: count.as_ref(),
        },
    ));
}

/// Ends a run the executor finished, with the outcome it recorded on the run.
pub fn conclude(run: &mut RunRecord, at: DateTime<Utc>) {
    end(run, run.status, None, at);
}

/// Sets when a finished run's verification window ends, for a succeeded alert run of a
/// runbook with `verify` (an alert run is one a webhook delivered): without a verdict by then,
/// it becomes unverified.
pub fn await_verdict(run: &mut RunRecord, rb: &Runbook) {
    let Some(v) = &rb.verify else {
        return;
    };
    if run.status != RunStatus::Succeeded
        || run.dry_run
        || run.verification.is_some()
        || !matches!(run.cause, Cause::Alert { .. })
    {
        return;
    }
    let window = chrono::Duration::from_std(v.alert_resolves_within).unwrap_or_default();
    run.verify_by = run.finished_at.map(|end| end + window);
}

/// Ends a run that was running when untoil stopped (a crash found at the next start, or a
/// shutdown whose grace period ran out).
pub fn interrupt(run: &mut RunRecord, at: DateTime<Utc>, shutdown: bool) {
    let reason = match (&run.current_step, shutdown) {
        (_, true) => "interrupted: untoil shut down before the run finished".to_string(),
        (Some(s), false) => format!("interrupted: untoil stopped while step `{s}` was running"),
        (None, false) => "interrupted: untoil stopped during the run".into(),
    };
    end(run, RunStatus::Interrupted, Some(reason), at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::status::StepStatus;
    use crate::run::step::StepResult;

    fn runbook(steps_minutes: Option<f64>) -> Runbook {
        let text = match steps_minutes {
            None => "name: r\nowner: t\ntoil: {manual_minutes: 20, approval_minutes: 5}\ntriggers: [{schedule: '* * * * *'}]\nsteps: [{name: a, run: 'true'}]\n".to_string(),
            Some(m) => format!("name: r\nowner: t\ntoil: {{manual_minutes: 20}}\ntriggers: [{{schedule: '* * * * *'}}]\nsteps: [{{name: a, run: 'true', toil_minutes: {m}}}]\n"),
        };
        crate::runbook::catalog::one(&text, &Default::default())
            .map(|r| (*r).clone())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_ending_is_credited_from_the_baseline_the_run_was_born_with() {
        let rb = runbook(None);
        let t0 = Utc::now();
        let mut run = new_run(
            &rb,
            Cause::Manual {
                user: "a".into(),
                claimed_user: None,
            },
            BTreeMap::new(),
            None,
            t0,
        );
        assert_eq!(run.status, RunStatus::Queued);
        start(&mut run, t0);
        run.status = RunStatus::Succeeded;
        conclude(&mut run, t0);
        assert_eq!(run.toil.as_ref().map(|c| c.minutes), Some(20.0));
        assert_eq!(run.finished_at, Some(t0));

        let mut failed = new_run(
            &rb,
            Cause::Manual {
                user: "a".into(),
                claimed_user: None,
            },
            BTreeMap::new(),
            None,
            t0,
        );
        end(&mut failed, RunStatus::Skipped, Some("cooldown".into()), t0);
        assert_eq!(failed.toil.as_ref().map(|c| c.minutes), Some(0.0));
        assert_eq!(failed.error.as_deref(), Some("cooldown"));
    }

    #[test]
    fn an_interrupted_run_keeps_the_credit_of_the_steps_that_succeeded() {
        let rb = runbook(Some(7.0));
        let t0 = Utc::now();
        let mut run = new_run(
            &rb,
            Cause::Manual {
                user: "a".into(),
                claimed_user: None,
            },
            BTreeMap::new(),
            None,
            t0,
        );
        start(&mut run, t0);
        run.steps.push(StepResult {
            name: "a".into(),
            status: Some(StepStatus::Succeeded),
            ..Default::default()
        });
        run.current_step = Some("b".into());
        interrupt(&mut run, t0, false);
        assert_eq!(run.status, RunStatus::Interrupted);
        assert_eq!(run.toil.as_ref().map(|c| c.minutes), Some(7.0));
        assert_eq!(
            run.error.as_deref(),
            Some("interrupted: untoil stopped while step `b` was running")
        );
        assert_eq!(run.current_step, None);
    }

    #[test]
    fn a_retry_is_a_new_queued_run_of_the_same_work_that_names_the_run_it_retries() {
        let text = "name: r\nowner: t\nidempotent: true\ntoil: {manual_minutes: 20}\nsteps: [{name: a, run: 'true'}]\n";
        let rb = crate::runbook::catalog::one(text, &Default::default())
            .map(|r| (*r).clone())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(rb.idempotent);
        assert!(
            !runbook(None).idempotent,
            "false unless the runbook says so"
        );
        let t0 = Utc::now();
        let cause = Cause::Manual {
            user: "a".into(),
            claimed_user: None,
        };
        let params = BTreeMap::from([("x".to_string(), "1".to_string())]);
        let mut run = new_run(&rb, cause.clone(), params.clone(), None, t0);
        run.guard_key = Some("k".into());
        start(&mut run, t0);
        interrupt(&mut run, t0, false);
        let again = retry(&rb, &run, t0);
        assert_ne!(again.id, run.id);
        assert_eq!(again.status, RunStatus::Queued);
        assert_eq!((again.cause, again.params), (cause, params));
        assert_eq!(again.guard_key.as_deref(), Some("k"));
        assert_eq!(again.retry_of, Some(run.id));
        assert!(again.steps.is_empty() && again.started_at.is_none());
    }

    #[test]
    fn only_a_succeeded_alert_run_of_a_runbook_with_verify_awaits_a_verdict() {
        let rb = crate::runbook::catalog::one(
            "name: r\nowner: t\ntoil: {manual_minutes: 10}\ntriggers: [{alert: {matchers: ['alertname=\"X\"']}}]\nverify: {alert_resolves_within: 10m, credit: verified_only}\nsteps: [{name: a, run: 'true'}]\n",
            &Default::default(),
        )
        .map(|r| (*r).clone())
        .unwrap_or_else(|e| panic!("{e}"));
        let t0 = Utc::now();
        let alert = Cause::Alert {
            source: crate::trigger::source::ALERTMANAGER.into(),
            fingerprint: "f".into(),
            starts_at: t0,
            labels: BTreeMap::new(),
        };
        let manual = Cause::Manual {
            user: "a".into(),
            claimed_user: None,
        };
        for (cause, status, waits) in [
            (alert.clone(), RunStatus::Succeeded, true),
            (alert.clone(), RunStatus::Failed, false),
            (alert, RunStatus::Noop, false),
            (manual, RunStatus::Succeeded, false),
        ] {
            let mut run = new_run(&rb, cause, BTreeMap::new(), None, t0);
            start(&mut run, t0);
            run.status = status;
            conclude(&mut run, t0);
            await_verdict(&mut run, &rb);
            let want = waits.then(|| t0 + chrono::Duration::minutes(10));
            assert_eq!(run.verify_by, want, "{status}");
            let held = run.toil.as_ref().and_then(|c| c.held);
            assert_eq!(held, waits.then_some(10.0), "{status}");
        }
    }
}
