//! Steps that run a process (shell and plugin steps): its environment and working directory,
//! and its outcome as an attempt.

use chrono::Utc;

use crate::exec::step::attempt::Attempt;
use crate::exec::step::env::StepEnv;
use crate::run::status::StepStatus;
use crate::run::step::StepResult;
use crate::runbook::model::Step;

/// A step process's environment and working directory.
pub type ProcessSetup = (Vec<(String, String)>, Option<std::path::PathBuf>);

/// Renders a step's `env` and `workdir`.
pub fn process_setup(step: &Step, env: &StepEnv<'_>) -> Result<ProcessSetup, String> {
    let mut vars = env.process_env.to_vec();
    vars.push(("UNTOIL_STEP".into(), step.name.clone()));
    for (k, t) in &step.env {
        let v = env.renderer.plain(t, env.ctx).map_err(|e| e.0)?;
        vars.push((k.clone(), v));
    }
    let workdir = match &step.workdir {
        Some(t) => Some(env.renderer.plain(t, env.ctx).map_err(|e| e.0)?.into()),
        None => None,
    };
    Ok((vars, workdir))
}

/// Runs a process for a step and turns its outcome into an attempt. `judge` decides the status
/// of a process that exited by itself: (status, error, retryable).
pub async fn process_attempt<F>(
    spec: &crate::exec::process::ProcessSpec,
    step: &Step,
    env: &StepEnv<'_>,
    judge: F,
) -> Attempt
where
    F: FnOnce(
        &crate::exec::process::ProcessOutcome,
        &mut StepResult,
    ) -> (StepStatus, Option<String>, bool),
{
    use crate::exec::process::Ended;
    let started_at = Utc::now();
    let outcome = match crate::exec::process::run(
        spec,
        step.timeout,
        env.grace,
        env.hurry,
        env.cancel,
        env.lines.clone(),
        env.spawned.clone(),
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            return Attempt {
                result: StepResult {
                    status: Some(StepStatus::Failed),
                    error: Some(format!("cannot start `{}`: {e}", spec.program)),
                    started_at: Some(started_at),
                    ..Default::default()
                },
                retryable: false,
            };
        }
    };
    let mut result = StepResult {
        started_at: Some(started_at),
        stdout: outcome.stdout.text(),
        stderr: outcome.stderr.text(),
        exit_code: match outcome.ended {
            Ended::Exited(code) => code,
            _ => None,
        },
        ..Default::default()
    };
    let (status, error, retryable) = match outcome.ended {
        Ended::TimedOut => (
            StepStatus::TimedOut,
            Some(format!(
                "timed out after {}; its process group was killed",
                crate::runbook::model::format_duration(step.timeout)
            )),
            true,
        ),
        Ended::Cancelled => (
            StepStatus::Cancelled,
            Some("cancelled; its process group was killed".into()),
            false,
        ),
        Ended::Exited(_) => judge(&outcome, &mut result),
    };
    result.status = Some(status);
    result.error = error;
    Attempt { result, retryable }
}
