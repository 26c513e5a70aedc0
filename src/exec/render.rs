//! Renders compiled templates against a run's context, in strict mode.
//!
//! Two registries share the same helpers: one for `run:` commands, where every `{{value}}` is
//! shell-quoted so a crafted alert label arrives as one literal argument, and one that inserts
//! values as they are (headers, bodies, plugin input, `when`). `{{{value}}}` and `{{raw value}}`
//! bypass the shell quoting on purpose.
//!
//! Quoting keeps a value one word, but a word that begins with `-` is read as an option
//! (`ssh -oProxyCommand=...`, `find -delete`). So a command is rendered element by element: each
//! interpolated value is known with the variables its expression reads, and a value from an
//! untrusted source ([`Taint`]) that begins a word of the command and starts with `-` is refused
//! (inside a word, as in `--name={{x}}`, it is no option). `{{option x}}` passes one on purpose.

use std::cell::RefCell;

use handlebars::template::TemplateElement;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, Output, RenderContext,
    RenderError, Renderable, StringOutput,
};
use serde_json::Value as Json;

use crate::exec::taint::Taint;
use crate::runbook::model::TemplateValue;
use crate::runbook::template::{Template, calls, element_variables};

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

/// Opens and closes a placeholder for an interpolated value while a command renders.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

thread_local! {
    /// The values escaped while the current element of a command renders, and the render's
    /// nonce (so that no text from elsewhere can pass for a placeholder). Rendering is
    /// synchronous: one thread renders one element from start to end.
    static SESSION: RefCell<Option<(u64, Vec<String>)>> = const { RefCell::new(None) };
}

/// The shell registry's escape function: inside a command render it leaves a placeholder (the
/// value is quoted when the command is put together); elsewhere it quotes.
fn escape_shell(value: &str) -> String {
    SESSION.with(|s| match s.borrow_mut().as_mut() {
        Some((nonce, values)) => {
            values.push(value.to_string());
            format!("{OPEN}{nonce:x}.{}{CLOSE}", values.len() - 1)
        }
        None => shell_quote(value),
    })
}

/// The plain registry's escape function: inside an element-wise render it leaves a placeholder;
/// elsewhere values go in as they are.
fn escape_plain(value: &str) -> String {
    SESSION.with(|s| match s.borrow_mut().as_mut() {
        Some((nonce, values)) => {
            values.push(value.to_string());
            format!("{OPEN}{nonce:x}.{}{CLOSE}", values.len() - 1)
        }
        None => value.to_string(),
    })
}

/// A piece of a template rendered element by element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text of the runbook (or inserted raw).
    Text(String),
    /// An interpolated value.
    Value {
        /// The value, before any quoting or encoding.
        value: String,
        /// The untrusted variable its expression reads, if any (None: the operator's value).
        source: Option<String>,
        /// Passed with `{{option ...}}`.
        option: bool,
        /// Every untrusted variable its expression reads is a hostname input.
        host: bool,
    },
}

/// What an element's values carry: their untrusted source, `option`, hostname inputs only.
#[derive(Clone)]
struct Origin {
    source: Option<String>,
    option: bool,
    host: bool,
}

/// Whether a word of a shell command starts after this character.
fn separates_words(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '<' | '>' | '`')
}

/// Splits an element's output at the placeholders of this render.
fn split(text: &str, nonce: u64, values: &[String], origin: &Origin, out: &mut Vec<Piece>) {
    let prefix = format!("{OPEN}{nonce:x}.");
    let mut rest = text;
    while let Some(start) = rest.find(&prefix) {
        let after = &rest[start + prefix.len()..];
        let Some(end) = after.find(CLOSE) else {
            break;
        };
        let Some(value) = after[..end]
            .parse::<usize>()
            .ok()
            .and_then(|i| values.get(i))
        else {
            break;
        };
        if start > 0 {
            out.push(Piece::Text(rest[..start].to_string()));
        }
        out.push(Piece::Value {
            value: value.clone(),
            source: origin.source.clone(),
            option: origin.option,
            host: origin.host,
        });
        rest = &after[end + CLOSE.len_utf8()..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
}

/// The template helpers (the macro makes a public struct per helper, documented here).
#[allow(missing_docs)]
mod helpers {
    use handlebars::{JsonValue as Json, handlebars_helper};

    handlebars_helper!(upper: |s: str| s.to_uppercase());
    handlebars_helper!(lower: |s: str| s.to_lowercase());
    handlebars_helper!(trim: |s: str| s.trim().to_string());
    // `{{option x}}`: x as it is; in a command, quoted but allowed to begin with `-`.
    handlebars_helper!(option: |v: Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    });
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
        r.register_escape_fn(escape_shell);
    } else {
        r.register_escape_fn(escape_plain);
    }
    r.register_helper("raw", Box::new(Raw));
    r.register_helper("upper", Box::new(helpers::upper));
    r.register_helper("lower", Box::new(helpers::lower));
    r.register_helper("trim", Box::new(helpers::trim));
    r.register_helper("json", Box::new(helpers::json));
    r.register_helper("default", Box::new(helpers::default));
    r.register_helper("option", Box::new(helpers::option));
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

    /// Renders a shell command: every `{{value}}` is shell-quoted, and an untrusted value that
    /// begins a word and starts with `-` is refused (see the module documentation).
    pub fn shell(
        &self,
        t: &Template,
        ctx: &Context,
        taint: &Taint,
    ) -> Result<String, RenderFailure> {
        let all = self.pieces(&self.shell, t, ctx, taint)?;
        let mut command = String::new();
        let mut word_start = true;
        for piece in all {
            match piece {
                Piece::Text(text) => {
                    if let Some(last) = text.chars().last() {
                        word_start = separates_words(last);
                    }
                    command.push_str(&text);
                }
                Piece::Value {
                    value,
                    source,
                    option,
                    ..
                } => {
                    if let (true, Some(source), false) =
                        (word_start && value.starts_with('-'), &source, option)
                    {
                        return Err(RenderFailure(format!(
                            "{source} starts with '-': as a word of the command it would be read as an option; put it inside a word (`--flag={{{{{source}}}}}`) or pass an option on purpose with `{{{{option {source}}}}}`"
                        )));
                    }
                    command.push_str(&shell_quote(&value));
                    // An empty value ('') leaves the word's start where it was.
                    if !value.is_empty() {
                        word_start = false;
                    }
                }
            }
        }
        Ok(command)
    }

    /// Renders a template element by element with the plain (unescaped) registry: its text and
    /// its values apart, each value with where it came from.
    pub fn plain_pieces(
        &self,
        t: &Template,
        ctx: &Context,
        taint: &Taint,
    ) -> Result<Vec<Piece>, RenderFailure> {
        self.pieces(&self.plain, t, ctx, taint)
    }

    fn pieces(
        &self,
        reg: &Handlebars<'static>,
        t: &Template,
        ctx: &Context,
        taint: &Taint,
    ) -> Result<Vec<Piece>, RenderFailure> {
        let nonce = ulid::Ulid::new().random() as u64;
        let mut all = Vec::new();
        let mut rc = RenderContext::new(None);
        for e in &t.compiled().elements {
            SESSION.with(|s| *s.borrow_mut() = Some((nonce, Vec::new())));
            let mut out = StringOutput::new();
            let rendered = e.render(reg, ctx, &mut rc, &mut out);
            let values = SESSION
                .with(|s| s.borrow_mut().take())
                .map(|(_, v)| v)
                .unwrap_or_default();
            rendered.map_err(|err| describe(&err, t))?;
            let text = out
                .into_string()
                .map_err(|e| RenderFailure(format!("template produced invalid UTF-8: {e}")))?;
            let origin = match e {
                TemplateElement::RawString(_) | TemplateElement::Comment(_) => Origin {
                    source: None,
                    option: false,
                    host: false,
                },
                _ => {
                    let vars = element_variables(e);
                    let untrusted: Vec<_> =
                        vars.iter().filter(|v| taint.source(v).is_some()).collect();
                    Origin {
                        source: untrusted.first().and_then(|v| taint.source(v)),
                        option: calls(e, "option"),
                        host: !untrusted.is_empty()
                            && untrusted.iter().all(|v| taint.forms_host(v)),
                    }
                }
            };
            split(&text, nonce, &values, &origin, &mut all);
        }
        Ok(all)
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
    // A helper given a variable that is not set (`{{eq alert.labels.x "y"}}`): name the
    // variables it reads rather than Handlebars' internals.
    if let handlebars::RenderErrorReason::ParamNotFoundForIndex(helper, index) = e.reason() {
        let vars: Vec<String> = t
            .variables()
            .into_iter()
            .map(|v| format!("`{}`", v.raw))
            .collect();
        return RenderFailure(format!(
            "template `{}`: helper `{helper}` has no value for its argument {} (one of the variables it reads is not set: {})",
            t.source().trim(),
            index + 1,
            vars.join(", ")
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

    fn refused(template: &str, ctx: serde_json::Value) -> Option<String> {
        Renderer::new()
            .shell(&t(template), &context(ctx), &Taint::strict())
            .err()
            .map(|e| e.0)
    }

    #[test]
    fn an_untrusted_value_beginning_a_word_with_a_dash_is_refused() {
        let alert = serde_json::json!({"alert": {"labels": {"instance": "-oProxyCommand=sh -c id", "dir": "-delete", "ok": "db-1"}}});
        let e = refused("ssh {{alert.labels.instance}} uptime", alert.clone());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with("alert.labels.instance starts with '-'")),
            "{e:?}"
        );
        // At the start of a word, whatever follows, and after an empty value.
        for bad in [
            "find {{alert.labels.dir}} -print",
            "find x;{{alert.labels.dir}}",
            "find {{alert.labels.dir}}.x",
            "find (cd; {{alert.labels.dir}})",
        ] {
            assert!(refused(bad, alert.clone()).is_some(), "{bad}");
        }
        let mut with_empty = alert.clone();
        with_empty["alert"]["labels"]["empty"] = "".into();
        assert!(
            refused(
                "find {{alert.labels.empty}}{{alert.labels.dir}}",
                with_empty
            )
            .is_some()
        );
        // Inside a word it is no option; trusted values and `option` pass.
        for good in [
            "find --name={{alert.labels.dir}}",
            "echo x{{alert.labels.dir}}",
            "echo \"{{alert.labels.dir}}\"",
            "ssh {{alert.labels.ok}} uptime",
            "echo {{option alert.labels.dir}}",
            "rm {{env.FLAGS}} x",
        ] {
            let mut ctx = alert.clone();
            ctx["env"] = serde_json::json!({"FLAGS": "-rf"});
            assert_eq!(refused(good, ctx), None, "{good}");
        }
        // A block that reads the alert carries its taint to the values inside it.
        assert!(refused("{{#each alert.labels}} {{this}}{{/each}}", alert).is_some());
    }

    #[test]
    fn a_parameter_the_caller_set_is_untrusted_and_its_default_is_not() {
        let r = Renderer::new();
        let ctx = context(serde_json::json!({"params": {"flags": "-rf", "user": "-x"}}));
        let taint = Taint::with_default_params(["flags".to_string()]);
        assert!(
            r.shell(&t("rm {{params.flags}} /tmp/x"), &ctx, &taint)
                .is_ok()
        );
        let e = r.shell(&t("id {{params.user}}"), &ctx, &taint).err();
        assert!(e.is_some_and(|e| e.0.starts_with("params.user starts with '-'")));
    }

    #[test]
    fn shell_templates_quote_every_value_and_raw_opts_out() {
        let r = Renderer::new();
        let ctx = context(serde_json::json!({"v": "x'; rm -rf / #"}));
        // What the shell makes of the quoted command is the value itself, as one word.
        let cmd = r
            .shell(&t("printf '%s|' {{v}}"), &ctx, &Taint::strict())
            .unwrap_or_default();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&cmd)
            .output();
        let out = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string());
        assert_eq!(out.ok(), Some("x'; rm -rf / #|".into()));
        assert_eq!(
            r.shell(&t("echo {{{v}}}"), &ctx, &Taint::strict()).ok(),
            Some("echo x'; rm -rf / #".into())
        );
        assert_eq!(
            r.shell(&t("echo {{raw v}}"), &ctx, &Taint::strict()).ok(),
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
    fn a_helper_given_an_unset_variable_names_the_variables_not_handlebars_internals() {
        let r = Renderer::new();
        let ctx = context(serde_json::json!({"alert": {"labels": {}}}));
        let e = r
            .truthy(&t("{{eq alert.labels.severity \"critical\"}}"), &ctx)
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(!e.contains("Helper/Decorator"), "{e}");
        assert!(e.contains("`alert.labels.severity`"), "{e}");
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
