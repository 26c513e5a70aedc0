//! Runs one run of a runbook from start to end: resolves params and secrets, renders and runs
//! the steps in order (`when`, retries, timeouts, cancellation), and produces a [`RunRecord`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::exec::redact::Redactor;
use crate::exec::render::{Renderer, context};
use crate::exec::step::{self, StepEnv};
use crate::ledger::toil;
use crate::run::cause::{AlertContext, Cause};
use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::{RunStatus, StepStatus};
use crate::run::step::StepResult;
use crate::runbook::diagnostic::did_you_mean;
use crate::runbook::model::{Action, Runbook, SecretSource, Step};
use crate::runbook::plugins::Plugins;

/// Output lines buffered between a step's process and the run's watchers.
const OUTPUT_BUFFER: usize = 1024;
/// Output lines of one attempt streamed as events (all output is still captured, head + tail).
const MAX_STREAMED_LINES: usize = 10_000;

/// Default time between SIGTERM and SIGKILL for a step's processes.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// A run that cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// A parameter the runbook does not declare.
    #[error("runbook `{runbook}` has no parameter `{name}`{hint}")]
    UnknownParam {
        /// Runbook.
        runbook: String,
        /// The parameter given.
        name: String,
        /// " (did you mean ...)" or the declared ones.
        hint: String,
    },
    /// A parameter without default that was not given.
    #[error("runbook `{runbook}` needs parameter `{name}`: pass --param {name}=VALUE")]
    MissingParam {
        /// Runbook.
        runbook: String,
        /// The parameter.
        name: String,
    },
    /// A secret that cannot be read.
    #[error("secret `{name}` of runbook `{runbook}`: {reason}")]
    Secret {
        /// Runbook.
        runbook: String,
        /// The secret.
        name: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// A value with a NUL byte, which no process argument or environment can carry.
    #[error("parameter `{name}` contains a NUL byte")]
    NulByte {
        /// The parameter.
        name: String,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The runbook version to run (runs finish on the version they started with).
    pub runbook: Arc<Runbook>,
    /// What started it.
    pub cause: Cause,
    /// Parameters given (defaults fill the rest).
    pub params: BTreeMap<String, String>,
    /// The alert it acts on.
    pub alert: Option<AlertContext>,
    /// Render and print, execute nothing.
    pub dry_run: bool,
    /// Whether a person approved it (reduces the toil credit).
    pub approval_required: bool,
    /// Use this id (e.g. the one the queue assigned).
    pub id: Option<RunId>,
    /// When it was accepted.
    pub created_at: Option<DateTime<Utc>>,
}

impl RunRequest {
    /// A manual run of a runbook.
    pub fn manual(runbook: Arc<Runbook>, user: &str) -> RunRequest {
        RunRequest {
            runbook,
            cause: Cause::Manual {
                user: user.to_string(),
            },
            params: BTreeMap::new(),
            alert: None,
            dry_run: false,
            approval_required: false,
            id: None,
            created_at: None,
        }
    }
}

/// A run whose params and secrets are resolved, ready to execute.
pub struct Prepared {
    request: RunRequest,
    id: RunId,
    params: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    redactor: Redactor,
}

impl Prepared {
    /// The run id.
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// The resolved parameters.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }

    /// Masks this run's secrets.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }
}

/// One step as a dry run shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    /// Step name.
    pub name: String,
    /// Step kind.
    pub kind: String,
    /// The `when` condition, rendered, if any.
    pub when: Option<String>,
    /// What would run (command, request, plugin input), rendered and redacted.
    pub detail: String,
}

/// Runs runbooks. Build one per process and share it.
pub struct Executor {
    renderer: Renderer,
    http: reqwest::Client,
    plugins: Plugins,
    grace: Duration,
}

impl Executor {
    /// An executor using the plugins of a directory.
    pub fn new(plugins: Plugins) -> Result<Executor, String> {
        Ok(Executor {
            renderer: Renderer::new(),
            http: step::http::client()?,
            plugins,
            grace: DEFAULT_GRACE,
        })
    }

    /// Sets the time between SIGTERM and SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Executor {
        self.grace = grace;
        self
    }

    /// The installed plugins.
    pub fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    /// Resolves params (defaults, unknown, missing) and reads secrets.
    pub fn prepare(&self, request: RunRequest) -> Result<Prepared, PrepareError> {
        let rb = &request.runbook;
        for name in request.params.keys() {
            if !rb.params.contains_key(name) {
                let hint = match did_you_mean(name, rb.params.keys().map(String::as_str)) {
                    Some(h) => format!(" ({h})"),
                    None if rb.params.is_empty() => " (it declares none)".into(),
                    None => format!(
                        " (it declares: {})",
                        rb.params.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                };
                return Err(PrepareError::UnknownParam {
                    runbook: rb.name.clone(),
                    name: name.clone(),
                    hint,
                });
            }
        }
        let mut params = BTreeMap::new();
        for (name, p) in &rb.params {
            let value = match request.params.get(name).or(p.default.as_ref()) {
                Some(v) => v.clone(),
                None => {
                    return Err(PrepareError::MissingParam {
                        runbook: rb.name.clone(),
                        name: name.clone(),
                    });
                }
            };
            if value.contains('\0') {
                return Err(PrepareError::NulByte { name: name.clone() });
            }
            params.insert(name.clone(), value);
        }
        let mut secrets = BTreeMap::new();
        for (name, source) in &rb.secrets {
            let value = if request.dry_run {
                crate::exec::redact::MASK.to_string()
            } else {
                read_secret(source).map_err(|reason| PrepareError::Secret {
                    runbook: rb.name.clone(),
                    name: name.clone(),
                    reason,
                })?
            };
            secrets.insert(name.clone(), value);
        }
        let redactor = Redactor::new(secrets.values().cloned());
        Ok(Prepared {
            id: request.id.clone().unwrap_or_default(),
            request,
            params,
            secrets,
            redactor,
        })
    }

    fn base_context(&self, p: &Prepared, started_at: DateTime<Utc>) -> serde_json::Value {
        let rb = &p.request.runbook;
        let env: BTreeMap<&str, String> = rb
            .env
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| (name.as_str(), v)))
            .collect();
        let mut ctx = serde_json::json!({
            "params": p.params,
            "run": {
                "id": p.id.0,
                "cause": p.request.cause.kind(),
                "runbook": rb.name,
                "started_at": started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
            "steps": {},
            "secrets": p.secrets,
            "env": env,
        });
        if let (Some(a), Some(map)) = (&p.request.alert, ctx.as_object_mut()) {
            map.insert("alert".into(), alert_json(a));
            map.insert("notification".into(), notification_json(a));
        }
        ctx
    }

    fn process_env(&self, p: &Prepared) -> Vec<(String, String)> {
        let rb = &p.request.runbook;
        let mut env = vec![
            ("UNTOIL_RUN_ID".to_string(), p.id.0.clone()),
            ("UNTOIL_RUNBOOK".to_string(), rb.name.clone()),
            (
                "UNTOIL_CAUSE".to_string(),
                p.request.cause.kind().to_string(),
            ),
        ];
        for (k, v) in &p.params {
            env.push((format!("UNTOIL_PARAM_{}", env_name(k)), v.clone()));
        }
        if let Some(a) = &p.request.alert {
            env.push((
                "UNTOIL_ALERT_FINGERPRINT".into(),
                a.alert.fingerprint.clone(),
            ));
            env.push((
                "UNTOIL_ALERT_STATUS".into(),
                alert_json(a)["status"].as_str().unwrap_or("").to_string(),
            ));
            for (k, v) in &a.alert.labels {
                if !v.contains('\0') {
                    env.push((format!("UNTOIL_ALERT_LABEL_{}", env_name(k)), v.clone()));
                }
            }
        }
        env
    }

    fn plugin_input(&self, p: &Prepared, base: &serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "run": base["run"],
            "params": base["params"],
            "alert": base.get("alert").cloned().unwrap_or(serde_json::Value::Null),
            "notification": base.get("notification").cloned().unwrap_or(serde_json::Value::Null),
            "runbook_version": p.request.runbook.version,
        })
    }

    /// Renders every step as it would run, executing nothing. Steps that read earlier steps'
    /// results see placeholders such as `<steps.usage.stdout>`.
    pub fn plan(&self, p: &Prepared) -> Vec<PlannedStep> {
        let rb = p.request.runbook.clone();
        let mut ctx = self.base_context(p, Utc::now());
        let process_env = self.process_env(p);
        let plugin_input = self.plugin_input(p, &ctx);
        let cancel = CancellationToken::new();
        let mut out = Vec::new();
        for s in &rb.steps {
            let hctx = context(ctx.clone());
            let env = StepEnv {
                renderer: &self.renderer,
                ctx: &hctx,
                redactor: &p.redactor,
                cancel: &cancel,
                lines: None,
                spawned: None,
                grace: self.grace,
                http: &self.http,
                plugins: &self.plugins,
                process_env: &process_env,
                plugin_input: &plugin_input,
            };
            let when = s
                .when
                .as_ref()
                .map(|w| match self.renderer.plain(w, &hctx) {
                    Ok(v) => format!("{} -> {}", w.source(), v.trim()),
                    Err(e) => format!("{} -> cannot evaluate: {}", w.source(), e.0),
                });
            let detail = match &s.action {
                Action::Plugin { name, with } => match self.renderer.value(with, &hctx) {
                    Ok(w) => {
                        let input = step::plugin::input(s, w, &env, true);
                        format!(
                            "plugin {name}, stdin:\n  {}",
                            serde_json::to_string(&input).unwrap_or_default()
                        )
                    }
                    Err(e) => format!("cannot render: {}", e.0),
                },
                _ => step::describe(s, &env).unwrap_or_else(|e| format!("cannot render: {e}")),
            };
            out.push(PlannedStep {
                name: s.name.clone(),
                kind: s.action.kind().to_string(),
                when: when.map(|w| p.redactor.redact(&w)),
                detail: p.redactor.redact(&detail),
            });
            if let Some(steps) = ctx["steps"].as_object_mut() {
                steps.insert(s.name.clone(), placeholder(s, &self.plugins));
            }
        }
        out
    }

    /// The record of a prepared run before it starts: queued, with its toil baseline.
    pub fn queued_record(&self, p: &Prepared) -> RunRecord {
        let rb = &p.request.runbook;
        RunRecord {
            id: p.id.clone(),
            runbook: rb.name.clone(),
            version: rb.version.clone(),
            owner: rb.owner.clone(),
            service: rb.service.clone(),
            cause: p.request.cause.clone(),
            params: p.params.clone(),
            status: RunStatus::Queued,
            created_at: p.request.created_at.unwrap_or_else(Utc::now),
            started_at: None,
            finished_at: None,
            steps: Vec::new(),
            current_step: None,
            current_pgid: None,
            dry_run: p.request.dry_run,
            approval_required: p.request.approval_required,
            error: None,
            alert: p.request.alert.clone(),
            toil: Some(crate::run::credit::Credit {
                minutes: 0.0,
                baseline: toil::baseline(rb),
                reason: "not finished".into(),
            }),
            verification: None,
            guard_key: None,
            approval: None,
        }
    }

    /// Executes a prepared run to its end. Events go to `events` as they happen.
    pub async fn execute(
        &self,
        p: Prepared,
        cancel: CancellationToken,
        events: Option<UnboundedSender<RunEvent>>,
    ) -> RunRecord {
        let rb = p.request.runbook.clone();
        let started_at = Utc::now();
        let mut record = self.queued_record(&p);
        record.status = RunStatus::Running;
        record.started_at = Some(started_at);
        let send = |e: RunEvent| {
            if let Some(tx) = &events {
                let _ = tx.send(e);
            }
        };
        send(RunEvent::RunStarted {
            id: p.id.clone(),
            runbook: rb.name.clone(),
            steps: rb.steps.len(),
        });

        if p.request.dry_run {
            for (index, planned) in self.plan(&p).into_iter().enumerate() {
                let result = StepResult {
                    name: planned.name.clone(),
                    kind: planned.kind.clone(),
                    status: Some(StepStatus::Skipped),
                    message: format!("dry run: {}", planned.detail),
                    ..Default::default()
                };
                send(RunEvent::StepFinished {
                    index,
                    result: Box::new(result.clone()),
                });
                record.steps.push(result);
            }
            record.status = RunStatus::Succeeded;
            return self.finish(record, &rb, send);
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

        let mut ctx = self.base_context(&p, started_at);
        let process_env = self.process_env(&p);
        let plugin_input = self.plugin_input(&p, &ctx);
        let mut failed: Option<String> = None;
        for (index, s) in rb.steps.iter().enumerate() {
            if run_cancel.is_cancelled() {
                let result = StepResult {
                    name: s.name.clone(),
                    kind: s.action.kind().to_string(),
                    status: Some(StepStatus::Cancelled),
                    error: Some("not started: the run was stopped".into()),
                    ..Default::default()
                };
                record.steps.push(result);
                continue;
            }
            if let Some(reason) = failed.as_ref().filter(|_| true) {
                let result = StepResult {
                    name: s.name.clone(),
                    kind: s.action.kind().to_string(),
                    status: Some(StepStatus::Skipped),
                    error: Some(format!("not run: {reason}")),
                    ..Default::default()
                };
                send(RunEvent::StepFinished {
                    index,
                    result: Box::new(result.clone()),
                });
                record.steps.push(result);
                continue;
            }
            let hctx = context(ctx.clone());
            record.current_step = Some(s.name.clone());
            let result = self
                .run_step(
                    index,
                    s,
                    &p,
                    &hctx,
                    &run_cancel,
                    &process_env,
                    &plugin_input,
                    &send,
                )
                .await;
            record.current_step = None;
            if let Some(steps) = ctx["steps"].as_object_mut() {
                steps.insert(s.name.clone(), result.template_value());
            }
            let status = result.status.unwrap_or(StepStatus::Failed);
            send(RunEvent::StepFinished {
                index,
                result: Box::new(result.clone()),
            });
            record.steps.push(result);
            if matches!(status, StepStatus::Failed | StepStatus::TimedOut) && !s.continue_on_error {
                failed = Some(format!("step `{}` {}", s.name, status));
            }
        }
        if let Some(t) = timer {
            t.abort();
        }
        record.status = if timed_out.load(Ordering::SeqCst) {
            record.error = Some(format!(
                "run timed out after {}",
                rb.timeout
                    .map(crate::runbook::model::format_duration)
                    .unwrap_or_default()
            ));
            RunStatus::TimedOut
        } else if cancel.is_cancelled() {
            record.error = Some("cancelled".into());
            RunStatus::Cancelled
        } else if let Some(reason) = failed {
            record.error = Some(reason);
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        self.finish(record, &rb, send)
    }

    fn finish(&self, mut record: RunRecord, rb: &Runbook, send: impl Fn(RunEvent)) -> RunRecord {
        record.finished_at = Some(Utc::now());
        record.toil = Some(toil::credit(
            &toil::baseline(rb),
            record.status,
            &record.steps,
            record.dry_run,
            record.approval_required,
        ));
        send(RunEvent::RunFinished {
            record: Box::new(record.clone()),
        });
        record
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        index: usize,
        s: &Step,
        p: &Prepared,
        hctx: &handlebars::Context,
        cancel: &CancellationToken,
        process_env: &[(String, String)],
        plugin_input: &serde_json::Value,
        send: &impl Fn(RunEvent),
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
        if let Some(when) = &s.when {
            let alert_dependent = when
                .variables()
                .iter()
                .any(|v| matches!(v.segments[0].as_str(), "alert" | "notification"));
            if p.request.alert.is_none() && alert_dependent {
                return skipped("`when` reads the alert, and this run has no alert".into());
            }
            match self.renderer.truthy(when, hctx) {
                Ok(true) => {}
                Ok(false) => return skipped(format!("`when` is false: {}", when.source())),
                Err(e) => {
                    let mut r = step::failed_before_start(p.redactor.redact(&e.0)).result;
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
        let env = StepEnv {
            renderer: &self.renderer,
            ctx: hctx,
            redactor: &p.redactor,
            cancel,
            lines: Some(tx),
            spawned: Some(spawn_tx),
            grace: self.grace,
            http: &self.http,
            plugins: &self.plugins,
            process_env,
            plugin_input,
        };
        let detail = p
            .redactor
            .redact(&step::describe(s, &env).unwrap_or_else(|e| format!("cannot render: {e}")));
        let max_attempts = s.retries.attempts + 1;
        let mut attempt_no = 0;
        let mut total_ms = 0;
        let first_start = Utc::now();
        loop {
            attempt_no += 1;
            send(RunEvent::StepStarted {
                index,
                name: s.name.clone(),
                attempt: attempt_no,
                detail: detail.clone(),
            });
            let run = step::attempt(s, &env);
            tokio::pin!(run);
            // Forward output lines while the attempt runs.
            let mut streamed = 0usize;
            let mut forward = |stream: crate::exec::process::Stream, line: String| {
                streamed += 1;
                if streamed <= MAX_STREAMED_LINES {
                    send(RunEvent::Output {
                        index,
                        stream: stream.as_str().into(),
                        line: p.redactor.redact(&line),
                    });
                } else if streamed == MAX_STREAMED_LINES + 1 {
                    send(RunEvent::Output {
                        index,
                        stream: stream.as_str().into(),
                        line: format!(
                            "[untoil: more than {MAX_STREAMED_LINES} lines; the rest is not streamed, see the step's captured output]"
                        ),
                    });
                }
            };
            let attempt = loop {
                tokio::select! {
                    // The attempt first, so its timeout and cancellation are always seen.
                    biased;
                    a = &mut run => break a,
                    Some(pgid) = spawn_rx.recv() => send(RunEvent::ProcessStarted { index, pgid }),
                    Some((stream, line)) = rx.recv() => forward(stream, line),
                }
            };
            while let Ok((stream, line)) = rx.try_recv() {
                forward(stream, line);
            }
            total_ms += attempt.result.duration_ms;
            let status = attempt.result.status;
            let again = attempt.retryable
                && attempt_no < max_attempts
                && status != Some(StepStatus::Succeeded)
                && !cancel.is_cancelled();
            if !again {
                let mut result = attempt.result;
                result.attempts = attempt_no;
                result.duration_ms = total_ms;
                result.started_at = Some(first_start);
                return result;
            }
            tokio::select! {
                _ = tokio::time::sleep(s.retries.backoff) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }
}

fn read_secret(source: &SecretSource) -> Result<String, String> {
    match source {
        SecretSource::Env(var) => std::env::var(var).map_err(|_| {
            format!("environment variable `{var}` is not set; export it where untoil runs")
        }),
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("cannot read `{}`: {e}", path.display())),
    }
}

/// `instance` -> `INSTANCE`, `k8s.pod-name` -> `K8S_POD_NAME`.
fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn alert_json(a: &AlertContext) -> serde_json::Value {
    serde_json::to_value(&a.alert).unwrap_or_default()
}

fn notification_json(a: &AlertContext) -> serde_json::Value {
    let mut n = serde_json::to_value(&a.notification).unwrap_or_default();
    if let Some(map) = n.as_object_mut() {
        map.remove("alerts");
    }
    n
}

fn placeholder(s: &Step, plugins: &Plugins) -> serde_json::Value {
    let ph = |f: &str| serde_json::Value::String(format!("<steps.{}.{f}>", s.name));
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
            Action::Shell { .. } => {}
        }
    }
    v
}
