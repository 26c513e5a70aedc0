//! Step kinds: one file each, one contract. A step attempt always yields a [`StepResult`]; a
//! failing step is a result, not an `Err`.

pub mod http;
pub mod plugin;
pub mod shell;

use std::time::{Duration, Instant};

use chrono::Utc;
use handlebars::Context;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::exec::redact::Redactor;
use crate::exec::render::Renderer;
use crate::run::status::StepStatus;
use crate::run::step::StepResult;
use crate::runbook::model::{Action, Step};
use crate::runbook::plugins::Plugins;

/// Everything a step attempt needs from its run.
pub struct StepEnv<'a> {
    /// Template renderer.
    pub renderer: &'a Renderer,
    /// The run's template context (params, alert, steps so far, ...).
    pub ctx: &'a Context,
    /// Masks secrets in outputs.
    pub redactor: &'a Redactor,
    /// Cancelled when the run is cancelled or times out.
    pub cancel: &'a CancellationToken,
    /// Receives output lines as they come (unredacted; the receiver redacts).
    pub lines: Option<tokio::sync::mpsc::Sender<(crate::exec::process::Stream, String)>>,
    /// Receives the process group id of each process started.
    pub spawned: Option<UnboundedSender<u32>>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Shared HTTP client.
    pub http: &'a reqwest::Client,
    /// Installed plugins.
    pub plugins: &'a Plugins,
    /// Environment variables every process of the run gets (UNTOIL_*).
    pub process_env: &'a [(String, String)],
    /// The run as plugins see it (protocol input minus `step` and `with`).
    pub plugin_input: &'a serde_json::Value,
}

/// One attempt's result, and whether trying again may help.
pub struct Attempt {
    /// The result.
    pub result: StepResult,
    /// Connection errors, 5xx, timeouts and non-zero exits may pass on retry; 4xx do not.
    pub retryable: bool,
}

/// What a step will do, rendered (for `--dry-run` and progress lines).
pub fn describe(step: &Step, env: &StepEnv<'_>) -> Result<String, String> {
    match &step.action {
        Action::Shell { command, shell } => env
            .renderer
            .shell(command, env.ctx)
            .map(|c| format!("{shell} -c {c}"))
            .map_err(|e| e.0),
        Action::Http(req) => http::describe(req, env),
        Action::Plugin { name, with } => env
            .renderer
            .value(with, env.ctx)
            .map(|w| format!("plugin {name} with {w}"))
            .map_err(|e| e.0),
    }
}

/// Runs one attempt of a step.
pub async fn attempt(step: &Step, env: &StepEnv<'_>) -> Attempt {
    let started = Instant::now();
    let mut out = match &step.action {
        Action::Shell { command, shell } => shell::run(step, command, shell, env).await,
        Action::Http(req) => http::run(step, req, env).await,
        Action::Plugin { name, with } => plugin::run(step, name, with, env).await,
    };
    out.result.name = step.name.clone();
    out.result.kind = step.action.kind().to_string();
    out.result.duration_ms = started.elapsed().as_millis() as u64;
    out.result.started_at.get_or_insert_with(Utc::now);
    out.result.toil_minutes = step.toil_minutes;
    redact_result(&mut out.result, env.redactor);
    out
}

/// A failed attempt that never started (render error, bad input): not worth retrying.
pub fn failed_before_start(message: String) -> Attempt {
    Attempt {
        result: StepResult {
            status: Some(StepStatus::Failed),
            error: Some(message),
            started_at: Some(Utc::now()),
            ..Default::default()
        },
        retryable: false,
    }
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

/// Parses text as JSON when it is a JSON document (objects, arrays, numbers, ...).
pub fn parse_json(text: &str) -> Option<serde_json::Value> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    serde_json::from_str(t).ok()
}

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
