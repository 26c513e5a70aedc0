//! Source names: what a source is called in URLs, runbook triggers, runs and metrics.

use crate::trigger::source::{ALERTMANAGER, GRAFANA, is_valid_name};

/// The names of the built-in sources, which no definition may take.
pub const BUILT_IN: [&str; 2] = [ALERTMANAGER, GRAFANA];

/// Longest source name.
pub const MAX_LEN: usize = 63;

/// Whether `name` is a valid source name: `^[a-z][a-z0-9-]{0,62}$` (the rule runbook triggers
/// check too).
pub fn is_valid(name: &str) -> bool {
    is_valid_name(name)
}

/// A valid name close to `name` (lowercased, other characters as `-`), for "try `x`".
pub fn suggest(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let s: String = s.chars().take(MAX_LEN).collect();
    if s.is_empty() { "my-source".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for ok in ["a", "github-ci", "x1", &"a".repeat(63)] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", "1a", "-a", "A", "a_b", "a.b", &"a".repeat(64), "é"] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert_eq!(suggest("GitHub_CI"), "github-ci");
        assert_eq!(suggest("9"), "my-source");
    }
}
