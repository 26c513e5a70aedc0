//! Source definitions and body mappings on arbitrary bytes: no panic. The input is a definition,
//! then optionally a NUL byte and a JSON body to map (without one, a fixed body is mapped), so
//! that both the loader and the mapping of what loads are explored.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use untoil::runbook::sources::Sources;
use untoil::source::definition::{Kind, load};
use untoil::source::pagerduty;

/// A small `workflow_run`-like body for definitions that come without one.
const BODY: &str = r#"{"action":"completed","repository":{"full_name":"octo-org/octo-repo"},
"workflow_run":{"id":289782451,"head_branch":"master","conclusion":"failure",
"created_at":"2020-10-05T16:33:24Z","html_url":"https://github.com/octo-org/octo-repo/actions/runs/289782451"}}"#;

fuzz_target!(|data: &[u8]| {
    let (def_bytes, body_bytes) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, BODY.as_bytes()),
    };
    let Ok(text) = std::str::from_utf8(def_bytes) else {
        return;
    };
    let mut sources = Sources::new();
    let file = sources.add("fuzz.yaml", text);
    let mut diags = Vec::new();
    let def = load(file, Path::new("fuzz.yaml"), &sources, &mut diags);
    let _ = sources.render(&diags);
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body_bytes) else {
        return;
    };
    let received = chrono::DateTime::UNIX_EPOCH;
    let _ = pagerduty::map(&body, received);
    let Some(def) = def else {
        return;
    };
    if let (Kind::Webhook, Some(map)) = (def.kind, &def.map) {
        if let Ok(Some(alert)) = map.map(&body, Some("delivery"), received) {
            assert!(!alert.fingerprint.is_empty());
            assert!(alert.labels.contains_key("alertname"));
        }
    }
});
