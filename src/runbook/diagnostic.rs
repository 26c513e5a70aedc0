//! Problems found in runbook files, with their exact place, and how they are shown.
//!
//! A [`Diagnostic`] names a file span; [`Sources`] holds the file texts so the renderer can print
//! `path:line:col`, the source line and a caret under the span (via codespan-reporting), or a
//! JSON record for editors and CI.

use std::ops::Range;

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term;
use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The runbook cannot be loaded.
    Error,
    /// The runbook loads, but probably does not do what its author meant.
    Warning,
}

/// What kind of problem, stable for tools (`--format json` prints it as `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The file is not valid YAML.
    YamlSyntax,
    /// A mapping repeats a key.
    DuplicateKey,
    /// A field the format does not have.
    UnknownField,
    /// A value of the wrong type.
    WrongType,
    /// A required field is absent.
    MissingField,
    /// A value outside what the field accepts.
    InvalidValue,
    /// Two runbooks share a name.
    DuplicateRunbook,
    /// Two steps of a runbook share a name.
    DuplicateStep,
    /// A crontab expression that does not parse.
    BadCron,
    /// A time zone name that is not in the IANA database.
    UnknownTimezone,
    /// A duration that does not parse.
    BadDuration,
    /// An Alertmanager matcher that does not parse.
    BadMatcher,
    /// A regular expression that does not compile.
    InvalidRegex,
    /// A Handlebars template that does not compile.
    TemplateSyntax,
    /// A template variable that cannot exist when the template renders.
    UnknownVariable,
    /// A template helper that does not exist.
    UnknownHelper,
    /// A plugin that is not installed.
    UnknownPlugin,
    /// A file or directory that cannot be read.
    Io,
    /// A runbook with no schedule or alert trigger.
    NoTrigger,
    /// Alert matchers that no alert can satisfy.
    NeverMatches,
    /// A runbook that credits no toil.
    NoToil,
    /// A template that bypasses shell quoting.
    RawInterpolation,
    /// A setting with no effect where it stands.
    Ineffective,
}

impl Kind {
    /// Every kind, in declaration order.
    ///
    /// A new variant must be listed here too: `Kind::position` matches every variant without a
    /// wildcard and looks each up here at compile time, so a missing one does not compile.
    pub const ALL: [Kind; 23] = [
        Kind::YamlSyntax,
        Kind::DuplicateKey,
        Kind::UnknownField,
        Kind::WrongType,
        Kind::MissingField,
        Kind::InvalidValue,
        Kind::DuplicateRunbook,
        Kind::DuplicateStep,
        Kind::BadCron,
        Kind::UnknownTimezone,
        Kind::BadDuration,
        Kind::BadMatcher,
        Kind::InvalidRegex,
        Kind::TemplateSyntax,
        Kind::UnknownVariable,
        Kind::UnknownHelper,
        Kind::UnknownPlugin,
        Kind::Io,
        Kind::NoTrigger,
        Kind::NeverMatches,
        Kind::NoToil,
        Kind::RawInterpolation,
        Kind::Ineffective,
    ];

    /// Where this kind stands in [`Kind::ALL`]. The match has no wildcard, so a new variant needs
    /// an arm, and each arm is evaluated at compile time, so that arm fails to compile while
    /// the variant is missing from `ALL`.
    const fn position(self) -> usize {
        match self {
            Kind::YamlSyntax => const { Kind::find(Kind::YamlSyntax) },
            Kind::DuplicateKey => const { Kind::find(Kind::DuplicateKey) },
            Kind::UnknownField => const { Kind::find(Kind::UnknownField) },
            Kind::WrongType => const { Kind::find(Kind::WrongType) },
            Kind::MissingField => const { Kind::find(Kind::MissingField) },
            Kind::InvalidValue => const { Kind::find(Kind::InvalidValue) },
            Kind::DuplicateRunbook => const { Kind::find(Kind::DuplicateRunbook) },
            Kind::DuplicateStep => const { Kind::find(Kind::DuplicateStep) },
            Kind::BadCron => const { Kind::find(Kind::BadCron) },
            Kind::UnknownTimezone => const { Kind::find(Kind::UnknownTimezone) },
            Kind::BadDuration => const { Kind::find(Kind::BadDuration) },
            Kind::BadMatcher => const { Kind::find(Kind::BadMatcher) },
            Kind::InvalidRegex => const { Kind::find(Kind::InvalidRegex) },
            Kind::TemplateSyntax => const { Kind::find(Kind::TemplateSyntax) },
            Kind::UnknownVariable => const { Kind::find(Kind::UnknownVariable) },
            Kind::UnknownHelper => const { Kind::find(Kind::UnknownHelper) },
            Kind::UnknownPlugin => const { Kind::find(Kind::UnknownPlugin) },
            Kind::Io => const { Kind::find(Kind::Io) },
            Kind::NoTrigger => const { Kind::find(Kind::NoTrigger) },
            Kind::NeverMatches => const { Kind::find(Kind::NeverMatches) },
            Kind::NoToil => const { Kind::find(Kind::NoToil) },
            Kind::RawInterpolation => const { Kind::find(Kind::RawInterpolation) },
            Kind::Ineffective => const { Kind::find(Kind::Ineffective) },
        }
    }

    /// Index of `kind` in [`Kind::ALL`]; a compile-time error when it is not there.
    const fn find(kind: Kind) -> usize {
        let mut i = 0;
        while i < Kind::ALL.len() {
            if Kind::ALL[i] as u8 == kind as u8 {
                return i;
            }
            i += 1;
        }
        panic!("a `Kind` variant is missing from `Kind::ALL`")
    }
}

/// `Kind::ALL` lists each kind once (and, through [`Kind::position`], every kind).
const _: () = {
    let mut i = 0;
    while i < Kind::ALL.len() {
        assert!(
            Kind::ALL[i].position() == i,
            "`Kind::ALL` lists a kind twice"
        );
        i += 1;
    }
};

/// A span of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Index into [`Sources`].
    pub file: usize,
    /// Byte range in the file.
    pub span: Range<usize>,
    /// Text printed beside the caret.
    pub message: String,
}

/// A diagnostic placed by line and column, as `--format json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// File name.
    pub file: String,
    /// 1-based line of the start.
    pub line: usize,
    /// 1-based column (in characters) of the start.
    pub column: usize,
    /// 1-based line of the end.
    pub end_line: usize,
    /// 1-based column of the end.
    pub end_column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What kind of problem.
    pub code: Kind,
    /// One line saying what is wrong.
    pub message: String,
    /// Text beside the caret.
    pub label: String,
    /// What to do about it.
    pub help: Vec<String>,
    /// Other places involved.
    pub related: Vec<Related>,
}

/// Another place a [`Record`] involves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Related {
    /// File name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Text beside the caret.
    pub message: String,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What kind of problem.
    pub kind: Kind,
    /// One line saying what is wrong.
    pub message: String,
    /// Where.
    pub primary: Label,
    /// Other places involved (e.g. the first definition of a duplicate).
    pub secondary: Vec<Label>,
    /// What to do about it ("did you mean ...", what was expected).
    pub help: Vec<String>,
}

impl Diagnostic {
    /// An error at a span.
    pub fn error(kind: Kind, file: usize, span: Range<usize>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, kind, file, span, message)
    }

    /// A warning at a span.
    pub fn warning(
        kind: Kind,
        file: usize,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Warning, kind, file, span, message)
    }

    fn new(
        severity: Severity,
        kind: Kind,
        file: usize,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity,
            kind,
            message: message.into(),
            primary: Label {
                file,
                span,
                message: String::new(),
            },
            secondary: Vec::new(),
            help: Vec::new(),
        }
    }

    /// Sets the text beside the caret.
    pub fn with_label(mut self, text: impl Into<String>) -> Self {
        self.primary.message = text.into();
        self
    }

    /// Adds another place involved.
    pub fn with_secondary(
        mut self,
        file: usize,
        span: Range<usize>,
        text: impl Into<String>,
    ) -> Self {
        self.secondary.push(Label {
            file,
            span,
            message: text.into(),
        });
        self
    }

    /// Adds a help line.
    pub fn with_help(mut self, text: impl Into<String>) -> Self {
        self.help.push(text.into());
        self
    }

    /// Adds a help line when there is one.
    pub fn with_help_opt(self, text: Option<String>) -> Self {
        match text {
            Some(t) => self.with_help(t),
            None => self,
        }
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The closest candidate to a misspelt `word`, for "did you mean `x`?".
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| !c.is_empty() && *c != word)
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.chars().count().max(word.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// The texts of the files diagnostics point into.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    files: SimpleFiles<String, String>,
    count: usize,
}

impl Sources {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file; returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> usize {
        self.count += 1;
        let mut text = text.into();
        // A UTF-8 byte order mark is not content (some Windows editors write it).
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        self.files.add(name.into(), text)
    }

    /// The display name of a file.
    pub fn name(&self, file: usize) -> String {
        self.files
            .get(file)
            .map(|f| f.name().clone())
            .unwrap_or_default()
    }

    /// The text of a file.
    pub fn text(&self, file: usize) -> &str {
        self.files
            .get(file)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, file: usize, offset: usize) -> (usize, usize) {
        let line = self.files.line_index(file, offset).unwrap_or(0);
        let col = self.files.column_number(file, line, offset).unwrap_or(1);
        (line + 1, col)
    }

    /// Renders diagnostics as text: `error: ...`, `--> path:line:col`, the line and a caret.
    pub fn render(&self, diagnostics: &[Diagnostic]) -> String {
        let config = term::Config {
            chars: term::Chars::ascii(),
            ..term::Config::default()
        };
        let mut out = String::new();
        for d in diagnostics {
            let rendered = term::emit_into_string(&config, &self.files, &self.to_codespan(d))
                .unwrap_or_else(|_| {
                    format!("{}: {}\n", severity_word(d.severity), shown(&d.message))
                });
            out.push_str(&rendered);
        }
        out
    }

    fn to_codespan(&self, d: &Diagnostic) -> cs::Diagnostic<usize> {
        let mut labels = vec![self.label(cs::LabelStyle::Primary, &d.primary)];
        labels.extend(
            d.secondary
                .iter()
                .map(|l| self.label(cs::LabelStyle::Secondary, l)),
        );
        let base = match d.severity {
            Severity::Error => cs::Diagnostic::error(),
            Severity::Warning => cs::Diagnostic::warning(),
        };
        base.with_message(shown(&d.message))
            .with_labels(labels)
            .with_notes(
                d.help
                    .iter()
                    .map(|h| format!("help: {}", shown(h)))
                    .collect(),
            )
    }

    /// Clamps a label to its file so that rendering never fails on a stale span.
    fn label(&self, style: cs::LabelStyle, l: &Label) -> cs::Label<usize> {
        let len = self.text(l.file).len();
        let start = l.span.start.min(len);
        let end = l.span.end.clamp(start, len);
        cs::Label::new(style, l.file, start..end).with_message(shown(&l.message))
    }

    /// The diagnostics as records with file, line and column (the JSON form and the dashboard's).
    pub fn records(&self, diagnostics: &[Diagnostic]) -> Vec<Record> {
        diagnostics
            .iter()
            .map(|d| {
                let (line, column) = self.line_col(d.primary.file, d.primary.span.start);
                let (end_line, end_column) = self.line_col(d.primary.file, d.primary.span.end);
                let related = d
                    .secondary
                    .iter()
                    .map(|l| {
                        let (line, column) = self.line_col(l.file, l.span.start);
                        Related {
                            file: self.name(l.file),
                            line,
                            column,
                            message: shown(&l.message),
                        }
                    })
                    .collect();
                Record {
                    file: self.name(d.primary.file),
                    line,
                    column,
                    end_line,
                    end_column,
                    severity: d.severity,
                    code: d.kind,
                    message: shown(&d.message),
                    label: shown(&d.primary.message),
                    help: d.help.iter().map(|h| shown(h)).collect(),
                    related,
                }
            })
            .collect()
    }

    /// Renders diagnostics as JSON records (one array) for editors and CI.
    pub fn render_json(&self, diagnostics: &[Diagnostic]) -> serde_json::Value {
        // Through a Value, whose map sorts the keys: the output stays as it always was.
        serde_json::to_value(self.records(diagnostics)).unwrap_or_default()
    }

    /// Moves every label onto character boundaries inside its file: a caret past the end becomes
    /// an empty one at the end, and one that starts a multi-byte character covers all of it
    /// (parsers report byte offsets and one-byte carets).
    pub fn snap(&self, diagnostics: &mut [Diagnostic]) {
        for d in diagnostics {
            for l in std::iter::once(&mut d.primary).chain(d.secondary.iter_mut()) {
                l.span = snap_span(self.text(l.file), l.span.clone());
            }
        }
    }

    /// Sorts diagnostics by file name, then position, errors before warnings at one place.
    pub fn sort(&self, diagnostics: &mut [Diagnostic]) {
        diagnostics.sort_by(|a, b| {
            (self.name(a.primary.file), a.primary.span.start, a.severity).cmp(&(
                self.name(b.primary.file),
                b.primary.span.start,
                b.severity,
            ))
        });
    }
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// `span` clamped to `text` and widened to the characters it touches.
fn snap_span(text: &str, span: Range<usize>) -> Range<usize> {
    let len = text.len();
    let mut start = span.start.min(len);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, len);
    while !text.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// Longest word (run of non-spaces) a message shows whole; longer ones lose their middle.
const MAX_WORD: usize = 96;
/// Longest message shown.
const MAX_MESSAGE: usize = 2000;

/// A message as shown to people: control characters from the input escaped, so a NUL or an
/// escape sequence in a message never reaches the terminal (the source line is shown as it is
/// in the file), and huge values from the input shortened, so a 1 MB name is not printed again
/// in every message about it.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE + 16));
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let mut escaped = String::with_capacity(word.len());
        for c in word.chars() {
            if c.is_control() && c != '\n' && c != '\t' {
                escaped.extend(c.escape_unicode());
            } else {
                escaped.push(c);
            }
        }
        let count = escaped.chars().count();
        if count > MAX_WORD {
            let head: String = escaped.chars().take(64).collect();
            let tail: String = escaped.chars().skip(count - 16).collect();
            out.push_str(&format!(
                "{head}…[{} characters left out]…{tail}",
                count - 80
            ));
        } else {
            out.push_str(&escaped);
        }
        if out.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("… (message shortened)");
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_kinds_are_listed_in_declaration_order_with_distinct_codes() {
        let mut codes = std::collections::BTreeSet::new();
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?} out of declaration order");
            let code = serde_json::to_value(kind).unwrap_or_default();
            assert!(
                code.is_string() && codes.insert(code.to_string()),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn did_you_mean_finds_close_names_only() {
        let fields = ["name", "owner", "service", "steps"];
        assert_eq!(
            did_you_mean("nmae", fields),
            Some("did you mean `name`?".into())
        );
        assert_eq!(
            did_you_mean("ownr", fields),
            Some("did you mean `owner`?".into())
        );
        assert_eq!(did_you_mean("zzzzzz", fields), None);
    }

    #[test]
    fn rendering_shows_path_line_column_and_a_caret() {
        let mut sources = Sources::new();
        let f = sources.add("rb.yaml", "name: x\nnmae: y\n");
        let d = Diagnostic::error(Kind::UnknownField, f, 8..12, "unknown field `nmae`")
            .with_label("not a runbook field")
            .with_help("did you mean `name`?");
        let text = sources.render(&[d]);
        assert_eq!(
            text,
            "error: unknown field `nmae`\n  --> rb.yaml:2:1\n  |\n2 | nmae: y\n  | ^^^^ not a runbook field\n  |\n  = help: did you mean `name`?\n\n"
        );
    }

    #[test]
    fn json_records_carry_line_and_column() {
        let mut sources = Sources::new();
        let f = sources.add("rb.yaml", "name: x\nnmae: y\n");
        let d = Diagnostic::warning(Kind::NoTrigger, f, 8..12, "w");
        let json = sources.render_json(&[d]);
        assert_eq!(json[0]["line"], 2);
        assert_eq!(json[0]["column"], 1);
        assert_eq!(json[0]["severity"], "warning");
        assert_eq!(json[0]["code"], "no-trigger");
    }

    #[test]
    fn messages_escape_control_characters_and_shorten_huge_values() {
        assert_eq!(shown("unknown field `a\u{0}b`"), "unknown field `a\\u{0}b`");
        assert_eq!(shown("line one\nline two"), "line one\nline two");
        let huge = format!("invalid runbook name `{}` here", "x".repeat(100_000));
        let s = shown(&huge);
        assert!(s.len() < 200, "{s}");
        assert!(s.starts_with("invalid runbook name `xxxx"), "{s}");
        assert!(s.ends_with("xxx` here"), "{s}");
        assert!(s.contains("[99922 characters left out]"), "{s}");
        let many = "word ".repeat(2000);
        let s = shown(&many);
        assert!(s.len() <= MAX_MESSAGE + 30 && s.ends_with("(message shortened)"));
        let multibyte = "é".repeat(500);
        assert!(shown(&multibyte).chars().count() < 120);
        let short = "invalid schedule `61 * * * *`";
        assert_eq!(shown(short), short);
    }

    #[test]
    fn rendered_diagnostics_do_not_repeat_a_huge_value() {
        let mut sources = Sources::new();
        let text = format!("name: {}\n", "X".repeat(50_000));
        let file = sources.add("rb.yaml", text.clone());
        let name = "X".repeat(50_000);
        let d = Diagnostic::error(
            Kind::InvalidValue,
            file,
            6..text.len() - 1,
            format!("invalid runbook name `{name}`"),
        )
        .with_help(format!("try `{}`", name.to_lowercase()));
        let rendered = sources.render(std::slice::from_ref(&d));
        // The source line once, the message and the help shortened.
        assert!(rendered.len() < 2 * 50_000 + 1000, "{}", rendered.len());
        let json = sources.render_json(&[d]);
        assert!(json.to_string().len() < 1000);
    }

    #[test]
    fn snapped_spans_stay_in_the_file_and_on_whole_characters() {
        let text = "a: é\nb: 日本\n";
        assert_eq!(snap_span(text, 3..4), 3..5, "é is two bytes");
        assert_eq!(snap_span(text, 4..5), 3..5, "starting inside é");
        assert_eq!(snap_span(text, 9..10), 9..12, "日 is three bytes");
        assert_eq!(
            snap_span(text, text.len()..text.len() + 1),
            text.len()..text.len()
        );
        assert_eq!(snap_span(text, 0..2), 0..2);
        assert_eq!(snap_span(text, 40..50), text.len()..text.len());
    }
}
