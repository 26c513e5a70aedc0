//! The texts of the files diagnostics point into, and how diagnostics are shown: `path:line:col`,
//! the source line and a caret under the span (via codespan-reporting) for people, or JSON
//! records for editors and CI.

use std::ops::Range;

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term;

use crate::runbook::diagnostic::{Diagnostic, Label, Record, Related, Severity};

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

    /// How many files were added (their ids are `0..len`).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no file was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
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
    use crate::runbook::diagnostic::Kind;

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
