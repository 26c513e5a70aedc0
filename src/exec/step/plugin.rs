//! `plugin:` steps: an executable from the plugins directory, speaking the JSON protocol of
//! docs/plugins.md (one JSON object on stdin, one on stdout, logs on stderr).

use crate::exec::process::{Ended, ProcessSpec};
use crate::run::status::StepStatus;
use crate::runbook::model::{Step, TemplateValue};

use crate::exec::step::attempt::{Attempt, failed_before_start};
use crate::exec::step::command::{process_attempt, process_setup};
use crate::exec::step::env::StepEnv;

/// Protocol version written to plugins.
pub const PROTOCOL: u32 = 1;

/// Builds the JSON a plugin receives on stdin.
pub fn input(
    step: &Step,
    with: serde_json::Value,
    env: &StepEnv<'_>,
    dry_run: bool,
) -> serde_json::Value {
    let mut input = env.plugin_input.clone();
    if let Some(map) = input.as_object_mut() {
        map.insert("protocol".into(), PROTOCOL.into());
        map.insert("step".into(), step.name.clone().into());
        map.insert("dry_run".into(), dry_run.into());
        map.insert("with".into(), with);
    }
    input
}

/// Runs the plugin once.
pub async fn run(step: &Step, name: &str, with: &TemplateValue, env: &StepEnv<'_>) -> Attempt {
    let Some(plugin) = env.plugins.get(name) else {
        return failed_before_start(format!(
            "plugin `{name}` is not installed (it may have been removed since the runbook was loaded)"
        ));
    };
    let with = match env.renderer.value(with, env.ctx) {
        Ok(w) => w,
        Err(e) => return failed_before_start(e.0),
    };
    let (mut vars, workdir) = match process_setup(step, env) {
        Ok(s) => s,
        Err(e) => return failed_before_start(e),
    };
    vars.push(("UNTOIL_PLUGIN_PROTOCOL".into(), PROTOCOL.to_string()));
    let stdin = serde_json::to_vec(&input(step, with, env, false)).unwrap_or_default();
    let spec = ProcessSpec {
        program: plugin.path.display().to_string(),
        args: Vec::new(),
        env: vars,
        workdir,
        stdin: Some(stdin),
        redactor: env.redactor.clone(),
        hold_stdin: false,
    };
    process_attempt(&spec, step, env, |outcome, result| {
        let code = match outcome.ended {
            Ended::Exited(code) => code,
            _ => None,
        };
        let reply: Option<serde_json::Value> = serde_json::from_str(result.stdout.trim()).ok();
        let reply = reply.filter(serde_json::Value::is_object);
        if let Some(r) = &reply {
            result.outputs = r.get("outputs").cloned();
            result.message = r
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_string();
            result.json = Some(r.clone());
        }
        match (code, &reply) {
            (Some(0), Some(r)) => match r.get("status").and_then(|s| s.as_str()) {
                Some("succeeded") => (StepStatus::Succeeded, None, false),
                Some("failed") => {
                    let why = if result.message.is_empty() {
                        "plugin reported failure".to_string()
                    } else {
                        format!("plugin reported failure: {}", result.message)
                    };
                    (StepStatus::Failed, Some(why), true)
                }
                other => (
                    StepStatus::Failed,
                    Some(format!(
                        "plugin `{name}` broke the protocol: `status` must be \"succeeded\" or \"failed\", got {}",
                        other.map_or("nothing".to_string(), |s| format!("{s:?}"))
                    )),
                    false,
                ),
            },
            (Some(0), None) => (
                StepStatus::Failed,
                Some(format!(
                    "plugin `{name}` broke the protocol: stdout is not one JSON object (see docs/plugins.md)"
                )),
                false,
            ),
            (Some(c), _) => (
                StepStatus::Failed,
                Some(format!("plugin `{name}` exited with status {c}{}", if result.message.is_empty() { String::new() } else { format!(": {}", result.message) })),
                true,
            ),
            (None, _) => (StepStatus::Failed, Some(format!("plugin `{name}` was killed by a signal")), true),
        }
    })
    .await
}
