//! The matcher parser on arbitrary text: no panic; what parses can be applied and analysed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use untoil::trigger::matcher::{Matcher, never_matches};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(matcher) = Matcher::parse(text) else {
        return;
    };
    for value in ["", "a", "critical", text] {
        let _ = matcher.matches_value(value);
    }
    let _ = never_matches(std::slice::from_ref(&matcher));
});
