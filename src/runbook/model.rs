//! A validated runbook: the only form of a runbook that triggers, the executor and reports see.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::identity::approvers::Approvers;
use crate::runbook::input::Rule;
use crate::runbook::template::Template;
use crate::trigger::matcher::Matcher;
use crate::trigger::schedule::Schedule;

/// Default step timeout.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Default time a run waits for approval.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Default shell of `run:` steps.
pub const DEFAULT_SHELL: &str = "/bin/sh";

/// A runbook ready to run.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// Unique name.
    pub name: String,
    /// One-line description.
    pub description: String,
    /// Owning team.
    pub owner: String,
    /// Service acted on.
    pub service: Option<String>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Toil estimate.
    pub toil: Toil,
    /// Maximum duration of a run.
    pub timeout: Option<Duration>,
    /// A run interrupted by a crash or shutdown is started again after the restart.
    pub idempotent: bool,
    /// What starts a run.
    pub triggers: Vec<Trigger>,
    /// Safety guards.
    pub guards: Guards,
    /// Declared parameters.
    pub params: BTreeMap<String, Param>,
    /// Declared inputs (from the alert).
    pub inputs: BTreeMap<String, Input>,
    /// Environment variables templates may read.
    pub env: Vec<String>,
    /// Declared secrets.
    pub secrets: BTreeMap<String, Secret>,
    /// Verification window of alert runs.
    pub verify: Option<Verify>,
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// Steps run when a run starts waiting for approval (e.g. tell people where to approve).
    pub on_approval_requested: Vec<Step>,
    /// The file it was loaded from.
    pub source: PathBuf,
    /// Content hash of that file (hex), recorded with every run.
    pub version: String,
}

impl Runbook {
    /// Whether any trigger is an alert trigger.
    pub fn has_alert_trigger(&self) -> bool {
        self.triggers.iter().any(|t| matches!(t, Trigger::Alert(_)))
    }

    /// The schedule triggers.
    pub fn schedules(&self) -> impl Iterator<Item = &ScheduleTrigger> {
        self.triggers.iter().filter_map(|t| match t {
            Trigger::Schedule(s) => Some(s),
            Trigger::Alert(_) => None,
        })
    }

    /// A step by name.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// Default of `toil.per_item.max_items`: most items one run is credited for.
pub const DEFAULT_MAX_ITEMS: u64 = 1000;

/// Toil estimate of a runbook.
#[derive(Debug, Clone, Default)]
pub struct Toil {
    /// Minutes a person spends doing this by hand.
    pub manual_minutes: f64,
    /// Minutes a required approval costs.
    pub approval_minutes: f64,
    /// Credit by amount, when the runbook declares it.
    pub per_item: Option<PerItem>,
}

/// Per-item credit: minutes per item, times a count rendered from the steps' results.
#[derive(Debug, Clone)]
pub struct PerItem {
    /// Minutes per item.
    pub minutes: f64,
    /// Rendered once the run ended; must give a whole number of items.
    pub count: Template,
    /// Most items credited per run.
    pub max_items: u64,
}

/// What starts a run.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// A crontab schedule.
    Schedule(ScheduleTrigger),
    /// Alerts from sources.
    Alert(AlertTrigger),
}

impl Trigger {
    /// Short human description, e.g. `cron "0 3 * * *" Europe/Berlin`.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Schedule(s) => {
                format!(
                    "cron \"{}\" {}",
                    s.schedule.expression(),
                    s.schedule.timezone()
                )
            }
            Trigger::Alert(a) => {
                let m: Vec<String> = a.matchers.iter().map(Matcher::written).collect();
                // Alertmanager alone is the default, left out so descriptions read as before.
                let from = if a
                    .sources
                    .iter()
                    .all(|s| s == crate::trigger::source::ALERTMANAGER)
                {
                    String::new()
                } else {
                    format!(" from {}", a.sources.join(", "))
                };
                format!("alert{from} {{{}}}", m.join(", "))
            }
        }
    }
}

/// A schedule trigger.
#[derive(Debug, Clone)]
pub struct ScheduleTrigger {
    /// When it fires.
    pub schedule: Schedule,
    /// Missed fires within this window run once after downtime.
    pub catchup: Option<Duration>,
}

/// Which alert notifications start a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOn {
    /// Firing alerts only (default).
    Firing,
    /// Resolved alerts only.
    Resolved,
    /// Both.
    Both,
}

/// An alert trigger.
#[derive(Debug, Clone)]
pub struct AlertTrigger {
    /// The sources whose alerts it takes (default just `alertmanager`); never empty.
    pub sources: Vec<String>,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Which notifications start a run.
    pub on: AlertOn,
    /// Cancel a run in progress when its alert resolves.
    pub cancel_on_resolve: bool,
}

impl AlertTrigger {
    /// Whether this trigger starts a run for the alert of `source` (source, matchers and `on`).
    pub fn accepts(&self, source: &str, alert: &crate::trigger::alert::Alert) -> bool {
        use crate::trigger::alert::AlertStatus;
        if !self.sources.iter().any(|s| s == source) {
            return false;
        }
        let status_ok = matches!(
            (self.on, alert.status),
            (AlertOn::Both, _)
                | (AlertOn::Firing, AlertStatus::Firing)
                | (AlertOn::Resolved, AlertStatus::Resolved)
        );
        status_ok && crate::trigger::matcher::matches_all(&self.matchers, &alert.labels)
    }
}

impl Runbook {
    /// Whether any alert trigger of this runbook accepts the alert of `source`.
    pub fn accepts_alert(&self, source: &str, alert: &crate::trigger::alert::Alert) -> bool {
        self.triggers.iter().any(|t| match t {
            Trigger::Alert(a) => a.accepts(source, alert),
            Trigger::Schedule(_) => false,
        })
    }
}

/// What happens to a trigger while its key is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Wait for the running one.
    Queue,
    /// Drop the new trigger (recorded as skipped).
    Skip,
    /// Cancel the running one and start the new.
    CancelPrevious,
}

/// Safety guards.
#[derive(Debug, Clone)]
pub struct Guards {
    /// Runs at once per key.
    pub concurrency: Option<u32>,
    /// Template naming the key; default the runbook.
    pub key: Option<Template>,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Minimum time between runs of one key.
    pub cooldown: Option<Duration>,
    /// Run-count limit.
    pub max_runs: Option<MaxRuns>,
    /// Consecutive failures that open the breaker.
    pub trip_after_failures: Option<u32>,
    /// Whether a person approves each run.
    pub approval: bool,
    /// How long a run waits for approval.
    pub approval_timeout: Duration,
    /// Who may approve or deny its runs; None: anyone who may call the API.
    pub approvers: Option<Approvers>,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            concurrency: None,
            key: None,
            overlap: Overlap::Queue,
            cooldown: None,
            max_runs: None,
            trip_after_failures: None,
            approval: false,
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
            approvers: None,
        }
    }
}

impl Guards {
    /// The guards that need the daemon's shared state to decide (a person's approval, the
    /// cooldown, run limits, the breaker), by their YAML names: what a run without the daemon
    /// would skip.
    pub fn stateful(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.approval {
            out.push("approval");
        }
        if self.cooldown.is_some() {
            out.push("cooldown");
        }
        if self.max_runs.is_some() {
            out.push("max_runs");
        }
        if self.trip_after_failures.is_some() {
            out.push("trip_after_failures");
        }
        out
    }
}

/// A run-count limit per window.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxRuns {
    /// How many runs.
    pub count: u32,
    /// Per what window.
    pub per: Duration,
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Default value; without one the parameter is required.
    pub default: Option<String>,
    /// What it is for.
    pub description: String,
    /// What values it accepts.
    pub rule: Rule,
}

/// Where an input's value comes from in the alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// A label.
    Label(String),
    /// An annotation.
    Annotation(String),
}

/// A typed value taken from the alert that triggers a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Where it comes from.
    pub source: InputSource,
    /// What values it accepts.
    pub rule: Rule,
    /// Used when the alert lacks it.
    pub default: Option<String>,
    /// What it is for.
    pub description: String,
}

/// A secret: where its value comes from, and whether a run may go without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Where its value comes from.
    pub source: SecretSource,
    /// When its variable is unset or its file absent, the value is empty instead of the run
    /// failing (steps that need it say `when: '{{secrets.NAME}}'`).
    pub optional: bool,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file.
    File(PathBuf),
}

/// Verification of a run's effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Verify {
    /// The alert must resolve within this time after the run.
    pub alert_resolves_within: Duration,
    /// When a succeeded alert run is credited.
    pub credit: VerifyCredit,
}

/// When a succeeded alert run of a runbook with `verify` is credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyCredit {
    /// When it finishes, whatever the verdict (the default).
    #[default]
    AtFinish,
    /// Only once verified: held at finish, credited if its alert resolves within the window.
    VerifiedOnly,
}

/// One step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique within the runbook.
    pub name: String,
    /// What it does.
    pub action: Action,
    /// Runs only when this renders truthy.
    pub when: Option<Template>,
    /// Step timeout.
    pub timeout: Duration,
    /// Retry policy.
    pub retries: Retries,
    /// Toil credit of this step.
    pub toil_minutes: Option<f64>,
    /// Exit statuses of a `run` command that mean nothing to do: the run ends `noop`.
    pub noop_exit_codes: Vec<i32>,
    /// Decided after the step succeeded, with its own results: truthy ends the run `noop`.
    pub noop_when: Option<Template>,
    /// A failure does not fail the run.
    pub continue_on_error: bool,
    /// Environment variables of the step's process.
    pub env: BTreeMap<String, Template>,
    /// Working directory.
    pub workdir: Option<Template>,
}

impl Step {
    /// Whether this step can end its run as `noop`.
    pub fn can_noop(&self) -> bool {
        !self.noop_exit_codes.is_empty() || self.noop_when.is_some()
    }

    /// Every template of its action, its `env` and its `workdir` (not its `when`).
    pub fn templates(&self) -> Vec<&Template> {
        let mut out: Vec<&Template> = match &self.action {
            Action::Shell {
                command, target, ..
            } => {
                let mut t = vec![command];
                if let Some(target) = target {
                    t.extend(target.hosts.templates());
                    t.extend(target.user.iter());
                }
                t
            }
            Action::Http(h) => {
                let mut t = vec![&h.url];
                t.extend(h.headers.values());
                t.extend(h.query.values());
                t.extend(
                    h.json
                        .iter()
                        .flat_map(|j| j.templates().into_iter().map(|(_, t)| t)),
                );
                t.extend(h.body.iter());
                t
            }
            Action::Plugin { with, .. } => with.templates().into_iter().map(|(_, t)| t).collect(),
            Action::Report(_) => Vec::new(),
        };
        out.extend(self.env.values());
        out.extend(self.workdir.iter());
        out
    }
}

/// Retry policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retries {
    /// Extra attempts.
    pub attempts: u32,
    /// Wait between attempts.
    pub backoff: Duration,
}

/// The action of a step.
#[derive(Debug, Clone)]
pub enum Action {
    /// A shell command.
    Shell {
        /// The command template (values shell-quoted).
        command: Template,
        /// The shell.
        shell: String,
        /// The remote host(s) it runs on over SSH; None: untoil's host.
        target: Option<Box<crate::runbook::target::Target>>,
    },
    /// An HTTP request.
    Http(HttpRequest),
    /// A plugin call.
    Plugin {
        /// Plugin name.
        name: String,
        /// Input; string leaves are templates.
        with: TemplateValue,
    },
    /// A report of untoil's own store, rendered in-process.
    Report(ReportRequest),
}

impl Action {
    /// `shell`, `http`, `plugin` or `report`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Shell { .. } => "shell",
            Action::Http(_) => "http",
            Action::Plugin { .. } => "plugin",
            Action::Report(_) => "report",
        }
    }
}

/// Lines per list of a report step when it does not say.
pub const DEFAULT_REPORT_TOP: u32 = 5;
/// The most lines per list a report step may ask for.
pub const MAX_REPORT_TOP: u32 = 50;
/// Manual minutes per unhandled alert a report step assumes when it does not say (as
/// `untoil report unautomated`).
pub const DEFAULT_REPORT_ASSUME_MINUTES: f64 = 15.0;

/// What a report step renders: the digest of a period of untoil's store. It takes no
/// templates: what it reads is fixed when the runbook loads.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRequest {
    /// Which days.
    pub period: ReportPeriod,
    /// How it is written.
    pub format: ReportFormat,
    /// Lines per list.
    pub top: u32,
    /// Manual minutes per unhandled alert without a `toil_minutes` annotation.
    pub assume_minutes: f64,
}

/// The days a report step covers, decided when the step runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportPeriod {
    /// The previous ISO week, Monday to Sunday, UTC.
    LastWeek,
    /// The last days up to the run's day.
    Since {
        /// As written, e.g. `7d`.
        text: String,
        /// Its length.
        length: Duration,
    },
}

impl ReportPeriod {
    /// As a runbook writes it: `last_week`, `since 7d`.
    pub fn written(&self) -> String {
        match self {
            ReportPeriod::LastWeek => "last_week".into(),
            ReportPeriod::Since { text, .. } => format!("since {text}"),
        }
    }
}

/// How a report step writes its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// Markdown (which Slack's mrkdwn also reads).
    Markdown,
    /// JSON.
    Json,
}

impl ReportFormat {
    /// Its name in a runbook.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::Markdown => "markdown",
            ReportFormat::Json => "json",
        }
    }
}

/// An HTTP request template.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Method, upper case.
    pub method: String,
    /// URL.
    pub url: Template,
    /// Headers.
    pub headers: BTreeMap<String, Template>,
    /// Query parameters.
    pub query: BTreeMap<String, Template>,
    /// JSON body.
    pub json: Option<TemplateValue>,
    /// Raw body.
    pub body: Option<Template>,
    /// Request timeout.
    pub timeout: Option<Duration>,
    /// Accepted statuses; empty means any 2xx.
    pub expect_status: Vec<u16>,
}

/// A JSON-like value whose strings are templates.
#[derive(Debug, Clone)]
pub enum TemplateValue {
    /// null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string template.
    String(Template),
    /// An array.
    Array(Vec<TemplateValue>),
    /// An object.
    Object(BTreeMap<String, TemplateValue>),
}

impl TemplateValue {
    /// Every template inside, with the path to it.
    pub fn templates(&self) -> Vec<(Vec<String>, &Template)> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect<'a>(&'a self, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a Template)>) {
        match self {
            TemplateValue::String(t) => out.push((path.clone(), t)),
            TemplateValue::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    path.push(i.to_string());
                    v.collect(path, out);
                    path.pop();
                }
            }
            TemplateValue::Object(map) => {
                for (k, v) in map {
                    path.push(k.clone());
                    v.collect(path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

/// Whether a variable of the daemon's environment is untoil's own (settings and credentials):
/// no runbook may read it and no step gets it.
pub fn reserved_env(name: &str) -> bool {
    name.starts_with("UNTOIL_")
}

/// Parses a duration such as `30s`, `10m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())
}

/// Formats a duration the way runbooks write them (`1h30m`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::alert::{Alert, Notification};

    fn alert() -> Alert {
        let n = Notification::from_json(include_bytes!(
            "../../tests/fixtures/alertmanager/firing.json"
        ))
        .expect("fixture");
        n.alerts.into_iter().next().expect("an alert")
    }

    fn trigger(sources: &[&str]) -> AlertTrigger {
        AlertTrigger {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            matchers: Matcher::parse_list("alertname=\"DiskFull\"").expect("matcher"),
            on: AlertOn::Firing,
            cancel_on_resolve: false,
        }
    }

    #[test]
    fn a_trigger_takes_only_the_sources_it_names() {
        use crate::trigger::source::{ALERTMANAGER, GRAFANA};
        let a = alert();
        let default = trigger(&[ALERTMANAGER]);
        assert!(default.accepts(ALERTMANAGER, &a));
        assert!(!default.accepts(GRAFANA, &a));
        let both = trigger(&[ALERTMANAGER, GRAFANA]);
        assert!(both.accepts(GRAFANA, &a) && both.accepts(ALERTMANAGER, &a));
        assert_eq!(
            Trigger::Alert(default).describe(),
            "alert {alertname=\"DiskFull\"}"
        );
        assert_eq!(
            Trigger::Alert(trigger(&[GRAFANA])).describe(),
            "alert from grafana {alertname=\"DiskFull\"}"
        );
    }
}
