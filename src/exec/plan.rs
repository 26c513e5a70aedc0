//! A run's plan: built once from the stored run and the runbook version it runs, with its
//! parameters checked and its secrets read. Everything the steps of the run see (template
//! context, process environment, plugin input) comes from the plan.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::exec::environment;
use crate::exec::redact::Redactor;
use crate::exec::taint::Taint;
use crate::run::cause::{AlertContext, Cause};
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::runbook::input::Checked;
use crate::runbook::model::{InputSource, Runbook, Secret, SecretSource, reserved_env};
use crate::runbook::suggest::did_you_mean;

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
    /// A value that breaks its declared rule (`type`, `pattern`, `allowed`).
    #[error("{what} {why}")]
    Rejected {
        /// Which value: "parameter `p`", "input `host` (label `instance`)".
        what: String,
        /// The rule it breaks.
        why: String,
    },
    /// An input whose label or annotation the alert lacks, without a default.
    #[error(
        "input `{name}`: the alert has no {source_kind} `{source_name}` (give the input a `default`, or match only alerts that have it)"
    )]
    MissingInput {
        /// The input.
        name: String,
        /// `label` or `annotation`.
        source_kind: &'static str,
        /// Its name.
        source_name: String,
    },
}

/// The parameters of a run of `rb`: those given, defaults for the rest. Unknown, missing and
/// NUL-carrying values are refused.
pub fn resolve_params(
    rb: &Runbook,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, PrepareError> {
    for name in given.keys() {
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
        let Some(value) = given.get(name).or(p.default.as_ref()) else {
            return Err(PrepareError::MissingParam {
                runbook: rb.name.clone(),
                name: name.clone(),
            });
        };
        if value.contains('\0') {
            return Err(PrepareError::NulByte { name: name.clone() });
        }
        let checked = p.rule.check(value).map_err(|why| PrepareError::Rejected {
            what: format!("parameter `{name}`"),
            why,
        })?;
        params.insert(name.clone(), checked.text().to_string());
    }
    Ok(params)
}

/// The checked inputs of a run: each from its label or annotation of the run's alert (or its
/// default). A run without an alert gets only the inputs with a default.
pub fn resolve_inputs(
    rb: &Runbook,
    alert: Option<&AlertContext>,
) -> Result<BTreeMap<String, Checked>, PrepareError> {
    let mut out = BTreeMap::new();
    for (name, input) in &rb.inputs {
        let (kind, source_name, found) = match &input.source {
            InputSource::Label(l) => ("label", l, alert.and_then(|a| a.alert.labels.get(l))),
            InputSource::Annotation(a) => (
                "annotation",
                a,
                alert.and_then(|x| x.alert.annotations.get(a)),
            ),
        };
        let value = match (found, &input.default) {
            (Some(v), _) => v,
            (None, Some(d)) => d,
            (None, None) if alert.is_some() => {
                return Err(PrepareError::MissingInput {
                    name: name.clone(),
                    source_kind: kind,
                    source_name: source_name.clone(),
                });
            }
            (None, None) => continue,
        };
        let checked = input
            .rule
            .check(value)
            .map_err(|why| PrepareError::Rejected {
                what: format!("input `{name}` ({kind} `{source_name}`)"),
                why,
            })?;
        out.insert(name.clone(), checked);
    }
    Ok(out)
}

/// The parameters given plus the defaults of those not given, unchecked: a run triggered by an
/// alert or a schedule is admitted with these, and a missing one fails it when it starts.
pub fn with_defaults(rb: &Runbook, given: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    rb.params
        .iter()
        .filter_map(|(name, p)| {
            given
                .get(name)
                .or(p.default.as_ref())
                .map(|v| (name.clone(), v.clone()))
        })
        .collect()
}

/// A run ready to execute (or to preview).
pub struct Plan {
    runbook: Arc<Runbook>,
    id: RunId,
    cause: Cause,
    params: BTreeMap<String, String>,
    inputs: BTreeMap<String, Checked>,
    alert: Option<AlertContext>,
    secrets: BTreeMap<String, String>,
    redactor: Redactor,
    dry_run: bool,
}

impl Plan {
    /// The plan of a stored run on `runbook` (the version it runs). A dry run reads no required
    /// secret: they show as the mask (an optional one that is not there, as empty).
    pub fn of(runbook: Arc<Runbook>, run: &RunRecord) -> Result<Plan, PrepareError> {
        let params = resolve_params(&runbook, &run.params)?;
        let inputs = resolve_inputs(&runbook, run.alert.as_ref())?;
        let mut secrets = BTreeMap::new();
        for (name, secret) in &runbook.secrets {
            let mask = || crate::exec::redact::MASK.to_string();
            // A dry run reads no required secret; an optional one only to know whether it is
            // there (its steps are skipped when not, and the plan should say so).
            let value = if run.dry_run && !secret.optional {
                mask()
            } else {
                match read_secret(name, secret) {
                    Ok(value) if run.dry_run && !value.is_empty() => mask(),
                    Ok(value) => value,
                    Err(_) if run.dry_run => mask(),
                    Err(reason) => {
                        return Err(PrepareError::Secret {
                            runbook: runbook.name.clone(),
                            name: name.clone(),
                            reason,
                        });
                    }
                }
            };
            secrets.insert(name.clone(), value);
        }
        let redactor = Redactor::new(secrets.values().cloned());
        Ok(Plan {
            id: run.id.clone(),
            cause: run.cause.clone(),
            params,
            inputs,
            alert: run.alert.clone(),
            secrets,
            redactor,
            dry_run: run.dry_run,
            runbook,
        })
    }

    /// The runbook version it runs.
    pub fn runbook(&self) -> &Arc<Runbook> {
        &self.runbook
    }

    /// The run id.
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// The resolved parameters.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }

    /// Whether nothing is to be executed.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The alert it acts on.
    pub fn alert(&self) -> Option<&AlertContext> {
        self.alert.as_ref()
    }

    /// Which of its template values others control: parameters set to the runbook's default
    /// are the operator's, every other parameter a caller's.
    pub fn taint(&self) -> Taint {
        Taint::with_default_params(
            self.runbook
                .params
                .iter()
                .filter(|(name, p)| p.default.as_ref() == self.params.get(*name))
                .map(|(name, _)| name.clone()),
        )
        .with_host_inputs(
            self.runbook
                .inputs
                .iter()
                .filter(|(_, i)| i.rule.kind == crate::runbook::input::InputType::Hostname)
                .map(|(name, _)| name.clone()),
        )
    }

    /// Masks this run's secrets.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// What templates see before the first step: params, run, secrets, env, alert.
    pub fn context(&self, started_at: DateTime<Utc>) -> serde_json::Value {
        let rb = &self.runbook;
        let env: BTreeMap<&str, String> = rb
            .env
            .iter()
            .filter(|name| !reserved_env(name))
            .filter_map(|name| std::env::var(name).ok().map(|v| (name.as_str(), v)))
            .collect();
        let inputs: serde_json::Map<String, serde_json::Value> = self
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        let mut ctx = serde_json::json!({
            "params": self.params,
            "inputs": inputs,
            "run": {
                "id": self.id.0,
                "cause": self.cause.kind(),
                "runbook": rb.name,
                "started_at": started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
            "steps": {},
            "secrets": self.secrets,
            "env": env,
        });
        if let (Some(a), Some(map)) = (&self.alert, ctx.as_object_mut()) {
            map.insert("alert".into(), alert_json(a));
            map.insert("notification".into(), notification_json(a));
        }
        ctx
    }

    /// The whole environment every process of the run gets (a step adds its own `env`): the
    /// base from the daemon's environment with the runbook's declared variables and `pass_env`,
    /// then the run's `UNTOIL_*` variables and its secrets (`UNTOIL_SECRET_<NAME>`).
    pub fn process_env(&self, pass_env: &[String]) -> Vec<(String, String)> {
        let rb = &self.runbook;
        let passthrough = rb.env.iter().chain(pass_env).map(String::as_str);
        let daemon = environment::daemon().iter().map(|(k, v)| (k, v));
        let mut env = environment::base(daemon, passthrough);
        env.extend([
            ("UNTOIL_RUN_ID".to_string(), self.id.0.clone()),
            ("UNTOIL_RUNBOOK".to_string(), rb.name.clone()),
            ("UNTOIL_CAUSE".to_string(), self.cause.kind().to_string()),
        ]);
        for (name, value) in &self.secrets {
            if !value.contains('\0') {
                env.push((environment::secret_var(name), value.clone()));
            }
        }
        for (k, v) in &self.params {
            env.push((
                format!("UNTOIL_PARAM_{}", environment::upper_name(k)),
                v.clone(),
            ));
        }
        if let Some(a) = &self.alert {
            env.push((
                "UNTOIL_ALERT_FINGERPRINT".into(),
                a.alert.fingerprint.clone(),
            ));
            env.push(("UNTOIL_ALERT_STATUS".into(), a.alert.status.to_string()));
            for (k, v) in &a.alert.labels {
                if !v.contains('\0') {
                    env.push((
                        format!("UNTOIL_ALERT_LABEL_{}", environment::upper_name(k)),
                        v.clone(),
                    ));
                }
            }
        }
        env
    }

    /// The run as plugins see it (protocol input minus `step` and `with`).
    pub fn plugin_input(&self, context: &serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "run": context["run"],
            "params": context["params"],
            "alert": context.get("alert").cloned().unwrap_or(serde_json::Value::Null),
            "notification": context.get("notification").cloned().unwrap_or(serde_json::Value::Null),
            "runbook_version": self.runbook.version,
        })
    }
}

/// A secret's value; an optional one that is not there is empty.
fn read_secret(name: &str, secret: &Secret) -> Result<String, String> {
    match &secret.source {
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(value) => Ok(value),
            Err(std::env::VarError::NotPresent) if secret.optional => Ok(String::new()),
            Err(_) => Err(format!(
                "environment variable `{var}` is not set; export it where untoil runs{}",
                hint_optional(name, secret)
            )),
        },
        SecretSource::File(path) => match std::fs::read_to_string(path) {
            Ok(s) => Ok(s.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && secret.optional => {
                Ok(String::new())
            }
            Err(e) => Err(format!(
                "cannot read `{}`: {e}{}",
                path.display(),
                hint_optional(name, secret)
            )),
        },
    }
}

/// What to do about a missing secret a runbook could go without.
fn hint_optional(name: &str, secret: &Secret) -> String {
    if secret.optional {
        String::new()
    } else {
        format!(
            " (or mark the secret `optional: true` and guard its steps with `when: '{{{{secrets.{name}}}}}'`)"
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(source: SecretSource, optional: bool) -> Secret {
        Secret { source, optional }
    }

    #[test]
    fn an_optional_secret_that_is_not_there_is_empty_and_a_required_one_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let absent = SecretSource::File(dir.path().join("absent"));
        let unset = SecretSource::Env("UNTOIL_TEST_SECRET_NOBODY_SETS".into());
        assert_eq!(
            read_secret("hook", &secret(absent.clone(), true)),
            Ok(String::new())
        );
        assert_eq!(
            read_secret("hook", &secret(unset.clone(), true)),
            Ok(String::new())
        );
        for source in [absent, unset] {
            let err = read_secret("hook", &secret(source, false))
                .expect_err("a required secret that is not there");
            assert!(
                err.contains("optional: true") && err.contains("{{secrets.hook}}"),
                "{err}"
            );
        }
        // A file that is there but cannot be read is an error, optional or not.
        let unreadable = secret(SecretSource::File(dir.path().to_path_buf()), true);
        assert!(read_secret("hook", &unreadable).is_err());
        let present = dir.path().join("present");
        std::fs::write(&present, "s3cret\n").unwrap_or_else(|e| panic!("{e}"));
        let read = read_secret("hook", &secret(SecretSource::File(present), true));
        assert_eq!(read, Ok("s3cret".to_string()));
    }
}
