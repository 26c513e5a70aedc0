//! How figures are written on the pages: instants, durations, ratios, and URL components.

use chrono::{DateTime, Utc};

/// `2026-11-28 14:03:09 UTC`.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// [`time`], or `-` for none.
pub fn time_or_dash(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "-".into())
}

/// `1.2 s`, `3m 04s`, `2h 05m`.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 60 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// The time from `start` to `end`, or `-` when either is missing.
pub fn span(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    match (start, end) {
        (Some(s), Some(f)) => duration_ms((f - s).num_milliseconds().max(0) as u64),
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
    fn durations_read_at_their_scale() {
        assert_eq!(duration_ms(250), "250 ms");
        assert_eq!(duration_ms(1_300), "1.3 s");
        assert_eq!(duration_ms(184_000), "3m 04s");
        assert_eq!(duration_ms(7_500_000), "2h 05m");
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(enc("a b/<c>&\"'"), "a%20b%2F%3Cc%3E%26%22%27");
        assert_eq!(enc("run-1_x.y~"), "run-1_x.y~");
    }
}
