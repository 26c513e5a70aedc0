//! Label matchers in Alertmanager's own syntax (`name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"`), so that users can paste them from their routes. As in
//! Alertmanager, regexes are anchored at both ends (`^(?:re)$`) and a label that an alert does not
//! carry counts as the empty string.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: the value equals the given string.
    Equal,
    /// `!=`: the value differs from the given string.
    NotEqual,
    /// `=~`: the whole value matches the regex.
    Regex,
    /// `!~`: the whole value does not match the regex.
    NotRegex,
}

impl MatchOp {
    /// The operator as written in a matcher (`=`, `!=`, `=~` or `!~`).
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    /// Whether the operator's value is a regular expression.
    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Alertmanager label matcher, e.g. `severity=~"critical|warning"`.
///
/// Build it with [`Matcher::parse`] or [`Matcher::new`]; the regex of `=~`/`!~` is compiled
/// then, so changing `value` afterwards does not change what a regex matcher matches.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// How the label value is compared.
    pub op: MatchOp,
    /// The string or (for `=~`/`!~`) the unanchored regex the label value is compared with.
    pub value: String,
    /// The anchored regex `^(?:value)$`, for `=~` and `!~` only.
    re: Option<Regex>,
    /// The text it was parsed from, trimmed (none when built with [`Matcher::new`]).
    written: Option<String>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

/// A matcher that was rejected; `offset` is the byte offset in the input where the problem is, so
/// the caller can put a caret under it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MatcherError {
    /// What is wrong and what was expected.
    pub message: String,
    /// Byte offset of the problem in the parsed input.
    pub offset: usize,
    /// Length in bytes of the offending text (0 when something is missing).
    pub len: usize,
    /// An optional hint on how to fix it.
    pub help: Option<String>,
}

impl MatcherError {
    fn new(message: impl Into<String>, offset: usize, len: usize) -> Self {
        MatcherError {
            message: message.into(),
            offset,
            len,
            help: None,
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

const EXAMPLE_HELP: &str = "a matcher looks like severity=\"critical\" (operators: =, !=, =~, !~)";
const REGEX_HELP: &str =
    "the value of =~ and !~ is a regular expression, matched against the whole label value";

impl Matcher {
    /// Builds a matcher from its parts, compiling the regex of `=~`/`!~` (errors have offset 0).
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let name = name.into();
        let value = value.into();
        if name.is_empty() {
            return Err(MatcherError::new("label name must not be empty", 0, 0));
        }
        let re = if op.is_regex() {
            Some(compile_anchored(&value).map_err(|e| {
                MatcherError::new(format!("invalid regex in matcher: {e}"), 0, 0)
                    .with_help(REGEX_HELP)
            })?)
        } else {
            None
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
            written: None,
        })
    }

    /// The matcher as its author wrote it (trimmed), or its canonical form when it was built
    /// from parts. Shown to people, who recognise their own text: the canonical form doubles
    /// backslashes (`".+\\.service"` for `".+\.service"`).
    pub fn written(&self) -> String {
        match &self.written {
            Some(w) => w.clone(),
            None => self.to_string(),
        }
    }

    /// Parses exactly one matcher in Alertmanager 0.25's syntax (see [`Matcher::parse_list`]).
    pub fn parse(s: &str) -> Result<Matcher, MatcherError> {
        let mut list = Matcher::parse_list(s)?.into_iter();
        match (list.next(), list.next()) {
            (Some(m), None) => Ok(m),
            (None, _) => {
                let at = s.len() - s.trim_start().len();
                Err(MatcherError::new("expected a label name", at, 0).with_help(EXAMPLE_HELP))
            }
            (Some(_), Some(_)) => {
                let at = first_separator(s).unwrap_or(0);
                Err(
                    MatcherError::new("expected a single matcher, found \",\"", at, 1)
                        .with_help("give each matcher as its own list item"),
                )
            }
        }
    }

    /// Parses one item of a `matchers` list as Alertmanager 0.25 does (its `ParseMatchers`):
    /// a comma-separated list of matchers, optionally wrapped in `{` and `}`, which may hold
    /// none (`""`, `{}`).
    ///
    /// A matcher is a label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`), an operator (`=`, `!=`, `=~`,
    /// `!~`) and a value, with optional ASCII whitespace around each. The value is everything
    /// up to the end, trailing whitespace removed, and may be empty (`job=`). A value that starts
    /// with `"` must end with one; inside, `\"`, `\\` and `\n` are escapes, a lone `\` is kept
    /// literally and an unescaped `"` is refused. The regex of `=~` and `!~` is `^(?:value)$`.
    pub fn parse_list(s: &str) -> Result<Vec<Matcher>, MatcherError> {
        let start = usize::from(s.starts_with('{'));
        let end = if s.len() > start && s.ends_with('}') {
            s.len() - 1
        } else {
            s.len()
        };
        let body = s.get(start..end).unwrap_or("");
        // Commas outside double quotes separate matchers; `\"` does not open or close quotes.
        let mut tokens = Vec::new();
        let (mut inside, mut escaped) = (false, false);
        let mut token_start = start;
        for (i, c) in body.char_indices() {
            match c {
                ',' if !inside => {
                    tokens.push(token_start..start + i);
                    token_start = start + i + 1;
                    continue;
                }
                ',' => {}
                '"' if escaped => escaped = false,
                '"' => inside = !inside,
                '\\' => escaped = !escaped,
                _ => escaped = false,
            }
        }
        let last = s.get(token_start..end).unwrap_or("");
        if !last.trim().is_empty() {
            let lead = last.len() - last.trim_start().len();
            tokens.push(token_start + lead..token_start + lead + last.trim().len());
        }
        tokens
            .into_iter()
            .map(|range| parse_one(s, range))
            .collect()
    }

    /// Whether the labels satisfy this matcher (a missing label is the empty string).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(&self.name).map_or("", String::as_str))
    }

    /// Whether a label value satisfies this matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|re| re.is_match(value)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|re| re.is_match(value)),
        }
    }
}

impl fmt::Display for Matcher {
    /// Canonical form: `name="value"`, the name quoted only when it is not a plain label name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_plain_label_name(&self.name) {
            f.write_str(&self.name)?;
        } else {
            write_quoted(f, &self.name)?;
        }
        f.write_str(self.op.as_str())?;
        write_quoted(f, &self.value)
    }
}

impl FromStr for Matcher {
    type Err = MatcherError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Matcher::parse(s)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Matcher::parse(&s).map_err(|e| {
            serde::de::Error::custom(format_args!(
                "invalid matcher {s:?}: {} (at byte {})",
                e.message, e.offset
            ))
        })
    }
}

/// Whether every matcher matches.
pub fn matches_all(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Regexes whose negation (`!~`) rejects every label value.
///
/// Only the `(?s)` forms: without it `.` does not match a line break (as in Alertmanager's Go
/// regexps), so `a!~".*"` still matches a value that spans lines.
const MATCH_EVERYTHING: &[&str] = &["(?s).*", "(?s:.*)", "(?s).*?", "(?s:.*?)"];
/// Regexes that match every non-empty label value.
const MATCH_NON_EMPTY: &[&str] = &["(?s).+", "(?s:.+)", "(?s).+?", "(?s:.+?)"];

/// Explains why a set of matchers can never match any alert, or returns None.
///
/// Conservative: it reports only conflicts it can prove, i.e. when a label is pinned to a finite
/// set of values (by `=` or by a regex that is a plain alternation of literals like `a|b`) and
/// every one of them is rejected by another matcher on that label, when `!~` is given a
/// match-everything regex like `(?s).*`, and when `alertname` can only be empty (every alert has an
/// alertname).
pub fn never_matches(matchers: &[Matcher]) -> Option<String> {
    for m in matchers {
        if m.op != MatchOp::NotRegex {
            continue;
        }
        if MATCH_EVERYTHING.contains(&m.value.as_str()) {
            return Some(format!(
                "{m} rejects every value of label {:?}, so it can never match",
                m.name
            ));
        }
        if m.name == "alertname" && MATCH_NON_EMPTY.contains(&m.value.as_str()) {
            return Some(format!(
                "{m} can never match: every alert has a non-empty alertname"
            ));
        }
    }

    let mut names: Vec<&str> = Vec::new();
    for m in matchers {
        if !names.contains(&m.name.as_str()) {
            names.push(&m.name);
        }
    }
    for name in names {
        let group: Vec<&Matcher> = matchers.iter().filter(|m| m.name == name).collect();
        let Some((source, candidates)) = group
            .iter()
            .find_map(|m| finite_values(m).map(|values| (*m, values)))
        else {
            continue;
        };
        let mut rejecters: Vec<&Matcher> = Vec::new();
        let mut empty_alertname = false;
        let mut satisfiable = false;
        for candidate in &candidates {
            if name == "alertname" && candidate.is_empty() {
                empty_alertname = true;
                continue;
            }
            match group.iter().find(|m| !m.matches_value(candidate)) {
                Some(m) => {
                    if !rejecters.iter().any(|r| std::ptr::eq(*r, *m)) {
                        rejecters.push(m);
                    }
                }
                None => {
                    satisfiable = true;
                    break;
                }
            }
        }
        if satisfiable {
            continue;
        }
        let others: Vec<String> = rejecters
            .iter()
            .filter(|r| !std::ptr::eq(**r, source))
            .map(|r| r.to_string())
            .collect();
        if others.is_empty() {
            // Only the "alertname is never empty" rule rejected the candidates.
            return Some(format!(
                "{source} can never match: every alert has a non-empty alertname"
            ));
        }
        let mut msg = format!(
            "no value of label {name:?} satisfies {source} together with {}",
            others.join(" and ")
        );
        if empty_alertname {
            msg.push_str(" (and every alert has a non-empty alertname)");
        }
        return Some(msg);
    }
    None
}

/// The finite set of values a matcher accepts, when it is `=` or a regex made only of literal
/// alternatives (`a|b`, `(a|b)`, `(?:db\.1|db\.2)`); None otherwise.
fn finite_values(m: &Matcher) -> Option<Vec<String>> {
    match m.op {
        MatchOp::Equal => Some(vec![m.value.clone()]),
        MatchOp::Regex => {
            let values = literal_alternatives(&m.value)?;
            // Safety net: never trust the extraction over the real regex.
            values.iter().all(|v| m.matches_value(v)).then_some(values)
        }
        MatchOp::NotEqual | MatchOp::NotRegex => None,
    }
}

/// Splits a regex that is a plain alternation of literals into those literals.
fn literal_alternatives(re: &str) -> Option<Vec<String>> {
    let inner = re
        .strip_prefix("(?:")
        .or_else(|| re.strip_prefix('('))
        .and_then(|r| r.strip_suffix(')'))
        .filter(|r| !r.contains(['(', ')']))
        .unwrap_or(re);
    let mut out = vec![String::new()];
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push(String::new()),
            '\\' => {
                let next = chars.next()?;
                if !next.is_ascii_punctuation() {
                    return None;
                }
                out.last_mut()?.push(next);
            }
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$' => return None,
            c => out.last_mut()?.push(c),
        }
    }
    Some(out)
}

/// Compiles `^(?:value)$`, as Alertmanager does (so `a)|(b` is accepted, as `^(?:a)|(b)$`),
/// refusing what Go's regexp refuses and the regex crate would take.
fn compile_anchored(value: &str) -> Result<Regex, String> {
    // Translated whole: in Go, `\Q` or `(?` at the end of the value reach into the anchoring.
    let anchored = go_literals(&format!("^(?:{value})$"));
    let re = Regex::new(&anchored).map_err(condense_regex_error)?;
    match regex_syntax::ast::parse::Parser::new().parse(&anchored) {
        Ok(ast) => regex_syntax::ast::visit(&ast, GoDialect)?,
        Err(e) => return Err(e.kind().to_string()),
    }
    Ok(re)
}

/// Writes what Go's regexp reads as literal text so that the regex crate reads it so too: a `{`
/// that does not start a repeat count (`a{,3}`, `{x}`, `x{01}`) and text quoted between `\Q`
/// and `\E` (or, without `\E`, to the end); Go's octal escapes as `\x{..}`, `\<` and `\>` as
/// the characters; and Go's empty flag group `(?)` as `(?:)`.
fn go_literals(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match (c, chars.get(i + 1).copied()) {
            ('\\', Some('Q')) => {
                let mut literal = String::new();
                i += 2;
                while let Some(&c) = chars.get(i) {
                    if c == '\\' && chars.get(i + 1) == Some(&'E') {
                        i += 2;
                        break;
                    }
                    literal.push(c);
                    i += 1;
                }
                out.push_str(&regex_syntax::escape(&literal));
            }
            // `\p{Greek}`, `\x{10FFFF}`: braces that belong to the escape.
            ('\\', Some(d @ ('p' | 'P' | 'x'))) if chars.get(i + 2) == Some(&'{') => {
                out.push('\\');
                out.push(d);
                i += 2;
                while let Some(&c) = chars.get(i) {
                    out.push(c);
                    i += 1;
                    if c == '}' {
                        break;
                    }
                }
            }
            // Octal escapes (`\0`, `\012`, `\101`; not a lone `\1`, a backreference Go refuses
            // too), which the regex crate does not read.
            ('\\', Some(d @ '0'..='7'))
                if d == '0' || chars.get(i + 2).is_some_and(|c| ('0'..='7').contains(c)) =>
            {
                let digits: String = chars[i + 1..]
                    .iter()
                    .take(3)
                    .take_while(|c| ('0'..='7').contains(*c))
                    .collect();
                let code = u32::from_str_radix(&digits, 8).unwrap_or(0);
                out.push_str(&format!("\\x{{{code:X}}}"));
                i += 1 + digits.chars().count();
            }
            // An escaped `<` or `>` is the character in Go, a word boundary in the regex crate.
            ('\\', Some(d @ ('<' | '>'))) => {
                out.push(d);
                i += 2;
            }
            ('\\', Some(d)) => {
                out.push('\\');
                out.push(d);
                i += 2;
            }
            // `(?)` sets no flag in Go; the regex crate reads a `?` with nothing to repeat.
            ('(', Some('?')) if chars.get(i + 2) == Some(&')') => {
                out.push_str("(?:)");
                i += 3;
            }
            ('{', _) if !go_repeat(&chars[i..]) => {
                out.push_str("\\{");
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Whether `s` starts with a repeat count as Go's regexp reads one: `{n}`, `{n,}` or `{n,m}`,
/// numbers without leading zeros.
fn go_repeat(s: &[char]) -> bool {
    fn number(s: &[char]) -> Option<&[char]> {
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        match digits {
            0 => None,
            n if n >= 2 && s[0] == '0' => None,
            n => Some(&s[n..]),
        }
    }
    let Some(rest) = s.strip_prefix(&['{']).and_then(number) else {
        return false;
    };
    match rest {
        ['}', ..] | [',', '}', ..] => true,
        [',', more @ ..] => matches!(number(more), Some(['}', ..])),
        _ => false,
    }
}

/// Go's regexp (RE2 syntax, which Alertmanager compiles matchers with) refuses some regexes the
/// regex crate accepts: stacked repetitions (`a**`, `a{2}{3}`), counts over 1000, flags other
/// than `i`, `m`, `s` and `U`, and `(?<name>...)` groups. Class set operations (`[a&&b]`,
/// `[a--b]`, `[a~~b]`) are refused too: Go reads those characters literally, so the matcher
/// would select other alerts than in Alertmanager.
struct GoDialect;

impl regex_syntax::ast::Visitor for GoDialect {
    type Output = ();
    type Err = String;

    fn finish(self) -> Result<(), String> {
        Ok(())
    }

    fn visit_class_set_binary_op_pre(
        &mut self,
        _op: &regex_syntax::ast::ClassSetBinaryOp,
    ) -> Result<(), String> {
        Err(
            "`&&`, `--` and `~~` in a class mean something else in Go's regexp \
             (Alertmanager's); escape them, e.g. `\\&\\&`"
                .into(),
        )
    }

    fn visit_pre(&mut self, ast: &regex_syntax::ast::Ast) -> Result<(), String> {
        use regex_syntax::ast::{
            Ast, Flag, FlagsItemKind, GroupKind, RepetitionKind, RepetitionRange,
        };
        let flags = match ast {
            Ast::Repetition(rep) => {
                if matches!(*rep.ast, Ast::Repetition(_)) {
                    return Err("invalid nested repetition operator (as Go reads it)".into());
                }
                let counts = match rep.op.kind {
                    RepetitionKind::Range(RepetitionRange::Exactly(n))
                    | RepetitionKind::Range(RepetitionRange::AtLeast(n)) => vec![n],
                    RepetitionKind::Range(RepetitionRange::Bounded(m, n)) => vec![m, n],
                    _ => Vec::new(),
                };
                if counts.iter().any(|n| *n > 1000) {
                    return Err("repeat count over 1000 (as Go reads it)".into());
                }
                return Ok(());
            }
            Ast::Flags(set) => &set.flags,
            Ast::Group(group) => match &group.kind {
                GroupKind::NonCapturing(flags) => flags,
                GroupKind::CaptureName {
                    starts_with_p: false,
                    ..
                } => return Err("a named group is written (?P<name>...) (as Go reads it)".into()),
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        for item in &flags.items {
            if let FlagsItemKind::Flag(flag) = &item.kind
                && !matches!(
                    flag,
                    Flag::CaseInsensitive
                        | Flag::MultiLine
                        | Flag::DotMatchesNewLine
                        | Flag::SwapGreed
                )
            {
                return Err(format!(
                    "unsupported flag {flag:?}: only i, m, s and U (as Go reads it)"
                ));
            }
        }
        Ok(())
    }
}

/// The regex crate's (multi-line) error message condensed to one line.
fn condense_regex_error(e: regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .map(str::to_owned)
            .unwrap_or_else(|| s.split_whitespace().collect::<Vec<_>>().join(" ")),
        regex::Error::CompiledTooBig(limit) => {
            format!("the compiled regex exceeds the size limit of {limit} bytes")
        }
        other => other
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Whitespace as Alertmanager's matcher regex reads `\s`.
fn is_ascii_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// Byte offset of the first comma that separates two matchers of `s`, if any.
fn first_separator(s: &str) -> Option<usize> {
    let (mut inside, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            ',' if !inside => return Some(i),
            ',' => {}
            '"' if escaped => escaped = false,
            '"' => inside = !inside,
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
    }
    None
}

/// Parses the one matcher at `range` of `src` (Alertmanager 0.25's `ParseMatcher`); error
/// offsets are into `src`.
fn parse_one(src: &str, range: std::ops::Range<usize>) -> Result<Matcher, MatcherError> {
    let end = range.end.min(src.len());
    let mut p = Cursor {
        src: src.get(..end).unwrap_or(src),
        pos: range.start.min(end),
    };
    p.skip_ws();

    // Label name.
    let name_start = p.pos;
    match p.peek() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
            while p
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                p.bump();
            }
        }
        Some('"') => {
            return Err(MatcherError::new(
                "expected a label name, found '\"'",
                p.pos,
                1,
            )
            .with_help(
                "Alertmanager 0.25 takes label names unquoted: letters, digits, `_` and `:`, not starting with a digit",
            ));
        }
        Some(c) => {
            return Err(MatcherError::new(
                format!("expected a label name, found {c:?}"),
                p.pos,
                c.len_utf8(),
            )
            .with_help("label names are letters, digits, `_` and `:`, not starting with a digit"));
        }
        None => {
            return Err(
                MatcherError::new("expected a label name", p.pos, 0).with_help(EXAMPLE_HELP)
            );
        }
    }
    let name = p.slice(name_start, p.pos).to_owned();

    // Operator.
    p.skip_ws();
    let op = if p.eat("=~") {
        MatchOp::Regex
    } else if p.eat("=") {
        MatchOp::Equal
    } else if p.eat("!=") {
        MatchOp::NotEqual
    } else if p.eat("!~") {
        MatchOp::NotRegex
    } else {
        let found = p.peek();
        let err = MatcherError::new(
            format!("expected an operator (=, !=, =~ or !~) after label name {name:?}"),
            p.pos,
            found.map_or(0, char::len_utf8),
        );
        let help = match found {
            Some('~') => "did you mean =~ (regex match)?".to_owned(),
            Some('"' | '\'') => {
                format!("put an operator between the name and the value, e.g. {name}=\"...\"")
            }
            Some(c) if !c.is_whitespace() && c != '!' => format!(
                "label names may contain only letters, digits, `_` and `:`; {c:?} cannot be part of one"
            ),
            _ => EXAMPLE_HELP.to_owned(),
        };
        return Err(err.with_help(help));
    };

    // Value: the rest, surrounding whitespace removed.
    p.skip_ws();
    let raw_start = p.pos;
    let raw = p.rest().trim_end_matches(is_ascii_space);
    let (body, body_start, quoted) = match raw.strip_prefix('"') {
        Some(inner) => (inner, raw_start + 1, true),
        None => (raw, raw_start, false),
    };
    let mut value = String::new();
    let mut escaped = false;
    let mut closed = false;
    for (i, c) in body.char_indices() {
        if escaped {
            escaped = false;
            match c {
                'n' => value.push('\n'),
                '"' | '\\' => value.push(c),
                other => {
                    value.push('\\');
                    value.push(other);
                }
            }
            continue;
        }
        match c {
            '\\' if i + 1 < body.len() => escaped = true,
            '"' if quoted && i + 1 == body.len() => closed = true,
            '"' => {
                let mut err = MatcherError::new(
                    format!("unescaped double quote in the value of label {name:?}"),
                    body_start + i,
                    1,
                );
                err = if raw.starts_with('=') && op == MatchOp::Equal {
                    err.with_help("Alertmanager writes equality with a single =")
                } else {
                    err.with_help("quote the whole value and escape quotes inside it as \\\"")
                };
                return Err(err);
            }
            c => value.push(c),
        }
    }
    if quoted && !closed {
        return Err(
            MatcherError::new("unterminated quoted value", raw_start, raw.len())
                .with_help("add the closing \"; write a double quote inside it as \\\""),
        );
    }
    let value_end = raw_start + raw.len();

    let re = if op.is_regex() {
        Some(compile_anchored(&value).map_err(|e| {
            MatcherError::new(
                format!("invalid regex in matcher: {e}"),
                raw_start,
                value_end - raw_start,
            )
            .with_help(REGEX_HELP)
        })?)
    } else {
        None
    };
    // The author's own text of this matcher, shown to people (`Matcher::written`).
    let written = src.get(range.start..end).map(|t| t.trim().to_owned());
    Ok(Matcher {
        name,
        op,
        value,
        re,
        written,
    })
}

/// Whether a name is a label name Alertmanager 0.25 parses (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
fn is_plain_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Writes `s` double-quoted, escaping `\`, `"` and newline as Alertmanager does.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// A position in the matcher being parsed (always on a char boundary).
struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn slice(&self, start: usize, end: usize) -> &str {
        self.src.get(start..end).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ascii_space) {
            self.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(s: &str) -> Matcher {
        Matcher::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e:?}"))
    }

    // --- matcher parsing -------------------------------------------------------------------

    #[test]
    fn valid_matchers_parse_into_name_operator_and_value() {
        use MatchOp::*;
        let cases: &[(&str, &str, MatchOp, &str)] = &[
            ("severity=critical", "severity", Equal, "critical"),
            (r#"severity="critical""#, "severity", Equal, "critical"),
            (
                r#"  severity  =  "critical"  "#,
                "severity",
                Equal,
                "critical",
            ),
            (r#"severity!="info""#, "severity", NotEqual, "info"),
            (
                r#"severity =~ "critical|warning""#,
                "severity",
                Regex,
                "critical|warning",
            ),
            (
                r#"severity!~"info|debug""#,
                "severity",
                NotRegex,
                "info|debug",
            ),
            ("severity!~info", "severity", NotRegex, "info"),
            ("instance=~db-.+", "instance", Regex, "db-.+"),
            (r#"foo="""#, "foo", Equal, ""),
            (r#"msg="say \"hi\"""#, "msg", Equal, r#"say "hi""#),
            (r#"path="C:\\temp""#, "path", Equal, r"C:\temp"),
            (r#"msg="line1\nline2""#, "msg", Equal, "line1\nline2"),
            (
                r#"instance=~"db\.example\.com""#,
                "instance",
                Regex,
                r"db\.example\.com",
            ),
            (r"instance=~db\d+", "instance", Regex, r"db\d+"),
            (r#"msg="a = b, c!""#, "msg", Equal, "a = b, c!"),
            (r#"team="données""#, "team", Equal, "données"),
            (r#"{alertname="DiskFull"}"#, "alertname", Equal, "DiskFull"),
            (
                r#"{ alertname = DiskFull }"#,
                "alertname",
                Equal,
                "DiskFull",
            ),
            ("_private=x", "_private", Equal, "x"),
            ("Label_9=v", "Label_9", Equal, "v"),
            // As Alertmanager 0.25 reads them:
            ("job=", "job", Equal, ""),
            ("job =  ", "job", Equal, ""),
            ("severity=~", "severity", Regex, ""),
            ("a:b=x", "a:b", Equal, "x"),
            (":a=x", ":a", Equal, "x"),
            ("a=b c d", "a", Equal, "b c d"),
            ("a==x", "a", Equal, "=x"),
            ("a='x'", "a", Equal, "'x'"),
            // The item's closing brace is taken off first, as Alertmanager does.
            ("a={x}", "a", Equal, "{x"),
            (r"a=\", "a", Equal, r"\"),
            (r#"a="\q""#, "a", Equal, r"\q"),
            (r#"{a="x""#, "a", Equal, "x"),
            (r#"a="x"}"#, "a", Equal, "x"),
            ("a=~x)|(y", "a", Regex, "x)|(y"),
        ];
        for (input, name, op, value) in cases {
            let got = Matcher::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e:?}"));
            assert_eq!(
                (got.name.as_str(), got.op, got.value.as_str()),
                (*name, *op, *value),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn invalid_matchers_are_rejected_with_a_message_and_the_offset_of_the_problem() {
        let cases: &[(&str, &str, usize, usize)] = &[
            ("", "expected a label name", 0, 0),
            ("   ", "expected a label name", 3, 0),
            ("=critical", "expected a label name, found '='", 0, 1),
            (r#"1abc="x""#, "expected a label name, found '1'", 0, 1),
            (
                r#""service.name"="db""#,
                "expected a label name, found '\"'",
                0,
                1,
            ),
            (" {a=b}", "expected a label name, found '{'", 1, 1),
            (
                "severity",
                r#"expected an operator (=, !=, =~ or !~) after label name "severity""#,
                8,
                0,
            ),
            (
                "severity critical",
                r#"expected an operator (=, !=, =~ or !~) after label name "severity""#,
                9,
                1,
            ),
            (
                r#"service.name="db""#,
                r#"expected an operator (=, !=, =~ or !~) after label name "service""#,
                7,
                1,
            ),
            (
                r#"severity~="x""#,
                r#"expected an operator (=, !=, =~ or !~) after label name "severity""#,
                8,
                1,
            ),
            (
                "a!x",
                r#"expected an operator (=, !=, =~ or !~) after label name "a""#,
                1,
                1,
            ),
            (r#"severity="critical"#, "unterminated quoted value", 9, 9),
            (
                r#"severity="critical\""#,
                "unterminated quoted value",
                9,
                11,
            ),
            (
                r#"severity=="critical""#,
                r#"unescaped double quote in the value of label "severity""#,
                10,
                1,
            ),
            (
                r#"a=x""#,
                r#"unescaped double quote in the value of label "a""#,
                3,
                1,
            ),
            (
                r#"a="x"y"#,
                r#"unescaped double quote in the value of label "a""#,
                4,
                1,
            ),
            (
                r#"severity=~"[crit""#,
                "invalid regex in matcher: unclosed character class",
                10,
                7,
            ),
            (
                "severity=~crit))",
                "invalid regex in matcher: unopened group",
                10,
                6,
            ),
            (
                r#"a="x",b="y""#,
                r#"expected a single matcher, found ",""#,
                5,
                1,
            ),
            (",", "expected a label name", 0, 0),
        ];
        for (input, message, offset, len) in cases {
            let err = Matcher::parse(input).expect_err(input);
            assert_eq!(
                (err.message.as_str(), err.offset, err.len),
                (*message, *offset, *len),
                "input {input:?}"
            );
            assert!(err.offset + err.len <= input.len(), "span inside {input:?}");
        }
    }

    #[test]
    fn errors_carry_a_help_text_where_a_fix_is_obvious() {
        let err = Matcher::parse(r#"severity=="critical""#).expect_err("double =");
        assert!(err.help.as_deref().is_some_and(|h| h.contains("single =")));
        let err = Matcher::parse(r#""service.name"="db""#).expect_err("quoted name");
        assert!(err.help.as_deref().is_some_and(|h| h.contains("unquoted")));
    }

    #[test]
    fn a_list_item_holds_any_number_of_matchers_as_in_alertmanager() {
        let parse = |s: &str| {
            Matcher::parse_list(s)
                .unwrap_or_else(|e| panic!("{s:?}: {e:?}"))
                .iter()
                .map(Matcher::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(parse(r#"{a="x", b!~"y|z", }"#), [r#"a="x""#, r#"b!~"y|z""#]);
        assert_eq!(parse("a=b,c=d"), [r#"a="b""#, r#"c="d""#]);
        // A comma inside quotes is part of the value, also after an escaped quote.
        assert_eq!(parse(r#"a="x,\"y,z""#), [r#"a="x,\"y,z""#]);
        assert!(parse("").is_empty());
        assert!(parse("{}").is_empty());
        assert!(parse("  ").is_empty());
        // An empty matcher before a comma is an error, as in Alertmanager.
        let err = Matcher::parse_list(",a=b").expect_err("empty first matcher");
        assert_eq!(err.message, "expected a label name");
        let err = Matcher::parse_list(r#"a=b, c="#).map(|l| l.len());
        assert_eq!(err, Ok(2));
    }

    #[test]
    fn regex_error_messages_are_condensed_to_one_line() {
        let err = Matcher::parse(r#"a=~"(unclosed""#).expect_err("bad regex");
        assert!(
            err.message.starts_with("invalid regex in matcher: "),
            "{}",
            err.message
        );
        assert!(!err.message.contains('\n'), "{}", err.message);
    }

    #[test]
    fn display_writes_the_canonical_quoted_form_that_parses_back_to_the_same_matcher() {
        let cases: &[(&str, &str)] = &[
            ("severity=critical", r#"severity="critical""#),
            (" severity != info ", r#"severity!="info""#),
            ("a=~.+", r#"a=~".+""#),
            (r#"a!~"x|y""#, r#"a!~"x|y""#),
            (r#"msg="say \"hi\"\nbye""#, r#"msg="say \"hi\"\nbye""#),
            (r#"i=~"db\.x""#, r#"i=~"db\\.x""#),
            ("a:b=", r#"a:b="""#),
            (r#"{ _a="" }"#, r#"_a="""#),
        ];
        for (input, canonical) in cases {
            let parsed = m(input);
            assert_eq!(parsed.to_string(), *canonical, "input {input:?}");
            assert_eq!(m(canonical), parsed, "round trip of {input:?}");
        }
    }

    #[test]
    fn written_is_the_text_as_given_and_canonical_for_built_matchers() {
        assert_eq!(
            m(r#"  name=~".+\.service" "#).written(),
            r#"name=~".+\.service""#
        );
        assert_eq!(m("severity=critical").written(), "severity=critical");
        let built = Matcher::new("i", MatchOp::Regex, r"db\.x").expect("valid");
        assert_eq!(built.written(), r#"i=~"db\\.x""#);
    }

    #[test]
    fn matchers_deserialize_from_strings_and_serialize_to_canonical_form() {
        let parsed: Vec<Matcher> =
            serde_json::from_str(r#"["severity=critical", "env!~\"dev|test\""]"#).expect("valid");
        assert_eq!(
            parsed,
            vec![m(r#"severity="critical""#), m(r#"env!~"dev|test""#)]
        );
        assert_eq!(
            serde_json::to_string(&parsed).expect("serializable"),
            r#"["severity=\"critical\"","env!~\"dev|test\""]"#
        );
        let err = serde_json::from_str::<Matcher>(r#""severity""#).expect_err("no operator");
        assert!(err.to_string().contains("expected an operator"), "{err}");
    }

    #[test]
    fn new_builds_matchers_and_rejects_invalid_regexes() {
        let built = Matcher::new("severity", MatchOp::Regex, "crit.*").expect("valid");
        assert_eq!(built, m(r#"severity=~"crit.*""#));
        assert!(built.matches(&labels(&[("severity", "critical")])));
        let err = Matcher::new("a", MatchOp::NotRegex, "[").expect_err("invalid regex");
        assert!(err.message.starts_with("invalid regex in matcher:"));
        assert!(Matcher::new("", MatchOp::Equal, "x").is_err());
    }

    // --- matching ----------------------------------------------------------------------------

    #[test]
    fn regexes_match_as_go_reads_them() {
        // A `{` that starts no repeat count is the character.
        assert!(m(r#"a=~"x{,3}""#).matches_value("x{,3}"));
        assert!(m(r#"a=~"x{01}""#).matches_value("x{01}"));
        assert!(m(r#"a=~"x{2}""#).matches_value("xx"));
        // \Q...\E quotes (a repetition after it applies to its last character); octal escapes;
        // an escaped `<` is the character.
        assert!(m(r#"a=~"\\Qa.b\\E+""#).matches_value("a.bbb"));
        assert!(!m(r#"a=~"\\Qa.b\\E""#).matches_value("axb"));
        assert!(m(r#"a=~"\\101\\012""#).matches_value("A\n"));
        assert!(m(r#"a=~"\\<x\\>""#).matches_value("<x>"));
        assert!(m(r#"a=~"x(?)y""#).matches_value("xy"));
        // A regex that escapes its anchoring is read as Alertmanager reads it: `^(?:a)|(b)$`.
        let escaped = m("a=~a)|(b");
        assert!(escaped.matches_value("ax"));
        assert!(escaped.matches_value("xb"));
        assert!(!escaped.matches_value("x"));
    }

    #[test]
    fn regex_matchers_are_anchored_at_both_ends() {
        let critical = labels(&[("severity", "critical")]);
        assert!(!m(r#"severity=~"crit""#).matches(&critical));
        assert!(!m(r#"severity=~"ritical""#).matches(&critical));
        assert!(m(r#"severity=~"crit.*""#).matches(&critical));
        assert!(m(r#"severity=~"warning|critical""#).matches(&critical));
        assert!(m(r#"severity!~"crit""#).matches(&critical));
        assert!(!m(r#"severity!~"crit.*""#).matches(&critical));
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        // `^(?:a|b)$`, not `^a|b$` which would accept "ab" and "xb".
        let re = m(r#"x=~"a|b""#);
        assert!(re.matches(&labels(&[("x", "a")])));
        assert!(!re.matches(&labels(&[("x", "ab")])));
        assert!(!re.matches(&labels(&[("x", "xb")])));
    }

    #[test]
    fn equality_matchers_compare_the_whole_value_case_sensitively() {
        let l = labels(&[("severity", "critical")]);
        assert!(m("severity=critical").matches(&l));
        assert!(!m("severity=Critical").matches(&l));
        assert!(!m("severity=crit").matches(&l));
        assert!(m("severity!=crit").matches(&l));
        assert!(!m("severity!=critical").matches(&l));
    }

    #[test]
    fn an_absent_label_counts_as_the_empty_string() {
        let l = labels(&[("alertname", "DiskFull")]);
        assert!(m(r#"foo="""#).matches(&l));
        assert!(m(r#"foo!~".+""#).matches(&l));
        assert!(m(r#"foo=~".*""#).matches(&l));
        assert!(m(r#"foo!="bar""#).matches(&l));
        assert!(!m(r#"foo!="""#).matches(&l));
        assert!(!m(r#"foo=~".+""#).matches(&l));
        assert!(!m("foo=bar").matches(&l));
        // A label that is present but empty is the same as an absent one.
        assert!(m(r#"foo="""#).matches(&labels(&[("foo", "")])));
    }

    #[test]
    fn matches_all_requires_every_matcher_and_accepts_an_empty_list() {
        let l = labels(&[("alertname", "DiskFull"), ("severity", "critical")]);
        let both = [
            m("alertname=DiskFull"),
            m(r#"severity=~"critical|warning""#),
        ];
        assert!(matches_all(&both, &l));
        let one_fails = [m("alertname=DiskFull"), m("severity=warning")];
        assert!(!matches_all(&one_fails, &l));
        assert!(matches_all(&[], &l));
    }

    // --- never_matches -----------------------------------------------------------------------

    #[test]
    fn never_matches_explains_contradictions() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[r#"a="x""#, r#"a="y""#],
                r#"no value of label "a" satisfies a="x" together with a="y""#,
            ),
            (
                &[r#"a="x""#, r#"a!="x""#],
                r#"no value of label "a" satisfies a="x" together with a!="x""#,
            ),
            (
                &[r#"a="x""#, r#"a=~"y.*""#],
                r#"no value of label "a" satisfies a="x" together with a=~"y.*""#,
            ),
            (
                &[r#"a=~"x|y""#, r#"a!~"x|y""#],
                r#"no value of label "a" satisfies a=~"x|y" together with a!~"x|y""#,
            ),
            (
                &[r#"a=~"(?:x|y)""#, r#"a!="x""#, r#"a!="y""#],
                r#"no value of label "a" satisfies a=~"(?:x|y)" together with a!="x" and a!="y""#,
            ),
            (
                &[r#"alertname="""#],
                r#"alertname="" can never match: every alert has a non-empty alertname"#,
            ),
            (
                &[r#"severity="critical""#, r#"alertname=~"""#],
                r#"alertname=~"" can never match: every alert has a non-empty alertname"#,
            ),
            (
                &[r#"alertname!~"(?s).+""#],
                r#"alertname!~"(?s).+" can never match: every alert has a non-empty alertname"#,
            ),
            (
                &[r#"alertname=~"|Disk""#, r#"alertname!="Disk""#],
                r#"no value of label "alertname" satisfies alertname=~"|Disk" together with alertname!="Disk" (and every alert has a non-empty alertname)"#,
            ),
            (
                &[r#"a!~"(?s).*""#],
                r#"a!~"(?s).*" rejects every value of label "a", so it can never match"#,
            ),
        ];
        for (inputs, expected) in cases {
            let matchers: Vec<Matcher> = inputs.iter().map(|s| m(s)).collect();
            assert_eq!(
                never_matches(&matchers).as_deref(),
                Some(*expected),
                "matchers {inputs:?}"
            );
        }
    }

    #[test]
    fn never_matches_accepts_satisfiable_sets() {
        let cases: &[&[&str]] = &[
            &[],
            &[r#"a="""#],
            &[r#"a="""#, r#"b="x""#],
            &[r#"a!~".+""#],
            // `.` does not match a line break: a value that spans lines passes these.
            &[r#"a!~".*""#],
            &[r#"alertname!~".+""#],
            &[r#"a="x""#, r#"a="x""#],
            &[r#"a="x""#, r#"b="y""#],
            &[r#"a!="x""#, r#"a!="y""#],
            &[r#"a=~"x|y""#, r#"a="y""#],
            &[r#"a=~"x|y""#, r#"a!="x""#],
            &[r#"a=~"crit.*""#, r#"a!="critical""#],
            &[r#"a=~"db\.1|db\.2""#, r#"a="db.2""#],
            &[r#"alertname=~"|Disk""#],
            &[r#"alertname!="""#],
        ];
        for inputs in cases {
            let matchers: Vec<Matcher> = inputs.iter().map(|s| m(s)).collect();
            assert_eq!(never_matches(&matchers), None, "matchers {inputs:?}");
        }
        // A case-insensitive regex is not mistaken for a literal alternation.
        let ci = [m(r#"a="x""#), m(r#"a=~"(?i)X""#)];
        assert_eq!(never_matches(&ci), None);
    }

    // --- payload -----------------------------------------------------------------------------
}
