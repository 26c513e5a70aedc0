//! Renders compiled templates against a run's context, in strict mode.
//!
//! Two registries share the same helpers: one whose escape function shell-quotes every
//! `{{value}}` (for `run:` commands, so a crafted alert label arrives as one literal argument)
//! and one that inserts values as they are (URLs, headers, bodies, plugin input, `when`).
//! `{{{value}}}` and `{{raw value}}` bypass the shell quoting on purpose.

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, Output, RenderContext,
    RenderError, Renderable, StringOutput,
};
use serde_json::Value as Json;

use crate::runbook::model::TemplateValue;
use crate::runbook::template::Template;

/// A template that could not be rendered (typically a variable missing in this run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderFailure(pub String);

/// Renders templates; build one and share it.
pub struct Renderer {
    shell: Handlebars<'static>,
    plain: Handlebars<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new()
    }
}

/// Quotes a value as one shell word; NUL bytes, which no argument can carry, are dropped.
pub fn shell_quote(value: &str) -> String {
    let clean: std::borrow::Cow<str> = if value.contains('\0') {
        value.replace('\0', "").into()
    } else {
        value.into()
    };
    match shlex::try_quote(&clean) {
        Ok(q) => q.into_owned(),
        // Unreachable after removing NUL; quote by hand as a last resort.
        Err(_) => format!("'{}'", clean.replace('\'', r"'\''")),
    }
}

/// The template helpers (the macro makes a public struct per helper, documented here).
#[allow(missing_docs)]
mod helpers {
    use handlebars::{JsonValue as Json, handlebars_helper};

    handlebars_helper!(upper: |s: str| s.to_uppercase());
    handlebars_helper!(lower: |s: str| s.to_lowercase());
    handlebars_helper!(trim: |s: str| s.trim().to_string());
    handlebars_helper!(json: |v: Json| serde_json::to_string(v).unwrap_or_default());
    handlebars_helper!(default: |v: Json, fallback: Json| {
        match v {
            Json::Null => fallback.clone(),
            Json::String(s) if s.is_empty() => fallback.clone(),
            other => other.clone(),
        }
    });
}

/// `{{raw x}}`: writes the value without any escaping.
struct Raw;

impl HelperDef for Raw {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let value = h.param(0).map(|p| p.value().render()).unwrap_or_default();
        out.write(&value)?;
        Ok(())
    }
}

fn registry(shell: bool) -> Handlebars<'static> {
    let mut r = Handlebars::new();
    r.set_strict_mode(true);
    if shell {
        r.register_escape_fn(shell_quote);
    } else {
        r.register_escape_fn(handlebars::no_escape);
    }
    r.register_helper("raw", Box::new(Raw));
    r.register_helper("upper", Box::new(helpers::upper));
    r.register_helper("lower", Box::new(helpers::lower));
    r.register_helper("trim", Box::new(helpers::trim));
    r.register_helper("json", Box::new(helpers::json));
    r.register_helper("default", Box::new(helpers::default));
    r
}

impl Renderer {
    /// A renderer with untoil's helpers.
    pub fn new() -> Renderer {
        Renderer {
            shell: registry(true),
            plain: registry(false),
        }
    }

    fn render_with(
        &self,
        reg: &Handlebars<'static>,
        t: &Template,
        ctx: &Context,
    ) -> Result<String, RenderFailure> {
        let mut out = StringOutput::new();
        let mut rc = RenderContext::new(None);
        t.compiled()
            .render(reg, ctx, &mut rc, &mut out)
            .map_err(|e| describe(&e, t))?;
        out.into_string()
            .map_err(|e| RenderFailure(format!("template produced invalid UTF-8: {e}")))
    }

    /// Renders a shell command: every `{{value}}` is shell-quoted.
    pub fn shell(&self, t: &Template, ctx: &Context) -> Result<String, RenderFailure> {
        self.render_with(&self.shell, t, ctx)
    }

    /// Renders text as is.
    pub fn plain(&self, t: &Template, ctx: &Context) -> Result<String, RenderFailure> {
        self.render_with(&self.plain, t, ctx)
    }

    /// Evaluates a `when` condition: false for "", "false", "0", "no", "null" and "undefined".
    pub fn truthy(&self, t: &Template, ctx: &Context) -> Result<bool, RenderFailure> {
        let s = self.plain(t, ctx)?;
        let s = s.trim().to_lowercase();
        Ok(!matches!(
            s.as_str(),
            "" | "false" | "0" | "no" | "null" | "undefined"
        ))
    }

    /// Renders every template inside a JSON-like value.
    pub fn value(&self, v: &TemplateValue, ctx: &Context) -> Result<Json, RenderFailure> {
        Ok(match v {
            TemplateValue::Null => Json::Null,
            TemplateValue::Bool(b) => Json::Bool(*b),
            TemplateValue::Number(n) => Json::Number(n.clone()),
            TemplateValue::String(t) => Json::String(self.plain(t, ctx)?),
            TemplateValue::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|i| self.value(i, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            TemplateValue::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.value(v, ctx)?)))
                    .collect::<Result<_, RenderFailure>>()?,
            ),
        })
    }
}

/// Wraps a JSON value as a render context.
pub fn context(value: Json) -> Context {
    Context::from(value)
}

fn describe(e: &RenderError, t: &Template) -> RenderFailure {
    let text = e.to_string();
    // Strict mode reports a missing variable by path; say it in the runbook's terms.
    if let handlebars::RenderErrorReason::MissingVariable(path) = e.reason() {
        let path = path.clone().unwrap_or_default();
        let hint = if path.starts_with("alert") || path.starts_with("notification") {
            " (this run was not started by an alert, or the alert lacks that label)"
        } else if path.starts_with("env") {
            " (the environment variable is not set)"
        } else {
            ""
        };
        return RenderFailure(format!(
            "template `{}`: variable `{path}` is not set{hint}",
            t.source().trim()
        ));
    }
    RenderFailure(format!(
        "template `{}`: {}",
        t.source().trim(),
        text.lines().next().unwrap_or("render error")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template::compile(s).expect("template compiles")
    }

    #[test]
    fn shell_templates_quote_every_value_and_raw_opts_out() {
        let r = Renderer::new();
        let ctx = context(serde_json::json!({"v": "x'; rm -rf / #"}));
        // What the shell makes of the quoted command is the value itself, as one word.
        let cmd = r.shell(&t("printf '%s|' {{v}}"), &ctx).unwrap_or_default();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&cmd)
            .output();
        let out = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string());
        assert_eq!(out.ok(), Some("x'; rm -rf / #|".into()));
        assert_eq!(
            r.shell(&t("echo {{{v}}}"), &ctx).ok(),
            Some("echo x'; rm -rf / #".into())
        );
        assert_eq!(
            r.shell(&t("echo {{raw v}}"), &ctx).ok(),
            Some("echo x'; rm -rf / #".into())
        );
        assert_eq!(
            r.plain(&t("{{v}}"), &ctx).ok(),
            Some("x'; rm -rf / #".into())
        );
    }

    #[test]
    fn missing_variables_are_errors_not_empty_strings() {
        let r = Renderer::new();
        let ctx = context(serde_json::json!({"params": {}}));
        let err = r.plain(&t("{{params.nope}}"), &ctx).err().map(|e| e.0);
        assert!(err.is_some_and(|e| e.contains("`params.nope` is not set")));
    }

    #[test]
    fn when_conditions_are_truthy_unless_falsy_words() {
        let r = Renderer::new();
        let ctx = context(serde_json::json!({"a": "critical", "n": 0}));
        assert_eq!(r.truthy(&t("{{eq a \"critical\"}}"), &ctx).ok(), Some(true));
        assert_eq!(r.truthy(&t("{{eq a \"warning\"}}"), &ctx).ok(), Some(false));
        assert_eq!(r.truthy(&t("{{n}}"), &ctx).ok(), Some(false));
        assert_eq!(
            r.truthy(&t("{{#if alert}}yes{{/if}}"), &ctx).ok(),
            Some(false)
        );
    }

    #[test]
    fn helpers_transform_values() {
        let r = Renderer::new();
        let ctx = context(serde_json::json!({"s": " Ab ", "o": {"k": 1}, "e": ""}));
        assert_eq!(
            r.plain(&t("{{upper s}}|{{lower s}}|{{trim s}}"), &ctx).ok(),
            Some(" AB | ab |Ab".into())
        );
        assert_eq!(
            r.plain(&t("{{json o}}"), &ctx).ok(),
            Some("{\"k\":1}".into())
        );
        assert_eq!(
            r.plain(&t("{{default e \"fb\"}}"), &ctx).ok(),
            Some("fb".into())
        );
    }
}
