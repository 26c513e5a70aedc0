//! Step kinds: one file each ([`shell`], [`http`], [`plugin`], [`report`]), one contract. A step attempt
//! always yields an [`attempt::Attempt`]; a failing step is a result, not an `Err`.

pub mod attempt;
pub mod command;
pub mod env;
pub mod http;
pub mod plugin;
pub mod private_dir;
pub mod remote;
pub mod report;
pub mod shell;

use std::time::Instant;

use chrono::Utc;

use crate::exec::redact::Redactor;
use crate::exec::step::attempt::Attempt;
use crate::exec::step::env::StepEnv;
use crate::run::step::StepResult;
use crate::runbook::model::{Action, Step};

/// What a step will do, rendered (for `--dry-run` and progress lines).
pub fn describe(step: &Step, env: &StepEnv<'_>) -> Result<String, String> {
    match &step.action {
        Action::Shell {
            command,
            target: Some(target),
            ..
        } => remote::describe(command, target, env),
        Action::Shell { command, shell, .. } => env
            .shell_command(command)
            .map(|c| format!("{shell} -c {c}")),
        Action::Http(req) => http::describe(req, env),
        Action::Plugin { name, with } => env
            .renderer
            .value(with, env.ctx)
            .map(|w| format!("plugin {name} with {w}"))
            .map_err(|e| e.0),
        Action::Report(req) => Ok(report::describe(req, Utc::now())),
    }
}

/// Runs one attempt of a step.
pub async fn attempt(step: &Step, env: &StepEnv<'_>) -> Attempt {
    let started = Instant::now();
    let mut out = match &step.action {
        Action::Shell {
            command,
            target: Some(target),
            ..
        } => remote::run(step, command, target, env).await,
        Action::Shell { command, shell, .. } => shell::run(step, command, shell, env).await,
        Action::Http(req) => http::run(step, req, env).await,
        Action::Plugin { name, with } => plugin::run(step, name, with, env).await,
        Action::Report(req) => report::run(step, req, env).await,
    };
    out.result.name = step.name.clone();
    out.result.kind = step.action.kind().to_string();
    out.result.duration_ms = started.elapsed().as_millis() as u64;
    out.result.started_at.get_or_insert_with(Utc::now);
    out.result.toil_minutes = step.toil_minutes;
    redact_result(&mut out.result, env.redactor);
    out
}

fn redact_result(r: &mut StepResult, redactor: &Redactor) {
    if redactor.is_empty() {
        return;
    }
    r.stdout = redactor.redact(&r.stdout);
    r.stderr = redactor.redact(&r.stderr);
    r.body = redactor.redact(&r.body);
    r.message = redactor.redact(&r.message);
    r.error = r.error.as_deref().map(|e| redactor.redact(e));
    for v in r.headers.values_mut() {
        *v = redactor.redact(v);
    }
    if let Some(j) = &mut r.json {
        redactor.redact_json(j);
    }
    if let Some(j) = &mut r.outputs {
        redactor.redact_json(j);
    }
}
