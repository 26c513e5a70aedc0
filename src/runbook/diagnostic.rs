//! Problems found in runbook files: what is wrong, how bad, where exactly (file and byte span),
//! and what to do about it. How they are shown is [`crate::runbook::sources`]'s.

use std::ops::Range;

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
    /// A matcher Alertmanager reads otherwise than it looks (`a==x` compares with `=x`).
    SuspiciousMatcher,
    /// A runbook that credits no toil.
    NoToil,
    /// A template that bypasses shell quoting.
    RawInterpolation,
    /// A setting with no effect where it stands.
    Ineffective,
    /// Two source definitions share a name.
    DuplicateSource,
    /// A runbook triggers on a source that is neither built in nor defined.
    UndefinedSource,
}

impl Kind {
    /// Every kind, in declaration order.
    ///
    /// A new variant must be listed here too: `Kind::position` matches every variant without a
    /// wildcard and looks each up here at compile time, so a missing one does not compile.
    pub const ALL: [Kind; 26] = [
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
        Kind::SuspiciousMatcher,
        Kind::NoToil,
        Kind::RawInterpolation,
        Kind::Ineffective,
        Kind::DuplicateSource,
        Kind::UndefinedSource,
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
            Kind::SuspiciousMatcher => const { Kind::find(Kind::SuspiciousMatcher) },
            Kind::NoToil => const { Kind::find(Kind::NoToil) },
            Kind::RawInterpolation => const { Kind::find(Kind::RawInterpolation) },
            Kind::Ineffective => const { Kind::find(Kind::Ineffective) },
            Kind::DuplicateSource => const { Kind::find(Kind::DuplicateSource) },
            Kind::UndefinedSource => const { Kind::find(Kind::UndefinedSource) },
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
}
