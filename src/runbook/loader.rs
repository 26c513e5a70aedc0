//! Finds runbook files and parses them into raw spec types, keeping positions.
//!
//! serde_yaml is the YAML parser; it reports positions for syntax errors. Type errors are found
//! by deserializing the parsed value with serde_path_to_error, which names the path of the bad
//! value; the [`SourceMap`] turns that path into a position. To report every type error of a file
//! in one pass, the offending node is removed and deserialization repeated; what is left is
//! returned with a record of what was taken out ([`Pruned`]), so that the validator checks the
//! rest of the file too.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::runbook::diagnostic::{Diagnostic, Kind};
use crate::runbook::pruned::Pruned;
use crate::runbook::source_map::{Seg, SourceMap, display_path};
use crate::runbook::sources::Sources;
use crate::runbook::spec::RawRunbook;
use crate::runbook::suggest::did_you_mean;

/// A parsed runbook file.
#[derive(Debug)]
pub struct ParsedFile {
    /// Id in [`Sources`].
    pub file: usize,
    /// Path on disk.
    pub path: PathBuf,
    /// The raw runbook, when the file is a YAML mapping: whole when its shape is right,
    /// otherwise without the parts of a wrong shape (listed in `pruned`).
    pub raw: Option<RawRunbook>,
    /// The parts of a wrong shape taken out of `raw` (each reported as an error).
    pub pruned: Pruned,
    /// Positions of its values, by their paths in `raw`.
    pub map: SourceMap,
}

/// Whether a path names a runbook file.
pub fn is_runbook_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Lists runbook files under the given files and directories (recursively), sorted.
/// Paths that cannot be read are reported as diagnostics.
pub fn discover(paths: &[PathBuf], sources: &mut Sources) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut files, &mut diags, sources);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            let id = sources.add(path.display().to_string(), "");
            diags.push(
                Diagnostic::error(Kind::Io, id, 0..0, "no such file or directory")
                    .with_help("give the path of a runbook file or of a directory holding them"),
            );
        }
    }
    files.sort();
    files.dedup();
    (files, diags)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>, sources: &mut Sources) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            let id = sources.add(dir.display().to_string(), "");
            diags.push(
                Diagnostic::error(Kind::Io, id, 0..0, format!("cannot read directory: {e}"))
                    .with_help_opt(io_help(dir, &e)),
            );
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files, diags, sources);
        } else if is_runbook_file(&path) {
            files.push(path);
        }
    }
}

/// Reads and parses one file; problems go to `diags`.
pub fn load_file(path: &Path, sources: &mut Sources, diags: &mut Vec<Diagnostic>) -> ParsedFile {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => {
                let file = sources.add(name, text);
                parse(file, path, sources, diags)
            }
            Err(e) => {
                let file = sources.add(name, String::from_utf8_lossy(e.as_bytes()).to_string());
                let at = e.utf8_error().valid_up_to();
                diags.push(
                    Diagnostic::error(
                        Kind::YamlSyntax,
                        file,
                        at..at + 1,
                        "file is not valid UTF-8",
                    )
                    .with_label("invalid byte here")
                    .with_help("save the runbook as UTF-8"),
                );
                empty(file, path)
            }
        },
        Err(e) => {
            let file = sources.add(name, "");
            diags.push(
                Diagnostic::error(Kind::Io, file, 0..0, format!("cannot read file: {e}"))
                    .with_help_opt(io_help(path, &e)),
            );
            empty(file, path)
        }
    }
}

/// What to do about a path that cannot be read, when the error says.
fn io_help(path: &Path, e: &std::io::Error) -> Option<String> {
    match e.kind() {
        std::io::ErrorKind::NotFound => std::fs::read_link(path).ok().map(|target| {
            format!(
                "it is a symbolic link to `{}`, which does not exist; fix or remove the link",
                target.display()
            )
        }),
        std::io::ErrorKind::PermissionDenied => {
            Some("make it readable by the user untoil runs as".into())
        }
        _ => None,
    }
}

fn empty(file: usize, path: &Path) -> ParsedFile {
    ParsedFile {
        file,
        path: path.to_path_buf(),
        raw: None,
        pruned: Pruned::default(),
        map: SourceMap::default(),
    }
}

/// Parses a file already in `sources`.
pub fn parse(
    file: usize,
    path: &Path,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> ParsedFile {
    let text = sources.text(file);
    let mut parsed = empty(file, path);
    parsed.map = SourceMap::build(text);
    let mut value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            // serde_yaml rejects duplicate keys with the mapping's position only; the source
            // map knows both occurrences.
            if !report_duplicates(file, &parsed.map, diags) {
                diags.push(syntax_error(file, text, &e));
            }
            return parsed;
        }
    };
    if report_duplicates(file, &parsed.map, diags) {
        return parsed;
    }
    if let Err(e) = value.apply_merge() {
        diags.push(Diagnostic::error(
            Kind::YamlSyntax,
            file,
            0..0,
            format!("invalid YAML merge key: {e}"),
        ));
        return parsed;
    }
    match &value {
        Value::Mapping(_) => {}
        Value::Null => {
            diags.push(
                Diagnostic::error(Kind::MissingField, file, 0..0, "the file is empty")
                    .with_help("a runbook needs at least `name`, `owner` and `steps`"),
            );
            return parsed;
        }
        other => {
            diags.push(
                Diagnostic::error(
                    Kind::WrongType,
                    file,
                    parsed.map.value_span(&[]),
                    format!(
                        "expected a mapping of runbook fields, found {}",
                        kind_of(other)
                    ),
                )
                .with_help("a runbook file is a YAML mapping such as `name: my-runbook`"),
            );
            return parsed;
        }
    }
    // Deserialize; on each error, report it, remove the offending node and try again so that
    // every shape error of the file is reported at once, and the rest can be validated.
    let mut last_removed: Vec<Seg> = Vec::new();
    let mut last_how = Removal::Key;
    for _ in 0..200 {
        match serde_path_to_error::deserialize::<_, RawRunbook>(value.clone()) {
            Ok(raw) => {
                parsed.raw = Some(raw);
                return parsed;
            }
            Err(e) => {
                let path = convert_path(e.path());
                let message = e.inner().to_string();
                let shown = parsed.pruned.source_path(&path);
                let (diag, mut remove) =
                    shape_error(file, text, &parsed.map, &path, &shown, &message);
                // After an item was removed, its place holds the next item, which may fail on
                // its own; any other place that fails again was reported already.
                let again = remove == last_removed && !remove.is_empty();
                match last_how {
                    // An item emptied in place fails again (in a list of scalars): it goes.
                    Removal::Emptied if again => {}
                    // Taking out the node did not help: take out its parent.
                    Removal::Key if again => {
                        remove.pop();
                    }
                    _ => diags.push(diag),
                }
                last_removed = remove.clone();
                let Some(how) = remove_node(&mut value, &remove) else {
                    return parsed;
                };
                last_how = how;
                // Positions and the record follow the value, whose later items may move up.
                parsed.map.forget(&remove, how == Removal::Emptied);
                if message.starts_with("unknown field") && how == Removal::Key {
                    parsed.pruned.record_unknown_field(&remove);
                } else {
                    parsed.pruned.record(&remove, how == Removal::Item);
                }
            }
        }
    }
    parsed
}

/// Parses a file already in `sources` as one YAML mapping with positions, reporting syntax
/// errors, duplicate keys and bad merge keys as for runbooks: for other file formats kept beside
/// runbooks (source definitions), which walk the mapping themselves. `what` names the format in
/// messages ("a source definition"); `example` is the smallest valid file's first line.
pub fn parse_mapping(
    file: usize,
    sources: &Sources,
    what: &str,
    example: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(serde_yaml::Mapping, SourceMap)> {
    let text = sources.text(file);
    let map = SourceMap::build(text);
    let mut value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            if !report_duplicates(file, &map, diags) {
                diags.push(syntax_error(file, text, &e));
            }
            return None;
        }
    };
    if report_duplicates(file, &map, diags) {
        return None;
    }
    if let Err(e) = value.apply_merge() {
        diags.push(Diagnostic::error(
            Kind::YamlSyntax,
            file,
            0..0,
            format!("invalid YAML merge key: {e}"),
        ));
        return None;
    }
    match value {
        Value::Mapping(m) => Some((m, map)),
        Value::Null => {
            diags.push(
                Diagnostic::error(Kind::MissingField, file, 0..0, "the file is empty")
                    .with_help(format!("{what} starts with `{example}`")),
            );
            None
        }
        other => {
            diags.push(
                Diagnostic::error(
                    Kind::WrongType,
                    file,
                    map.value_span(&[]),
                    format!("expected a mapping of fields, found {}", kind_of(&other)),
                )
                .with_help(format!("{what} is a YAML mapping such as `{example}`")),
            );
            None
        }
    }
}

fn syntax_error(file: usize, text: &str, e: &serde_yaml::Error) -> Diagnostic {
    let offset = e.location().map(|l| l.index()).unwrap_or(0).min(text.len());
    // serde_yaml writes "problem at line X column Y, context at line A column B"; the caret
    // says where, so the positions leave the message and the context becomes a second label.
    let full = e.to_string();
    let position = regex::Regex::new(r" at line (\d+) column (\d+)").ok();
    let mut context_at = None;
    let message = match &position {
        Some(re) => {
            for (i, c) in re.captures_iter(&full).enumerate() {
                if i == 1 {
                    let line: usize = c[1].parse().unwrap_or(1);
                    let col: usize = c[2].parse().unwrap_or(1);
                    context_at = Some(offset_of(text, line, col));
                }
            }
            re.replace_all(&full, "").to_string()
        }
        None => full,
    };
    let (problem, context) = match message.split_once(", ") {
        Some((p, c)) => (p.to_string(), Some(c.to_string())),
        None => (message.clone(), None),
    };
    let mut d = Diagnostic::error(
        Kind::YamlSyntax,
        file,
        offset..offset + 1,
        format!("invalid YAML: {message}"),
    )
    .with_label(problem);
    if let (Some(at), Some(context)) = (context_at, context) {
        d = d.with_secondary(file, at..at + 1, context);
    }
    let line_start = text
        .get(..offset)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .and_then(|t| t.lines().next())
        .unwrap_or("");
    let unquoted_template = line
        .split_once(": ")
        .or_else(|| line.trim_start().strip_prefix("- ").map(|rest| ("-", rest)))
        .filter(|(_, value)| starts_template(value.trim_start(), 0));
    if let Some((key, value)) = unquoted_template {
        let value = value.split(" #").next().unwrap_or(value).trim();
        let key = key.trim_start().trim_start_matches("- ");
        let example = if value.contains(['"', '\\']) || value.chars().count() > 60 {
            "`run: \"{{params.path}}\"`".to_string()
        } else if key == "-" {
            format!("`- \"{value}\"`")
        } else {
            format!("`{key}: \"{value}\"`")
        };
        d = d.with_help(format!(
            "YAML reads an unquoted `{{{{...}}}}` as a mapping: quote values that start with \
             {{{{, e.g. {example}"
        ));
    } else if message.contains("found character that cannot start any token") {
        d = d.with_help(
            "quote the value, e.g. `run: \"...\"`, when it starts with `@`, `` ` `` or `%`",
        );
    } else if message.contains("mapping values are not allowed") {
        d = d.with_help("a value containing `: ` must be quoted");
    } else if message.contains("end of stream") && message.contains("quoted scalar") {
        d = d.with_help("close the quote that this value starts with");
    } else if message.contains("did not find expected")
        || message.contains("could not find expected")
    {
        d = d.with_help("check the indentation and that quotes and brackets are closed");
    }
    d
}

/// Byte offset of a 1-based line and column (in characters).
fn offset_of(text: &str, line: usize, col: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = &text[start.min(text.len())..];
    start
        + rest
            .char_indices()
            .nth(col.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

/// Reports the duplicate keys the source map found; returns whether there were any.
fn report_duplicates(file: usize, map: &SourceMap, diags: &mut Vec<Diagnostic>) -> bool {
    for d in &map.duplicates {
        diags.push(
            Diagnostic::error(
                Kind::DuplicateKey,
                file,
                d.second.clone(),
                format!("duplicate key `{}`", d.key),
            )
            .with_label("defined again here")
            .with_secondary(file, d.first.clone(), "first defined here")
            .with_help("YAML keys must be unique in a mapping; remove or rename one of them"),
        );
    }
    !map.duplicates.is_empty()
}

fn convert_path(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// What a YAML value is, as messages say it (`a list`, `a mapping`...).
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "an empty value",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The mapping keys along `path`, list indexes left out: what names a field's place in the format.
fn keys_of(path: &[Seg]) -> Vec<&str> {
    path.iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect()
}

/// Fields of each raw type, by the path that leads to it, for "did you mean".
fn fields_at(path: &[Seg]) -> &'static [&'static str] {
    let keys = keys_of(path);
    match keys.as_slice() {
        [] => &[
            "name",
            "description",
            "owner",
            "service",
            "tags",
            "toil",
            "timeout",
            "idempotent",
            "triggers",
            "guards",
            "params",
            "inputs",
            "env",
            "secrets",
            "verify",
            "steps",
            "on_approval_requested",
        ],
        ["toil"] => &["manual_minutes", "approval_minutes", "per_item"],
        ["toil", "per_item"] => &["minutes", "count", "max_items"],
        ["triggers"] => &["schedule", "timezone", "catchup", "alert"],
        ["triggers", "alert"] => &["matchers", "on", "cancel_on_resolve"],
        ["guards"] => &[
            "concurrency",
            "key",
            "overlap",
            "cooldown",
            "max_runs",
            "trip_after_failures",
            "approval",
            "approval_timeout",
        ],
        ["guards", "max_runs"] => &["count", "per"],
        ["params", _] => &["default", "description", "type", "pattern", "allowed"],
        ["inputs", _] => &[
            "label",
            "annotation",
            "type",
            "pattern",
            "allowed",
            "default",
            "description",
        ],
        ["secrets", _] => &["env", "file"],
        ["verify"] => &["alert_resolves_within", "credit"],
        ["steps"] | ["on_approval_requested"] => &[
            "name",
            "run",
            "shell",
            "http",
            "plugin",
            "report",
            "with",
            "when",
            "timeout",
            "retries",
            "toil_minutes",
            "noop_exit_codes",
            "noop_when",
            "continue_on_error",
            "env",
            "workdir",
        ],
        ["steps" | "on_approval_requested", "retries"] => &["attempts", "backoff"],
        ["steps" | "on_approval_requested", "report"] => {
            &["period", "since", "format", "top", "assume_minutes"]
        }
        ["steps" | "on_approval_requested", "http"] => &[
            "method",
            "url",
            "headers",
            "query",
            "json",
            "body",
            "timeout",
            "expect_status",
        ],
        _ => &[],
    }
}

/// Whether the field at `path` holds a duration (a string such as `30s` in the file).
fn is_duration_field(path: &[Seg]) -> bool {
    let keys = keys_of(path);
    matches!(
        keys.as_slice(),
        ["timeout"]
            | ["triggers", "catchup"]
            | ["guards", "cooldown" | "approval_timeout"]
            | ["guards", "max_runs", "per"]
            | ["verify", "alert_resolves_within"]
            | ["steps" | "on_approval_requested", "timeout"]
            | ["steps" | "on_approval_requested", "retries", "backoff"]
            | ["steps" | "on_approval_requested", "http", "timeout"]
    )
}

/// A number of seconds as a duration runbooks accept: `30s`, or `1500ms` for `1.5`.
fn seconds_as_duration(number: &str) -> String {
    match number.parse::<u64>() {
        Ok(n) => format!("{n}s"),
        Err(_) => match number.parse::<f64>() {
            Ok(f) if (0.0..1e12).contains(&f) => {
                format!("{}ms", (f * 1000.0).round())
            }
            _ => "30s".to_string(),
        },
    }
}

/// Builds the diagnostic for one serde error at `path` (named `shown` in messages: its path in
/// the file) and says which node to remove before retrying.
fn shape_error(
    file: usize,
    text: &str,
    map: &SourceMap,
    path: &[Seg],
    shown: &[Seg],
    message: &str,
) -> (Diagnostic, Vec<Seg>) {
    let message = message.split(" at line ").next().unwrap_or(message);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("").to_string();
        // serde_path_to_error names the unknown field itself as the last path segment.
        let (parent, field_path) = if path.last() == Some(&Seg::Key(field.clone())) {
            (path[..path.len() - 1].to_vec(), path.to_vec())
        } else {
            let mut p = path.to_vec();
            p.push(Seg::Key(field.clone()));
            (path.to_vec(), p)
        };
        let fields = fields_at(&parent);
        let place = if parent.is_empty() {
            "a runbook".to_string()
        } else {
            format!(
                "`{}`",
                display_path(&shown[..parent.len().min(shown.len())])
            )
        };
        let mut d = Diagnostic::error(
            Kind::UnknownField,
            file,
            map.key_span(&field_path),
            format!("unknown field `{field}` in {place}"),
        )
        .with_label("unknown field");
        d = match did_you_mean(&field, fields.iter().copied()) {
            Some(hint) => d.with_help(hint),
            None if !fields.is_empty() => {
                d.with_help(format!("expected one of: {}", fields.join(", ")))
            }
            None => d,
        };
        return (d, field_path);
    }
    let where_ = if path.is_empty() {
        "the runbook".to_string()
    } else {
        format!("`{}`", display_path(shown))
    };
    let span = map.value_span(path);
    let span_start = span.start;
    let source_text = text.get(span.clone()).unwrap_or("");
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let duration = is_duration_field(path) && expected.trim() == "a string";
        let expected = if duration {
            "a duration such as 30s".to_string()
        } else {
            humanize_expected(expected)
        };
        let found = humanize_found(found);
        let mut d = Diagnostic::error(
            Kind::WrongType,
            file,
            span,
            format!("wrong type for {where_}: expected {expected}, found {found}"),
        )
        .with_label(format!("expected {expected}"));
        let found_bool = found.starts_with("boolean");
        if duration && (found.starts_with("integer") || found.starts_with("floating point")) {
            d = d.with_help(format!(
                "a duration needs a unit: write `{}` for {source_text} seconds, or e.g. `5m`, `1h30m`",
                seconds_as_duration(source_text)
            ));
        } else if duration {
            d = d.with_help("write a number and a unit, e.g. `30s`, `10m`, `1h30m` or `2d`");
        } else if found_bool && expected.contains("string") {
            d = d.with_help(format!(
                "YAML read `{source_text}` as a boolean; quote it to keep it text: \"{source_text}\""
            ));
        } else if expected.contains("boolean")
            && matches!(
                source_text.to_lowercase().as_str(),
                "yes" | "no" | "on" | "off" | "y" | "n"
            )
        {
            d = d.with_help(format!(
                "`{source_text}` is a string in YAML 1.2, not a boolean; write true or false"
            ));
        } else if found.starts_with("an empty value") {
            d = d.with_help("give it a value, or remove the key");
        } else if source_text.starts_with('{') && starts_template(text, span_start) {
            d = d.with_help(format!(
                "YAML reads an unquoted `{{{{...}}}}` as a mapping: quote values that start with \
                 {{{{, e.g. {}",
                quoted_example(text, span_start, path)
            ));
        }
        return (d, path.to_vec());
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another value"));
        let d = Diagnostic::error(
            Kind::InvalidValue,
            file,
            span,
            format!(
                "invalid value for {where_}: expected {}, found {}",
                humanize_expected(expected),
                humanize_found(found)
            ),
        );
        return (d, path.to_vec());
    }
    let d = Diagnostic::error(Kind::WrongType, file, span, format!("{where_}: {message}"));
    (d, path.to_vec())
}

/// Whether the text at `at` starts with `{{` (spaces allowed between): an unquoted template,
/// which YAML reads as a flow mapping.
fn starts_template(text: &str, at: usize) -> bool {
    text.get(at..)
        .and_then(|rest| rest.strip_prefix('{'))
        .is_some_and(|rest| rest.trim_start().starts_with('{'))
}

/// The value at `at` (the rest of its line) written quoted under its key, for the help of an
/// unquoted template.
fn quoted_example(text: &str, at: usize, path: &[Seg]) -> String {
    let line = text.get(at..).and_then(|r| r.lines().next()).unwrap_or("");
    let value = line.split(" #").next().unwrap_or(line).trim_end();
    let key = match path.last() {
        Some(Seg::Key(k)) => format!("{k}: "),
        _ => "- ".to_string(),
    };
    if value.contains('"') || value.contains('\\') || value.chars().count() > 60 {
        format!("`{key}\"{{{{params.path}}}}\"`")
    } else {
        format!("`{key}\"{value}\"`")
    }
}

fn humanize_expected(e: &str) -> String {
    let e = e.trim();
    if e.starts_with("struct Raw") || e == "a map" {
        return "a mapping".into();
    }
    match e {
        "u32" | "u16" | "u64" | "usize" => "a whole number".into(),
        "f64" | "f32" => "a number".into(),
        "a sequence" => "a list".into(),
        _ => e.to_string(),
    }
}

fn humanize_found(f: &str) -> String {
    let f = f.trim();
    if f == "unit value" {
        return "an empty value".into();
    }
    match f {
        "sequence" => "a list".into(),
        "map" => "a mapping".into(),
        _ => f.to_string(),
    }
}

fn path_is_empty_mapping(v: &Value) -> bool {
    matches!(v, Value::Mapping(m) if m.is_empty())
}

/// How a node was taken out of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// A mapping key and its value.
    Key,
    /// A list item, removed (the items after it move up).
    Item,
    /// A list item that is a mapping, emptied in place (so later indexes still match).
    Emptied,
}

/// Removes the node at `path` from `value`; says how, or None when nothing was removed.
fn remove_node(value: &mut Value, path: &[Seg]) -> Option<Removal> {
    let (last, parent_path) = path.split_last()?;
    let mut node = value;
    for seg in parent_path {
        node = match (seg, node) {
            (Seg::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str())?,
            (Seg::Index(i), Value::Sequence(s)) => s.get_mut(*i)?,
            _ => return None,
        };
    }
    match (last, node) {
        (Seg::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).map(|_| Removal::Key),
        // A bad mapping item is emptied rather than removed, so that later indexes still match
        // the source positions; a bad scalar item is removed.
        (Seg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            if matches!(s[*i], Value::Mapping(_)) && !path_is_empty_mapping(&s[*i]) {
                s[*i] = Value::Mapping(Default::default());
                Some(Removal::Emptied)
            } else {
                s.remove(*i);
                Some(Removal::Item)
            }
        }
        _ => None,
    }
}
