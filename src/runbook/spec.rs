//! Raw runbook file types, exactly as written in YAML.
//!
//! These types only describe the file's shape (and generate the JSON Schema that editors use).
//! They are turned into [`crate::runbook::model::Runbook`] by the [`crate::validator`]; nothing
//! downstream of the validator ever sees them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One runbook file, as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "untoil runbook")]
pub struct RawRunbook {
    /// Unique name: lowercase letters, digits and dashes.
    #[schemars(required, pattern(r"^[a-z0-9][a-z0-9-]*$"))]
    pub name: Option<String>,
    /// What this runbook does, in one line.
    pub description: Option<String>,
    /// The team that owns it; toil reports group by it.
    #[schemars(required)]
    pub owner: Option<String>,
    /// The service it acts on.
    pub service: Option<String>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How much manual work one run replaces.
    pub toil: Option<RawToil>,
    /// Maximum duration of a whole run, e.g. `15m`.
    #[schemars(with = "Option<DurationString>")]
    pub timeout: Option<String>,
    /// Whether a run may safely start again from its first step after untoil stopped during it
    /// (a crash or a shutdown): then it is, once, at the next start. Default false.
    pub idempotent: Option<bool>,
    /// What starts a run: schedules and alerts (a runbook can always be run by hand).
    #[serde(default)]
    pub triggers: Vec<RawTrigger>,
    /// Safety controls: concurrency, cooldown, circuit breaker, approval.
    pub guards: Option<RawGuards>,
    /// Parameters a run takes, available as `{{params.NAME}}`.
    #[serde(default)]
    pub params: BTreeMap<String, RawParam>,
    /// Typed values taken from the alert (a label or an annotation), available as
    /// `{{inputs.NAME}}` once checked.
    #[serde(default)]
    pub inputs: BTreeMap<String, RawInput>,
    /// Environment variables of the daemon that templates may read as `{{env.NAME}}`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Secrets, available as `{{secrets.NAME}}` and redacted from every log and output.
    #[serde(default)]
    pub secrets: BTreeMap<String, RawSecret>,
    /// How to tell that a run really fixed the problem.
    pub verify: Option<RawVerify>,
    /// The steps, run in order.
    #[serde(default)]
    pub steps: Vec<RawStep>,
    /// Steps run when a run starts waiting for approval, e.g. a chat message with the run id.
    #[serde(default)]
    pub on_approval_requested: Vec<RawStep>,
}

/// Toil estimate of a runbook.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawToil {
    /// Minutes a person spends doing this by hand.
    pub manual_minutes: Option<f64>,
    /// Minutes of human time a required approval costs (subtracted from the credit).
    pub approval_minutes: Option<f64>,
    /// Credit by amount: minutes per item, times a count the steps report.
    pub per_item: Option<RawPerItem>,
}

/// Per-item credit: `minutes` for each item `count` renders to after the run, at most
/// `max_items` items per run.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPerItem {
    /// Minutes a person spends per item (host restarted, file removed...).
    pub minutes: Option<f64>,
    /// Template rendered once the run ended, from the steps' results, to a whole number, e.g.
    /// `{{steps.clean.json.removed}}`.
    pub count: Option<String>,
    /// Most items credited per run (default 1000).
    pub max_items: Option<u64>,
}

/// One trigger: exactly one of `schedule` or `alert`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    /// Crontab expression (5 fields, 6 with seconds first, or `@daily`-style macros).
    pub schedule: Option<String>,
    /// IANA time zone of the schedule, default UTC.
    pub timezone: Option<String>,
    /// After downtime, run the latest missed fire once if it is within this window, e.g. `1h`.
    #[schemars(with = "Option<DurationString>")]
    pub catchup: Option<String>,
    /// Run on alerts (from Alertmanager by default, or the sources named).
    pub alert: Option<RawAlertTrigger>,
}

/// Alert trigger.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlertTrigger {
    /// The source or sources whose alerts start runs, e.g. `grafana` or `[alertmanager,
    /// grafana]`; default `alertmanager`.
    pub source: Option<RawSources>,
    /// Alertmanager matchers, all of which must match, e.g. `alertname="HostDiskFull"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Which notifications start a run: firing (default), resolved or both.
    pub on: Option<String>,
    /// Cancel a run still in progress when its alert resolves.
    pub cancel_on_resolve: Option<bool>,
}

/// One source name or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RawSources {
    /// One source.
    One(String),
    /// Several sources.
    Many(Vec<String>),
}

impl RawSources {
    /// The names as written, with whether they were written as a list.
    pub fn names(&self) -> (&[String], bool) {
        match self {
            RawSources::One(s) => (std::slice::from_ref(s), false),
            RawSources::Many(v) => (v, true),
        }
    }
}

/// Safety guards.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGuards {
    /// Runs at once, per key.
    pub concurrency: Option<u32>,
    /// Template naming what runs are counted per, e.g. `{{alert.labels.instance}}`.
    pub key: Option<String>,
    /// What happens to a trigger while the key is busy: queue, skip or cancel_previous.
    pub overlap: Option<String>,
    /// Minimum time between two runs of one key, e.g. `10m`.
    #[schemars(with = "Option<DurationString>")]
    pub cooldown: Option<String>,
    /// More runs than this within the window opens the circuit breaker.
    pub max_runs: Option<RawMaxRuns>,
    /// Consecutive failures that open the circuit breaker.
    pub trip_after_failures: Option<u32>,
    /// `required`: a person approves each run; `none` (default).
    pub approval: Option<String>,
    /// How long a run waits for approval before it expires, default `1h`.
    #[schemars(with = "Option<DurationString>")]
    pub approval_timeout: Option<String>,
    /// Who may approve or deny runs (with `approval: required`): users or tokens by name,
    /// and/or groups of the auth file. Without it, anyone who may call the API may.
    pub approvers: Option<RawApprovers>,
}

/// Who may decide on a runbook's runs.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApprovers {
    /// User or token names (of the auth file, the basic-auth file, or `token`).
    pub users: Option<Vec<String>>,
    /// Groups of the auth file; their members may decide.
    pub groups: Option<Vec<String>>,
}

/// A run-count limit per window.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMaxRuns {
    /// How many runs.
    pub count: Option<u32>,
    /// In what window, e.g. `1h`.
    #[schemars(with = "Option<DurationString>")]
    pub per: Option<String>,
}

/// A declared parameter.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParam {
    /// Value used when a run does not set it; without one the parameter is required.
    pub default: Option<Scalar>,
    /// What it is for.
    pub description: Option<String>,
    /// What values it accepts (default `string`).
    #[serde(rename = "type")]
    #[schemars(with = "Option<InputTypeName>")]
    pub kind: Option<String>,
    /// A regex the whole value must match, e.g. `[a-z-]+\.service`.
    pub pattern: Option<String>,
    /// The only values it accepts.
    pub allowed: Option<Vec<Scalar>>,
}

/// A typed value taken from the alert that triggers a run: exactly one of `label` and
/// `annotation`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// The alert label that holds the value.
    pub label: Option<String>,
    /// The alert annotation that holds the value.
    pub annotation: Option<String>,
    /// What values it accepts (default `string`).
    #[serde(rename = "type")]
    #[schemars(with = "Option<InputTypeName>")]
    pub kind: Option<String>,
    /// A regex the whole value must match.
    pub pattern: Option<String>,
    /// The only values it accepts.
    pub allowed: Option<Vec<Scalar>>,
    /// Value used when the alert lacks the label or annotation; without one such a run fails.
    pub default: Option<Scalar>,
    /// What it is for.
    pub description: Option<String>,
}

/// The types a parameter or input may declare.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum InputTypeName {
    String,
    Int,
    Bool,
    Duration,
    Hostname,
    Path,
}

/// A YAML scalar taken as text (`5`, `true` and `"x"` all become strings).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(with = "ScalarSchema")]
pub struct Scalar(pub String);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ScalarSchema {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Text(String),
            Int(i64),
            Float(f64),
            Bool(bool),
        }
        match Any::deserialize(d) {
            Ok(Any::Text(s)) => Ok(Scalar(s)),
            Ok(Any::Int(i)) => Ok(Scalar(i.to_string())),
            Ok(Any::Float(f)) => Ok(Scalar(f.to_string())),
            Ok(Any::Bool(b)) => Ok(Scalar(b.to_string())),
            Err(_) => Err(serde::de::Error::custom(
                "invalid type: expected a string, number or boolean",
            )),
        }
    }
}

/// Where a secret's value comes from: an environment variable or a file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    /// Environment variable holding the value.
    pub env: Option<String>,
    /// File holding the value (trailing newline removed), e.g. `/run/secrets/slack`.
    pub file: Option<String>,
    /// When true, an unset variable or an absent file is the empty value instead of an error;
    /// guard the steps that need it with `when: '{{secrets.NAME}}'`.
    #[serde(default)]
    pub optional: bool,
}

/// Verification of a run's effect.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    /// The run counts as verified if its alert resolves within this time, e.g. `15m`.
    #[schemars(with = "Option<DurationString>")]
    pub alert_resolves_within: Option<String>,
    /// When an alert run is credited: `at_finish` (default) or `verified_only` (held until its
    /// alert resolves within the window; nothing if it does not).
    pub credit: Option<String>,
}

/// One step: exactly one of `run`, `http`, `plugin` or `report`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Unique within the runbook; later steps read results as `{{steps.NAME.stdout}}`.
    #[schemars(required, pattern(r"^[A-Za-z0-9_-]+$"))]
    pub name: Option<String>,
    /// Shell command (template; interpolated values are shell-quoted).
    pub run: Option<String>,
    /// Shell to run `run` with, default `/bin/sh`.
    pub shell: Option<String>,
    /// Run `run` on remote host(s) over SSH instead of untoil's host (docs/remote.md).
    pub target: Option<crate::runbook::target::RawTarget>,
    /// HTTP request.
    pub http: Option<RawHttp>,
    /// Plugin name: an executable in the plugins directory.
    pub plugin: Option<String>,
    /// A report of untoil's own store, rendered in-process (no credentials needed).
    pub report: Option<RawReport>,
    /// Plugin input (values are templates).
    #[serde(rename = "with")]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub with: Option<serde_yaml::Value>,
    /// Template; the step runs only when it renders truthy.
    pub when: Option<String>,
    /// Step timeout, default `5m`.
    #[schemars(with = "Option<DurationString>")]
    pub timeout: Option<String>,
    /// Retry a failed step.
    pub retries: Option<RawRetries>,
    /// Toil credit of this step when it succeeds (instead of the runbook's figure).
    pub toil_minutes: Option<f64>,
    /// Exit statuses of a `run` command that mean it found nothing to do (not 0), e.g. `[3]`:
    /// the step succeeds, later steps are skipped and the run ends `noop`, crediting nothing.
    pub noop_exit_codes: Option<Vec<i32>>,
    /// Template decided after the step succeeded, reading its own results (`steps.NAME.*`):
    /// when truthy, later steps are skipped and the run ends `noop`, crediting nothing.
    pub noop_when: Option<String>,
    /// A failure of this step does not fail the run.
    pub continue_on_error: Option<bool>,
    /// Environment variables for the step's process (values are templates).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the step's process.
    pub workdir: Option<String>,
}

/// Retry policy of a step.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    /// Extra attempts after the first failure.
    pub attempts: Option<u32>,
    /// Wait between attempts, e.g. `5s`.
    #[schemars(with = "Option<DurationString>")]
    pub backoff: Option<String>,
}

/// A report step: which report of untoil's store to render, over which days, in which format.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// A named period: `last_week` (the previous ISO week, Monday to Sunday, UTC). The default
    /// when `since` is not given.
    #[schemars(with = "Option<ReportPeriodName>")]
    pub period: Option<String>,
    /// The last days up to the run's day instead of a named period, e.g. `7d`.
    #[schemars(with = "Option<DurationString>")]
    pub since: Option<String>,
    /// `markdown` (default) or `json`.
    #[schemars(with = "Option<ReportFormatName>")]
    pub format: Option<String>,
    /// Lines per list (top runbooks, failures, backlog), 1 to 50, default 5.
    pub top: Option<u32>,
    /// Manual minutes assumed per unhandled alert without a `toil_minutes` annotation, default 15.
    pub assume_minutes: Option<f64>,
}

/// The named periods of a report step.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum ReportPeriodName {
    LastWeek,
}

/// The formats of a report step.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum ReportFormatName {
    Markdown,
    Json,
}

/// An HTTP step.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// HTTP method, default GET.
    pub method: Option<String>,
    /// URL (template).
    pub url: Option<String>,
    /// Request headers (values are templates).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters (values are templates).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// JSON body; string values are templates.
    #[schemars(with = "Option<serde_json::Value>")]
    pub json: Option<serde_yaml::Value>,
    /// Raw body (template).
    pub body: Option<String>,
    /// Request timeout, default the step timeout.
    #[schemars(with = "Option<DurationString>")]
    pub timeout: Option<String>,
    /// Accepted status codes, default any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}

/// A duration such as `30s`, `10m` or `1h30m`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct DurationString(
    #[schemars(pattern(r"^\s*([0-9]+\s*(ns|us|ms|s|sec|m|min|h|hr|d|w)\s*)+$"))] String,
);

/// The JSON Schema of the runbook format, for editors (yaml-language-server).
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(RawRunbook);
    serde_json::to_value(schema).unwrap_or_default()
}
