//! Source definition files (`sources/NAME.yaml`): YAML to a [`SourceDef`], with located
//! diagnostics through the runbooks' machinery ([`Sources`], [`SourceMap`], did-you-mean).
//!
//! The format is small, so the parsed YAML mapping is walked by hand rather than deserialized:
//! every rule then reports at the exact key or value, and a broken file reports all its problems.
//! Verification is only described here ([`VerifySpec`]); secrets are neither read nor checked.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::{Mapping as YamlMap, Value};

use crate::runbook::diagnostic::{Diagnostic, Kind as Code};
use crate::runbook::loader::{is_runbook_file, kind_of, parse_mapping};
use crate::runbook::model::parse_duration;
use crate::runbook::source_map::{Seg, SourceMap, display_path};
use crate::runbook::sources::Sources;
use crate::runbook::suggest::did_you_mean;
use crate::runbook::template::HELPERS;
use crate::source::mapping::{Condition, FieldExpr, Mapping, check_pointer};
use crate::source::name;

/// The verification presets.
pub const PRESETS: [&str; 5] = [
    "hmac-sha256",
    "hmac-sha512",
    "standard-webhooks",
    "pagerduty-v3",
    "grafana",
];

/// How long delivery ids are remembered unless `delivery.keep` says otherwise.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// How far a signed timestamp may be from now unless `verify.tolerance` says otherwise.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// What a source receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any JSON body, turned into an alert by `map`.
    Webhook,
    /// Grafana's webhook contact point payload.
    Grafana,
    /// PagerDuty v3 webhook events (the [`crate::source::pagerduty`] preset mapping).
    PagerDuty,
}

impl Kind {
    /// The name written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Grafana => "grafana",
            Kind::PagerDuty => "pagerduty",
        }
    }
}

/// Where a secret is read from (at load, by the verification code; never shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A file (one trailing newline trimmed).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// The `verify:` block as written: which signature scheme and where its parts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySpec {
    /// One of [`PRESETS`].
    pub preset: String,
    /// The signature header; None: the preset's own (required for hmac-*).
    pub header: Option<String>,
    /// Text before the hex digest in the header (hmac-*), e.g. `sha256=`.
    pub prefix: Option<String>,
    /// The header with the signed timestamp (grafana, hmac-*).
    pub timestamp_header: Option<String>,
    /// How far a signed timestamp may be from now.
    pub tolerance: Duration,
    /// Where the secret is.
    pub secret: SecretRef,
}

/// How deliveries are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The header holding the delivery id (implied for standard-webhooks and pagerduty).
    pub id_header: Option<String>,
    /// How long delivery ids are remembered.
    pub keep: Duration,
}

/// One loaded source definition.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceDef {
    /// The source's name (its endpoint is `POST /api/v1/sources/{name}`).
    pub name: String,
    /// What it receives.
    pub kind: Kind,
    /// How requests are authenticated; None (grafana only): untoil's bearer token.
    pub verify: Option<VerifySpec>,
    /// Delivery ids.
    pub delivery: Delivery,
    /// Body to alert (kind webhook only).
    pub map: Option<Mapping>,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Its id in [`Sources`].
    pub file: usize,
    /// Where the name is written in the file (for diagnostics naming two files).
    pub name_span: Range<usize>,
}

const TOP: &[&str] = &["source", "kind", "verify", "delivery", "map"];
const VERIFY: &[&str] = &[
    "preset",
    "header",
    "prefix",
    "timestamp_header",
    "tolerance",
    "secret_file",
    "secret_env",
];
const DELIVERY: &[&str] = &["id_header", "keep"];
const MAP: &[&str] = &[
    "labels",
    "annotations",
    "id",
    "starts_at",
    "resolved",
    "when",
];
const CONDITION: &[&str] = &["field", "values"];
const KINDS: &[&str] = &["webhook", "grafana", "pagerduty"];
const WHAT: &str = "a source definition";
const EXAMPLE: &str = "source: github-ci";

/// Loads every `.yaml`/`.yml` file of `dir` (not its subdirectories), sorted by name; a broken
/// file is reported and skipped, and a name defined twice keeps the first file's definition.
/// A directory that cannot be read is one `io` error (the caller decides whether a missing
/// default directory matters).
pub fn load_dir(dir: &Path, sources: &mut Sources) -> (Vec<SourceDef>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            let id = sources.add(dir.display().to_string(), "");
            diags.push(
                Diagnostic::error(Code::Io, id, 0..0, format!("cannot read directory: {e}"))
                    .with_help("give the directory holding the source definitions (`--sources`)"),
            );
            return (Vec::new(), diags);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_runbook_file(p))
        .collect();
    files.sort();
    let mut defs: Vec<SourceDef> = Vec::new();
    for path in files {
        let Some(def) = load_file(&path, sources, &mut diags) else {
            continue;
        };
        if let Some(first) = defs.iter().find(|d| d.name == def.name) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateSource,
                    def.file,
                    def.name_span.clone(),
                    format!(
                        "source `{}` is defined twice: in {} and in {}",
                        def.name,
                        first.path.display(),
                        def.path.display()
                    ),
                )
                .with_label("defined again here")
                .with_secondary(first.file, first.name_span.clone(), "first defined here")
                .with_help("each source needs its own name; rename or remove one of them"),
            );
            continue;
        }
        defs.push(def);
    }
    (defs, diags)
}

/// Reads and loads one file; problems go to `diags`.
pub fn load_file(
    path: &Path,
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<SourceDef> {
    let shown = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => {
                let file = sources.add(shown, text);
                load(file, path, sources, diags)
            }
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let file = sources.add(shown, String::from_utf8_lossy(e.as_bytes()).to_string());
                diags.push(
                    Diagnostic::error(
                        Code::YamlSyntax,
                        file,
                        at..at + 1,
                        "file is not valid UTF-8",
                    )
                    .with_label("invalid byte here")
                    .with_help("save the file as UTF-8"),
                );
                None
            }
        },
        Err(e) => {
            let file = sources.add(shown, "");
            diags.push(Diagnostic::error(
                Code::Io,
                file,
                0..0,
                format!("cannot read file: {e}"),
            ));
            None
        }
    }
}

/// Loads a file already in `sources`; None when it has errors (all reported in `diags`).
pub fn load(
    file: usize,
    path: &Path,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<SourceDef> {
    let (root, map) = parse_mapping(file, sources, WHAT, EXAMPLE, diags)?;
    let errors_before = diags.iter().filter(|d| d.is_error()).count();
    let mut w = Walk {
        file,
        map: &map,
        diags,
    };
    let def = w.source(&root, path);
    let errors_after = w.diags.iter().filter(|d| d.is_error()).count();
    def.filter(|_| errors_after == errors_before)
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn at(path: &[Seg], k: &str) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(key(k));
    p
}

/// A mapping key as text (YAML allows other scalars as keys).
fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind_of(other).to_string(),
    }
}

/// The place a path names, in messages: "a source definition" or "`verify`".
fn place(path: &[Seg]) -> String {
    if path.is_empty() {
        WHAT.to_string()
    } else {
        format!("`{}`", display_path(path))
    }
}

/// Whether a header name is an HTTP token.
fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a label name is valid for Prometheus and Alertmanager.
fn is_label_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_env_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Walks one file's mapping, reporting into `diags`.
struct Walk<'a> {
    file: usize,
    map: &'a SourceMap,
    diags: &'a mut Vec<Diagnostic>,
}

impl Walk<'_> {
    fn error(&mut self, code: Code, span: Range<usize>, message: String) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::error(code, self.file, span, message));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    /// An error at the value of `path`, with a caret label.
    fn at_value(&mut self, code: Code, path: &[Seg], message: String, label: &str) {
        let span = self.map.value_span(path);
        self.error(code, span, message).primary.message = label.to_string();
    }

    /// An error at the key of `path`.
    fn at_key(
        &mut self,
        code: Code,
        path: &[Seg],
        message: String,
        label: &str,
    ) -> &mut Diagnostic {
        let span = self.map.key_span(path);
        let d = self.error(code, span, message);
        d.primary.message = label.to_string();
        d
    }

    fn missing(&mut self, parent: &[Seg], field: &str, example: &str) {
        let span = if parent.is_empty() {
            0..0
        } else {
            self.map.key_span(parent)
        };
        let d = self.error(
            Code::MissingField,
            span,
            format!("missing field `{field}` in {}", place(parent)),
        );
        d.primary.message = format!("`{field}` is required here");
        d.help.push(format!("add it, e.g. `{example}`"));
    }

    fn wrong_type(&mut self, path: &[Seg], v: &Value, expected: &str) {
        let msg = format!(
            "wrong type for `{}`: expected {expected}, found {}",
            display_path(path),
            kind_of(v)
        );
        self.at_value(Code::WrongType, path, msg, &format!("expected {expected}"));
    }

    /// Reports keys not in `allowed`; returns the mapping's entries by key.
    fn fields<'v>(
        &mut self,
        m: &'v YamlMap,
        path: &[Seg],
        allowed: &[&str],
    ) -> BTreeMap<String, &'v Value> {
        let mut out = BTreeMap::new();
        for (k, v) in m {
            let k = key_text(k);
            if allowed.contains(&k.as_str()) {
                out.insert(k, v);
                continue;
            }
            let msg = format!("unknown field `{k}` in {}", place(path));
            let help = did_you_mean(&k, allowed.iter().copied())
                .unwrap_or_else(|| format!("expected one of: {}", allowed.join(", ")));
            self.at_key(Code::UnknownField, &at(path, &k), msg, "unknown field")
                .help
                .push(help);
        }
        out
    }

    fn mapping<'v>(&mut self, v: &'v Value, path: &[Seg]) -> Option<&'v YamlMap> {
        match v {
            Value::Mapping(m) => Some(m),
            other => {
                self.wrong_type(path, other, "a mapping");
                None
            }
        }
    }

    fn string(&mut self, v: &Value, path: &[Seg]) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.wrong_type(path, other, "a string");
                None
            }
        }
    }

    fn header(&mut self, v: &Value, path: &[Seg]) -> Option<String> {
        let s = self.string(v, path)?;
        if is_header_name(&s) {
            Some(s)
        } else {
            self.at_value(
                Code::InvalidValue,
                path,
                format!("invalid header name `{s}` for `{}`", display_path(path)),
                "not an HTTP header name",
            );
            None
        }
    }

    fn duration(&mut self, v: &Value, path: &[Seg]) -> Option<Duration> {
        let text = match v {
            Value::String(s) => s.clone(),
            other => {
                self.wrong_type(path, other, "a duration such as 5m");
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.at_value(
                    Code::BadDuration,
                    path,
                    format!("`{}` must be longer than zero", display_path(path)),
                    "zero",
                );
                None
            }
            Err(e) => {
                let span = self.map.value_span(path);
                let d = self.error(
                    Code::BadDuration,
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

    /// One of `allowed` names, with did-you-mean.
    fn choice(&mut self, v: &Value, path: &[Seg], allowed: &[&str]) -> Option<String> {
        let s = self.string(v, path)?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let span = self.map.value_span(path);
        let d = self.error(
            Code::InvalidValue,
            span,
            format!(
                "invalid value for `{}`: expected one of {}, found `{s}`",
                display_path(path),
                allowed.join(", ")
            ),
        );
        d.primary.message = "unknown value".into();
        if let Some(hint) = did_you_mean(&s, allowed.iter().copied()) {
            d.help.push(hint);
        }
        None
    }

    /// A field that has no effect with the preset or kind (reported as an error: the author
    /// believes it does something).
    fn ineffective(&mut self, path: &[Seg], why: &str) {
        let msg = format!("`{}` has no effect {why}", display_path(path));
        self.at_key(Code::Ineffective, path, msg, "remove this")
            .help
            .push("remove it".into());
    }

    fn source(&mut self, root: &YamlMap, path: &Path) -> Option<SourceDef> {
        let f = self.fields(root, &[], TOP);
        let name_path = [key("source")];
        let name = match f.get("source") {
            None => {
                self.missing(&[], "source", EXAMPLE);
                None
            }
            Some(v) => self
                .string(v, &name_path)
                .and_then(|n| self.name(n, &name_path)),
        };
        let kind = match f.get("kind") {
            None => Some(Kind::Webhook),
            Some(v) => self
                .choice(v, &[key("kind")], KINDS)
                .map(|k| match k.as_str() {
                    "grafana" => Kind::Grafana,
                    "pagerduty" => Kind::PagerDuty,
                    _ => Kind::Webhook,
                }),
        };
        let verify = f
            .get("verify")
            .and_then(|v| self.verify(v, &[key("verify")]));
        let delivery = match f.get("delivery") {
            None => Some(Delivery {
                id_header: None,
                keep: DEFAULT_KEEP,
            }),
            Some(v) => self.delivery(v, &[key("delivery")]),
        };
        let map = f
            .get("map")
            .and_then(|v| self.mapping_block(v, &[key("map")], name.as_deref().unwrap_or("")));
        let kind = kind?;
        self.kind_rules(kind, &f, verify.as_ref(), delivery.as_ref());
        Some(SourceDef {
            name: name?,
            kind,
            verify: match f.get("verify") {
                Some(_) => Some(verify?),
                None => None,
            },
            delivery: delivery?,
            map: match f.get("map") {
                Some(_) => Some(map?),
                None => None,
            },
            path: path.to_path_buf(),
            file: self.file,
            name_span: self.map.value_span(&name_path),
        })
    }

    fn name(&mut self, n: String, path: &[Seg]) -> Option<String> {
        if !name::is_valid(&n) {
            let span = self.map.value_span(path);
            let d = self.error(
                Code::InvalidValue,
                span,
                format!("invalid source name `{n}`"),
            );
            d.primary.message =
                "a lowercase letter, then lowercase letters, digits and `-` (63 at most)".into();
            d.help.push(format!("try `{}`", name::suggest(&n)));
            return None;
        }
        if name::BUILT_IN.contains(&n.as_str()) {
            let span = self.map.value_span(path);
            let d = self.error(
                Code::InvalidValue,
                span,
                format!("source name `{n}` is taken by the built-in source"),
            );
            d.primary.message = "built in".into();
            d.help.push(format!(
                "choose another name, e.g. `{n}-signed`; the built-in endpoint is POST /api/v1/alerts/{n}"
            ));
            return None;
        }
        Some(n)
    }

    fn verify(&mut self, v: &Value, path: &[Seg]) -> Option<VerifySpec> {
        let m = self.mapping(v, path)?;
        let f = self.fields(m, path, VERIFY);
        let preset = match f.get("preset") {
            None => {
                self.missing(path, "preset", "preset: hmac-sha256");
                None
            }
            Some(v) => self.choice(v, &at(path, "preset"), &PRESETS),
        };
        let mut header = None;
        let mut prefix = None;
        let mut timestamp_header = None;
        let mut ok = true;
        if let Some(v) = f.get("header") {
            header = self.header(v, &at(path, "header"));
            ok &= header.is_some();
        }
        if let Some(v) = f.get("prefix") {
            prefix = self.string(v, &at(path, "prefix"));
            ok &= prefix.is_some();
        }
        if let Some(v) = f.get("timestamp_header") {
            timestamp_header = self.header(v, &at(path, "timestamp_header"));
            ok &= timestamp_header.is_some();
        }
        let tolerance = match f.get("tolerance") {
            None => Some(DEFAULT_TOLERANCE),
            Some(v) => self.duration(v, &at(path, "tolerance")),
        };
        let secret = match (f.get("secret_file"), f.get("secret_env")) {
            (Some(_), Some(_)) => {
                let msg = "`verify` takes one of `secret_file` and `secret_env`, not both".into();
                self.at_key(
                    Code::InvalidValue,
                    &at(path, "secret_env"),
                    msg,
                    "second secret",
                )
                .help
                .push("keep the one the secret is in".into());
                None
            }
            (None, None) => {
                self.missing(path, "secret_file", "secret_file: /etc/untoil/NAME.secret");
                if let Some(d) = self.diags.last_mut() {
                    d.message = "missing field `secret_file` or `secret_env` in `verify`".into();
                }
                None
            }
            (Some(v), None) => {
                let p = at(path, "secret_file");
                match self.string(v, &p) {
                    Some(s) if !s.trim().is_empty() => Some(SecretRef::File(PathBuf::from(s))),
                    Some(_) => {
                        self.at_value(
                            Code::InvalidValue,
                            &p,
                            "`verify.secret_file` is empty".into(),
                            "a path",
                        );
                        None
                    }
                    None => None,
                }
            }
            (None, Some(v)) => {
                let p = at(path, "secret_env");
                match self.string(v, &p) {
                    Some(s) if is_env_name(&s) => Some(SecretRef::Env(s)),
                    Some(s) => {
                        self.at_value(
                            Code::InvalidValue,
                            &p,
                            format!("invalid environment variable name `{s}`"),
                            "letters, digits and `_`, not starting with a digit",
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        let preset = preset?;
        match preset.as_str() {
            "hmac-sha256" | "hmac-sha512" if !f.contains_key("header") => {
                self.missing(path, "header", "header: X-Hub-Signature-256");
                return None;
            }
            "standard-webhooks" | "pagerduty-v3" => {
                let why = format!("with preset `{preset}`, whose headers are fixed");
                for field in ["header", "prefix", "timestamp_header"] {
                    if f.contains_key(field) {
                        self.ineffective(&at(path, field), &why);
                        ok = false;
                    }
                }
            }
            "grafana" if f.contains_key("prefix") => {
                self.ineffective(&at(path, "prefix"), "with preset `grafana`");
                ok = false;
            }
            _ => {}
        }
        if !ok {
            return None;
        }
        Some(VerifySpec {
            preset,
            header,
            prefix,
            timestamp_header,
            tolerance: tolerance?,
            secret: secret?,
        })
    }

    fn delivery(&mut self, v: &Value, path: &[Seg]) -> Option<Delivery> {
        let m = self.mapping(v, path)?;
        let f = self.fields(m, path, DELIVERY);
        let id_header = match f.get("id_header") {
            None => None,
            Some(v) => Some(self.header(v, &at(path, "id_header"))?),
        };
        let keep = match f.get("keep") {
            None => DEFAULT_KEEP,
            Some(v) => self.duration(v, &at(path, "keep"))?,
        };
        Some(Delivery { id_header, keep })
    }

    /// Rules across blocks: what each kind needs and forbids.
    fn kind_rules(
        &mut self,
        kind: Kind,
        f: &BTreeMap<String, &Value>,
        verify: Option<&VerifySpec>,
        delivery: Option<&Delivery>,
    ) {
        let kind_span = if f.contains_key("kind") {
            self.map.value_span(&[key("kind")])
        } else {
            0..0
        };
        let need = |this: &mut Self, field: &str, why: &str, example: &str| {
            let d = this.error(
                Code::MissingField,
                kind_span.clone(),
                format!("a `kind: {}` source needs `{field}`: {why}", kind.as_str()),
            );
            d.primary.message = format!("`{field}` is required for this kind");
            d.help.push(format!("add it, e.g. `{example}`"));
        };
        match kind {
            Kind::Webhook => {
                if !f.contains_key("verify") {
                    need(
                        self,
                        "verify",
                        "anyone who can reach untoil could start runbooks",
                        "verify: { preset: hmac-sha256, header: X-Hub-Signature-256, secret_env: MY_SECRET }",
                    );
                }
                if !f.contains_key("map") {
                    need(
                        self,
                        "map",
                        "it says how the body becomes an alert",
                        "map: { labels: { repo: /repository/full_name } }",
                    );
                }
                // Without a mapped id, the delivery id is the event's id: a source that has
                // neither would refuse every request (400), so say so here.
                let map_id = f
                    .get("map")
                    .and_then(|m| m.as_mapping())
                    .is_some_and(|m| m.contains_key("id"));
                let implied_id = verify.is_some_and(|v| v.preset == "standard-webhooks");
                let id_header = delivery.is_some_and(|d| d.id_header.is_some());
                if f.contains_key("map") && !map_id && !implied_id && !id_header {
                    self.at_key(
                        Code::MissingField,
                        &[key("map")],
                        "the events of this source have no id: map `map.id` (with `map.starts_at`) or name the sender's delivery id header in `delivery.id_header`".to_string(),
                        "no id for its events",
                    )
                    .help
                    .push(
                        "e.g. `delivery: { id_header: X-GitHub-Delivery }`; without an id every request would be refused".into(),
                    );
                }
            }
            Kind::PagerDuty | Kind::Grafana => {
                let preset = if kind == Kind::PagerDuty {
                    "pagerduty-v3"
                } else {
                    "grafana"
                };
                if f.contains_key("map") {
                    let msg = format!(
                        "`map` is not allowed with `kind: {}`: the kind maps its events itself",
                        kind.as_str()
                    );
                    self.at_key(Code::InvalidValue, &[key("map")], msg, "not allowed")
                        .help
                        .push(
                            "remove `map`, or use `kind: webhook` to map the body yourself".into(),
                        );
                }
                if kind == Kind::PagerDuty && !f.contains_key("verify") {
                    need(
                        self,
                        "verify",
                        "PagerDuty signs every webhook",
                        "verify: { preset: pagerduty-v3, secret_env: PAGERDUTY_SECRET }",
                    );
                }
                if let Some(v) = verify
                    && v.preset != preset
                {
                    let msg = format!(
                        "`kind: {}` needs `preset: {preset}`, found `{}`",
                        kind.as_str(),
                        v.preset
                    );
                    let span = self.map.value_span(&[key("verify"), key("preset")]);
                    let d = self.error(Code::InvalidValue, span, msg);
                    d.primary.message = "wrong preset for this kind".into();
                    d.help.push(format!("write `preset: {preset}`"));
                }
                if kind == Kind::PagerDuty && delivery.is_some_and(|d| d.id_header.is_some()) {
                    self.ineffective(
                        &[key("delivery"), key("id_header")],
                        "with `kind: pagerduty`, whose delivery id is the body's /event/id",
                    );
                }
            }
        }
        if verify.is_some_and(|v| v.preset == "standard-webhooks")
            && delivery.is_some_and(|d| d.id_header.is_some())
        {
            self.ineffective(
                &[key("delivery"), key("id_header")],
                "with preset `standard-webhooks`, whose delivery id is the `webhook-id` header",
            );
        }
    }

    fn mapping_block(&mut self, v: &Value, path: &[Seg], source: &str) -> Option<Mapping> {
        let m = self.mapping(v, path)?;
        let f = self.fields(m, path, MAP);
        let mut ok = true;
        let mut labels = BTreeMap::new();
        let mut annotations = BTreeMap::new();
        for (field, out, is_label) in [
            ("labels", &mut labels, true),
            ("annotations", &mut annotations, false),
        ] {
            let Some(v) = f.get(field) else { continue };
            let p = at(path, field);
            let Some(entries) = self.mapping(v, &p) else {
                ok = false;
                continue;
            };
            for (k, v) in entries {
                let k = key_text(k);
                let ep = at(&p, &k);
                let valid = if is_label {
                    is_label_name(&k)
                } else {
                    !k.is_empty() && !k.contains('\0')
                };
                if !valid {
                    let what = if is_label { "label" } else { "annotation" };
                    self.at_key(
                        Code::InvalidValue,
                        &ep,
                        format!("invalid {what} name `{k}`"),
                        "letters, digits and `_`, not starting with a digit",
                    );
                    ok = false;
                    continue;
                }
                match self.expr(v, &ep) {
                    Some(e) => {
                        out.insert(k, e);
                    }
                    None => ok = false,
                }
            }
        }
        let single = |this: &mut Self, field: &str| -> Option<Option<FieldExpr>> {
            match f.get(field) {
                None => Some(None),
                Some(v) => this.expr(v, &at(path, field)).map(Some),
            }
        };
        let id = single(self, "id");
        let starts_at = single(self, "starts_at");
        let resolved = match f.get("resolved") {
            None => Some(None),
            Some(v) => self.condition(v, &at(path, "resolved")).map(Some),
        };
        let when = match f.get("when") {
            None => Some(None),
            Some(v) => self.condition(v, &at(path, "when")).map(Some),
        };
        // An episode is (id, start): with an id but no start, each re-send of the same id would
        // start at its own receipt time and be a new episode, running the fix again.
        if f.contains_key("id") && !f.contains_key("starts_at") {
            self.at_key(
                Code::MissingField,
                &at(path, "id"),
                "`map.id` needs `map.starts_at` too".to_string(),
                "an id without a start time",
            )
            .help
            .push(
                "map when the event started (e.g. `starts_at: /workflow_run/created_at`), so that re-sends of one id are one episode; or map neither, and each delivery id is its own event".to_string(),
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(Mapping {
            source: source.to_string(),
            labels,
            annotations,
            id: id?,
            starts_at: starts_at?,
            resolved: resolved?,
            when: when?,
        })
    }

    /// A mapped value: a pointer, a template reading only `body`, or a literal.
    fn expr(&mut self, v: &Value, path: &[Seg]) -> Option<FieldExpr> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => return Some(FieldExpr::Literal(n.to_string())),
            Value::Bool(b) => return Some(FieldExpr::Literal(b.to_string())),
            other => {
                self.wrong_type(path, other, "a JSON Pointer, a template or a text");
                return None;
            }
        };
        match FieldExpr::parse(&text) {
            Ok(FieldExpr::Template(t)) => {
                let mut ok = true;
                for var in t.variables() {
                    if var.segments.first().map(String::as_str) != Some("body") {
                        self.at_value(
                            Code::UnknownVariable,
                            path,
                            format!(
                                "unknown variable `{}` in `{}`: a mapping's templates read only `body`",
                                var.raw,
                                display_path(path)
                            ),
                            "not `body.…`",
                        );
                        ok = false;
                    }
                }
                for h in t.helpers() {
                    if !HELPERS.contains(&h.as_str()) {
                        self.at_value(
                            Code::UnknownHelper,
                            path,
                            format!("unknown template helper `{h}` in `{}`", display_path(path)),
                            "no such helper",
                        );
                        ok = false;
                    }
                }
                ok.then_some(FieldExpr::Template(t))
            }
            Ok(e) => Some(e),
            Err(e) => {
                let (code, what) = if text.starts_with('/') {
                    (Code::InvalidValue, "invalid JSON Pointer")
                } else {
                    (Code::TemplateSyntax, "invalid template")
                };
                let msg = format!("{what} in `{}`: {e}", display_path(path));
                self.at_value(code, path, msg, what);
                None
            }
        }
    }

    fn pointer(&mut self, v: &Value, path: &[Seg]) -> Option<String> {
        let s = self.string(v, path)?;
        let check = if s.starts_with('/') {
            check_pointer(&s)
        } else {
            Err("a JSON Pointer starts with `/`, e.g. `/action`".into())
        };
        match check {
            Ok(()) => Some(s),
            Err(e) => {
                let msg = format!(
                    "invalid JSON Pointer `{s}` in `{}`: {e}",
                    display_path(path)
                );
                self.at_value(Code::InvalidValue, path, msg, "not a JSON Pointer");
                None
            }
        }
    }

    fn condition(&mut self, v: &Value, path: &[Seg]) -> Option<Condition> {
        let m = self.mapping(v, path)?;
        let f = self.fields(m, path, CONDITION);
        let field = match f.get("field") {
            None => {
                self.missing(path, "field", "field: /action");
                None
            }
            Some(v) => self.pointer(v, &at(path, "field")),
        };
        let values = match f.get("values") {
            None => {
                self.missing(path, "values", "values: [completed]");
                None
            }
            Some(v) => self.values(v, &at(path, "values")),
        };
        Some(Condition {
            field: field?,
            values: values?,
        })
    }

    fn values(&mut self, v: &Value, path: &[Seg]) -> Option<Vec<String>> {
        let Value::Sequence(items) = v else {
            self.wrong_type(path, v, "a list");
            return None;
        };
        if items.is_empty() {
            self.at_value(
                Code::InvalidValue,
                path,
                format!("`{}` is empty: nothing could match", display_path(path)),
                "empty list",
            );
            return None;
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let mut p = path.to_vec();
            p.push(Seg::Index(i));
            match item {
                Value::String(s) => out.push(s.clone()),
                Value::Number(n) => out.push(n.to_string()),
                Value::Bool(b) => out.push(b.to_string()),
                other => {
                    self.wrong_type(&p, other, "a string");
                    return None;
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::alert::AlertStatus;

    const GITHUB: &str = "\
source: github-ci
kind: webhook
verify:
  preset: hmac-sha256
  header: X-Hub-Signature-256
  prefix: \"sha256=\"
  secret_env: GITHUB_CI_SECRET
delivery:
  id_header: X-GitHub-Delivery
  keep: 3d
map:
  labels:
    alertname: GitHubWorkflowFailed
    repo: /repository/full_name
    branch: \"{{body.workflow_run.head_branch}}\"
    run: /workflow_run/run_number
  annotations: { url: /workflow_run/html_url }
  id: /workflow_run/id
  starts_at: /workflow_run/created_at
  resolved:
    field: /action
    values: [completed]
  when:
    field: /workflow_run/conclusion
    values: [failure]
";

    /// Loads `text` as `s.yaml`: the definition, and each diagnostic as `file:line:col: message`
    /// followed by its label and help.
    fn load_text(text: &str) -> (Option<SourceDef>, Vec<String>) {
        let mut sources = Sources::new();
        let file = sources.add("s.yaml", text);
        let mut diags = Vec::new();
        let def = load(file, Path::new("s.yaml"), &sources, &mut diags);
        (def, lines(&sources, &diags))
    }

    fn lines(sources: &Sources, diags: &[Diagnostic]) -> Vec<String> {
        let mut diags = diags.to_vec();
        sources.sort(&mut diags);
        sources
            .records(&diags)
            .iter()
            .map(|r| {
                let mut s = format!("{}:{}:{}: {}", r.file, r.line, r.column, r.message);
                if !r.label.is_empty() {
                    s.push_str(&format!(" [{}]", r.label));
                }
                for h in &r.help {
                    s.push_str(&format!(" (help: {h})"));
                }
                s
            })
            .collect()
    }

    fn errors(text: &str) -> Vec<String> {
        let (def, lines) = load_text(text);
        assert!(def.is_none(), "loaded despite {lines:?}");
        lines
    }

    fn github_body() -> serde_json::Value {
        let path = format!(
            "{}/tests/fixtures/github/workflow_run.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).expect("fixture");
        serde_json::from_str(&text).expect("fixture is JSON")
    }

    #[test]
    fn the_design_example_loads() {
        let (def, lines) = load_text(GITHUB);
        assert_eq!(lines, Vec::<String>::new());
        let def = def.expect("loads");
        assert_eq!(def.name, "github-ci");
        assert_eq!(def.kind, Kind::Webhook);
        assert_eq!(
            def.verify,
            Some(VerifySpec {
                preset: "hmac-sha256".into(),
                header: Some("X-Hub-Signature-256".into()),
                prefix: Some("sha256=".into()),
                timestamp_header: None,
                tolerance: DEFAULT_TOLERANCE,
                secret: SecretRef::Env("GITHUB_CI_SECRET".into()),
            })
        );
        assert_eq!(
            def.delivery,
            Delivery {
                id_header: Some("X-GitHub-Delivery".into()),
                keep: Duration::from_secs(3 * 24 * 3600),
            }
        );
        let map = def.map.expect("a mapping");
        assert_eq!(map.source, "github-ci");
        assert_eq!(
            map.labels.get("repo"),
            Some(&FieldExpr::Pointer("/repository/full_name".into()))
        );
        assert_eq!(
            map.labels.get("alertname"),
            Some(&FieldExpr::Literal("GitHubWorkflowFailed".into()))
        );
        assert!(matches!(
            map.labels.get("branch"),
            Some(FieldExpr::Template(_))
        ));
    }

    #[test]
    fn a_github_workflow_run_maps_to_an_alert() {
        let def = load_text(GITHUB).0.expect("loads");
        let map = def.map.expect("a mapping");
        let received = chrono::DateTime::UNIX_EPOCH;
        let mut body = github_body();
        // The example run succeeded: `when` ignores it.
        assert_eq!(map.map(&body, Some("d-1"), received), Ok(None));
        if let Some(c) = body.pointer_mut("/workflow_run/conclusion") {
            *c = "failure".into();
        }
        let a = map
            .map(&body, Some("d-1"), received)
            .expect("maps")
            .expect("a failed run");
        let labels: Vec<(&str, &str)> = a
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("alertname", "GitHubWorkflowFailed"),
                ("branch", "master"),
                ("repo", "octo-org/octo-repo"),
                ("run", "163"),
            ]
        );
        assert_eq!(
            a.annotations["url"],
            "https://github.com/octo-org/octo-repo/actions/runs/289782451"
        );
        assert_eq!(a.fingerprint, "289782451");
        assert_eq!(a.starts_at.to_rfc3339(), "2020-10-05T16:33:24+00:00");
        assert_eq!(a.status, AlertStatus::Resolved, "action: completed");
        if let Some(c) = body.pointer_mut("/action") {
            *c = "requested".into();
        }
        let a = map
            .map(&body, None, received)
            .expect("maps")
            .expect("fires");
        assert_eq!(a.status, AlertStatus::Firing);
        if let Some(r) = body.pointer_mut("/repository") {
            *r = serde_json::json!(["not", "an", "object"]);
        }
        assert_eq!(
            map.map(&body, None, received)
                .expect_err("bad body")
                .to_string(),
            "label `repo` (from /repository/full_name): the body has no value at /repository/full_name"
        );
    }

    #[test]
    fn unknown_fields_are_located_with_did_you_mean() {
        assert_eq!(
            errors("sorce: x\nkind: webhok\nverify: {presett: grafana}\n"),
            [
                "s.yaml:1:1: unknown field `sorce` in a source definition [unknown field] (help: did you mean `source`?)",
                "s.yaml:1:1: missing field `source` in a source definition [`source` is required here] (help: add it, e.g. `source: github-ci`)",
                "s.yaml:2:7: invalid value for `kind`: expected one of webhook, grafana, pagerduty, found `webhok` [unknown value] (help: did you mean `webhook`?)",
                "s.yaml:3:1: missing field `preset` in `verify` [`preset` is required here] (help: add it, e.g. `preset: hmac-sha256`)",
                "s.yaml:3:1: missing field `secret_file` or `secret_env` in `verify` [`secret_file` is required here] (help: add it, e.g. `secret_file: /etc/untoil/NAME.secret`)",
                "s.yaml:3:10: unknown field `presett` in `verify` [unknown field] (help: did you mean `preset`?)",
            ]
        );
    }

    #[test]
    fn names_must_be_valid_and_not_built_in() {
        let base = "kind: grafana\n";
        assert_eq!(
            errors(&format!("source: GitHub_CI\n{base}")),
            [
                "s.yaml:1:9: invalid source name `GitHub_CI` [a lowercase letter, then lowercase letters, digits and `-` (63 at most)] (help: try `github-ci`)"
            ]
        );
        assert_eq!(
            errors(&format!("source: grafana\n{base}")),
            [
                "s.yaml:1:9: source name `grafana` is taken by the built-in source [built in] (help: choose another name, e.g. `grafana-signed`; the built-in endpoint is POST /api/v1/alerts/grafana)"
            ]
        );
        assert_eq!(
            errors(&format!("source: 42\n{base}")),
            [
                "s.yaml:1:9: wrong type for `source`: expected a string, found a number [expected a string]"
            ]
        );
    }

    #[test]
    fn webhooks_need_a_signature_and_a_mapping() {
        assert_eq!(
            errors("source: ci\n"),
            [
                "s.yaml:1:1: a `kind: webhook` source needs `verify`: anyone who can reach untoil could start runbooks [`verify` is required for this kind] (help: add it, e.g. `verify: { preset: hmac-sha256, header: X-Hub-Signature-256, secret_env: MY_SECRET }`)",
                "s.yaml:1:1: a `kind: webhook` source needs `map`: it says how the body becomes an alert [`map` is required for this kind] (help: add it, e.g. `map: { labels: { repo: /repository/full_name } }`)",
            ]
        );
    }

    #[test]
    fn pagerduty_needs_its_preset_and_no_mapping() {
        let ok =
            "source: pd\nkind: pagerduty\nverify: { preset: pagerduty-v3, secret_file: /etc/pd }\n";
        let (def, lines) = load_text(ok);
        assert_eq!(lines, Vec::<String>::new());
        let def = def.expect("loads");
        assert_eq!(def.kind, Kind::PagerDuty);
        assert_eq!(
            def.verify.map(|v| v.secret),
            Some(SecretRef::File("/etc/pd".into()))
        );
        assert_eq!(
            errors("source: pd\nkind: pagerduty\n"),
            [
                "s.yaml:2:7: a `kind: pagerduty` source needs `verify`: PagerDuty signs every webhook [`verify` is required for this kind] (help: add it, e.g. `verify: { preset: pagerduty-v3, secret_env: PAGERDUTY_SECRET }`)"
            ]
        );
        assert_eq!(
            errors(
                "source: pd\nkind: pagerduty\nverify: { preset: hmac-sha256, header: X-Sig, secret_env: S }\nmap: {}\n"
            ),
            [
                "s.yaml:3:19: `kind: pagerduty` needs `preset: pagerduty-v3`, found `hmac-sha256` [wrong preset for this kind] (help: write `preset: pagerduty-v3`)",
                "s.yaml:4:1: `map` is not allowed with `kind: pagerduty`: the kind maps its events itself [not allowed] (help: remove `map`, or use `kind: webhook` to map the body yourself)",
            ]
        );
        assert_eq!(
            errors(
                "source: pd\nkind: pagerduty\nverify: { preset: pagerduty-v3, header: X-Sig, secret_env: S }\ndelivery: { id_header: X-Id }\n"
            ),
            [
                "s.yaml:3:33: `verify.header` has no effect with preset `pagerduty-v3`, whose headers are fixed [remove this] (help: remove it)",
                "s.yaml:4:13: `delivery.id_header` has no effect with `kind: pagerduty`, whose delivery id is the body's /event/id [remove this] (help: remove it)",
            ]
        );
    }

    #[test]
    fn grafana_may_go_unsigned_or_use_its_preset() {
        let (def, lines) = load_text("source: grafana-prod\nkind: grafana\n");
        assert_eq!(lines, Vec::<String>::new());
        let def = def.expect("loads");
        assert_eq!((def.kind, def.verify), (Kind::Grafana, None));
        assert_eq!(def.delivery.keep, DEFAULT_KEEP);
        let (def, lines) = load_text(
            "source: g\nkind: grafana\nverify:\n  preset: grafana\n  timestamp_header: X-Grafana-Alerting-Signature-Timestamp\n  tolerance: 2m\n  secret_env: G\n",
        );
        assert_eq!(lines, Vec::<String>::new());
        let v = def.and_then(|d| d.verify).expect("verify");
        assert_eq!(v.header, None);
        assert_eq!(v.tolerance, Duration::from_secs(120));
        assert_eq!(
            errors(
                "source: g\nkind: grafana\nverify: { preset: standard-webhooks, secret_env: G }\n"
            ),
            [
                "s.yaml:3:19: `kind: grafana` needs `preset: grafana`, found `standard-webhooks` [wrong preset for this kind] (help: write `preset: grafana`)"
            ]
        );
    }

    #[test]
    fn a_webhook_source_needs_an_id_for_its_events() {
        assert_eq!(
            errors(
                "source: ci\nverify: { preset: hmac-sha256, header: X-Sig, secret_env: S }\nmap:\n  labels: { alertname: X }\n"
            ),
            [
                "s.yaml:3:1: the events of this source have no id: map `map.id` (with `map.starts_at`) or name the sender's delivery id header in `delivery.id_header` [no id for its events] (help: e.g. `delivery: { id_header: X-GitHub-Delivery }`; without an id every request would be refused)"
            ]
        );
        // The delivery id of Standard Webhooks is implied.
        let (def, lines) = load_text(
            "source: ci\nverify: { preset: standard-webhooks, secret_env: S }\nmap:\n  labels: { alertname: X }\n",
        );
        assert_eq!(lines, Vec::<String>::new());
        assert!(def.is_some());
    }

    #[test]
    fn verify_rules() {
        let head = "source: ci\nmap: { id: /id, starts_at: /t }\n";
        assert_eq!(
            errors(&format!(
                "{head}verify: {{ preset: hmac-sha512, secret_env: S }}\n"
            )),
            [
                "s.yaml:3:1: missing field `header` in `verify` [`header` is required here] (help: add it, e.g. `header: X-Hub-Signature-256`)"
            ]
        );
        assert_eq!(
            errors(&format!(
                "{head}verify: {{ preset: hmac-sha256, header: 'X Sig', secret_env: S, secret_file: /f }}\n"
            )),
            [
                "s.yaml:3:40: invalid header name `X Sig` for `verify.header` [not an HTTP header name]",
                "s.yaml:3:49: `verify` takes one of `secret_file` and `secret_env`, not both [second secret] (help: keep the one the secret is in)",
            ]
        );
        assert_eq!(
            errors(&format!(
                "{head}verify: {{ preset: standard-webhooks, secret_env: 1BAD, tolerance: soon }}\n"
            )),
            [
                "s.yaml:3:50: invalid environment variable name `1BAD` [letters, digits and `_`, not starting with a digit]",
                "s.yaml:3:67: invalid duration `soon`: expected number at 0 [not a duration] (help: write a number and a unit, e.g. `30s`, `10m`, `1h30m` or `2d`)",
            ]
        );
        assert_eq!(
            errors(&format!(
                "{head}verify: {{ preset: standard-webhooks, secret_env: S }}\ndelivery: {{ id_header: X-Id, keep: 0s }}\n"
            )),
            ["s.yaml:4:36: `delivery.keep` must be longer than zero [zero]"]
        );
        assert_eq!(
            errors(&format!(
                "{head}verify: {{ preset: hmac-sha265, secret_env: S }}\n"
            )),
            [
                "s.yaml:3:19: invalid value for `verify.preset`: expected one of hmac-sha256, hmac-sha512, standard-webhooks, pagerduty-v3, grafana, found `hmac-sha265` [unknown value] (help: did you mean `hmac-sha256`?)"
            ]
        );
    }

    #[test]
    fn mapping_rules() {
        let head = "source: ci\nverify: { preset: standard-webhooks, secret_env: S }\n";
        assert_eq!(
            errors(&format!(
                "{head}map:\n  labels:\n    bad-name: x\n    a: /x~2\n    b: \"{{{{#if}}\"\n    c: \"{{{{params.x}}}}\"\n    d: \"{{{{shout body.x}}}}\"\n    e: [1]\n"
            )),
            [
                "s.yaml:5:5: invalid label name `bad-name` [letters, digits and `_`, not starting with a digit]",
                "s.yaml:6:8: invalid JSON Pointer in `map.labels.a`: `~` in a JSON Pointer must be written `~0`, and `/` inside a key `~1` [invalid JSON Pointer]",
                "s.yaml:7:8: invalid template in `map.labels.b`: invalid handlebars syntax: expected identifier, helper_parameter, block_param, or trailing_tilde_to_omit_whitespace [invalid template]",
                "s.yaml:8:8: unknown variable `params.x` in `map.labels.c`: a mapping's templates read only `body` [not `body.…`]",
                "s.yaml:9:8: unknown template helper `shout` in `map.labels.d` [no such helper]",
                "s.yaml:10:8: wrong type for `map.labels.e`: expected a JSON Pointer, a template or a text, found a list [expected a JSON Pointer, a template or a text]",
            ]
        );
        assert_eq!(
            errors(&format!(
                "{head}map:\n  id: 7\n  lables: {{}}\n  when: {{ field: action, values: [] }}\n  resolved: {{ values: [{{a: 1}}] }}\n"
            )),
            [
                "s.yaml:4:3: `map.id` needs `map.starts_at` too [an id without a start time] (help: map when the event started (e.g. `starts_at: /workflow_run/created_at`), so that re-sends of one id are one episode; or map neither, and each delivery id is its own event)",
                "s.yaml:5:3: unknown field `lables` in `map` [unknown field] (help: did you mean `labels`?)",
                "s.yaml:6:18: invalid JSON Pointer `action` in `map.when.field`: a JSON Pointer starts with `/`, e.g. `/action` [not a JSON Pointer]",
                "s.yaml:6:34: `map.when.values` is empty: nothing could match [empty list]",
                "s.yaml:7:3: missing field `field` in `map.resolved` [`field` is required here] (help: add it, e.g. `field: /action`)",
                "s.yaml:7:24: wrong type for `map.resolved.values[0]`: expected a string, found a mapping [expected a string]",
            ]
        );
    }

    #[test]
    fn yaml_problems_are_located() {
        assert_eq!(
            errors("source: a\nsource: b\n"),
            [
                "s.yaml:2:1: duplicate key `source` [defined again here] (help: YAML keys must be unique in a mapping; remove or rename one of them)"
            ]
        );
        assert_eq!(
            errors(""),
            [
                "s.yaml:1:1: the file is empty (help: a source definition starts with `source: github-ci`)"
            ]
        );
        assert_eq!(
            errors("- a\n"),
            [
                "s.yaml:1:1: expected a mapping of fields, found a list (help: a source definition is a YAML mapping such as `source: github-ci`)"
            ]
        );
        let syntax = errors("source: [a\n");
        assert_eq!(syntax.len(), 1);
        assert!(
            syntax[0].starts_with("s.yaml:2:1: invalid YAML"),
            "{syntax:?}"
        );
    }

    #[test]
    fn a_directory_loads_every_file_and_refuses_a_name_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write("a.yaml", "source: grafana-prod\nkind: grafana\n");
        write("b.yml", "source: broken\nkind: nope\n");
        write("c.yaml", "source: grafana-prod\nkind: grafana\n");
        write("d.yaml", &GITHUB.replace("github-ci", "zeta"));
        write(".hidden.yaml", "not: loaded\n");
        write("notes.txt", "not a definition\n");
        let mut sources = Sources::new();
        let (defs, diags) = load_dir(dir.path(), &mut sources);
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["grafana-prod", "zeta"]);
        let shown = lines(&sources, &diags);
        let a = dir.path().join("a.yaml").display().to_string();
        let b = dir.path().join("b.yml").display().to_string();
        let c = dir.path().join("c.yaml").display().to_string();
        assert_eq!(
            shown,
            [
                format!(
                    "{b}:2:7: invalid value for `kind`: expected one of webhook, grafana, pagerduty, found `nope` [unknown value]"
                ),
                format!(
                    "{c}:1:9: source `grafana-prod` is defined twice: in {a} and in {c} [defined again here] (help: each source needs its own name; rename or remove one of them)"
                ),
            ]
        );
        assert_eq!(sources.records(&diags)[1].related[0].file, a);
        let (_, diags) = load_dir(&dir.path().join("missing"), &mut sources);
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].message.starts_with("cannot read directory"),
            "{diags:?}"
        );
    }
}
