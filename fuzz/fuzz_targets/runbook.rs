//! The runbook loader and validator on arbitrary bytes: no panic, and every diagnostic renders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use untoil::runbook::catalog::load_texts;
use untoil::runbook::plugins::Plugins;

fuzz_target!(|data: &[u8]| {
    // Files are read as UTF-8 (the loader reports other encodings before parsing).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = load_texts(&[("runbooks/fuzz.yaml", text)], &Plugins::default());
    let _ = loaded.sources.render(&loaded.diagnostics);
    let _ = loaded.sources.render_json(&loaded.diagnostics);
});
