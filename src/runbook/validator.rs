//! Turns a raw runbook into a validated [`Runbook`], reporting every problem at its exact place.
//!
//! All checks run in one pass; errors and warnings are collected separately by severity. A
//! runbook with any error is not returned.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::identity::approvers::Approvers;
use crate::identity::principal;
use crate::runbook::diagnostic::{Diagnostic, Kind};
use crate::runbook::input::{InputType, Rule, compile_pattern};
use crate::runbook::model::{
    Action, AlertOn, AlertTrigger, DEFAULT_MAX_ITEMS, DEFAULT_REPORT_ASSUME_MINUTES,
    DEFAULT_REPORT_TOP, DEFAULT_SHELL, DEFAULT_STEP_TIMEOUT, Guards, HttpRequest, Input,
    InputSource, MAX_REPORT_TOP, MaxRuns, Overlap, Param, PerItem, ReportFormat, ReportPeriod,
    ReportRequest, Retries, Runbook, ScheduleTrigger, Secret, SecretSource, Step, TemplateValue,
    Toil, Trigger, Verify, VerifyCredit, parse_duration,
};
use crate::runbook::plugins::Plugins;
use crate::runbook::pruned::Pruned;
use crate::runbook::source_map::{Seg, SourceMap};
use crate::runbook::spec::{
    RawAlertTrigger, RawGuards, RawHttp, RawReport, RawRunbook, RawStep, RawTrigger, Scalar,
};
use crate::runbook::suggest::did_you_mean;
use crate::runbook::target::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_PARALLELISM, DEFAULT_PER_HOST, HostSource, Identity, Policy,
    RawIdentity, RawTarget, Target, check_host, check_jump, check_user, split_hosts,
};
use crate::runbook::template::{HELPERS, Template};
use crate::trigger::matcher::{MatchOp, Matcher, never_matches};
use crate::trigger::schedule::{Schedule, parse_timezone};
use crate::trigger::source::{ALERTMANAGER, is_valid_name};

/// Fields every step result exposes to later templates.
const STEP_FIELDS_COMMON: &[&str] = &["status", "duration_ms", "attempts"];
const STEP_FIELDS_SHELL: &[&str] = &[
    "exit_code",
    "stdout",
    "stderr",
    "json",
    // Remote steps: each host's result, and how many succeeded and failed.
    "hosts",
    "hosts_succeeded",
    "hosts_failed",
    "hosts_total",
];
const STEP_FIELDS_HTTP: &[&str] = &["http_status", "headers", "body", "json"];
const STEP_FIELDS_PLUGIN: &[&str] = &["outputs", "message", "stderr", "exit_code", "json"];
/// A report step's report is its `stdout` (as asked for) and its `json` (always).
const STEP_FIELDS_REPORT: &[&str] = &["stdout", "json"];
/// The step kinds, by the field that makes a step one.
const STEP_KINDS: [&str; 4] = ["run", "http", "plugin", "report"];
/// Named periods of a report step.
const REPORT_PERIODS: &[&str] = &["last_week"];
/// Formats of a report step.
const REPORT_FORMATS: &[&str] = &["markdown", "json"];
/// Fields of `alert` in templates.
pub const ALERT_FIELDS: &[&str] = &[
    "labels",
    "annotations",
    "status",
    "startsAt",
    "endsAt",
    "fingerprint",
    "generatorURL",
];
/// Fields of `notification` in templates.
pub const NOTIFICATION_FIELDS: &[&str] = &[
    "receiver",
    "status",
    "groupKey",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
];
/// Fields of `run` in templates.
pub const RUN_FIELDS: &[&str] = &["id", "cause", "runbook", "started_at"];
/// Top-level template variables.
pub const ROOTS: &[&str] = &[
    "params",
    "inputs",
    "alert",
    "notification",
    "run",
    "steps",
    "secrets",
    "env",
];
/// HTTP methods an `http` step may use.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// Validates one parsed runbook file: what is left of it once the parts of a wrong shape were
/// taken out (`pruned`, already reported), reporting nothing that only follows from those.
/// Returns the runbook if it has no error and nothing was taken out.
pub fn validate(
    raw: &RawRunbook,
    pruned: &Pruned,
    file: usize,
    path: &Path,
    text: &str,
    map: &SourceMap,
    plugins: &Plugins,
) -> (Option<Runbook>, Vec<Diagnostic>) {
    let mut v = Validator {
        file,
        text,
        map,
        pruned,
        plugins,
        diags: Vec::new(),
        has_alert: false,
        list: Vec::new(),
        list_field: "steps",
    };
    let runbook = v.runbook(raw, path);
    let failed = v.diags.iter().any(Diagnostic::is_error) || !pruned.is_empty();
    (if failed { None } else { runbook }, v.diags)
}

/// Where a template stands, which decides what it may read.
#[derive(Clone, Copy)]
enum Scope {
    /// Runbook-level (guards.key): no step results.
    Runbook,
    /// Inside step number `index`: results of earlier steps only.
    Step(usize),
    /// After step number `index` succeeded (`noop_when`): its own results too.
    AfterStep(usize),
    /// Once the run ended (`toil.per_item.count`): every step's results.
    Finished,
}

struct Validator<'a> {
    file: usize,
    text: &'a str,
    map: &'a SourceMap,
    /// The parts of a wrong shape taken out of the file, whose consequences are not reported.
    pruned: &'a Pruned,
    plugins: &'a Plugins,
    diags: Vec<Diagnostic>,
    has_alert: bool,
    /// The step list being validated (`steps` or `on_approval_requested`) and its field.
    list: Vec<RawStep>,
    list_field: &'static str,
}

impl Validator<'_> {
    fn error(
        &mut self,
        kind: Kind,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::error(kind, self.file, span, message));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn warn(
        &mut self,
        kind: Kind,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::warning(kind, self.file, span, message));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    /// An error with a caret label and an optional help line.
    fn reject(
        &mut self,
        kind: Kind,
        span: Range<usize>,
        message: impl Into<String>,
        label: &str,
        help: Option<String>,
    ) {
        let d = self.error(kind, span, message);
        d.primary.message = label.into();
        if let Some(h) = help {
            d.help.push(h);
        }
    }

    fn value_span(&self, path: &[Seg]) -> Range<usize> {
        self.map.value_span(path)
    }

    fn key_span(&self, path: &[Seg]) -> Range<usize> {
        self.map.key_span(path)
    }

    /// Whether the value at `path` was taken out for its shape, or is absent because a
    /// misspelling of it or of an ancestor was (`parms` for `params`): its absence is no news.
    fn lost(&self, path: &[Seg]) -> bool {
        self.pruned.lost(path) || (1..=path.len()).any(|n| self.pruned.misspelt(&path[..n]))
    }

    /// Whether the value at `path` is not whole for its shape: lost, or something inside it
    /// was taken out.
    fn incomplete(&self, path: &[Seg]) -> bool {
        self.lost(path) || self.pruned.touches(path)
    }

    fn missing(&mut self, parent: &[Seg], field: &str, what: &str, example: &str) {
        let mut at = parent.to_vec();
        at.push(key(field));
        if self.lost(&at) {
            return;
        }
        let span = self.key_span(parent);
        let place = if parent.is_empty() {
            "runbook".to_string()
        } else {
            format!("`{}`", crate::runbook::source_map::display_path(parent))
        };
        let d = self.error(
            Kind::MissingField,
            span,
            format!("missing field `{field}` in {place}"),
        );
        d.primary.message = format!("{what} is required here");
        d.help.push(format!("add it, e.g. `{example}`"));
    }

    fn duration(&mut self, text: Option<&String>, path: &[Seg]) -> Option<Duration> {
        let text = text?;
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                let span = self.value_span(path);
                let d = self.error(
                    Kind::BadDuration,
                    span,
                    format!("invalid duration `{text}`: {e}"),
                );
                d.primary.message = "not a duration".into();
                d.help
                    .push("write a number and a unit, e.g. `30s`, `10m`, `1h30m` or `2d`".into());
                None
            }
        }
    }

    fn runbook(&mut self, raw: &RawRunbook, path: &Path) -> Option<Runbook> {
        let name = match &raw.name {
            Some(n) => {
                self.check_name(n, &[key("name")], "runbook");
                n.clone()
            }
            None => {
                self.missing(&[], "name", "a runbook name", "name: disk-cleanup");
                String::new()
            }
        };
        let owner = match &raw.owner {
            Some(o) if !o.trim().is_empty() => o.clone(),
            Some(_) => {
                let span = self.value_span(&[key("owner")]);
                self.error(Kind::InvalidValue, span, "`owner` is empty")
                    .help
                    .push(
                        "name the team that owns this runbook, e.g. `owner: team-storage`".into(),
                    );
                String::new()
            }
            None => {
                self.missing(&[], "owner", "the owning team", "owner: team-storage");
                String::new()
            }
        };
        if raw.steps.is_empty() && !self.incomplete(&[key("steps")]) {
            if self.map.get(&[key("steps")]).is_some() {
                let span = self.key_span(&[key("steps")]);
                self.error(Kind::MissingField, span, "`steps` is empty")
                    .help
                    .push("add at least one step, e.g. `- name: check` / `run: uptime`".into());
            } else {
                self.missing(
                    &[],
                    "steps",
                    "a list of steps",
                    "steps: [{name: check, run: uptime}]",
                );
            }
        }

        let toil = self.toil(raw);
        let timeout = self.duration(raw.timeout.as_ref(), &[key("timeout")]);
        let triggers: Vec<Trigger> = raw
            .triggers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.trigger(t, i))
            .collect();
        // A trigger taken out for its shape may have been an alert trigger.
        self.has_alert =
            raw.triggers.iter().any(|t| t.alert.is_some()) || self.incomplete(&[key("triggers")]);
        if raw.triggers.is_empty() && !self.incomplete(&[key("triggers")]) {
            let span = self.key_span(&[key("name")]);
            self.warn(Kind::NoTrigger, span, "runbook has no trigger")
                .help
                .push("it runs only by hand (`untoil run`); add a `schedule` or `alert` trigger to automate it".into());
        }

        let params: BTreeMap<String, Param> = raw
            .params
            .iter()
            .map(|(k, p)| {
                let at = [key("params"), key(k)];
                let rule = self.rule(
                    &at,
                    p.kind.as_deref(),
                    p.pattern.as_deref(),
                    p.allowed.as_deref(),
                );
                let default = p.default.as_ref().map(|s| s.0.clone());
                self.check_default(&at, &rule, default.as_deref());
                (
                    k.clone(),
                    Param {
                        default,
                        description: p.description.clone().unwrap_or_default(),
                        rule,
                    },
                )
            })
            .collect();
        let inputs = self.inputs(raw);
        for name in raw.params.keys() {
            if !valid_identifier(name) {
                let span = self.key_span(&[key("params"), key(name)]);
                self.error(Kind::InvalidValue, span, format!("invalid parameter name `{name}`"))
                    .help
                    .push("use letters, digits and `_`, starting with a letter, so templates can read it as `{{params.NAME}}`".into());
            }
        }
        for (i, name) in raw.env.iter().enumerate() {
            if !valid_env_name(name) {
                let span = self.value_span(&[key("env"), Seg::Index(i)]);
                self.error(
                    Kind::InvalidValue,
                    span,
                    format!("invalid environment variable name `{name}`"),
                )
                .help
                .push("use letters, digits and `_`, not starting with a digit".into());
            } else if crate::runbook::model::reserved_env(name) {
                let span = self.value_span(&[key("env"), Seg::Index(i)]);
                self.error(
                    Kind::InvalidValue,
                    span,
                    format!("`{name}` is untoil's own variable: runbooks cannot read it"),
                )
                .help
                .push("untoil's settings and credentials never reach a runbook; pass what the runbook needs in a variable of its own".into());
            }
        }
        let secrets = self.secrets(raw);
        let guards = self.guards(raw.guards.as_ref(), raw);
        let verify = raw.verify.as_ref().and_then(|v| {
            let credit = match v.credit.as_deref() {
                None | Some("at_finish") => VerifyCredit::AtFinish,
                Some("verified_only") => VerifyCredit::VerifiedOnly,
                Some(other) => {
                    let span = self.value_span(&[key("verify"), key("credit")]);
                    let hint = did_you_mean(other, ["at_finish", "verified_only"]);
                    self.reject(
                        Kind::InvalidValue,
                        span,
                        format!("invalid `verify.credit` `{other}`"),
                        "expected `at_finish` or `verified_only`",
                        Some(hint.unwrap_or_else(|| {
                            "`verified_only` credits a run once its alert resolves within the window; `at_finish` (the default) when it finishes".into()
                        })),
                    );
                    VerifyCredit::AtFinish
                }
            };
            if v.alert_resolves_within.is_none()
                && v.credit.is_some()
                && !self.lost(&[key("verify"), key("alert_resolves_within")])
            {
                self.missing(
                    &[key("verify")],
                    "alert_resolves_within",
                    "the verification window",
                    "alert_resolves_within: 15m",
                );
            }
            let within = self.duration(
                v.alert_resolves_within.as_ref(),
                &[key("verify"), key("alert_resolves_within")],
            )?;
            Some(Verify {
                alert_resolves_within: within,
                credit,
            })
        });
        if verify.is_some() && !self.has_alert {
            let span = self.key_span(&[key("verify")]);
            self.warn(Kind::Ineffective, span, "`verify` has no effect without an alert trigger")
                .help
                .push("verification watches the alert that started a run; add an `alert` trigger or remove `verify`".into());
        }

        let steps = self.step_list("steps", &raw.steps, raw);
        // After the steps: the count reads their results, as the run left them.
        let mut toil = toil;
        toil.per_item = self.per_item(raw);
        let on_approval_requested =
            self.step_list("on_approval_requested", &raw.on_approval_requested, raw);
        // An approval setting taken out, or of a value already reported, decides nothing.
        let approval_lost = self.lost(&[key("guards"), key("approval")])
            || !matches!(
                raw.guards.as_ref().and_then(|g| g.approval.as_deref()),
                None | Some("required" | "none")
            );
        if !raw.on_approval_requested.is_empty() && !guards_approval(raw) && !approval_lost {
            let span = self.key_span(&[key("on_approval_requested")]);
            self.warn(
                Kind::Ineffective,
                span,
                "`on_approval_requested` has no effect without `guards.approval: required`",
            )
            .help
            .push("these steps run while a run waits for approval; require approval (`guards: { approval: required }`) or remove them".into());
        }

        let has_step_toil = raw.steps.iter().any(|s| s.toil_minutes.is_some());
        let toil_lost = self.pruned.any(|p| match p {
            [Seg::Key(k), ..] if k == "toil" => true,
            [Seg::Key(k), rest @ ..] if k == "steps" => {
                rest.len() <= 1 || rest.get(1) == Some(&key("toil_minutes"))
            }
            _ => false,
        }) || self.lost(&[key("toil")]);
        let has_per_item = raw.toil.as_ref().is_some_and(|t| t.per_item.is_some());
        if toil.manual_minutes == 0.0 && !has_step_toil && !has_per_item && !toil_lost {
            let span = match raw.toil {
                Some(_) => self.key_span(&[key("toil")]),
                None => self.key_span(&[key("name")]),
            };
            self.warn(Kind::NoToil, span, "runbook credits no toil")
                .help
                .push("set `toil.manual_minutes` (what doing this by hand costs) so reports show what it saves".into());
        }
        if toil.approval_minutes > 0.0 && !guards.approval && !approval_lost {
            let span = self.key_span(&[key("toil"), key("approval_minutes")]);
            self.warn(
                Kind::Ineffective,
                span,
                "`approval_minutes` has no effect without `guards.approval: required`",
            )
            .help
            .push("it is the time a required approval costs; require approval (`guards: { approval: required }`) or remove it".into());
        }

        Some(Runbook {
            name,
            description: raw.description.clone().unwrap_or_default(),
            owner,
            service: raw.service.clone(),
            tags: raw.tags.clone(),
            toil,
            timeout,
            idempotent: raw.idempotent.unwrap_or(false),
            triggers,
            guards,
            params,
            inputs,
            env: raw.env.clone(),
            secrets,
            verify,
            steps,
            on_approval_requested,
            source: path.to_path_buf(),
            version: hex(&Sha256::digest(self.text.as_bytes())),
        })
    }

    /// The rule a parameter or input declares at `at` (`type`, `pattern`, `allowed`).
    fn rule(
        &mut self,
        at: &[Seg],
        kind: Option<&str>,
        pattern: Option<&str>,
        allowed: Option<&[Scalar]>,
    ) -> Rule {
        let mut rule = Rule::default();
        if let Some(k) = kind {
            match InputType::parse(k) {
                Some(t) => rule.kind = t,
                None => {
                    let mut p = at.to_vec();
                    p.push(key("type"));
                    let span = self.value_span(&p);
                    let names: Vec<&str> = InputType::ALL.iter().map(|(n, _)| *n).collect();
                    let help = did_you_mean(k, names.iter().copied())
                        .unwrap_or_else(|| format!("one of: {}", names.join(", ")));
                    self.error(Kind::InvalidValue, span, format!("unknown type `{k}`"))
                        .help
                        .push(help);
                }
            }
        }
        if let Some(pat) = pattern {
            match compile_pattern(pat) {
                Ok(re) => {
                    rule.pattern = Some(re);
                    rule.pattern_source = Some(pat.to_string());
                }
                Err(e) => {
                    let mut p = at.to_vec();
                    p.push(key("pattern"));
                    let span = self.value_span(&p);
                    self.error(Kind::InvalidRegex, span, format!("invalid pattern: {e}"))
                        .help
                        .push(
                            "a Rust regex (https://docs.rs/regex), matched against the whole value"
                                .into(),
                        );
                }
            }
        }
        if let Some(list) = allowed {
            rule.allowed = list.iter().map(|s| s.0.clone()).collect();
            if list.is_empty() {
                let mut p = at.to_vec();
                p.push(key("allowed"));
                let span = self.value_span(&p);
                self.error(
                    Kind::InvalidValue,
                    span,
                    "`allowed` is empty: no value would pass",
                )
                .help
                .push("list the values it accepts, or remove `allowed`".into());
            }
            for (i, value) in rule.allowed.iter().enumerate() {
                let plain = Rule {
                    allowed: Vec::new(),
                    ..rule.clone()
                };
                if let Err(why) = plain.check(value) {
                    let mut p = at.to_vec();
                    p.push(key("allowed"));
                    p.push(Seg::Index(i));
                    let span = self.value_span(&p);
                    self.error(
                        Kind::InvalidValue,
                        span,
                        format!("allowed value `{value}` {why}"),
                    );
                }
            }
        }
        rule
    }

    /// A default must pass its own rule.
    fn check_default(&mut self, at: &[Seg], rule: &Rule, default: Option<&str>) {
        if let Some(d) = default
            && let Err(why) = rule.check(d)
        {
            let mut p = at.to_vec();
            p.push(key("default"));
            let span = self.value_span(&p);
            self.error(Kind::InvalidValue, span, format!("default `{d}` {why}"))
                .help
                .push("a default must pass its own `type`, `pattern` and `allowed`".into());
        }
    }

    /// The runbook's inputs: each from exactly one label or annotation, with its rule.
    fn inputs(&mut self, raw: &RawRunbook) -> BTreeMap<String, Input> {
        let mut out = BTreeMap::new();
        if !raw.inputs.is_empty() && !self.has_alert {
            let span = self.key_span(&[key("inputs")]);
            self.warn(
                Kind::Ineffective,
                span,
                "`inputs` are taken from the alert, and this runbook has no alert trigger",
            )
            .help
            .push("add an `alert` trigger, or use `params` for values given by hand".into());
        }
        for (name, i) in &raw.inputs {
            let at = [key("inputs"), key(name)];
            if !valid_identifier(name) {
                let span = self.key_span(&at);
                self.error(Kind::InvalidValue, span, format!("invalid input name `{name}`"))
                    .help
                    .push("use letters, digits and `_`, starting with a letter, so templates can read it as `{{inputs.NAME}}`".into());
            }
            let source = match (&i.label, &i.annotation) {
                (Some(l), None) => Some(InputSource::Label(l.clone())),
                (None, Some(a)) => Some(InputSource::Annotation(a.clone())),
                (None, None)
                    if self.lost(&[key("inputs"), key(name), key("label")])
                        || self.lost(&[key("inputs"), key(name), key("annotation")]) =>
                {
                    None
                }
                (l, _) => {
                    let span = self.key_span(&at);
                    let message = if l.is_some() {
                        format!("input `{name}` has both `label` and `annotation`")
                    } else {
                        format!("input `{name}` says neither `label` nor `annotation`")
                    };
                    self.error(Kind::MissingField, span, message)
                        .help
                        .push("take it from one place: `label: NAME` or `annotation: NAME`".into());
                    None
                }
            };
            let rule = self.rule(
                &at,
                i.kind.as_deref(),
                i.pattern.as_deref(),
                i.allowed.as_deref(),
            );
            let default = i.default.as_ref().map(|s| s.0.clone());
            self.check_default(&at, &rule, default.as_deref());
            if let Some(source) = source {
                out.insert(
                    name.clone(),
                    Input {
                        source,
                        rule,
                        default,
                        description: i.description.clone().unwrap_or_default(),
                    },
                );
            }
        }
        out
    }

    /// Validates one list of steps (`steps` or `on_approval_requested`): names unique, each
    /// step valid, references only to earlier steps of the same list.
    fn step_list(&mut self, field: &'static str, list: &[RawStep], raw: &RawRunbook) -> Vec<Step> {
        self.list_field = field;
        self.list = list.to_vec();
        let mut steps = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, s) in list.iter().enumerate() {
            if let Some(n) = &s.name {
                if let Some(&first) = seen.get(n.as_str()) {
                    let span = self.value_span(&[key(field), Seg::Index(i), key("name")]);
                    let first_span = self.value_span(&[key(field), Seg::Index(first), key("name")]);
                    let file = self.file;
                    let d = self.error(
                        Kind::DuplicateStep,
                        span,
                        format!("duplicate step name `{n}`"),
                    );
                    d.primary.message = "used again here".into();
                    d.secondary.push(crate::runbook::diagnostic::Label {
                        file,
                        span: first_span,
                        message: "first used here".into(),
                    });
                    d.help.push(
                        "step names must be unique so later steps can refer to `{{steps.NAME...}}`"
                            .into(),
                    );
                } else {
                    seen.insert(n.clone(), i);
                }
            }
            if let Some(step) = self.step(s, i, raw) {
                steps.push(step);
            }
        }
        steps
    }

    fn check_name(&mut self, name: &str, path: &[Seg], what: &str) {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-');
        if !ok {
            let span = self.value_span(path);
            let suggestion: String = name
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let d = self.error(
                Kind::InvalidValue,
                span,
                format!("invalid {what} name `{name}`"),
            );
            d.primary.message = "only lowercase letters, digits and `-` are allowed".into();
            d.help
                .push(format!("try `{}`", suggestion.trim_matches('-')));
        }
    }

    fn toil(&mut self, raw: &RawRunbook) -> Toil {
        let Some(t) = &raw.toil else {
            return Toil::default();
        };
        let check = |v: Option<f64>, field: &str, this: &mut Self| -> f64 {
            let v = v.unwrap_or(0.0);
            if !v.is_finite() || v < 0.0 {
                let span = this.value_span(&[key("toil"), key(field)]);
                this.error(
                    Kind::InvalidValue,
                    span,
                    format!("`toil.{field}` must be zero or more minutes"),
                );
                0.0
            } else {
                v
            }
        };
        Toil {
            manual_minutes: check(t.manual_minutes, "manual_minutes", self),
            approval_minutes: check(t.approval_minutes, "approval_minutes", self),
            per_item: None,
        }
    }

    /// `toil.per_item`, once `steps` are known (its count reads any step's results).
    fn per_item(&mut self, raw: &RawRunbook) -> Option<PerItem> {
        let p = raw.toil.as_ref()?.per_item.as_ref()?;
        let at = |f: &str| vec![key("toil"), key("per_item"), key(f)];
        let minutes = match p.minutes {
            Some(m) if m.is_finite() && m >= 0.0 => Some(m),
            Some(_) => {
                let span = self.value_span(&at("minutes"));
                self.error(
                    Kind::InvalidValue,
                    span,
                    "`toil.per_item.minutes` must be zero or more minutes",
                );
                None
            }
            None => {
                self.missing(
                    &[key("toil"), key("per_item")],
                    "minutes",
                    "the minutes per item",
                    "minutes: 2",
                );
                None
            }
        };
        let count = match &p.count {
            Some(c) => self.template(c, &at("count"), Scope::Finished, raw),
            None => {
                self.missing(
                    &[key("toil"), key("per_item")],
                    "count",
                    "a template giving the number of items",
                    "count: \"{{steps.clean.json.removed}}\"",
                );
                None
            }
        };
        if p.max_items == Some(0) {
            let span = self.value_span(&at("max_items"));
            self.reject(
                Kind::InvalidValue,
                span,
                "`toil.per_item.max_items` must be at least 1",
                "no item could ever be credited",
                Some(format!(
                    "remove it for the default ({DEFAULT_MAX_ITEMS}), or remove `per_item`"
                )),
            );
            return None;
        }
        Some(PerItem {
            minutes: minutes?,
            count: count?,
            max_items: p.max_items.unwrap_or(DEFAULT_MAX_ITEMS),
        })
    }

    fn trigger(&mut self, t: &RawTrigger, i: usize) -> Option<Trigger> {
        let base = vec![key("triggers"), Seg::Index(i)];
        match (&t.schedule, &t.alert) {
            (Some(_), Some(_)) => {
                let span = self.key_span(&[key("triggers"), Seg::Index(i), key("alert")]);
                self.error(
                    Kind::InvalidValue,
                    span,
                    "a trigger has either `schedule` or `alert`, not both",
                )
                .help
                .push("split it into two triggers, each starting with `- `".into());
                None
            }
            (None, None)
                if self.lost(&[key("triggers"), Seg::Index(i), key("schedule")])
                    || self.lost(&[key("triggers"), Seg::Index(i), key("alert")]) =>
            {
                None
            }
            (None, None) => {
                let span = self.value_span(&base);
                let d = self.error(
                    Kind::MissingField,
                    span,
                    "trigger needs `schedule` or `alert`",
                );
                d.help.push("e.g. `- schedule: \"0 3 * * *\"` or `- alert: {matchers: ['alertname=\"X\"']}`".into());
                None
            }
            (Some(expr), None) => {
                let tz = match &t.timezone {
                    Some(name) => match parse_timezone(name) {
                        Ok(tz) => Some(tz),
                        Err(e) => {
                            let span =
                                self.value_span(&[key("triggers"), Seg::Index(i), key("timezone")]);
                            let help = e.help();
                            let d = self.error(Kind::UnknownTimezone, span, e.to_string());
                            d.primary.message = "not an IANA time zone".into();
                            if let Some(h) = help {
                                d.help.push(h);
                            }
                            None
                        }
                    },
                    None => Some(chrono_tz::UTC),
                };
                let catchup = self.duration(
                    t.catchup.as_ref(),
                    &[key("triggers"), Seg::Index(i), key("catchup")],
                );
                let tz = tz?;
                match Schedule::parse(expr, tz) {
                    Ok(schedule) => Some(Trigger::Schedule(ScheduleTrigger { schedule, catchup })),
                    Err(e) => {
                        let span =
                            self.value_span(&[key("triggers"), Seg::Index(i), key("schedule")]);
                        let help = e.help();
                        self.reject(
                            Kind::BadCron,
                            span,
                            format!("invalid schedule `{expr}`: {e}"),
                            "not a crontab expression",
                            help,
                        );
                        None
                    }
                }
            }
            (None, Some(alert)) => {
                for field in ["timezone", "catchup"] {
                    let set = if field == "timezone" {
                        t.timezone.is_some()
                    } else {
                        t.catchup.is_some()
                    };
                    if set {
                        let span = self.key_span(&[key("triggers"), Seg::Index(i), key(field)]);
                        self.warn(
                            Kind::Ineffective,
                            span,
                            format!("`{field}` has no effect on an alert trigger"),
                        )
                        .help
                        .push("it applies to `schedule` triggers only; remove it".into());
                    }
                }
                self.alert_trigger(alert, &base).map(Trigger::Alert)
            }
        }
    }

    fn alert_trigger(&mut self, a: &RawAlertTrigger, base: &[Seg]) -> Option<AlertTrigger> {
        let mut matchers = Vec::new();
        let mut ok = true;
        let mpath = |j: usize| {
            let mut p = base.to_vec();
            p.push(key("alert"));
            p.push(key("matchers"));
            p.push(Seg::Index(j));
            p
        };
        for (j, text) in a.matchers.iter().enumerate() {
            match Matcher::parse_list(text) {
                Ok(list) => {
                    for m in &list {
                        self.suspicious_matcher(m, text, &mpath(j));
                    }
                    matchers.extend(list);
                }
                Err(e) => {
                    ok = false;
                    let vspan = self.value_span(&mpath(j));
                    let quoted = self
                        .text
                        .get(vspan.clone())
                        .is_some_and(|s| s.starts_with(['"', '\'']));
                    let q = usize::from(quoted);
                    // Offsets into the decoded text map onto the file only when the scalar
                    // holds it verbatim (no escapes, no folding); otherwise show the value.
                    let verbatim = self
                        .text
                        .get(vspan.start + q..vspan.end.saturating_sub(q))
                        .is_some_and(|inner| inner == text);
                    let span = if verbatim {
                        let start = vspan.start + q + e.offset;
                        start..(start + e.len.max(1)).min(vspan.end.max(start + 1))
                    } else {
                        vspan.clone()
                    };
                    let kind = if e.message.contains("regex") {
                        Kind::InvalidRegex
                    } else {
                        Kind::BadMatcher
                    };
                    let d = self.error(
                        kind,
                        span,
                        format!("invalid matcher `{text}`: {}", e.message),
                    );
                    if let Some(h) = &e.help {
                        d.help.push(h.clone());
                    }
                    d.help.push("matchers use Alertmanager's syntax: name=\"value\", name!=\"value\", name=~\"regex\", name!~\"regex\"".into());
                }
            }
        }
        // Items may hold no matcher (`""`, `{}`), as Alertmanager allows; a trigger needs one.
        let mut at = base.to_vec();
        at.extend([key("alert"), key("matchers")]);
        if matchers.is_empty() && ok && !self.incomplete(&at) {
            let mut p = base.to_vec();
            p.push(key("alert"));
            let span = self.key_span(&p);
            self.error(Kind::MissingField, span, "alert trigger needs at least one matcher")
                .help
                .push("e.g. `matchers: ['alertname=\"HostDiskFull\"']`; without matchers it would run on every alert".into());
            ok = false;
        }
        if let Some(reason) = never_matches(&matchers) {
            let mut p = base.to_vec();
            p.push(key("alert"));
            p.push(key("matchers"));
            let span = self.key_span(&p);
            self.warn(
                Kind::NeverMatches,
                span,
                "these matchers can never match an alert",
            )
            .help
            .push(reason);
        }
        let on = match a.on.as_deref() {
            None | Some("firing") => AlertOn::Firing,
            Some("resolved") => AlertOn::Resolved,
            Some("both") => AlertOn::Both,
            Some(other) => {
                let mut p = base.to_vec();
                p.extend([key("alert"), key("on")]);
                let span = self.value_span(&p);
                let hint = did_you_mean(other, ["firing", "resolved", "both"]);
                self.reject(
                    Kind::InvalidValue,
                    span,
                    format!("invalid `on` value `{other}`"),
                    "expected firing, resolved or both",
                    hint,
                );
                ok = false;
                AlertOn::Firing
            }
        };
        let cancel_on_resolve = a.cancel_on_resolve.unwrap_or(false);
        if cancel_on_resolve && on == AlertOn::Resolved {
            let mut p = base.to_vec();
            p.extend([key("alert"), key("cancel_on_resolve")]);
            let span = self.key_span(&p);
            self.warn(
                Kind::Ineffective,
                span,
                "`cancel_on_resolve` has no effect with `on: resolved`",
            )
            .help
            .push("it cancels a run still in progress when its alert resolves, but with `on: resolved` runs start only once it has; remove it, or use `on: firing`".into());
        }
        let sources = self.alert_sources(a, base, &mut ok);
        ok.then_some(AlertTrigger {
            sources,
            matchers,
            on,
            cancel_on_resolve,
        })
    }

    /// The sources an alert trigger takes alerts from (`alertmanager` when it names none);
    /// a malformed name or an empty list is an error located at the name.
    fn alert_sources(&mut self, a: &RawAlertTrigger, base: &[Seg], ok: &mut bool) -> Vec<String> {
        let Some(raw) = &a.source else {
            return vec![ALERTMANAGER.to_string()];
        };
        let mut at = base.to_vec();
        at.extend([key("alert"), key("source")]);
        let (names, list) = raw.names();
        if names.is_empty() {
            let span = self.value_span(&at);
            self.reject(
                Kind::InvalidValue,
                span,
                "`source` names no source",
                "expected a source name or a list of them",
                Some("leave `source` out for Alertmanager's alerts".into()),
            );
            *ok = false;
        }
        let mut sources: Vec<String> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if !is_valid_name(name) {
                let mut p = at.clone();
                if list {
                    p.push(Seg::Index(i));
                }
                let span = self.value_span(&p);
                self.reject(
                    Kind::InvalidValue,
                    span,
                    format!("invalid source name `{name}`"),
                    "not a source name",
                    Some("a source name is a lowercase letter, then up to 62 lowercase letters, digits or `-`, e.g. `alertmanager`, `grafana`, `github-ci`".into()),
                );
                *ok = false;
            } else if !sources.contains(name) {
                sources.push(name.clone());
            }
        }
        sources
    }

    /// Warns about a matcher that Alertmanager reads otherwise than it looks: `a==x` and
    /// `a!=~x` compare with a value that starts with `=` or `~` (unless the value is quoted).
    fn suspicious_matcher(&mut self, m: &Matcher, item: &str, path: &[Seg]) {
        let Some(first) = m.value.chars().next().filter(|c| matches!(c, '=' | '~')) else {
            return;
        };
        if m.op.is_regex() || item.contains(&format!("\"{first}")) {
            return;
        }
        let (meant, op) = match (m.op, first) {
            (MatchOp::Equal, '=') => ("equality is a single `=`", "="),
            (MatchOp::Equal, _) => ("a regex match is written `=~`", "=~"),
            (_, '~') => ("a regex mismatch is written `!~`", "!~"),
            _ => ("inequality is a single `!=`", "!="),
        };
        let rest = m.value.get(1..).unwrap_or("");
        let span = self.value_span(path);
        self.warn(
            Kind::SuspiciousMatcher,
            span,
            format!(
                "matcher `{}` compares label `{}` with the value `{}`",
                item.trim(),
                m.name,
                m.value
            ),
        )
        .help
        .push(format!(
            "Alertmanager reads it so; {meant}: `{}{op}\"{rest}\"`. Quote the value if it really \
             starts with `{first}`",
            m.name
        ));
    }

    fn secrets(&mut self, raw: &RawRunbook) -> BTreeMap<String, Secret> {
        let mut out = BTreeMap::new();
        for (name, s) in &raw.secrets {
            let path = vec![key("secrets"), key(name)];
            match (&s.env, &s.file) {
                (Some(var), None) => {
                    let source = SecretSource::Env(var.clone());
                    let optional = s.optional;
                    out.insert(name.clone(), Secret { source, optional });
                }
                (None, Some(f)) => {
                    let source = SecretSource::File(f.into());
                    let optional = s.optional;
                    out.insert(name.clone(), Secret { source, optional });
                }
                (Some(_), Some(_)) => {
                    let span = self.key_span(&path);
                    self.error(
                        Kind::InvalidValue,
                        span,
                        format!("secret `{name}` has both `env` and `file`"),
                    )
                    .help
                    .push("keep one source".into());
                }
                (None, None)
                    if self.lost(&[key("secrets"), key(name), key("env")])
                        || self.lost(&[key("secrets"), key(name), key("file")]) => {}
                (None, None) => {
                    let span = self.key_span(&path);
                    self.error(
                        Kind::MissingField,
                        span,
                        format!("secret `{name}` needs `env` or `file`"),
                    )
                    .help
                    .push(format!(
                        "e.g. `{name}: {{env: {}}}` or `{name}: {{file: /run/secrets/{name}}}`",
                        name.to_uppercase()
                    ));
                }
            }
        }
        out
    }

    fn guards(&mut self, g: Option<&RawGuards>, raw: &RawRunbook) -> Guards {
        let mut out = Guards::default();
        let Some(g) = g else {
            return out;
        };
        let p = |f: &str| vec![key("guards"), key(f)];
        if g.concurrency == Some(0) {
            let span = self.value_span(&p("concurrency"));
            self.error(Kind::InvalidValue, span, "`concurrency` must be at least 1");
        }
        out.concurrency = g.concurrency;
        out.key = g
            .key
            .as_ref()
            .and_then(|k| self.template(k, &p("key"), Scope::Runbook, raw));
        out.overlap = match g.overlap.as_deref() {
            None | Some("queue") => Overlap::Queue,
            Some("skip") => Overlap::Skip,
            Some("cancel_previous") => Overlap::CancelPrevious,
            Some(other) => {
                let span = self.value_span(&p("overlap"));
                let hint = did_you_mean(other, ["queue", "skip", "cancel_previous"]);
                self.reject(
                    Kind::InvalidValue,
                    span,
                    format!("invalid `overlap` value `{other}`"),
                    "expected queue, skip or cancel_previous",
                    hint,
                );
                Overlap::Queue
            }
        };
        out.cooldown = self.duration(g.cooldown.as_ref(), &p("cooldown"));
        if let Some(m) = &g.max_runs {
            let mp = |f: &str| vec![key("guards"), key("max_runs"), key(f)];
            let per = self.duration(m.per.as_ref(), &mp("per"));
            match (m.count, per) {
                (Some(0), _) => {
                    let span = self.value_span(&mp("count"));
                    self.error(
                        Kind::InvalidValue,
                        span,
                        "`max_runs.count` must be at least 1",
                    );
                }
                (Some(count), Some(per)) => out.max_runs = Some(MaxRuns { count, per }),
                (None, _) => self.missing(
                    &p("max_runs"),
                    "count",
                    "a run count",
                    "max_runs: { count: 3, per: 1h }",
                ),
                (_, None) if m.per.is_none() => self.missing(
                    &p("max_runs"),
                    "per",
                    "a window",
                    "max_runs: { count: 3, per: 1h }",
                ),
                _ => {}
            }
        }
        if g.trip_after_failures == Some(0) {
            let span = self.value_span(&p("trip_after_failures"));
            self.error(
                Kind::InvalidValue,
                span,
                "`trip_after_failures` must be at least 1",
            );
        }
        out.trip_after_failures = g.trip_after_failures;
        out.approval = match g.approval.as_deref() {
            None | Some("none") => false,
            Some("required") => true,
            Some(other) => {
                let span = self.value_span(&p("approval"));
                let hint = did_you_mean(other, ["required", "none"]);
                self.reject(
                    Kind::InvalidValue,
                    span,
                    format!("invalid `approval` value `{other}`"),
                    "expected required or none",
                    hint,
                );
                false
            }
        };
        if let Some(t) = self.duration(g.approval_timeout.as_ref(), &p("approval_timeout")) {
            out.approval_timeout = t;
        }
        out.approvers = self.approvers(g);
        out
    }

    /// `guards.approvers`. Without `approval: required` it is an error, not a warning: it reads
    /// as a restriction on who may let a run go, and without approval every run goes unasked.
    fn approvers(&mut self, g: &RawGuards) -> Option<Approvers> {
        let a = g.approvers.as_ref()?;
        let at = vec![key("guards"), key("approvers")];
        if matches!(g.approval.as_deref(), None | Some("none"))
            && !self.lost(&[key("guards"), key("approval")])
        {
            let span = self.key_span(&at);
            self.error(
                Kind::Ineffective,
                span,
                "`approvers` without `approval: required`: no run waits for approval, so they restrict nothing",
            )
            .help
            .push("add `approval: required` to `guards` so that each run waits for one of the approvers, or remove `approvers`".into());
        }
        if a.users.is_none()
            && a.groups.is_none()
            && !self.lost(&[key("guards"), key("approvers"), key("users")])
            && !self.lost(&[key("guards"), key("approvers"), key("groups")])
        {
            let span = self.key_span(&at);
            let d = self.error(
                Kind::MissingField,
                span,
                "`approvers` names no users and no groups",
            );
            d.primary.message = "no one could approve".into();
            d.help.push("list who may, e.g. `approvers: { users: [alice], groups: [sre] }`, or remove `approvers`".into());
        }
        Some(Approvers {
            users: self.approver_list(a.users.as_ref(), "users"),
            groups: self.approver_list(a.groups.as_ref(), "groups"),
        })
    }

    /// One list of `guards.approvers`: not empty, no empty names; no reserved user names; group
    /// names as the auth file writes them.
    fn approver_list(&mut self, list: Option<&Vec<String>>, field: &str) -> Vec<String> {
        let Some(list) = list else {
            return Vec::new();
        };
        let at = vec![key("guards"), key("approvers"), key(field)];
        if list.is_empty() {
            let span = self.value_span(&at);
            self.error(
                Kind::InvalidValue,
                span,
                format!("`approvers.{field}` is empty: no one could approve"),
            )
            .help
            .push(format!("name at least one, or remove `{field}`"));
        }
        for (i, name) in list.iter().enumerate() {
            let mut p = at.clone();
            p.push(Seg::Index(i));
            let span = self.value_span(&p);
            let problem = if name.trim().is_empty() {
                Some((
                    format!("an empty name in `approvers.{field}`"),
                    "name a user, a token or a group".to_string(),
                ))
            } else if field == "users" && name == principal::ANONYMOUS {
                Some((
                    "`anonymous` can never approve".into(),
                    "it is everyone while the daemon has no authentication; name users of the auth file".into(),
                ))
            } else if field == "users" && name == principal::EXPIRED {
                Some((
                    "`expired` is how an approval that timed out is recorded, not a user".into(),
                    "name users of the auth file".into(),
                ))
            } else if field == "groups" {
                principal::invalid_name(name).map(|why| {
                    (
                        format!("group `{}` can never match: {why}", name.escape_default()),
                        "write group names as the auth file does".into(),
                    )
                })
            } else {
                None
            };
            if let Some((message, help)) = problem {
                self.error(Kind::InvalidValue, span, message)
                    .help
                    .push(help);
            }
        }
        list.clone()
    }

    fn step(&mut self, s: &RawStep, i: usize, raw: &RawRunbook) -> Option<Step> {
        let base = vec![key(self.list_field), Seg::Index(i)];
        let sp = |f: &str| {
            let mut p = base.clone();
            p.push(key(f));
            p
        };
        let name = match &s.name {
            Some(n) => {
                if !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    || n.is_empty()
                {
                    let span = self.value_span(&sp("name"));
                    self.error(Kind::InvalidValue, span, format!("invalid step name `{n}`"))
                        .help
                        .push("use letters, digits, `-` and `_`".into());
                }
                n.clone()
            }
            None => {
                self.missing(&base, "name", "a step name", "name: check-disk");
                format!("#{i}")
            }
        };
        let scope = Scope::Step(i);
        let kinds = [
            s.run.is_some(),
            s.http.is_some(),
            s.plugin.is_some(),
            s.report.is_some(),
        ];
        let action = match kinds {
            [true, false, false, false] => {
                let command = s
                    .run
                    .as_ref()
                    .and_then(|r| self.template(r, &sp("run"), scope, raw));
                if let Some(c) = &command
                    && c.uses_raw()
                {
                    let span = self.value_span(&sp("run"));
                    self.warn(Kind::RawInterpolation, span, "command interpolates a value without shell quoting")
                        .help
                        .push("`{{{x}}}` and `{{raw x}}` insert text as is; a crafted label could inject commands. Use `{{x}}` unless the value is trusted".into());
                }
                if let Some(c) = &command
                    && c.uses_option()
                {
                    let span = self.value_span(&sp("run"));
                    self.warn(Kind::RawInterpolation, span, "command passes a value with `option`: it may begin with `-` and be read as an option")
                        .help
                        .push("a crafted label such as `-oProxyCommand=...` would then change what the command does; use `option` only for values the runbook's operator controls, or check the value with an input's `pattern`".into());
                }
                // A target that does not validate leaves the step without an action.
                let target = match &s.target {
                    Some(t) => self
                        .target(t, &sp("target"), scope, raw)
                        .map(|t| Some(Box::new(t))),
                    None => Some(None),
                };
                command.zip(target).map(|(command, target)| Action::Shell {
                    command,
                    shell: s.shell.clone().unwrap_or_else(|| DEFAULT_SHELL.to_string()),
                    target,
                })
            }
            [false, true, false, false] => s
                .http
                .as_ref()
                .and_then(|h| self.http(h, &sp("http"), scope, raw))
                .map(Action::Http),
            [false, false, true, false] => {
                let plugin = s.plugin.clone().unwrap_or_default();
                self.plugin(&plugin, s, &base, scope, raw)
                    .map(|with| Action::Plugin { name: plugin, with })
            }
            [false, false, false, true] => s
                .report
                .as_ref()
                .and_then(|r| self.report(r, &sp("report")))
                .map(Action::Report),
            [false, false, false, false] if STEP_KINDS.iter().any(|f| self.lost(&sp(f))) => None,
            [false, false, false, false] => {
                let span = self.key_span(&base);
                let d = self.error(
                    Kind::MissingField,
                    span,
                    format!("step `{name}` does nothing"),
                );
                d.primary.message = "needs `run`, `http`, `plugin` or `report`".into();
                d.help.push(
                    "add `run: <command>`, an `http:` request, `plugin: <name>` or a `report:`"
                        .into(),
                );
                None
            }
            _ => {
                // The second kind written is the one pointed at.
                let second = STEP_KINDS
                    .iter()
                    .zip(kinds)
                    .filter(|(_, given)| *given)
                    .map(|(f, _)| *f)
                    .nth(1)
                    .unwrap_or("plugin");
                let span = self.key_span(&sp(second));
                self.error(
                    Kind::InvalidValue,
                    span,
                    format!(
                        "step `{name}` has more than one of `run`, `http`, `plugin` and `report`"
                    ),
                )
                .help
                .push("a step does one thing; split it into several steps".into());
                None
            }
        };
        if s.shell.is_some() && s.run.is_none() && !self.lost(&sp("run")) {
            let span = self.key_span(&sp("shell"));
            self.warn(
                Kind::Ineffective,
                span,
                "`shell` has no effect without `run`",
            )
            .help
            .push(
                "`shell` is the program that runs a `run:` command; remove it from this step"
                    .into(),
            );
        }
        if s.target.is_some() && s.shell.is_some() {
            let span = self.key_span(&sp("shell"));
            self.warn(Kind::Ineffective, span, "`shell` has no effect on a remote step")
                .help
                .push("a step with a `target` runs its command with the remote host's `sh`; remove `shell`".into());
        }
        if s.target.is_some() && s.run.is_none() && !self.lost(&sp("run")) {
            let span = self.key_span(&sp("target"));
            self.error(Kind::InvalidValue, span, "`target` is only for `run` steps")
                .help
                .push(
                    "a remote target runs a `run:` command over SSH; remove it from this step"
                        .into(),
                );
        }
        if s.with.is_some() && s.plugin.is_none() && !self.lost(&sp("plugin")) {
            let span = self.key_span(&sp("with"));
            self.error(Kind::InvalidValue, span, "`with` is only for plugin steps")
                .help
                .push("pass inputs to a `plugin:` step; use `env` for `run` steps".into());
        }
        if s.report.is_some() && !self.lost(&sp("report")) {
            for (field, given) in [("env", !s.env.is_empty()), ("workdir", s.workdir.is_some())] {
                if given {
                    let span = self.key_span(&sp(field));
                    self.warn(
                        Kind::Ineffective,
                        span,
                        format!("`{field}` has no effect on a `report` step"),
                    )
                    .help
                    .push("a report step starts no process: it renders the report inside untoil; remove it".into());
                }
            }
        }
        let when = s
            .when
            .as_ref()
            .and_then(|w| self.template(w, &sp("when"), scope, raw));
        let timeout = self
            .duration(s.timeout.as_ref(), &sp("timeout"))
            .unwrap_or(DEFAULT_STEP_TIMEOUT);
        if timeout.is_zero() {
            let span = self.value_span(&sp("timeout"));
            self.error(
                Kind::InvalidValue,
                span,
                "a step timeout must be more than zero",
            );
        }
        let retries = match &s.retries {
            Some(r) => {
                let mut rp = sp("retries");
                rp.push(key("backoff"));
                Retries {
                    attempts: r.attempts.unwrap_or(0),
                    backoff: self
                        .duration(r.backoff.as_ref(), &rp)
                        .unwrap_or(Duration::ZERO),
                }
            }
            // HTTP requests fail transiently (connection refused, 5xx) more than commands do.
            None if s.http.is_some() => Retries {
                attempts: 2,
                backoff: Duration::from_secs(1),
            },
            None => Retries::default(),
        };
        let noop_exit_codes = s.noop_exit_codes.clone().unwrap_or_default();
        if s.noop_exit_codes.is_some() && s.run.is_none() && !self.lost(&sp("run")) {
            let span = self.key_span(&sp("noop_exit_codes"));
            self.reject(
                Kind::InvalidValue,
                span,
                "`noop_exit_codes` is only for `run` steps",
                "this step runs no command",
                Some("for `http` and `plugin` steps, say when there was nothing to do with `noop_when` on the step's results, e.g. `noop_when: '{{eq steps.NAME.http_status 204}}'`".into()),
            );
        }
        for (n, code) in noop_exit_codes.iter().enumerate() {
            if !(1..=255).contains(code) {
                let mut p = sp("noop_exit_codes");
                p.push(Seg::Index(n));
                let span = self.value_span(&p);
                let help = if *code == 0 {
                    "0 is success: a run that found nothing to do exits with a status of its own, e.g. `exit 3`, listed here"
                } else {
                    "an exit status is 1 to 255"
                };
                self.reject(
                    Kind::InvalidValue,
                    span,
                    format!("`{code}` cannot be a noop exit status"),
                    "not allowed here",
                    Some(help.into()),
                );
            }
        }
        let noop_when = s
            .noop_when
            .as_ref()
            .and_then(|w| self.template(w, &sp("noop_when"), Scope::AfterStep(i), raw));
        if self.list_field == "on_approval_requested"
            && (s.noop_exit_codes.is_some() || s.noop_when.is_some())
        {
            let field = if s.noop_when.is_some() {
                "noop_when"
            } else {
                "noop_exit_codes"
            };
            let span = self.key_span(&sp(field));
            self.warn(
                Kind::Ineffective,
                span,
                format!("`{field}` has no effect in `on_approval_requested`"),
            )
            .help
            .push("these steps are not a run, so they cannot end one as noop; move it to a step under `steps`".into());
        }
        if let Some(m) = s.toil_minutes
            && (!m.is_finite() || m < 0.0)
        {
            let span = self.value_span(&sp("toil_minutes"));
            self.error(
                Kind::InvalidValue,
                span,
                "`toil_minutes` must be zero or more",
            );
        }
        let mut env = BTreeMap::new();
        for (k, v) in &s.env {
            let mut p = sp("env");
            p.push(key(k));
            if !valid_env_name(k) {
                let span = self.key_span(&p);
                self.error(
                    Kind::InvalidValue,
                    span,
                    format!("invalid environment variable name `{k}`"),
                );
            }
            if let Some(t) = self.template(v, &p, scope, raw) {
                env.insert(k.clone(), t);
            }
        }
        let workdir = s
            .workdir
            .as_ref()
            .and_then(|w| self.template(w, &sp("workdir"), scope, raw));
        Some(Step {
            name,
            action: action?,
            when,
            timeout,
            retries,
            toil_minutes: s.toil_minutes,
            noop_exit_codes,
            noop_when,
            continue_on_error: s.continue_on_error.unwrap_or(false),
            env,
            workdir,
        })
    }

    fn http(
        &mut self,
        h: &RawHttp,
        base: &[Seg],
        scope: Scope,
        raw: &RawRunbook,
    ) -> Option<HttpRequest> {
        let p = |f: &str| {
            let mut p = base.to_vec();
            p.push(key(f));
            p
        };
        let method = h
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_uppercase();
        if !METHODS.contains(&method.as_str()) {
            let span = self.value_span(&p("method"));
            let hint = did_you_mean(&method, METHODS.iter().copied());
            let d = self.error(
                Kind::InvalidValue,
                span,
                format!("unknown HTTP method `{method}`"),
            );
            d.help
                .push(hint.unwrap_or_else(|| format!("expected one of {}", METHODS.join(", "))));
        }
        let url = match &h.url {
            Some(u) => self.template(u, &p("url"), scope, raw),
            None => {
                self.missing(base, "url", "a URL", "url: https://example.com/hook");
                None
            }
        };
        if let Some(u) = &url
            && u.is_literal()
            && !(u.source().starts_with("http://") || u.source().starts_with("https://"))
        {
            let span = self.value_span(&p("url"));
            self.error(
                Kind::InvalidValue,
                span,
                format!("`{}` is not an http:// or https:// URL", u.source()),
            );
        }
        if h.json.is_some() && h.body.is_some() {
            let span = self.key_span(&p("body"));
            self.error(
                Kind::InvalidValue,
                span,
                "an HTTP step has `json` or `body`, not both",
            );
        }
        let map_templates = |this: &mut Self, m: &BTreeMap<String, String>, field: &str| {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let mut path = p(field);
                path.push(key(k));
                if let Some(t) = this.template(v, &path, scope, raw) {
                    out.insert(k.clone(), t);
                }
            }
            out
        };
        let headers = map_templates(self, &h.headers, "headers");
        let query = map_templates(self, &h.query, "query");
        let json = h
            .json
            .as_ref()
            .and_then(|j| self.template_value(j, &p("json"), scope, raw));
        let body = h
            .body
            .as_ref()
            .and_then(|b| self.template(b, &p("body"), scope, raw));
        if let Some(b) = &body
            && let Some(v) = b.variables().into_iter().find(|v| {
                matches!(
                    v.segments.first().map(String::as_str),
                    Some("alert" | "notification" | "steps" | "inputs" | "params")
                )
            })
        {
            let span = self.value_span(&p("body"));
            self.warn(
                Kind::RawInterpolation,
                span,
                format!("the body interpolates `{}` into raw text", v.raw),
            )
            .help
            .push("a crafted value can add fields or break the format; send structured data with `json:` (each value is encoded), or use `body:` only for trusted values".into());
        }
        let timeout = self.duration(h.timeout.as_ref(), &p("timeout"));
        for (j, code) in h.expect_status.iter().enumerate() {
            if !(100..=599).contains(code) {
                let mut path = p("expect_status");
                path.push(Seg::Index(j));
                let span = self.value_span(&path);
                self.error(
                    Kind::InvalidValue,
                    span,
                    format!("{code} is not an HTTP status code (100-599)"),
                );
            }
        }
        Some(HttpRequest {
            method,
            url: url?,
            headers,
            query,
            json,
            body,
            timeout,
            expect_status: h.expect_status.clone(),
        })
    }

    fn report(&mut self, r: &RawReport, base: &[Seg]) -> Option<ReportRequest> {
        let p = |f: &str| {
            let mut p = base.to_vec();
            p.push(key(f));
            p
        };
        let mut ok = true;
        let period = match (&r.period, &r.since) {
            (Some(_), Some(_)) => {
                let span = self.key_span(&p("since"));
                self.reject(
                    Kind::InvalidValue,
                    span,
                    "a report step has `period` or `since`, not both",
                    "second period",
                    Some("keep `period: last_week` for the previous ISO week, or `since: 7d` for the last days up to the run's day".into()),
                );
                None
            }
            (Some(name), None) if REPORT_PERIODS.contains(&name.as_str()) => {
                Some(ReportPeriod::LastWeek)
            }
            (Some(name), None) => {
                let span = self.value_span(&p("period"));
                let hint = did_you_mean(name, REPORT_PERIODS.iter().copied());
                self.reject(
                    Kind::InvalidValue,
                    span,
                    format!("unknown report period `{name}`"),
                    "not a period",
                    Some(hint.unwrap_or_else(|| {
                        format!(
                            "named periods: {}; or give `since: <duration>`, e.g. `since: 7d`",
                            REPORT_PERIODS.join(", ")
                        )
                    })),
                );
                None
            }
            (None, Some(text)) => {
                self.duration(Some(text), &p("since"))
                    .map(|length| ReportPeriod::Since {
                        text: text.trim().to_string(),
                        length,
                    })
            }
            (None, None) => Some(ReportPeriod::LastWeek),
        };
        ok &= period.is_some();
        let format = match r.format.as_deref() {
            None | Some("markdown") => ReportFormat::Markdown,
            Some("json") => ReportFormat::Json,
            Some(other) => {
                let span = self.value_span(&p("format"));
                let hint = did_you_mean(other, REPORT_FORMATS.iter().copied());
                self.reject(
                    Kind::InvalidValue,
                    span,
                    format!("unknown report format `{other}`"),
                    "not a format",
                    Some(hint.unwrap_or_else(|| format!("formats: {}", REPORT_FORMATS.join(", ")))),
                );
                ok = false;
                ReportFormat::Markdown
            }
        };
        let top = r.top.unwrap_or(DEFAULT_REPORT_TOP);
        if !(1..=MAX_REPORT_TOP).contains(&top) {
            let span = self.value_span(&p("top"));
            self.error(
                Kind::InvalidValue,
                span,
                format!("`top` must be 1 to {MAX_REPORT_TOP} lines, not {top}"),
            );
            ok = false;
        }
        let assume_minutes = r.assume_minutes.unwrap_or(DEFAULT_REPORT_ASSUME_MINUTES);
        if !assume_minutes.is_finite() || assume_minutes < 0.0 {
            let span = self.value_span(&p("assume_minutes"));
            self.error(
                Kind::InvalidValue,
                span,
                "`assume_minutes` must be zero or more minutes",
            );
            ok = false;
        }
        Some(ReportRequest {
            period: period?,
            format,
            top,
            assume_minutes,
        })
        .filter(|_| ok)
    }

    /// A `run:` step's remote target.
    fn target(
        &mut self,
        t: &RawTarget,
        base: &[Seg],
        scope: Scope,
        raw: &RawRunbook,
    ) -> Option<Target> {
        let p = |f: &str| {
            let mut p = base.to_vec();
            p.push(key(f));
            p
        };
        let mut ok = true;
        // A literal value is checked now; a templated one when the step runs.
        let literal = |s: &str| !s.contains("{{");
        let hosts = match (&t.host, &t.hosts, &t.inventory) {
            (Some(h), None, None) => {
                if literal(h)
                    && let Err(why) = check_host(h)
                {
                    let span = self.value_span(&p("host"));
                    self.reject(Kind::InvalidValue, span, format!("target host `{h}` {why}"), "not a host", Some("write a DNS name or IP address, or a template such as `{{inputs.host}}` of a `hostname` input".into()));
                    ok = false;
                }
                self.template(h, &p("host"), scope, raw)
                    .map(HostSource::One)
            }
            (None, Some(list), None) => {
                let mut out = Vec::new();
                for (i, h) in list.iter().enumerate() {
                    let mut at = p("hosts");
                    at.push(Seg::Index(i));
                    if literal(h)
                        && let Some(bad) = split_hosts(h).find(|x| check_host(x).is_err())
                    {
                        let span = self.value_span(&at);
                        self.reject(
                            Kind::InvalidValue,
                            span,
                            format!("target host `{bad}` is not a DNS name or IP address"),
                            "not a host",
                            None,
                        );
                        ok = false;
                    }
                    out.extend(self.template(h, &at, scope, raw));
                }
                (out.len() == list.len()).then_some(HostSource::List(out))
            }
            (None, None, Some(file)) => match &t.group {
                Some(group) => Some(HostSource::Inventory {
                    file: file.into(),
                    group: group.clone(),
                }),
                None => {
                    self.missing(base, "group", "the inventory group", "group: web");
                    None
                }
            },
            (None, None, None)
                if ["host", "hosts", "inventory"]
                    .iter()
                    .any(|f| self.lost(&p(f))) =>
            {
                None
            }
            (None, None, None) => {
                self.missing(
                    base,
                    "host",
                    "the host to run on",
                    "host: \"{{inputs.host}}\"",
                );
                None
            }
            _ => {
                let span = self.key_span(base);
                self.reject(
                    Kind::InvalidValue,
                    span,
                    "a target has more than one of `host`, `hosts` and `inventory`",
                    "one source of hosts",
                    Some(
                        "keep one: `host` (one host), `hosts` (a list) or `inventory` with `group`"
                            .into(),
                    ),
                );
                None
            }
        };
        if t.group.is_some() && t.inventory.is_none() {
            let span = self.key_span(&p("group"));
            self.error(Kind::InvalidValue, span, "`group` needs `inventory`")
                .help
                .push("name the inventory file the group is in: `inventory: /etc/untoil/inventory.yaml`".into());
            ok = false;
        }
        let user = match &t.user {
            Some(u) => {
                if literal(u)
                    && let Err(why) = check_user(u)
                {
                    let span = self.value_span(&p("user"));
                    self.reject(
                        Kind::InvalidValue,
                        span,
                        format!("target user `{u}` {why}"),
                        "not a user",
                        None,
                    );
                    ok = false;
                }
                let tpl = self.template(u, &p("user"), scope, raw);
                ok &= tpl.is_some();
                tpl
            }
            None => None,
        };
        if t.port == Some(0) {
            let span = self.value_span(&p("port"));
            self.error(Kind::InvalidValue, span, "port 0 is not a port");
            ok = false;
        }
        let identity = match &t.identity {
            None => None,
            Some(RawIdentity {
                secret: Some(name),
                file: None,
            }) => {
                if !raw.secrets.contains_key(name) {
                    let mut at = p("identity");
                    at.push(key("secret"));
                    let span = self.value_span(&at);
                    let help = did_you_mean(name, raw.secrets.keys().map(String::as_str))
                        .unwrap_or_else(|| format!("declare it under `secrets:`, e.g. `{name}: {{file: /run/secrets/{name}}}`"));
                    self.reject(
                        Kind::InvalidValue,
                        span,
                        format!("secret `{name}` is not declared"),
                        "no such secret",
                        Some(help),
                    );
                    ok = false;
                }
                Some(Identity::Secret(name.clone()))
            }
            Some(RawIdentity {
                secret: None,
                file: Some(f),
            }) => Some(Identity::File(f.into())),
            Some(_) => {
                let span = self.key_span(&p("identity"));
                self.reject(Kind::InvalidValue, span, "`identity` needs exactly one of `secret` and `file`", "one key source", Some("e.g. `identity: {secret: deploy_key}` or `identity: {file: /var/lib/untoil/.ssh/id_ed25519}`".into()));
                ok = false;
                None
            }
        };
        if let Some(j) = &t.jump
            && let Err(why) = check_jump(j)
        {
            let span = self.value_span(&p("jump"));
            self.reject(
                Kind::InvalidValue,
                span,
                format!("jump host `{j}` {why}"),
                "not `[user@]host[:port]`",
                None,
            );
            ok = false;
        }
        let connect_timeout = match self.duration(t.connect_timeout.as_ref(), &p("connect_timeout"))
        {
            Some(d) if d.as_secs() == 0 => {
                let span = self.value_span(&p("connect_timeout"));
                self.error(Kind::InvalidValue, span, "a connect timeout is at least 1s");
                ok = false;
                DEFAULT_CONNECT_TIMEOUT
            }
            Some(d) => d,
            None if t.connect_timeout.is_some() => {
                ok = false;
                DEFAULT_CONNECT_TIMEOUT
            }
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        for (field, v) in [("parallelism", t.parallelism), ("per_host", t.per_host)] {
            if v == Some(0) {
                let span = self.value_span(&p(field));
                self.error(
                    Kind::InvalidValue,
                    span,
                    format!("`{field}` must be at least 1"),
                );
                ok = false;
            }
        }
        let policy = match (t.policy.as_deref(), t.threshold) {
            (None | Some("all"), None) => Policy::All,
            (Some("any"), None) => Policy::Any,
            (_, Some(0)) => {
                let span = self.value_span(&p("threshold"));
                self.error(Kind::InvalidValue, span, "`threshold` must be at least 1");
                ok = false;
                Policy::All
            }
            (None | Some("threshold"), Some(n)) => Policy::Threshold(n),
            (Some("threshold"), None) => {
                self.missing(
                    base,
                    "threshold",
                    "the number of hosts that must succeed",
                    "threshold: 2",
                );
                ok = false;
                Policy::All
            }
            (Some(other @ ("all" | "any")), Some(_)) => {
                let span = self.key_span(&p("threshold"));
                self.error(
                    Kind::InvalidValue,
                    span,
                    format!("`threshold` does not go with `policy: {other}`"),
                )
                .help
                .push("remove one: `policy: threshold` and `threshold: N` go together".into());
                ok = false;
                Policy::All
            }
            (Some(other), _) => {
                let span = self.value_span(&p("policy"));
                let help = did_you_mean(other, ["all", "any", "threshold"])
                    .unwrap_or_else(|| "one of: all, any, threshold".into());
                self.reject(
                    Kind::InvalidValue,
                    span,
                    format!("unknown policy `{other}`"),
                    "not a policy",
                    Some(help),
                );
                ok = false;
                Policy::All
            }
        };
        let hosts = hosts?;
        ok.then(|| Target {
            hosts,
            user,
            port: t.port,
            identity,
            known_hosts: t.known_hosts.as_ref().map(Into::into),
            config: t.config.as_ref().map(Into::into),
            jump: t.jump.clone(),
            connect_timeout,
            agent: t.agent.unwrap_or(false),
            parallelism: t.parallelism.unwrap_or(DEFAULT_PARALLELISM),
            per_host: t.per_host.unwrap_or(DEFAULT_PER_HOST),
            policy,
        })
    }

    fn plugin(
        &mut self,
        name: &str,
        s: &RawStep,
        base: &[Seg],
        scope: Scope,
        raw: &RawRunbook,
    ) -> Option<TemplateValue> {
        let mut ppath = base.to_vec();
        ppath.push(key("plugin"));
        let mut wpath = base.to_vec();
        wpath.push(key("with"));
        let with = match &s.with {
            Some(w) => self.template_value(w, &wpath, scope, raw)?,
            None => TemplateValue::Object(BTreeMap::new()),
        };
        let Some(plugin) = self.plugins.get(name) else {
            let span = self.value_span(&ppath);
            let hint = did_you_mean(name, self.plugins.names());
            let installed: Vec<&str> = self.plugins.names().collect();
            let d = self.error(
                Kind::UnknownPlugin,
                span,
                format!("unknown plugin `{name}`"),
            );
            d.primary.message = "no such executable in the plugins directory".into();
            d.help.push(hint.unwrap_or_else(|| {
                if installed.is_empty() {
                    "no plugins are installed; put an executable in the plugins directory (`--plugins`)".into()
                } else {
                    format!("installed plugins: {}", installed.join(", "))
                }
            }));
            return None;
        };
        if let Some(inputs) = plugin.manifest.as_ref().and_then(|m| m.inputs.as_ref()) {
            let given: Vec<String> = match &with {
                TemplateValue::Object(m) => m.keys().cloned().collect(),
                _ => Vec::new(),
            };
            for g in &given {
                if !inputs.contains_key(g) {
                    let mut p = wpath.clone();
                    p.push(key(g));
                    let span = self.key_span(&p);
                    let hint = did_you_mean(g, inputs.keys().map(String::as_str));
                    let d = self.error(
                        Kind::UnknownField,
                        span,
                        format!("plugin `{name}` has no input `{g}`"),
                    );
                    d.help.push(hint.unwrap_or_else(|| {
                        format!(
                            "its inputs: {}",
                            inputs.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    }));
                }
            }
            for (input, spec) in inputs {
                if spec.required && !given.contains(input) && !self.lost(&wpath) {
                    let target = if s.with.is_some() {
                        wpath.clone()
                    } else {
                        ppath.clone()
                    };
                    let span = self.key_span(&target);
                    let d = self.error(
                        Kind::MissingField,
                        span,
                        format!("plugin `{name}` needs input `{input}`"),
                    );
                    if !spec.description.is_empty() {
                        d.help.push(format!("`{input}`: {}", spec.description));
                    }
                }
            }
        }
        Some(with)
    }

    fn template_value(
        &mut self,
        v: &serde_yaml::Value,
        path: &[Seg],
        scope: Scope,
        raw: &RawRunbook,
    ) -> Option<TemplateValue> {
        use serde_yaml::Value as Y;
        Some(match v {
            Y::Null => TemplateValue::Null,
            Y::Bool(b) => TemplateValue::Bool(*b),
            Y::Number(n) => {
                let json = serde_json::to_value(n).ok()?;
                match json {
                    serde_json::Value::Number(n) => TemplateValue::Number(n),
                    _ => TemplateValue::Null,
                }
            }
            Y::String(s) => TemplateValue::String(self.template(s, path, scope, raw)?),
            Y::Sequence(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    let mut p = path.to_vec();
                    p.push(Seg::Index(i));
                    match self.template_value(item, &p, scope, raw) {
                        Some(t) => out.push(t),
                        None => ok = false,
                    }
                }
                ok.then_some(TemplateValue::Array(out))?
            }
            Y::Mapping(m) => {
                let mut out = BTreeMap::new();
                let mut ok = true;
                for (k, item) in m {
                    let k = match k {
                        Y::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    let mut p = path.to_vec();
                    p.push(key(&k));
                    match self.template_value(item, &p, scope, raw) {
                        Some(t) => {
                            out.insert(k, t);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(TemplateValue::Object(out))?
            }
            Y::Tagged(t) => self.template_value(&t.value, path, scope, raw)?,
        })
    }

    /// Compiles a template and checks every variable and helper it uses.
    fn template(
        &mut self,
        source: &str,
        path: &[Seg],
        scope: Scope,
        raw: &RawRunbook,
    ) -> Option<Template> {
        let span = self.value_span(path);
        let t = match Template::compile(source) {
            Ok(t) => t,
            Err(e) => {
                if let Some(open) = unclosed_braces(source) {
                    let sub = self.sub_span(&span, &source[open..]);
                    let sub = sub.start..sub.start + 2;
                    let d = self.error(
                        Kind::TemplateSyntax,
                        sub,
                        "template syntax error: `{{` is never closed",
                    );
                    d.primary.message = "opened here".into();
                    d.help
                        .push("close it with `}}`; a literal `{{` is written `\\{{`".into());
                    return None;
                }
                let at = match e.position {
                    Some((line, col)) => format!(" (template line {line}, column {col})"),
                    None => String::new(),
                };
                let d = self.error(
                    Kind::TemplateSyntax,
                    span,
                    format!("template syntax error: {}{at}", e.message),
                );
                d.primary.message = "does not compile".into();
                d.help.push("templates use Handlebars: `{{params.path}}`, `{{#if x}}...{{/if}}`; a literal `{{` is written `\\{{`".into());
                return None;
            }
        };
        let mut ok = true;
        for h in t.helpers() {
            if !HELPERS.contains(&h.as_str()) {
                ok = false;
                let sub = self.sub_span(&span, &h);
                let hint = did_you_mean(&h, HELPERS.iter().copied()).or_else(|| helper_stem(&h));
                let d = self.error(
                    Kind::UnknownHelper,
                    sub,
                    format!("unknown template helper `{h}`"),
                );
                d.help.push(
                    hint.unwrap_or_else(|| format!("available helpers: {}", HELPERS.join(", "))),
                );
            }
        }
        for var in t.variables() {
            if let Err((message, help)) = self.check_var(&var.segments, scope, raw) {
                ok = false;
                let sub = self.sub_span(&span, &var.raw);
                let d = self.error(Kind::UnknownVariable, sub, message);
                d.primary.message = "cannot exist when this renders".into();
                if let Some(h) = help {
                    d.help.push(h);
                }
            }
        }
        ok.then_some(t)
    }

    /// Narrows a value span to where `needle` appears in it (templates can span several lines).
    fn sub_span(&self, span: &Range<usize>, needle: &str) -> Range<usize> {
        let end = (span.end + 4096).min(self.text.len());
        match self.text.get(span.start..end).and_then(|s| s.find(needle)) {
            Some(i) => span.start + i..span.start + i + needle.len(),
            None => span.clone(),
        }
    }

    fn check_var(
        &self,
        segs: &[String],
        scope: Scope,
        raw: &RawRunbook,
    ) -> Result<(), (String, Option<String>)> {
        let root = segs.first().map(String::as_str).unwrap_or("");
        let second = segs.get(1).map(String::as_str);
        let full = segs.join(".");
        let field_check = |fields: &[&str], what: &str| -> Result<(), (String, Option<String>)> {
            match second {
                Some(f) if !fields.contains(&f) => Err((
                    format!("`{what}` has no field `{f}`"),
                    Some(
                        did_you_mean(f, fields.iter().copied())
                            .unwrap_or_else(|| format!("its fields: {}", fields.join(", "))),
                    ),
                )),
                _ => Ok(()),
            }
        };
        match root {
            // A name declared in a part taken out for its shape is not reported unknown.
            "params" | "inputs" | "secrets"
                if second.is_some_and(|n| self.lost(&[key(root), key(n)])) =>
            {
                Ok(())
            }
            "env" if self.incomplete(&[key("env")]) => Ok(()),
            "steps"
                if self.pruned.any(|p| {
                    p.first() == Some(&key(self.list_field))
                        && (p.len() <= 2 || p.get(2) == Some(&key("name")))
                }) && !self.list.iter().any(|s| s.name.as_deref() == second) =>
            {
                Ok(())
            }
            "params" => match second {
                Some(p) if !raw.params.contains_key(p) => Err((
                    format!("unknown parameter `{p}` in `{full}`"),
                    Some(did_you_mean(p, raw.params.keys().map(String::as_str)).unwrap_or_else(|| {
                        format!("declare it under `params:`, e.g. `params: {{ {p}: {{ default: ... }} }}`")
                    })),
                )),
                _ => Ok(()),
            },
            "alert" | "notification" => {
                if !self.has_alert {
                    return Err((
                        format!("`{full}` is only set for alert-triggered runs, and this runbook has no alert trigger"),
                        Some("add an `alert` trigger, or use a parameter instead".into()),
                    ));
                }
                if root == "alert" {
                    field_check(ALERT_FIELDS, "alert")
                } else {
                    field_check(NOTIFICATION_FIELDS, "notification")
                }
            }
            "run" => field_check(RUN_FIELDS, "run"),
            "inputs" => {
                let Some(name) = second else {
                    return Ok(());
                };
                let Some(input) = raw.inputs.get(name) else {
                    return Err((
                        format!("unknown input `{name}` in `{full}`"),
                        Some(did_you_mean(name, raw.inputs.keys().map(String::as_str)).unwrap_or_else(|| {
                            format!("declare it under `inputs:`, e.g. `inputs: {{ {name}: {{ label: {name} }} }}`")
                        })),
                    ));
                };
                if self.lost(&[key("inputs"), key(name), key("type")]) {
                    // Its type was left out for its shape: which fields it has is unknown.
                    return Ok(());
                }
                let host = input.kind.as_deref() == Some("hostname");
                match (host, segs.get(2).map(String::as_str)) {
                    (true, Some("value" | "host" | "port")) | (false, None) => Ok(()),
                    (true, _) => Err((
                        format!("`{full}`: a hostname input has the fields `host`, `port` and `value`"),
                        Some(format!("`inputs.{name}.host` for the host alone, `inputs.{name}.value` as given")),
                    )),
                    (false, Some(f)) => Err((
                        format!("`{full}`: input `{name}` is a value, it has no field `{f}`"),
                        Some(format!("use `inputs.{name}`")),
                    )),
                }
            }
            "secrets" => match second {
                Some(s) if !raw.secrets.contains_key(s) => Err((
                    format!("unknown secret `{s}` in `{full}`"),
                    Some(did_you_mean(s, raw.secrets.keys().map(String::as_str)).unwrap_or_else(|| {
                        format!("declare it under `secrets:`, e.g. `secrets: {{ {s}: {{ env: {} }} }}`", s.to_uppercase())
                    })),
                )),
                _ => Ok(()),
            },
            "env" => match second {
                Some(e) if !raw.env.iter().any(|x| x == e) => Err((
                    format!("environment variable `{e}` is not listed in `env`"),
                    Some(format!("templates read only the variables a runbook lists: add `env: [{e}]`")),
                )),
                _ => Ok(()),
            },
            "steps" => {
                // `own`: the step's own results exist (after it ran, for `noop_when`).
                let (current, own) = match scope {
                    Scope::Step(i) => (i, false),
                    Scope::AfterStep(i) => (i, true),
                    Scope::Finished => (self.list.len(), false),
                    Scope::Runbook => {
                        return Err((format!("`{full}`: step results do not exist here"), Some("only steps can read earlier steps' results".into())));
                    }
                };
                let Some(step_name) = second else {
                    return Ok(());
                };
                let position = self.list.iter().position(|s| s.name.as_deref() == Some(step_name));
                match position {
                    None => {
                        let names: Vec<&str> = self.list[..(current + usize::from(own)).min(self.list.len())].iter().filter_map(|s| s.name.as_deref()).collect();
                        Err((
                            format!("unknown step `{step_name}` in `{full}`"),
                            Some(did_you_mean(step_name, self.list.iter().filter_map(|s| s.name.as_deref())).unwrap_or_else(|| {
                                if names.is_empty() {
                                    "no step runs before this one".into()
                                } else {
                                    format!("steps before this one: {}", names.join(", "))
                                }
                            })),
                        ))
                    }
                    Some(i) if i == current && !own => Err((
                        format!("step `{step_name}` refers to its own result in `{full}`"),
                        Some("a step can only read the results of steps before it".into()),
                    )),
                    Some(i) if i > current => Err((
                        format!("step `{step_name}` runs after this one, so `{full}` is not set yet"),
                        Some("a step can only read the results of steps before it; move it later".into()),
                    )),
                    Some(i)
                        if STEP_KINDS.iter().any(|f| {
                            self.lost(&[key(self.list_field), Seg::Index(i), key(f)])
                        }) =>
                    {
                        Ok(())
                    }
                    Some(i) => {
                        let target = &self.list[i];
                        let kind_fields: &[&str] = if target.http.is_some() {
                            STEP_FIELDS_HTTP
                        } else if target.plugin.is_some() {
                            STEP_FIELDS_PLUGIN
                        } else if target.report.is_some() {
                            STEP_FIELDS_REPORT
                        } else {
                            STEP_FIELDS_SHELL
                        };
                        match segs.get(2).map(String::as_str) {
                            Some(f) if !kind_fields.contains(&f) && !STEP_FIELDS_COMMON.contains(&f) => {
                                let all: Vec<&str> = STEP_FIELDS_COMMON.iter().chain(kind_fields).copied().collect();
                                Err((
                                    format!("step `{step_name}` has no result field `{f}`"),
                                    Some(did_you_mean(f, all.iter().copied()).unwrap_or_else(|| format!("its results: {}", all.join(", ")))),
                                ))
                            }
                            _ => Ok(()),
                        }
                    }
                }
            }
            other => Err((
                format!("unknown template variable `{full}`"),
                Some(did_you_mean(other, ROOTS.iter().copied()).unwrap_or_else(|| format!("templates can read: {}", ROOTS.join(", ")))),
            )),
        }
    }
}

/// Byte offset of the first `{{` that has no `}}` before the next `{{`.
fn unclosed_braces(source: &str) -> Option<usize> {
    let opens: Vec<usize> = source.match_indices("{{").map(|(i, _)| i).collect();
    opens.iter().enumerate().find_map(|(n, &at)| {
        let end = opens.get(n + 1).copied().unwrap_or(source.len());
        (!source[at..end].contains("}}")).then_some(at)
    })
}

/// "did you mean `lower`?" for a helper named as a longer form of one (`lowercase`, `length`),
/// which edit distance misses; the helper must be at least half of the name.
fn helper_stem(name: &str) -> Option<String> {
    let name = name.to_lowercase();
    HELPERS
        .iter()
        .filter(|h| h.len() >= 3 && 2 * h.len() >= name.len() && name.starts_with(**h))
        .max_by_key(|h| h.len())
        .map(|h| format!("did you mean `{h}`?"))
}

fn guards_approval(raw: &RawRunbook) -> bool {
    raw.guards.as_ref().and_then(|g| g.approval.as_deref()) == Some("required")
}

fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_env_name(s: &str) -> bool {
    valid_identifier(s)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_written_long_suggests_the_short_one() {
        assert_eq!(
            helper_stem("lowercase"),
            Some("did you mean `lower`?".into())
        );
        assert_eq!(helper_stem("toUpper"), None);
        assert_eq!(helper_stem("length"), Some("did you mean `len`?".into()));
        assert_eq!(
            helper_stem("default_value"),
            Some("did you mean `default`?".into())
        );
        // `not` is too small a part of `notequal` to be what was meant.
        assert_eq!(helper_stem("notequal"), None);
        assert_eq!(
            helper_stem("eqx"),
            None,
            "helpers shorter than 3 are never a stem"
        );
    }
}
