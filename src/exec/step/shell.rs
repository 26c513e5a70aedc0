//! `run:` steps: a shell command, every interpolated value shell-quoted.

use crate::exec::process::{Ended, ProcessSpec};
use crate::run::status::StepStatus;
use crate::runbook::model::Step;
use crate::runbook::template::Template;

use crate::exec::step::attempt::{Attempt, failed_before_start, parse_json};
use crate::exec::step::command::{process_attempt, process_setup};
use crate::exec::step::env::StepEnv;

/// Runs the command once.
pub async fn run(step: &Step, command: &Template, shell: &str, env: &StepEnv<'_>) -> Attempt {
    let rendered = match env.shell_command(command) {
        Ok(c) => c.into_owned(),
        Err(e) => return failed_before_start(e),
    };
    let (vars, workdir) = match process_setup(step, env) {
        Ok(s) => s,
        Err(e) => return failed_before_start(e),
    };
    let spec = ProcessSpec {
        program: shell.to_string(),
        args: vec!["-c".into(), rendered],
        env: vars,
        workdir,
        stdin: None,
        redactor: env.redactor.clone(),
        hold_stdin: false,
    };
    process_attempt(&spec, step, env, |outcome, result| {
        result.json = parse_json(&result.stdout);
        match outcome.ended {
            Ended::Exited(Some(0)) => (StepStatus::Succeeded, None, false),
            // The author declared this status "nothing to do": a success, never retried.
            Ended::Exited(Some(code)) if step.noop_exit_codes.contains(&code) => {
                result.noop = Some(format!("exit status {code} (noop_exit_codes)"));
                (StepStatus::Succeeded, None, false)
            }
            Ended::Exited(Some(code)) => (
                StepStatus::Failed,
                Some(format!("command exited with status {code}")),
                true,
            ),
            Ended::Exited(None) => (
                StepStatus::Failed,
                Some("command was killed by a signal".into()),
                true,
            ),
            // Handled by `process_attempt` before this closure runs.
            Ended::TimedOut | Ended::Cancelled => (StepStatus::Failed, None, false),
        }
    })
    .await
}
