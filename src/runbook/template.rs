//! Handlebars templates in runbooks: compiled at load time, checked for the variables they use.
//!
//! Templates are compiled when a runbook is validated so that syntax errors show up then, not at
//! 3 a.m. The variables a template reads are extracted from its syntax tree so the validator can
//! reject ones that cannot exist when it renders (`{{steps.nosuch.stdout}}`).

use std::fmt;
use std::sync::Arc;

use handlebars::template::{HelperTemplate, Parameter, TemplateElement};
use handlebars::{Path, PathSeg};

/// Helpers available in runbook templates (Handlebars' built-ins plus untoil's own).
pub const HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "log", "eq", "ne", "gt", "gte", "lt", "lte", "and",
    "or", "not", "len", "raw", "json", "default", "upper", "lower", "trim", "option",
];

/// Block helpers that change the context, so relative paths inside them are not top-level.
const CONTEXT_CHANGING: &[&str] = &["each", "with"];

/// A compiled template with its source.
#[derive(Clone)]
pub struct Template {
    source: String,
    compiled: Arc<handlebars::Template>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A template that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// 1-based line and column inside the template, when known.
    pub position: Option<(usize, usize)>,
}

/// A variable a template reads, e.g. `steps.usage.stdout` as `["steps", "usage", "stdout"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    /// Path segments.
    pub segments: Vec<String>,
    /// The path as written.
    pub raw: String,
}

impl Template {
    /// Compiles a template.
    pub fn compile(source: &str) -> Result<Template, SyntaxError> {
        let compiled = handlebars::Template::compile(source).map_err(|e| SyntaxError {
            message: first_line(&e.reason().to_string()),
            position: e.pos(),
        })?;
        Ok(Template {
            source: source.to_string(),
            compiled: Arc::new(compiled),
        })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The compiled syntax tree.
    pub fn compiled(&self) -> &handlebars::Template {
        &self.compiled
    }

    /// Whether the template has no `{{...}}` at all.
    pub fn is_literal(&self) -> bool {
        self.compiled.elements.iter().all(|e| {
            matches!(
                e,
                TemplateElement::RawString(_) | TemplateElement::Comment(_)
            )
        })
    }

    /// Whether it uses `{{{x}}}` or the `raw` helper, which bypass shell quoting.
    pub fn uses_raw(&self) -> bool {
        let mut found = false;
        walk(&self.compiled.elements, &mut |e| match e {
            TemplateElement::HtmlExpression(_) => found = true,
            TemplateElement::Expression(h) | TemplateElement::HelperBlock(h)
                if h.name.as_name() == Some("raw") && !h.params.is_empty() =>
            {
                found = true
            }
            _ => {}
        });
        found
    }

    /// Whether it passes a value with `{{option x}}` (a value that may begin with `-`).
    pub fn uses_option(&self) -> bool {
        let mut found = false;
        walk(&self.compiled.elements, &mut |e| {
            if calls(e, "option") {
                found = true;
            }
        });
        found
    }

    /// The top-level variables the template reads (paths inside `each`/`with` blocks are
    /// relative to the block's item and are left out).
    pub fn variables(&self) -> Vec<VarRef> {
        let mut out = Vec::new();
        collect_vars(&self.compiled.elements, &mut out, false);
        out
    }

    /// Names of the helpers the template calls.
    pub fn helpers(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.compiled.elements, &mut |e| {
            if let TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) = e
            {
                let is_call = matches!(e, TemplateElement::HelperBlock(_))
                    || !h.params.is_empty()
                    || !h.hash.is_empty();
                if let (true, Some(name)) = (is_call, h.name.as_name()) {
                    out.push(name.to_string());
                }
                for p in h.params.iter().chain(h.hash.values()) {
                    subexpression_helpers(p, &mut out);
                }
            }
        });
        out
    }
}

/// The top-level variables one element of a template reads.
pub fn element_variables(element: &TemplateElement) -> Vec<VarRef> {
    let mut out = Vec::new();
    collect_vars(std::slice::from_ref(element), &mut out, false);
    out
}

/// Whether an element is a call of helper `name` with arguments (`{{name x}}`).
pub fn calls(element: &TemplateElement, name: &str) -> bool {
    matches!(
        element,
        TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h)
            if h.name.as_name() == Some(name) && !h.params.is_empty()
    )
}

fn subexpression_helpers(p: &Parameter, out: &mut Vec<String>) {
    if let Parameter::Subexpression(s) = p {
        out.push(s.name().to_string());
        for p in s.params().into_iter().flatten() {
            subexpression_helpers(p, out);
        }
        for p in s.hash().into_iter().flat_map(|h| h.values()) {
            subexpression_helpers(p, out);
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Visits every element, descending into blocks.
fn walk<F: FnMut(&TemplateElement)>(elements: &[TemplateElement], f: &mut F) {
    for e in elements {
        f(e);
        if let TemplateElement::HelperBlock(h) = e {
            for t in h.template.iter().chain(h.inverse.iter()) {
                walk(&t.elements, f);
            }
        }
    }
}

fn collect_vars(elements: &[TemplateElement], out: &mut Vec<VarRef>, nested_context: bool) {
    for e in elements {
        match e {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                helper_vars(h, out, nested_context);
            }
            TemplateElement::HelperBlock(h) => {
                helper_vars(h, out, nested_context);
                let changes = h
                    .name
                    .as_name()
                    .is_some_and(|n| CONTEXT_CHANGING.contains(&n));
                for t in h.template.iter() {
                    collect_vars(&t.elements, out, nested_context || changes);
                }
                for t in h.inverse.iter() {
                    collect_vars(&t.elements, out, nested_context);
                }
            }
            _ => {}
        }
    }
}

fn helper_vars(h: &HelperTemplate, out: &mut Vec<VarRef>, nested: bool) {
    // `{{x}}` has a name that is a path; `{{helper a b}}` has a helper name and path params.
    if h.params.is_empty() && h.hash.is_empty() {
        if let Parameter::Path(p) = &h.name {
            push_path(p, out, nested);
        } else if let Parameter::Name(n) = &h.name
            && !HELPERS.contains(&n.as_str())
        {
            push_raw(n, out, nested);
        }
    }
    for p in h.params.iter().chain(h.hash.values()) {
        param_vars(p, out, nested);
    }
}

fn param_vars(p: &Parameter, out: &mut Vec<VarRef>, nested: bool) {
    match p {
        Parameter::Path(path) => push_path(path, out, nested),
        Parameter::Subexpression(s) => {
            for p in s.params().into_iter().flatten() {
                param_vars(p, out, nested);
            }
            for p in s.hash().into_iter().flat_map(|h| h.values()) {
                param_vars(p, out, nested);
            }
        }
        _ => {}
    }
}

fn push_path(p: &Path, out: &mut Vec<VarRef>, nested: bool) {
    match p {
        Path::Relative((segs, raw)) => {
            // `@root.x` always means the top level; `../x` climbs out of a block.
            let rooted = segs
                .first()
                .is_some_and(|s| matches!(s, PathSeg::Ruled(_)) && raw.starts_with("@root"));
            if raw.starts_with("../") || raw.starts_with("this") || raw.is_empty() {
                return;
            }
            if nested && !rooted {
                return;
            }
            push_raw(
                raw.trim_start_matches("@root")
                    .trim_start_matches(['.', '/']),
                out,
                false,
            );
        }
        Path::Local(_) => {}
    }
}

fn push_raw(raw: &str, out: &mut Vec<VarRef>, nested: bool) {
    if nested || raw.is_empty() || raw.starts_with('@') {
        return;
    }
    let segments = raw
        .split(['.', '/'])
        .map(|s| s.trim_matches(|c| c == '[' || c == ']').to_string())
        .collect();
    out.push(VarRef {
        segments,
        raw: raw.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(src: &str) -> Vec<String> {
        Template::compile(src)
            .map(|t| t.variables().into_iter().map(|v| v.raw).collect())
            .unwrap_or_default()
    }

    #[test]
    fn variables_are_found_in_expressions_helpers_and_subexpressions() {
        assert_eq!(vars("df {{params.path}}"), ["params.path"]);
        assert_eq!(
            vars("{{eq alert.labels.severity \"critical\"}}"),
            ["alert.labels.severity"]
        );
        assert_eq!(
            vars("{{#if (eq steps.a.exit_code 0)}}{{params.x}}{{/if}}"),
            ["steps.a.exit_code", "params.x"]
        );
        assert_eq!(vars("{{{secrets.token}}}"), ["secrets.token"]);
    }

    #[test]
    fn paths_inside_each_blocks_are_relative_and_skipped() {
        assert_eq!(
            vars("{{#each alert.labels}}{{@key}}={{this}} {{nosuch}}{{/each}}"),
            ["alert.labels"]
        );
        assert_eq!(
            vars("{{#each steps.a.json}}{{@root.params.p}}{{/each}}"),
            ["steps.a.json", "params.p"]
        );
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = Template::compile("echo {{params.x").err();
        assert!(err.is_some_and(|e| e.position.is_some()));
    }

    #[test]
    fn raw_interpolation_is_detected() {
        let raw = |s: &str| Template::compile(s).map(|t| t.uses_raw()).unwrap_or(false);
        assert!(raw("echo {{{params.x}}}"));
        assert!(raw("echo {{raw params.x}}"));
        assert!(!raw("echo {{params.x}}"));
    }

    #[test]
    fn helper_calls_are_listed() {
        let t = Template::compile("{{#if (eq a b)}}{{upper x}}{{/if}}{{nosuchhelper y}}");
        let helpers = t.map(|t| t.helpers()).unwrap_or_default();
        assert_eq!(helpers, ["if", "eq", "upper", "nosuchhelper"]);
    }
}
