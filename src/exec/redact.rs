//! Replaces secret values with `***` in everything that is logged, stored or printed, in every
//! form they take on the way out ([`secret_form`](crate::exec::secret_form)).
//!
//! Every occurrence of every form of every secret is masked; occurrences that overlap are
//! masked as one `***`, so a secret that contains another is masked whole (what masking the
//! longest first did). An empty value masks nothing; any other value is masked however short
//! (a one-character secret masks that character everywhere: the rule has always been so).

use std::ops::Range;
use std::sync::Arc;

use crate::exec::secret_form::{self, Form, Positions};

/// What replaces a secret.
pub const MASK: &str = "***";

/// Knows a run's secret values, in all their forms, and masks them. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    inner: Arc<Forms>,
}

/// The forms of every secret, built once.
struct Forms {
    /// Longest first.
    forms: Vec<Form>,
    /// For each byte, the forms (indices, longest first) an occurrence of which can start with
    /// it: most bytes of a text start none.
    by_start: Vec<Vec<usize>>,
}

impl std::fmt::Debug for Forms {
    // Never the values: a redactor printed for debugging must not leak what it masks.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Forms({} forms)", self.forms.len())
    }
}

impl Default for Forms {
    fn default() -> Self {
        Forms {
            forms: Vec::new(),
            by_start: vec![Vec::new(); 256],
        }
    }
}

/// Where a text holds secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Whole occurrences, merged where they overlap, in order.
    pub masks: Vec<Range<usize>>,
    /// The first position where an occurrence may have begun that the text ends too early to
    /// tell (more of the stream may complete it).
    pub open_from: Option<usize>,
}

impl Redactor {
    /// A redactor for these secret values (empty values are ignored).
    pub fn new<I: IntoIterator<Item = String>>(values: I) -> Redactor {
        let mut forms: Vec<Form> = Vec::new();
        for value in values {
            for f in secret_form::forms(&value) {
                if !forms.contains(&f) {
                    forms.push(f);
                }
            }
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.min_len()));
        let by_start = (0..=u8::MAX)
            .map(|b| {
                (0..forms.len())
                    .filter(|i| forms[*i].can_start(b))
                    .collect()
            })
            .collect();
        Redactor {
            inner: Arc::new(Forms { forms, by_start }),
        }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.inner.forms.is_empty()
    }

    /// Where `text` holds secrets.
    pub fn scan(&self, text: &[u8]) -> Scan {
        let mut scan = Scan::default();
        if self.is_empty() {
            return scan;
        }
        let mut positions = Positions::default();
        for (at, b) in text.iter().enumerate() {
            let candidates = &self.inner.by_start[usize::from(*b)];
            if candidates.is_empty() {
                continue;
            }
            let mut end: Option<usize> = None;
            for f in candidates.iter().map(|i| &self.inner.forms[*i]) {
                let o = f.at_with(text, at, &mut positions);
                if o.open && scan.open_from.is_none() {
                    scan.open_from = Some(at);
                }
                end = end.max(o.end);
            }
            let Some(end) = end else { continue };
            match scan.masks.last_mut() {
                Some(last) if at < last.end => last.end = last.end.max(end),
                _ => scan.masks.push(at..end),
            }
        }
        scan
    }

    /// The bytes with every secret replaced by `***`.
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        mask(bytes, &self.scan(bytes).masks)
    }

    /// The text with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        let masked = self.redact_bytes(text.as_bytes());
        // Occurrences start and end on character boundaries; lossy only to be safe.
        String::from_utf8(masked).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// Redacts every string inside a JSON value, keys included.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => *s = self.redact(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&k), v);
                }
            }
            _ => {}
        }
    }
}

/// `bytes` with each range of `masks` (in order, apart) replaced by `***`.
pub fn mask(bytes: &[u8], masks: &[Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut from = 0;
    for m in masks {
        out.extend_from_slice(&bytes[from..m.start]);
        out.extend_from_slice(MASK.as_bytes());
        from = m.end;
    }
    out.extend_from_slice(&bytes[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_longest_first() {
        let r = Redactor::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        assert_eq!(r.redact("x abcdef y abc"), "x *** y ***");
        let mut v = serde_json::json!({"a": ["token abc"], "b": 1, "abc": "k"});
        r.redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": ["token ***"], "b": 1, "***": "k"})
        );
    }

    #[test]
    fn a_redactor_printed_for_debugging_shows_no_secret() {
        let r = Redactor::new(["hunter2".to_string()]);
        assert!(!format!("{r:?}").contains("hunter2"));
    }

    #[test]
    fn overlapping_secrets_are_masked_as_one() {
        let r = Redactor::new(["abcd".to_string(), "cdef".to_string()]);
        assert_eq!(r.redact("x abcdef y"), "x *** y");
    }

    #[test]
    fn every_form_of_a_secret_is_masked() {
        let secret = "it's$FILE\"pw w0rd/42";
        let r = Redactor::new([secret.to_string()]);
        for text in [
            secret.to_string(),
            crate::exec::render::shell_quote(secret),
            r#"'it'\''s$FILE"pw w0rd/42'"#.to_string(),
            r#"'it'"'"'s$FILE"pw w0rd/42'"#.to_string(),
            r#"it\'s\$FILE\"pw\ w0rd/42"#.to_string(),
            serde_json::to_string(secret).unwrap_or_default(),
            "it%27s%24FILE%22pw+w0rd%2F42".to_string(),
            "it%27s%24file%22pw%20w0rd%2f42".replace("file", "FILE"),
            "it%27s$FILE%22pw%20w0rd/42".to_string(),
        ] {
            let out = r.redact(&format!("<{text}>"));
            assert!(
                out.starts_with('<') && out.ends_with('>') && out.contains(MASK),
                "{text} -> {out}"
            );
            for fragment in ["it", "FILE", "w0rd", "42"] {
                assert!(!out.contains(fragment), "{text} -> {out}");
            }
        }
    }

    #[test]
    fn the_examples_of_the_runbook_reference_are_masked() {
        let r = Redactor::new([
            "it's $x".to_string(),
            "a\"b".to_string(),
            "café".to_string(),
        ]);
        for text in [
            "it's $x",
            r#""it's "'$x'"#,
            r#"'it'\''s $x'"#,
            r#"it\'s\ \$x"#,
            "it%27s+%24x",
            "it%27s%20$x",
            "it%27s%20%24x",
            r#"a\"b"#,
            r#"caf\u00e9"#,
        ] {
            assert_eq!(r.redact(&format!("[{text}]")), "[***]", "{text}");
        }
    }

    #[test]
    fn tiny_secrets_mask_only_themselves_and_empty_ones_nothing() {
        assert!(Redactor::new([String::new()]).is_empty());
        assert_eq!(Redactor::new([String::new()]).redact("a b"), "a b");
        let r = Redactor::new(["x".to_string()]);
        assert_eq!(r.redact("a x b %78 y"), "a *** b *** y");
        let r = Redactor::new(["''".to_string()]);
        assert_eq!(r.redact("it's 'a' ''"), "it's 'a' ***");
    }

    #[test]
    fn a_scan_says_where_an_occurrence_may_go_on() {
        let r = Redactor::new(["secret".to_string()]);
        let scan = r.scan(b"a secret b sec");
        assert_eq!(scan.masks, vec![2..8]);
        assert_eq!(scan.open_from, Some(11));
        assert_eq!(r.scan(b"a secret b\n").open_from, None);
    }
}
