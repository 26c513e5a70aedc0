//! How figures are written on the pages: instants, durations, ratios, and URL components.

use chrono::{DateTime, Utc};

/// `2026-11-28 14:03:09 UTC`, as the CLI writes it ([`crate::report::human::instant`]).
pub use crate::report::human::instant as time;

/// `33 ms`, `2.1 s`, `4 min 10 s`, as the CLI writes it ([`crate::report::human`]).
pub use crate::report::human::duration_ms;

/// [`time`], or `-` for none.
pub fn time_or_dash(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "-".into())
}

/// The time from `start` to `end`, or `-` when either is missing.
pub fn span(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    match (start, end) {
        (Some(s), Some(f)) => crate::report::human::between(s, f),
        _ => "-".into(),
    }
}

/// `42.0%`, or `-` for no ratio.
pub fn pct(ratio: Option<f64>) -> String {
    ratio
        .map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// Characters left as they are in a path or query component (RFC 3986 unreserved).
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query or path component (HTML escaping is the template's job).
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_clis() {
        assert_eq!(duration_ms(250), "250 ms");
        assert_eq!(duration_ms(184_000), "3 min 4 s");
        assert_eq!(span(None, None), "-");
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(enc("a b/<c>&\"'"), "a%20b%2F%3Cc%3E%26%22%27");
        assert_eq!(enc("run-1_x.y~"), "run-1_x.y~");
    }
}
