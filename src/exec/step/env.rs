//! What a step attempt gets from its run.

use std::borrow::Cow;
use std::time::Duration;

use handlebars::Context;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::exec::redact::Redactor;
use crate::exec::render::Renderer;
use crate::exec::taint::Taint;
use crate::runbook::plugins::Plugins;
use crate::runbook::template::Template;
use crate::store::Store;

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
    /// Receives output lines as they come (redacted as they were read).
    pub lines: Option<tokio::sync::mpsc::Sender<(crate::exec::process::Stream, String)>>,
    /// Receives the process group id of each process started.
    pub spawned: Option<UnboundedSender<u32>>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Cancelled when processes must die at once (SIGKILL, no grace): a fenced replica's.
    pub hurry: &'a CancellationToken,
    /// Shared HTTP client.
    pub http: &'a reqwest::Client,
    /// Installed plugins.
    pub plugins: &'a Plugins,
    /// Environment variables every process of the run gets (UNTOIL_*).
    pub process_env: &'a [(String, String)],
    /// The run as plugins see it (protocol input minus `step` and `with`).
    pub plugin_input: &'a serde_json::Value,
    /// Which template values others control.
    pub taint: &'a Taint,
    /// The store `report` steps read; none where no store is open (they then fail, saying so).
    pub store: Option<&'a dyn Store>,
    /// A local `run:` step's command as rendered already (for its progress line): its
    /// attempts use it instead of rendering it again. None renders it where needed.
    pub command: Option<&'a str>,
}

impl<'a> StepEnv<'a> {
    /// A local `run:` step's `command`: as rendered already for its progress line, or rendered
    /// now (every interpolated value shell-quoted).
    pub fn shell_command(&self, command: &Template) -> Result<Cow<'a, str>, String> {
        match self.command {
            Some(c) => Ok(Cow::Borrowed(c)),
            None => self
                .renderer
                .shell(command, self.ctx, self.taint)
                .map(Cow::Owned)
                .map_err(|e| e.0),
        }
    }
}
