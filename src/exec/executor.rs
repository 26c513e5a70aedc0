//! Runs one run of a runbook from start to end: renders and runs the steps of its plan in
//! order (`when`, retries, timeouts, cancellation) and records each step on the run, reporting
//! progress to a [`Recorder`]. How a run ends beyond that (credit, storage) is the caller's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::exec::condition::{Condition, reads_step_output, unset_before_run};
use crate::exec::plan::Plan;
use crate::exec::recorder::Recorder;
use crate::exec::render::{Renderer, context};
use crate::exec::step::env::StepEnv;
use crate::exec::step::{self, attempt::failed_before_start};
use crate::exec::taint::Taint;
use crate::run::event::RunEvent;
use crate::run::record::RunRecord;
use crate::run::status::{RunStatus, StepStatus};
use crate::run::step::StepResult;
use crate::runbook::model::{Action, Step};
use crate::runbook::plugins::Plugins;
use crate::store::Store;

/// Output lines buffered between a step's process and the run's watchers.
const OUTPUT_BUFFER: usize = 1024;
/// Output lines of one attempt streamed as events (all output is still captured, head + tail).
const MAX_STREAMED_LINES: usize = 10_000;

/// Default time between SIGTERM and SIGKILL for a step's processes.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// One step as a dry run shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedStep {
    /// Step name.
    pub name: String,
    /// Step kind.
    pub kind: String,
    /// The `when` condition with what it decides now (true, false, decided at run time), if any.
    pub when: Option<String>,
    /// What would run (command, request, plugin input), rendered and redacted.
    pub detail: String,
    /// Why the step would fail if the run started now: a condition or template that cannot be
    /// rendered without waiting for earlier steps' output (redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// How the step can end the run as `noop` (found nothing to do), when it declares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noop: Option<String>,
}

/// How a plan shows what ends a run as `noop` after step `s`, if anything does.
fn noop_rule(s: &Step) -> Option<String> {
    let mut ways = Vec::new();
    if !s.noop_exit_codes.is_empty() {
        let codes: Vec<String> = s.noop_exit_codes.iter().map(i32::to_string).collect();
        ways.push(format!("on exit status {}", codes.join(", ")));
    }
    if let Some(w) = &s.noop_when {
        ways.push(format!("when {} (decided after it ran)", w.source().trim()));
    }
    (!ways.is_empty()).then(|| format!("ends the run as noop {}", ways.join(", or ")))
}

/// Runs runbooks. Build one per process and share it.
pub struct Executor {
    renderer: Renderer,
    http: reqwest::Client,
    plugins: Plugins,
    grace: Duration,
    /// Cancelled once step processes must be killed without their grace.
    hurry: CancellationToken,
    pass_env: Vec<String>,
    /// What `report` steps read. The executor only reads it: runs are recorded by its caller.
    store: Option<Arc<dyn Store>>,
}

/// What a step's attempt sends while it runs.
enum Progress {
    Spawned(u32),
    Line(crate::exec::process::Stream, String),
}

impl Executor {
    /// An executor using the plugins of a directory.
    pub fn new(plugins: Plugins) -> Result<Executor, String> {
        Ok(Executor {
            renderer: Renderer::new(),
            http: step::http::client()?,
            plugins,
            grace: DEFAULT_GRACE,
            hurry: CancellationToken::new(),
            pass_env: Vec::new(),
            store: None,
        })
    }

    /// The store `report` steps render their reports from (without one they fail, saying so).
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Executor {
        self.store = Some(store);
        self
    }

    /// Variables of the daemon's environment every step gets besides the base (e.g. the ssh
    /// agent's socket); untoil's own (`UNTOIL_*`) never.
    pub fn with_pass_env(mut self, names: Vec<String>) -> Executor {
        self.pass_env = names;
        self
    }

    /// Sets the time between SIGTERM and SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Executor {
        self.grace = grace;
        self
    }

    /// From now on, a cancelled step's processes are SIGKILLed at once, without SIGTERM and the
    /// grace (those in their grace now too): a replica that fenced itself must have stopped its
    /// steps before another replica may take over its runs, within a sixth of the lease.
    pub fn hurry(&self) {
        self.hurry.cancel();
    }

    /// The installed plugins.
    pub fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    /// Renders every step of a plan as it would run, executing nothing. Steps that read earlier
    /// steps' results see placeholders such as `<steps.usage.stdout, decided at run time>`.
    pub fn preview(&self, plan: &Plan) -> Vec<PlannedStep> {
        let rb = plan.runbook().clone();
        let mut ctx = plan.context(Utc::now());
        let process_env = plan.process_env(&self.pass_env);
        let plugin_input = plan.plugin_input(&ctx);
        let taint = plan.taint();
        let cancel = CancellationToken::new();
        let mut out = Vec::new();
        for s in &rb.steps {
            let hctx = context(ctx.clone());
            let env = StepEnv {
                renderer: &self.renderer,
                ctx: &hctx,
                redactor: plan.redactor(),
                cancel: &cancel,
                lines: None,
                spawned: None,
                grace: self.grace,
                hurry: &self.hurry,
                http: &self.http,
                plugins: &self.plugins,
                process_env: &process_env,
                plugin_input: &plugin_input,
                taint: &taint,
                store: self.store.as_deref(),
                command: None,
            };
            let condition = s.when.as_ref().map(|w| {
                let c = Condition::decide(&self.renderer, w, &hctx, plan.alert().is_some(), true);
                (c.describe(w), c)
            });
            let rendered = match &s.action {
                Action::Plugin { name, with } => match self.renderer.value(with, &hctx) {
                    Ok(w) => {
                        let input = step::plugin::input(s, w, &env, true);
                        Ok(format!(
                            "plugin {name}, stdin:\n  {}",
                            serde_json::to_string(&input).unwrap_or_default()
                        ))
                    }
                    Err(e) => Err(e.0),
                },
                _ => step::describe(s, &env),
            };
            // Earlier steps' output is a placeholder here: a template that fails on its shape
            // (`steps.check.json.count`) and on nothing else is for the run to decide.
            let waits = || {
                reads_step_output(s.templates()) && unset_before_run(s.templates(), &ctx).is_empty()
            };
            let (detail, render_error) = match rendered {
                Ok(d) => (d, None),
                Err(_) if waits() => (
                    "decided at run time (it reads an earlier step's output)".to_string(),
                    None,
                ),
                Err(e) => (format!("cannot render: {e}"), Some(e)),
            };
            let problem = match condition.as_ref().map(|(_, c)| c) {
                Some(Condition::Fails(e)) => Some(e.clone()),
                Some(c) if !c.runs() => None,
                _ => render_error,
            };
            out.push(PlannedStep {
                name: s.name.clone(),
                kind: s.action.kind().to_string(),
                when: condition.map(|(w, _)| plan.redactor().redact(&w)),
                detail: plan.redactor().redact(&detail),
                problem: problem.map(|p| plan.redactor().redact(&p)),
                noop: noop_rule(s).map(|n| plan.redactor().redact(&n)),
            });
            if let Some(steps) = ctx["steps"].as_object_mut() {
                steps.insert(s.name.clone(), placeholder(s, &self.plugins));
            }
        }
        out
    }

    /// Executes a plan on its run (already `running`): each step's result is added to the run,
    /// and the run gets its outcome (succeeded, failed, timed out or cancelled) and reason.
    /// Events go to `recorder` as they happen. A dry run executes nothing: each step is shown
    /// as it would run and skipped.
    pub async fn execute(
        &self,
        plan: &Plan,
        run: &mut RunRecord,
        cancel: CancellationToken,
        recorder: &mut dyn Recorder,
    ) {
        let rb = plan.runbook().clone();
        let started_at = run.started_at.unwrap_or_else(Utc::now);
        recorder
            .record(RunEvent::RunStarted {
                id: plan.id().clone(),
                runbook: rb.name.clone(),
                steps: rb.steps.len(),
            })
            .await;

        if plan.dry_run() {
            for (index, planned) in self.preview(plan).into_iter().enumerate() {
                let result = StepResult {
                    name: planned.name.clone(),
                    kind: planned.kind.clone(),
                    status: Some(StepStatus::Skipped),
                    message: format!("dry run: {}", planned.detail),
                    ..Default::default()
                };
                run.steps.push(result.clone());
                recorder
                    .record(RunEvent::StepFinished {
                        index,
                        result: Box::new(result),
                    })
                    .await;
            }
            run.status = RunStatus::Succeeded;
            return;
        }

        // The run timeout cancels the current step through a child token.
        let run_cancel = cancel.child_token();
        let timed_out = Arc::new(AtomicBool::new(false));
        let timer = rb.timeout.map(|limit| {
            let token = run_cancel.clone();
            let flag = timed_out.clone();
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                flag.store(true, Ordering::SeqCst);
                token.cancel();
            })
        });

        let mut ctx = plan.context(started_at);
        let process_env = plan.process_env(&self.pass_env);
        // Only plugin steps read it, and it copies the alert and notification: built when the
        // runbook has one.
        let has_plugin = rb
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::Plugin { .. }));
        let plugin_input = if has_plugin {
            plan.plugin_input(&ctx)
        } else {
            serde_json::Value::Null
        };
        let taint = plan.taint();
        let mut failed: Option<String> = None;
        // Set once a step found nothing to do: the rest is skipped and the run ends `noop`.
        let mut nothing_to_do: Option<String> = None;
        for (index, s) in rb.steps.iter().enumerate() {
            if run_cancel.is_cancelled() {
                run.steps.push(StepResult {
                    name: s.name.clone(),
                    kind: s.action.kind().to_string(),
                    status: Some(StepStatus::Cancelled),
                    error: Some("not started: the run was stopped".into()),
                    ..Default::default()
                });
                continue;
            }
            let not_run = match (&failed, &nothing_to_do) {
                (Some(reason), _) => Some(format!("not run: {reason}")),
                (None, Some(reason)) => Some(format!("nothing to do: {reason}")),
                (None, None) => None,
            };
            if let Some(why) = not_run {
                let result = StepResult {
                    name: s.name.clone(),
                    kind: s.action.kind().to_string(),
                    status: Some(StepStatus::Skipped),
                    error: Some(why),
                    ..Default::default()
                };
                run.steps.push(result.clone());
                recorder
                    .record(RunEvent::StepFinished {
                        index,
                        result: Box::new(result),
                    })
                    .await;
                continue;
            }
            let hctx = context(ctx.clone());
            let env = Env {
                ctx: &hctx,
                cancel: &run_cancel,
                process_env: &process_env,
                plugin_input: &plugin_input,
                taint: &taint,
            };
            let mut result = self.run_step(index, s, plan, &env, recorder).await;
            if let Some(steps) = ctx["steps"].as_object_mut() {
                steps.insert(s.name.clone(), result.template_value());
            }
            if result.status == Some(StepStatus::Succeeded)
                && result.noop.is_none()
                && let Some(w) = &s.noop_when
            {
                let has_alert = plan.alert().is_some();
                match Condition::decide(&self.renderer, w, &context(ctx.clone()), has_alert, false)
                {
                    Condition::Runs => {
                        result.noop = Some(format!("noop_when {} is true", w.source().trim()));
                    }
                    // Like `when`: a condition that cannot be decided fails its step.
                    Condition::Fails(e) => {
                        result.status = Some(StepStatus::Failed);
                        result.error = Some(format!(
                            "`noop_when` cannot be evaluated: {}",
                            plan.redactor().redact(&e)
                        ));
                        if let Some(steps) = ctx["steps"].as_object_mut() {
                            steps.insert(s.name.clone(), result.template_value());
                        }
                    }
                    Condition::False | Condition::NoAlert | Condition::AtRunTime => {}
                }
            }
            if let Some(why) = &result.noop
                && result.status == Some(StepStatus::Succeeded)
            {
                nothing_to_do = Some(format!("step `{}`, {why}", s.name));
            }
            let status = result.status.unwrap_or(StepStatus::Failed);
            let step_error = result.error.clone();
            run.steps.push(result.clone());
            recorder
                .record(RunEvent::StepFinished {
                    index,
                    result: Box::new(result),
                })
                .await;
            if matches!(status, StepStatus::Failed | StepStatus::TimedOut) && !s.continue_on_error {
                failed = Some(match &step_error {
                    Some(e) => format!("step `{}` {status}: {e}", s.name),
                    None => format!("step `{}` {status}", s.name),
                });
            }
        }
        if let Some(t) = timer {
            t.abort();
        }
        // Counted from what the steps really reported; a count that fails to render costs the
        // run its items, never its outcome.
        if let Some(per_item) = &rb.toil.per_item {
            let count = self
                .renderer
                .plain(&per_item.count, &context(ctx.clone()))
                .map_err(|e| {
                    // The usual cause: the step printed something that is not JSON.
                    let hint = if per_item.count.source().contains(".json") {
                        " (a step's `json` is set only when its whole stdout is JSON)"
                    } else {
                        ""
                    };
                    format!("cannot be rendered: {}{hint}", e.0)
                })
                .and_then(|text| crate::ledger::toil::parse_count(&text))
                // The reason may quote what the count rendered to, which may hold a secret.
                .map_err(|e| plan.redactor().redact(&e));
            run.toil.get_or_insert_with(Default::default).items =
                Some(crate::run::credit::ItemCredit::rendered(count));
        }
        // Shared ssh connections and key files of remote steps live as long as the run.
        step::remote::end_run(&plan.id().0).await;
        run.status = if timed_out.load(Ordering::SeqCst) {
            run.error = Some(format!(
                "run timed out after {}",
                rb.timeout
                    .map(crate::runbook::model::format_duration)
                    .unwrap_or_default()
            ));
            RunStatus::TimedOut
        } else if cancel.is_cancelled() {
            run.error = Some("cancelled".into());
            RunStatus::Cancelled
        } else if let Some(reason) = failed {
            run.error = Some(reason);
            RunStatus::Failed
        } else if nothing_to_do.is_some() {
            RunStatus::Noop
        } else {
            RunStatus::Succeeded
        };
    }

    async fn run_step(
        &self,
        index: usize,
        s: &Step,
        plan: &Plan,
        env: &Env<'_>,
        recorder: &mut dyn Recorder,
    ) -> StepResult {
        let skipped = |why: String| StepResult {
            name: s.name.clone(),
            kind: s.action.kind().to_string(),
            status: Some(StepStatus::Skipped),
            error: Some(why),
            started_at: Some(Utc::now()),
            toil_minutes: s.toil_minutes,
            ..Default::default()
        };
        let redactor = plan.redactor();
        if let Some(when) = &s.when {
            let has_alert = plan.alert().is_some();
            match Condition::decide(&self.renderer, when, env.ctx, has_alert, false) {
                Condition::Runs => {}
                Condition::NoAlert => {
                    return skipped("`when` reads the alert, and this run has no alert".into());
                }
                Condition::False => return skipped(format!("`when` is false: {}", when.source())),
                // Never during a run (`before_run` is false above).
                Condition::AtRunTime => {}
                Condition::Fails(e) => {
                    let mut r = failed_before_start(redactor.redact(&e)).result;
                    r.name = s.name.clone();
                    r.kind = s.action.kind().to_string();
                    return r;
                }
            }
        }
        // Bounded: a step printing without pause must neither starve the step's own timeout
        // nor grow memory; lines beyond what the watcher takes are dropped from the stream.
        let (tx, mut rx) = tokio::sync::mpsc::channel(OUTPUT_BUFFER);
        let (spawn_tx, mut spawn_rx) = tokio::sync::mpsc::unbounded_channel();
        // Rendered once for the progress line and every attempt (the context does not change
        // between them).
        let command = match &s.action {
            Action::Shell {
                command,
                target: None,
                ..
            } => self.renderer.shell(command, env.ctx, env.taint).ok(),
            _ => None,
        };
        let step_env = StepEnv {
            renderer: &self.renderer,
            ctx: env.ctx,
            redactor,
            cancel: env.cancel,
            lines: Some(tx),
            spawned: Some(spawn_tx),
            grace: self.grace,
            hurry: &self.hurry,
            http: &self.http,
            plugins: &self.plugins,
            process_env: env.process_env,
            plugin_input: env.plugin_input,
            taint: env.taint,
            store: self.store.as_deref(),
            command: command.as_deref(),
        };
        let detail = redactor.redact(
            &step::describe(s, &step_env).unwrap_or_else(|e| format!("cannot render: {e}")),
        );
        let max_attempts = s.retries.attempts + 1;
        let mut attempt_no = 0;
        let first_start = Utc::now();
        // From the first attempt's start to the last one's end, waits between them included.
        let clock = std::time::Instant::now();
        loop {
            attempt_no += 1;
            recorder
                .record(RunEvent::StepStarted {
                    index,
                    name: s.name.clone(),
                    attempt: attempt_no,
                    detail: detail.clone(),
                })
                .await;
            let run = step::attempt(s, &step_env);
            tokio::pin!(run);
            // Forward output lines while the attempt runs.
            let mut streamed = 0usize;
            let attempt = loop {
                let progress = tokio::select! {
                    // The attempt first, so its timeout and cancellation are always seen.
                    biased;
                    a = &mut run => break a,
                    Some(pgid) = spawn_rx.recv() => Progress::Spawned(pgid),
                    Some((stream, line)) = rx.recv() => Progress::Line(stream, line),
                };
                match progress {
                    Progress::Spawned(pgid) => {
                        recorder
                            .record(RunEvent::ProcessStarted { index, pgid })
                            .await
                    }
                    Progress::Line(stream, line) => {
                        forward(index, stream, &line, &mut streamed, plan, recorder).await
                    }
                }
            };
            while let Ok((stream, line)) = rx.try_recv() {
                forward(index, stream, &line, &mut streamed, plan, recorder).await;
            }
            let status = attempt.result.status;
            let again = attempt.retryable
                && attempt_no < max_attempts
                && status != Some(StepStatus::Succeeded)
                && !env.cancel.is_cancelled();
            if !again {
                let mut result = attempt.result;
                result.attempts = attempt_no;
                result.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
                result.started_at = Some(first_start);
                result.command = detail;
                return result;
            }
            tokio::select! {
                _ = tokio::time::sleep(s.retries.backoff) => {}
                _ = env.cancel.cancelled() => {}
            }
        }
    }
}

/// What every step of a run shares.
struct Env<'a> {
    ctx: &'a handlebars::Context,
    cancel: &'a CancellationToken,
    process_env: &'a [(String, String)],
    plugin_input: &'a serde_json::Value,
    taint: &'a Taint,
}

/// Streams one output line, up to [`MAX_STREAMED_LINES`] per attempt. The process reader
/// redacted the output before it split it into lines, so neither a line break nor this cap
/// (which drops whole lines) cuts a secret; the line is redacted once more all the same.
async fn forward(
    index: usize,
    stream: crate::exec::process::Stream,
    line: &str,
    streamed: &mut usize,
    plan: &Plan,
    recorder: &mut dyn Recorder,
) {
    *streamed += 1;
    let line = if *streamed <= MAX_STREAMED_LINES {
        plan.redactor().redact(line)
    } else if *streamed == MAX_STREAMED_LINES + 1 {
        format!(
            "[untoil: more than {MAX_STREAMED_LINES} lines; the rest is not streamed, see the step's captured output]"
        )
    } else {
        return;
    };
    recorder
        .record(RunEvent::Output {
            index,
            stream: stream.as_str().into(),
            line,
        })
        .await;
}

/// What a plan shows for the results of step `s` before the run: each value names itself and
/// says it is decided at run time.
fn placeholder(s: &Step, plugins: &Plugins) -> serde_json::Value {
    let ph =
        |f: &str| serde_json::Value::String(format!("<steps.{}.{f}, decided at run time>", s.name));
    let mut v = serde_json::json!({
        "status": ph("status"), "duration_ms": ph("duration_ms"), "attempts": ph("attempts"),
        "exit_code": ph("exit_code"), "stdout": ph("stdout"), "stderr": ph("stderr"),
        "json": ph("json"),
    });
    if let Some(map) = v.as_object_mut() {
        match &s.action {
            Action::Http(_) => {
                for f in ["http_status", "headers", "body"] {
                    map.insert(f.into(), ph(f));
                }
            }
            Action::Plugin { name, .. } => {
                map.insert("message".into(), ph("message"));
                // Declared outputs get placeholders of their own, so `outputs.X` renders.
                let declared = plugins.get(name).and_then(|p| p.manifest.as_ref());
                let outputs = match declared {
                    Some(m) if !m.outputs.is_empty() => serde_json::Value::Object(
                        m.outputs
                            .keys()
                            .map(|k| (k.clone(), ph(&format!("outputs.{k}"))))
                            .collect(),
                    ),
                    _ => ph("outputs"),
                };
                map.insert("outputs".into(), outputs);
            }
            Action::Shell { .. } | Action::Report(_) => {}
        }
    }
    v
}
