//! Toil credit: how many minutes of manual work a run saved, and why.
//!
//! Rules (documented in docs/toil.md):
//! - When the runbook's steps carry their own `toil_minutes`, the credit is the sum over the
//!   steps that succeeded, whatever the run's outcome.
//! - Otherwise a succeeded run credits `toil.manual_minutes`; any other outcome credits nothing.
//! - With `toil.per_item`, the run also credits `minutes` per item its count rendered to, at
//!   most `max_items`, whatever its outcome (like per-step figures: work its steps reported
//!   done). A count that does not render to a whole number credits 0 items, with the reason.
//! - Dry runs and runs that found nothing to do (`noop`) credit nothing.
//! - A run that needed approval is reduced by `toil.approval_minutes`, never below zero.
//! - With `verify.credit: verified_only`, an alert run credits nothing at its finish: a
//!   succeeded one holds its credit until the verdict ([`verdict`]), any other outcome credits
//!   nothing.
//!
//! The baseline figures are stored with the credit, so a later change to the runbook's
//! estimates does not rewrite history.

use crate::run::credit::{Baseline, Credit, ItemCredit, PerItemRule};
use crate::run::status::{RunStatus, StepStatus};
use crate::run::step::StepResult;
use crate::runbook::model::{Runbook, VerifyCredit};

/// The reason of a credit held for verification; [`verdict`] replaces it.
const AWAITING: &str = "; awaiting verification";

/// The baseline of a runbook as it is now.
pub fn baseline(runbook: &Runbook) -> Baseline {
    Baseline {
        manual_minutes: runbook.toil.manual_minutes,
        approval_minutes: runbook.toil.approval_minutes,
        step_minutes: runbook
            .steps
            .iter()
            .filter_map(|s| s.toil_minutes.map(|m| (s.name.clone(), m)))
            .collect(),
        per_item: runbook.toil.per_item.as_ref().map(|p| PerItemRule {
            minutes: p.minutes,
            count: p.count.source().to_string(),
            max_items: p.max_items,
        }),
        verified_only: runbook
            .verify
            .as_ref()
            .is_some_and(|v| v.credit == VerifyCredit::VerifiedOnly),
    }
}

/// How a run ended, as far as its credit is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// Its final status.
    pub status: RunStatus,
    /// Its step results.
    pub steps: &'a [StepResult],
    /// A dry run.
    pub dry_run: bool,
    /// It needed a person's approval.
    pub approval_required: bool,
    /// It was started by an alert (what `verified_only` holds).
    pub alert: bool,
    /// What `toil.per_item.count` rendered to once the steps ended: a number of items or why
    /// there is none; None when it was never rendered (the run did not run its steps to the end).
    pub count: Option<&'a Result<u64, String>>,
}

/// Computes the credit of a finished run (without per-item count or alert).
pub fn credit(
    baseline: &Baseline,
    status: RunStatus,
    steps: &[StepResult],
    dry_run: bool,
    approval_required: bool,
) -> Credit {
    credit_of(
        baseline,
        &Ending {
            status,
            steps,
            dry_run,
            approval_required,
            alert: false,
            count: None,
        },
    )
}

/// Computes the credit of a finished run.
pub fn credit_of(baseline: &Baseline, end: &Ending<'_>) -> Credit {
    let status = end.status;
    let nothing = end.dry_run || status == RunStatus::Noop;
    let (gross, mut reason) = if end.dry_run {
        (
            0.0,
            "dry run: nothing was done, nothing credited".to_string(),
        )
    } else if status == RunStatus::Noop {
        (
            0.0,
            "run found nothing to do (noop): nothing credited".to_string(),
        )
    } else if !baseline.step_minutes.is_empty() {
        let done: Vec<(&str, f64)> = end
            .steps
            .iter()
            .filter(|s| s.status == Some(StepStatus::Succeeded))
            .filter_map(|s| {
                baseline
                    .step_minutes
                    .get(&s.name)
                    .map(|m| (s.name.as_str(), *m))
            })
            .collect();
        // `+ 0.0`: the sum of no f64 is -0.0, which JSON and people read as a negative credit.
        let sum: f64 = done.iter().map(|(_, m)| m).sum::<f64>() + 0.0;
        let parts: Vec<String> = done.iter().map(|(n, m)| format!("{n} {m}")).collect();
        let reason = if parts.is_empty() {
            "no step with a toil figure succeeded".to_string()
        } else {
            format!("succeeded steps' toil_minutes: {}", parts.join(" + "))
        };
        (sum, reason)
    } else if status == RunStatus::Succeeded {
        (
            baseline.manual_minutes,
            format!("run succeeded: manual_minutes {}", baseline.manual_minutes),
        )
    } else if baseline.per_item.is_some() {
        // Its items may still be credited below: the per-run figure is what it does not earn.
        (
            0.0,
            format!(
                "run {status}: manual_minutes {} not credited",
                baseline.manual_minutes
            ),
        )
    } else {
        (0.0, format!("run {status}: nothing credited"))
    };
    let items = baseline
        .per_item
        .as_ref()
        .map(|rule| items(rule, end.count, nothing));
    let mut gross = gross;
    if let Some(i) = &items
        && !nothing
    {
        // After a part that credited nothing, "+" would read as if that part said the total.
        let join = if gross > 0.0 { " + " } else { "; credited " };
        gross += i.counted as f64 * i.minutes_each;
        reason.push_str(join);
        reason.push_str(&describe_items(i));
    }
    let mut minutes = gross;
    if end.approval_required && gross > 0.0 && baseline.approval_minutes > 0.0 {
        minutes = (gross - baseline.approval_minutes).max(0.0);
        reason.push_str(&format!(
            ", minus approval_minutes {}",
            baseline.approval_minutes
        ));
    }
    let mut held = None;
    if baseline.verified_only && end.alert && !nothing {
        if status == RunStatus::Succeeded {
            held = Some(minutes);
            reason.push_str(&format!(
                "{AWAITING}: {minutes} held until the alert resolves within the window (verify.credit: verified_only)"
            ));
        } else if minutes > 0.0 {
            reason.push_str(&format!(
                "; {minutes} not credited: verified_only credits a succeeded run once its alert resolved"
            ));
        }
        minutes = 0.0;
    }
    Credit {
        minutes,
        baseline: baseline.clone(),
        reason,
        items,
        held,
    }
}

/// The items of a run under `rule`, from what its count rendered to; none when the run credits
/// nothing.
fn items(rule: &PerItemRule, count: Option<&Result<u64, String>>, nothing: bool) -> ItemCredit {
    let (n, problem) = match count {
        Some(Ok(n)) => (Some(*n), None),
        Some(Err(e)) => (None, Some(e.clone())),
        // A dry or noop run credits no item: that it was never counted is no problem.
        None if nothing => (None, None),
        None => (
            None,
            Some("the count was not rendered: the run did not end its steps".into()),
        ),
    };
    ItemCredit {
        count: n,
        counted: if nothing {
            0
        } else {
            n.unwrap_or(0).min(rule.max_items)
        },
        max_items: rule.max_items,
        minutes_each: rule.minutes,
        from: rule.count.clone(),
        problem,
    }
}

/// `37 items x 2 (count from {{...}})`, with the cap or the problem when there is one.
fn describe_items(i: &ItemCredit) -> String {
    let from = i.from.trim();
    match (i.count, &i.problem) {
        (Some(n), _) if n > i.max_items => format!(
            "{} x {} (count {n} capped at max_items {}, from {from})",
            items_word(i.counted),
            i.minutes_each,
            i.max_items
        ),
        (Some(_), _) => format!(
            "{} x {} (count from {from})",
            items_word(i.counted),
            i.minutes_each
        ),
        (None, problem) => format!(
            "0 items (count from {from}: {})",
            problem.as_deref().unwrap_or("no number")
        ),
    }
}

/// `1 item`, `3 items`.
fn items_word(n: u64) -> String {
    if n == 1 {
        "1 item".into()
    } else {
        format!("{n} items")
    }
}

/// What a count rendered to as a number of items, or why it is none.
pub fn parse_count(rendered: &str) -> Result<u64, String> {
    let t = rendered.trim();
    if t.is_empty() {
        return Err("rendered to an empty value, not a number of items".into());
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    // A JSON number comes through the template as the float it was parsed into: `2.0`, or
    // `1e+20` for a count beyond f64's exact integers. A whole one is a count (beyond u64, as
    // many as can be; max_items caps it anyway).
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 && f.fract() == 0.0 => Ok(if f >= u64::MAX as f64 {
            u64::MAX
        } else {
            f as u64
        }),
        _ => {
            let shown: String = t.chars().take(40).collect();
            Err(format!(
                "rendered to `{shown}`, not a whole number of items (0 or more)"
            ))
        }
    }
}

/// The credit of a held run once its verdict is known: the held minutes when verified, nothing
/// when not. A credit that holds nothing is returned as it is.
pub fn verdict(c: &Credit, verified: bool) -> Credit {
    let Some(held) = c.held else {
        return c.clone();
    };
    let base = c.reason.split(AWAITING).next().unwrap_or(&c.reason);
    let mut out = c.clone();
    if verified {
        out.minutes = held;
        out.reason = format!("{base}; verified: the alert resolved within the window");
    } else {
        out.minutes = 0.0;
        out.reason = format!(
            "{base}; unverified: the alert did not resolve within the window, {held} not credited"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, status: StepStatus) -> StepResult {
        StepResult {
            name: name.into(),
            status: Some(status),
            ..Default::default()
        }
    }

    fn base(manual: f64, approval: f64, steps: &[(&str, f64)]) -> Baseline {
        Baseline {
            manual_minutes: manual,
            approval_minutes: approval,
            step_minutes: steps.iter().map(|(n, m)| (n.to_string(), *m)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_succeeded_run_credits_the_manual_minutes() {
        let c = credit(
            &base(20.0, 0.0, &[]),
            RunStatus::Succeeded,
            &[],
            false,
            false,
        );
        assert_eq!(c.minutes, 20.0);
        assert_eq!(c.reason, "run succeeded: manual_minutes 20");
    }

    #[test]
    fn failed_cancelled_and_interrupted_runs_credit_nothing() {
        for s in [
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::Interrupted,
            RunStatus::TimedOut,
        ] {
            assert_eq!(
                credit(&base(20.0, 0.0, &[]), s, &[], false, false).minutes,
                0.0
            );
        }
    }

    #[test]
    fn step_figures_credit_the_succeeded_steps_even_when_the_run_fails() {
        let b = base(20.0, 0.0, &[("a", 5.0), ("b", 7.0), ("c", 11.0)]);
        let steps = [
            step("a", StepStatus::Succeeded),
            step("b", StepStatus::Failed),
            step("c", StepStatus::Succeeded),
        ];
        let c = credit(&b, RunStatus::Failed, &steps, false, false);
        assert_eq!(c.minutes, 16.0);
        assert_eq!(c.reason, "succeeded steps' toil_minutes: a 5 + c 11");
    }

    #[test]
    fn approval_reduces_the_credit_but_never_below_zero() {
        let c = credit(
            &base(20.0, 2.0, &[]),
            RunStatus::Succeeded,
            &[],
            false,
            true,
        );
        assert_eq!(c.minutes, 18.0);
        let c = credit(&base(1.0, 2.0, &[]), RunStatus::Succeeded, &[], false, true);
        assert_eq!(c.minutes, 0.0);
        let c = credit(
            &base(20.0, 2.0, &[]),
            RunStatus::Succeeded,
            &[],
            false,
            false,
        );
        assert_eq!(c.minutes, 20.0);
    }

    #[test]
    fn dry_runs_credit_nothing() {
        let c = credit(
            &base(20.0, 0.0, &[]),
            RunStatus::Succeeded,
            &[],
            true,
            false,
        );
        assert_eq!(c.minutes, 0.0);
    }

    #[test]
    fn no_succeeded_step_with_a_toil_figure_credits_a_positive_zero() {
        let b = base(20.0, 0.0, &[("a", 5.0)]);
        let c = credit(&b, RunStatus::Succeeded, &[], false, false);
        assert!(
            c.minutes == 0.0 && c.minutes.is_sign_positive(),
            "{}",
            c.minutes
        );
        assert_eq!(
            serde_json::to_string(&c.minutes).ok().as_deref(),
            Some("0.0")
        );
    }

    fn per_item(manual: f64, minutes: f64, max: u64) -> Baseline {
        Baseline {
            per_item: Some(PerItemRule {
                minutes,
                count: "{{steps.clean.json.removed}}".into(),
                max_items: max,
            }),
            ..base(manual, 0.0, &[])
        }
    }

    fn ending(status: RunStatus, count: Option<&Result<u64, String>>) -> Ending<'_> {
        Ending {
            status,
            steps: &[],
            dry_run: false,
            approval_required: false,
            alert: false,
            count,
        }
    }

    #[test]
    fn per_item_credit_adds_items_times_minutes_to_the_run_figure() {
        let c = credit_of(
            &per_item(5.0, 2.0, 100),
            &ending(RunStatus::Succeeded, Some(&Ok(37))),
        );
        assert_eq!(c.minutes, 79.0);
        assert_eq!(
            c.reason,
            "run succeeded: manual_minutes 5 + 37 items x 2 (count from {{steps.clean.json.removed}})"
        );
        let items = c.items.unwrap_or_default();
        assert_eq!(
            (items.count, items.counted, items.max_items),
            (Some(37), 37, 100)
        );
    }

    #[test]
    fn per_item_credit_is_capped_at_max_items() {
        let c = credit_of(
            &per_item(0.0, 2.0, 100),
            &ending(RunStatus::Succeeded, Some(&Ok(137))),
        );
        assert_eq!(c.minutes, 200.0);
        assert!(
            c.reason
                .contains("100 items x 2 (count 137 capped at max_items 100"),
            "{}",
            c.reason
        );
        assert_eq!(
            c.items.map(|i| (i.count, i.counted)),
            Some((Some(137), 100))
        );
    }

    #[test]
    fn a_count_that_is_no_whole_number_credits_no_item_and_says_why() {
        for text in ["", "abc", "-3", "2.5"] {
            let parsed = parse_count(text);
            assert!(parsed.is_err(), "{text}");
            let c = credit_of(
                &per_item(5.0, 2.0, 100),
                &ending(RunStatus::Succeeded, Some(&parsed)),
            );
            assert_eq!(c.minutes, 5.0, "{text}: the run keeps its own figure");
            assert!(c.reason.contains("+ 0 items (count from"), "{}", c.reason);
            assert!(
                c.items
                    .is_some_and(|i| i.problem.is_some() && i.counted == 0)
            );
        }
        assert_eq!(parse_count(" 12\n"), Ok(12));
        // What handlebars makes of JSON numbers: whole floats are counts.
        assert_eq!(parse_count("2.0"), Ok(2));
        assert_eq!(parse_count("1e+20"), Ok(u64::MAX));
        for text in ["-1.0", "NaN", "inf", "1e-3"] {
            assert!(parse_count(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_reason_never_says_nothing_was_credited_beside_credited_items() {
        let failed = credit_of(
            &per_item(5.0, 2.0, 100),
            &ending(RunStatus::Failed, Some(&Ok(3))),
        );
        assert_eq!(failed.minutes, 6.0);
        assert_eq!(
            failed.reason,
            "run failed: manual_minutes 5 not credited; credited 3 items x 2 (count from {{steps.clean.json.removed}})"
        );
        let capped = credit_of(
            &per_item(5.0, 2.0, 3),
            &ending(RunStatus::Succeeded, Some(&parse_count("1e+20"))),
        );
        assert_eq!(capped.minutes, 11.0, "{}", capped.reason);
    }

    #[test]
    fn a_failed_run_keeps_its_counted_items_and_a_noop_or_dry_run_none() {
        let failed = credit_of(
            &per_item(5.0, 2.0, 100),
            &ending(RunStatus::Failed, Some(&Ok(3))),
        );
        assert_eq!(failed.minutes, 6.0);
        let noop = credit_of(
            &per_item(5.0, 2.0, 100),
            &ending(RunStatus::Noop, Some(&Ok(3))),
        );
        assert_eq!(noop.minutes, 0.0);
        assert_eq!(noop.items.map(|i| i.counted), Some(0));
        let mut dry = ending(RunStatus::Succeeded, Some(&Ok(3)));
        dry.dry_run = true;
        assert_eq!(credit_of(&per_item(5.0, 2.0, 100), &dry).minutes, 0.0);
        let never = credit_of(
            &per_item(5.0, 2.0, 100),
            &ending(RunStatus::Interrupted, None),
        );
        assert_eq!(never.minutes, 0.0);
    }

    #[test]
    fn a_noop_run_credits_nothing_even_with_step_figures() {
        let b = base(20.0, 0.0, &[("a", 5.0)]);
        let steps = [step("a", StepStatus::Succeeded)];
        let c = credit(&b, RunStatus::Noop, &steps, false, false);
        assert_eq!(c.minutes, 0.0);
        assert_eq!(c.reason, "run found nothing to do (noop): nothing credited");
    }

    #[test]
    fn verified_only_holds_a_succeeded_alert_run_until_its_verdict() {
        let b = Baseline {
            verified_only: true,
            ..base(10.0, 0.0, &[])
        };
        let mut end = ending(RunStatus::Succeeded, None);
        end.alert = true;
        let held = credit_of(&b, &end);
        assert_eq!((held.minutes, held.held), (0.0, Some(10.0)));
        assert!(
            held.reason.contains("awaiting verification"),
            "{}",
            held.reason
        );
        let verified = verdict(&held, true);
        assert_eq!(verified.minutes, 10.0);
        assert_eq!(
            verified.reason,
            "run succeeded: manual_minutes 10; verified: the alert resolved within the window"
        );
        let unverified = verdict(&held, false);
        assert_eq!(unverified.minutes, 0.0);
        assert!(
            unverified.reason.contains("unverified"),
            "{}",
            unverified.reason
        );
        // A run not started by an alert, or a failed alert run, is not held.
        let manual = credit_of(&b, &ending(RunStatus::Succeeded, None));
        assert_eq!((manual.minutes, manual.held), (10.0, None));
        let mut failed = ending(RunStatus::Failed, None);
        failed.alert = true;
        assert_eq!(credit_of(&b, &failed).held, None);
        // A credit that holds nothing is left as it is by a verdict.
        assert_eq!(verdict(&manual, false), manual);
    }

    #[test]
    fn credits_recorded_before_per_item_and_verification_read_back() {
        let old = r#"{"minutes":5.0,"baseline":{"manual_minutes":5.0,"approval_minutes":0.0},"reason":"run succeeded: manual_minutes 5"}"#;
        let c: Credit = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.minutes, c.items, c.held), (5.0, None, None));
        assert!(!c.baseline.verified_only && c.baseline.per_item.is_none());
    }
}
