//! The Grafana webhook decoder on arbitrary bodies: no panic; what decodes can be matched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use untoil::trigger::grafana;
use untoil::trigger::matcher::{Matcher, matches_all};

fuzz_target!(|data: &[u8]| {
    let Ok(notification) = grafana::decode(data) else {
        return;
    };
    assert_eq!(notification.version, "1");
    let matchers: Vec<Matcher> = ["alertname=~\".+\"", "severity!=\"info\""]
        .iter()
        .filter_map(|m| Matcher::parse(m).ok())
        .collect();
    for alert in &notification.alerts {
        assert!(!alert.fingerprint.is_empty());
        let _ = matches_all(&matchers, &alert.labels);
        let _ = alert.episode().to_string();
    }
});
