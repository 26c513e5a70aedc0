//! The forms a secret's value takes on its way out of untoil, and where a form occurs in text.
//!
//! A value leaves as given (step output, a header), shell-quoted (the rendered command of a
//! `run:` step, a script that quotes it), URL-encoded (a query, the URL in an HTTP error) or
//! JSON-escaped (a request body, plugin input and output, a JSON log line). Exact forms are
//! matched byte for byte; two forms are patterns, because the same value is spelled many ways:
//! URL-encoded (each byte as itself or `%XX` in either case, a space also as `+`: reqwest's
//! query encoding, the `url` crate's minimal one, and every other encoding set) and
//! shell-quoted (quotes and backslashes between the bytes: `shlex`'s mix of `'...'` and `"..."`,
//! POSIX `'\''`, Python's `'"'"'`, bash's `printf %q`, an escaped string in double quotes).

use crate::exec::render::shell_quote;

/// Quoting characters a shell-quoted form may put between two bytes of the value.
const QUOTING: &[u8] = b"'\"\\";
/// The most quoting characters between two bytes: Python's `'"'"'` around a `'`, twice for
/// two `'` in a row, puts `"''"` (4) between them.
const MAX_QUOTING: usize = 4;

/// How the bytes of a form are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// Byte for byte.
    Exact,
    /// Each byte of the value as itself or as `%XX` (either case); a space also as `+`.
    UrlEncoded,
    /// The bytes of the value in order, with up to 4 quotes or backslashes between two of them.
    ShellQuoted,
}

/// One form of a secret's value: bytes and how they are spelled.
#[derive(Clone, PartialEq, Eq)]
pub struct Form {
    spelling: Spelling,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Form {
    // Never the bytes: they are the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Form({:?}, {} bytes)", self.spelling, self.bytes.len())
    }
}

/// What a form makes of the text at one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Occurrence {
    /// Where the longest whole occurrence starting there ends.
    pub end: Option<usize>,
    /// The text ended while an occurrence starting there could still go on.
    pub open: bool,
}

/// Buffers for matching patterns, reused across positions (no allocation per position).
#[derive(Debug, Default)]
pub struct Positions {
    reached: Vec<usize>,
    next: Vec<usize>,
}

/// Every form of a secret's value; none for an empty value.
pub fn forms(value: &str) -> Vec<Form> {
    if value.is_empty() {
        return Vec::new();
    }
    let json = json_escaped(value);
    let mut exact = vec![
        value.to_string(),
        json_ascii(&json),
        json,
        // What `run:` commands get, and what `shlex` gives when the value has no NUL.
        shell_quote(value),
        format!("'{}'", value.replace('\'', r"'\''")),
        format!("'{}'", value.replace('\'', r#"'"'"'"#)),
    ];
    if let Ok(q) = shlex::try_quote(value) {
        exact.push(q.into_owned());
    }
    let mut out: Vec<Form> = exact
        .into_iter()
        .map(|s| Form {
            spelling: Spelling::Exact,
            bytes: s.into_bytes(),
        })
        .collect();
    out.push(Form {
        spelling: Spelling::UrlEncoded,
        bytes: value.as_bytes().to_vec(),
    });
    out.push(Form {
        spelling: Spelling::ShellQuoted,
        // `shell_quote` drops NUL bytes, which no argument can carry.
        bytes: value.bytes().filter(|b| *b != 0).collect(),
    });
    out.retain(|f| !f.bytes.is_empty());
    let mut unique: Vec<Form> = Vec::with_capacity(out.len());
    for f in out {
        if !unique.contains(&f) {
            unique.push(f);
        }
    }
    unique
}

/// The value as serde_json writes it inside a string.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_default()
        .to_string()
}

/// A JSON-escaped value with every non-ASCII character as `\uXXXX` too (Python's `json.dumps`).
fn json_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

impl Form {
    /// The shortest an occurrence can be, in bytes.
    pub fn min_len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether an occurrence can start with this byte.
    pub fn can_start(&self, b: u8) -> bool {
        let first = self.bytes.first().copied();
        first == Some(b)
            || (self.spelling == Spelling::UrlEncoded
                && (b == b'%' || (b == b'+' && first == Some(b' '))))
    }

    /// The occurrence of this form that starts at `at` in `text`, if any.
    pub fn at(&self, text: &[u8], at: usize) -> Occurrence {
        self.at_with(text, at, &mut Positions::default())
    }

    /// [`Form::at`], with buffers that a scan reuses from one position to the next.
    pub fn at_with(&self, text: &[u8], at: usize, positions: &mut Positions) -> Occurrence {
        if self.spelling == Spelling::Exact {
            let rest = text.get(at..).unwrap_or_default();
            return match rest.get(..self.bytes.len()) {
                Some(head) => Occurrence {
                    end: (head == self.bytes.as_slice()).then_some(at + self.bytes.len()),
                    open: false,
                },
                None => Occurrence {
                    end: None,
                    open: self.bytes.starts_with(rest),
                },
            };
        }
        // Every position an occurrence may have reached after the bytes matched so far (a
        // pattern can spell a byte several ways).
        let Positions { reached, next } = positions;
        reached.clear();
        reached.push(at);
        let mut open = false;
        for (i, &b) in self.bytes.iter().enumerate() {
            next.clear();
            for &t in reached.iter() {
                open |= self.step(text, t, b, i == 0, next);
            }
            if next.is_empty() {
                return Occurrence { end: None, open };
            }
            next.sort_unstable();
            next.dedup();
            std::mem::swap(reached, next);
        }
        Occurrence {
            end: reached.last().copied(),
            open,
        }
    }

    /// Matches the value's byte `b` at `t`: pushes where each spelling of it ends, and says
    /// whether the text ended before one could be told.
    fn step(&self, text: &[u8], t: usize, b: u8, first: bool, next: &mut Vec<usize>) -> bool {
        let Some(&c) = text.get(t) else {
            return true;
        };
        if c == b {
            next.push(t + 1);
        }
        match self.spelling {
            Spelling::Exact => false,
            Spelling::UrlEncoded => {
                if b == b' ' && c == b'+' {
                    next.push(t + 1);
                }
                if c != b'%' {
                    return false;
                }
                match (text.get(t + 1), text.get(t + 2)) {
                    (None, _) => true,
                    (Some(&hi), None) => is_hex(hi, b >> 4),
                    (Some(&hi), Some(&lo)) => {
                        if is_hex(hi, b >> 4) && is_hex(lo, b & 0xf) {
                            next.push(t + 3);
                        }
                        false
                    }
                }
            }
            Spelling::ShellQuoted => {
                if first {
                    return false;
                }
                let mut j = t;
                while j - t < MAX_QUOTING && text.get(j).is_some_and(|q| QUOTING.contains(q)) {
                    j += 1;
                    match text.get(j) {
                        None => return true,
                        Some(&c) if c == b => next.push(j + 1),
                        Some(_) => {}
                    }
                }
                false
            }
        }
    }
}

/// Whether `digit` is the hex digit (either case) of `nibble`.
fn is_hex(digit: u8, nibble: u8) -> bool {
    (digit as char).to_digit(16) == Some(u32::from(nibble))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(form: &Form, text: &str) -> bool {
        (0..text.len()).any(|i| form.at(text.as_bytes(), i).end.is_some())
    }

    fn spelled(value: &str, spelling: Spelling) -> Form {
        forms(value)
            .into_iter()
            .find(|f| f.spelling == spelling)
            .expect("form")
    }

    #[test]
    fn every_form_of_a_value_is_found() {
        let v = "it's$FILE\"pw w0rd/42";
        let exact: Vec<String> = forms(v)
            .iter()
            .filter(|f| f.spelling == Spelling::Exact)
            .map(|f| String::from_utf8_lossy(&f.bytes).to_string())
            .collect();
        for expected in [
            v,
            r#"it's$FILE\"pw w0rd/42"#,
            r#""it's"'$FILE"pw w0rd/42'"#,
            r#"'it'\''s$FILE"pw w0rd/42'"#,
            r#"'it'"'"'s$FILE"pw w0rd/42'"#,
        ] {
            assert!(
                exact.iter().any(|e| e == expected),
                "{expected} in {exact:?}"
            );
        }
        let url = spelled(v, Spelling::UrlEncoded);
        for text in [
            "it%27s%24FILE%22pw+w0rd%2F42",
            "it%27s%24FILE%22pw%20w0rd%2f42",
            "it%27s$FILE%22pw%20w0rd/42",
            "%69%74%27s$FILE\"pw w0rd/42",
        ] {
            assert!(whole(&url, text), "{text}");
        }
        let shell = spelled(v, Spelling::ShellQuoted);
        for text in [
            r#"it\'s\$FILE\"pw\ w0rd/42"#,
            r#""it's\$FILE\"pw w0rd/42""#,
            r#"'it'"'"'s$FILE"pw w0rd/42'"#,
        ] {
            assert!(whole(&shell, text), "{text}");
        }
        assert!(!whole(&shell, "it's$FILE\"pw w0rd/4"));
        assert!(!whole(&url, "it%27s%24FILE%22pw+w0rd%2F4"));
    }

    #[test]
    fn a_non_ascii_value_is_found_json_escaped_both_ways_and_url_encoded() {
        let v = "é\n";
        let exact: Vec<Vec<u8>> = forms(v).into_iter().map(|f| f.bytes).collect();
        assert!(exact.contains(&"é\\n".as_bytes().to_vec()));
        assert!(exact.contains(&b"\\u00e9\\n".to_vec()));
        assert!(whole(&spelled(v, Spelling::UrlEncoded), "%C3%a9%0A"));
    }

    #[test]
    fn an_occurrence_cut_by_the_end_of_the_text_is_open() {
        let v = "secret value";
        for f in forms(v) {
            let o = f.at(b"xx secret va", 3);
            if f.can_start(b's') {
                assert_eq!(
                    o,
                    Occurrence {
                        end: None,
                        open: true
                    },
                    "{f:?}"
                );
            }
        }
        let url = spelled(v, Spelling::UrlEncoded);
        assert!(url.at(b"secret%2", 0).open);
        assert!(!url.at(b"secret%3", 0).open);
        assert!(!url.at(b"secrex", 0).open);
    }

    #[test]
    fn an_empty_value_has_no_form_and_a_nul_is_dropped_when_shell_quoted() {
        assert!(forms("").is_empty());
        let shell = spelled("a\0b", Spelling::ShellQuoted);
        assert!(whole(&shell, "ab"));
    }
}
