//! Toil credit: how many minutes of manual work a run saved, and why.
//!
//! Rules (documented in docs/toil.md):
//! - When the runbook's steps carry their own `toil_minutes`, the credit is the sum over the
//!   steps that succeeded, whatever the run's outcome.
//! - Otherwise a succeeded run credits `toil.manual_minutes`; any other outcome credits nothing.
//! - Dry runs and runs that found nothing to do (`noop`) credit nothing.
//! - A run that needed approval is reduced by `toil.approval_minutes`, never below zero.
//!
//! The baseline figures are stored with the credit, so a later change to the runbook's
//! estimates does not rewrite history.

use crate::run::credit::{Baseline, Credit};
use crate::run::status::{RunStatus, StepStatus};
use crate::run::step::StepResult;
use crate::runbook::model::Runbook;

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
    }
}

/// Computes the credit of a finished run.
pub fn credit(
    baseline: &Baseline,
    status: RunStatus,
    steps: &[StepResult],
    dry_run: bool,
    approval_required: bool,
) -> Credit {
    let (gross, mut reason) = if dry_run {
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
        let done: Vec<(&str, f64)> = steps
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
    } else {
        (0.0, format!("run {status}: nothing credited"))
    };
    let mut minutes = gross;
    if approval_required && gross > 0.0 && baseline.approval_minutes > 0.0 {
        minutes = (gross - baseline.approval_minutes).max(0.0);
        reason.push_str(&format!(
            ", minus approval_minutes {}",
            baseline.approval_minutes
        ));
    }
    Credit {
        minutes,
        baseline: baseline.clone(),
        reason,
    }
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
}
