//! A step's `when` condition, decided the same way while a run runs and before it starts (dry
//! runs, approval plans, the preparation of a run that waits for approval). Before the run, a
//! condition on earlier steps' output cannot be decided: it is "decided at run time".

use handlebars::Context;
use serde_json::Value as Json;

use crate::exec::render::Renderer;
use crate::runbook::template::{Template, VarRef};

/// What a step's `when` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The step runs.
    Runs,
    /// The condition is false: the step is skipped.
    False,
    /// The condition reads the alert and the run has none: the step is skipped.
    NoAlert,
    /// The condition reads earlier steps' output, which exists only while the run runs.
    AtRunTime,
    /// The condition cannot be evaluated (the step fails), and why.
    Fails(String),
}

impl Condition {
    /// Decides `when` in `ctx` for a run with or without an alert. `before_run`: the run has not
    /// started, so earlier steps have no output yet.
    pub fn decide(
        renderer: &Renderer,
        when: &Template,
        ctx: &Context,
        has_alert: bool,
        before_run: bool,
    ) -> Condition {
        let vars = when.variables();
        let root_is = |v: &VarRef, roots: &[&str]| {
            v.segments
                .first()
                .is_some_and(|s| roots.contains(&s.as_str()))
        };
        if !has_alert && vars.iter().any(|v| root_is(v, &["alert", "notification"])) {
            return Condition::NoAlert;
        }
        if before_run && vars.iter().any(|v| root_is(v, &["steps"])) {
            return Condition::AtRunTime;
        }
        match renderer.truthy(when, ctx) {
            Ok(true) => Condition::Runs,
            Ok(false) => Condition::False,
            Err(e) => Condition::Fails(e.0),
        }
    }

    /// Whether the step is attempted for sure (no condition can skip it any more).
    pub fn runs(&self) -> bool {
        matches!(self, Condition::Runs)
    }

    /// How a plan shows the condition `when` with this outcome.
    pub fn describe(&self, when: &Template) -> String {
        let source = when.source().trim();
        match self {
            Condition::Runs => format!("{source} -> true"),
            Condition::False => format!("{source} -> false: skipped"),
            Condition::NoAlert => {
                format!("{source} -> skipped: it reads the alert, and this run has no alert")
            }
            Condition::AtRunTime => {
                format!("{source} -> decided at run time (it reads an earlier step's output)")
            }
            Condition::Fails(e) => format!("{source} -> cannot evaluate: {e}"),
        }
    }
}

/// Whether any of `templates` reads an earlier step's output (`steps.*`).
pub fn reads_step_output<'a>(templates: impl IntoIterator<Item = &'a Template>) -> bool {
    templates.into_iter().any(|t| {
        t.variables()
            .iter()
            .any(|v| v.segments.first().is_some_and(|s| s == "steps"))
    })
}

/// The variables of `templates` that are not set in `ctx`, leaving out earlier steps' output
/// (before a run, `steps.*` holds placeholders whose shape the real output may not have).
pub fn unset_before_run<'a>(
    templates: impl IntoIterator<Item = &'a Template>,
    ctx: &Json,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in templates {
        for v in t.variables() {
            if v.segments.first().is_some_and(|s| s == "steps") || is_set(ctx, &v) {
                continue;
            }
            if !out.contains(&v.raw) {
                out.push(v.raw);
            }
        }
    }
    out
}

/// Whether the path of `v` leads to a value in `ctx` (objects by key, arrays by index).
fn is_set(ctx: &Json, v: &VarRef) -> bool {
    let mut at = ctx;
    for s in &v.segments {
        let next = match at {
            Json::Object(map) => map.get(s),
            Json::Array(items) => s.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::render::context;

    fn t(s: &str) -> Template {
        Template::compile(s).expect("template compiles")
    }

    fn decide(when: &str, ctx: Json, has_alert: bool, before_run: bool) -> Condition {
        Condition::decide(
            &Renderer::new(),
            &t(when),
            &context(ctx),
            has_alert,
            before_run,
        )
    }

    #[test]
    fn a_condition_on_step_output_is_decided_at_run_time_only_before_the_run() {
        let placeholder =
            serde_json::json!({"steps": {"freed": {"stdout": "<steps.freed.stdout>"}}});
        assert_eq!(
            decide("{{gt steps.freed.stdout 0}}", placeholder, false, true),
            Condition::AtRunTime
        );
        let real = serde_json::json!({"steps": {"freed": {"stdout": 3}}});
        assert_eq!(
            decide("{{gt steps.freed.stdout 0}}", real, false, false),
            Condition::Runs
        );
    }

    #[test]
    fn a_condition_on_the_alert_skips_a_run_without_one_and_renders_with_one() {
        let when = "{{eq alert.labels.severity \"critical\"}}";
        assert_eq!(
            decide(when, serde_json::json!({}), false, true),
            Condition::NoAlert
        );
        let alert = serde_json::json!({"alert": {"labels": {"severity": "warning"}}});
        assert_eq!(decide(when, alert, true, true), Condition::False);
        let shown = Condition::NoAlert.describe(&t(when));
        assert!(!shown.contains("Helper/Decorator"), "{shown}");
    }

    #[test]
    fn unset_variables_leave_out_step_output() {
        let tpl = t("cleaned {{alert.labels.instance}}: {{steps.usage.stdout}} in {{params.path}}");
        let ctx = serde_json::json!({"params": {"path": "/tmp"}, "steps": {}});
        assert_eq!(
            unset_before_run([&tpl], &ctx),
            vec!["alert.labels.instance".to_string()]
        );
        assert!(reads_step_output([&tpl]));
        assert!(!reads_step_output([&t("{{params.path}}")]));
    }
}
