//! Alert sources: where alert events come from. Each source's events are admitted as the same
//! alerts; a source's name namespaces its fingerprints and is recorded on runs and episodes.

/// The built-in Alertmanager source, whose fingerprints keep their stored encoding as they are.
pub const ALERTMANAGER: &str = "alertmanager";

/// The built-in Grafana Alerting source.
pub const GRAFANA: &str = "grafana";

/// The source of records stored before sources existed: all came from Alertmanager.
pub fn default_source() -> String {
    ALERTMANAGER.to_string()
}

/// Whether `name` is a valid source name: `^[a-z][a-z0-9-]{0,62}$`. Names appear in URLs,
/// metric labels and stored keys, so they are kept to characters that need no escaping there.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    first.is_ascii_lowercase()
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The fingerprint an alert of `source` is known by: Alertmanager's as sent (so the dedupe keys
/// stored before sources existed still match), any other source's as `source/fingerprint`, so
/// the same fingerprint from two sources is two alerts.
pub fn namespaced(source: &str, fingerprint: &str) -> String {
    if source == ALERTMANAGER {
        fingerprint.to_string()
    } else {
        format!("{source}/{fingerprint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for ok in [
            ALERTMANAGER,
            GRAFANA,
            "a",
            "github-ci",
            "x1-2",
            &"a".repeat(63),
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "A",
            "gitHub",
            "a_b",
            "a/b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn only_other_sources_are_namespaced() {
        assert_eq!(namespaced(ALERTMANAGER, "1b82"), "1b82");
        assert_eq!(namespaced(GRAFANA, "1b82"), "grafana/1b82");
    }
}
