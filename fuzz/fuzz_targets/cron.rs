//! The cron parser on arbitrary text in a few time zones (DST-heavy ones among them): no panic,
//! and fire times go strictly forward.
#![no_main]

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use libfuzzer_sys::fuzz_target;
use untoil::trigger::schedule::Schedule;

const ZONES: [Tz; 5] = [
    Tz::UTC,
    Tz::Europe__Berlin,
    Tz::America__New_York,
    Tz::Australia__Lord_Howe,
    Tz::Pacific__Chatham,
];

fuzz_target!(|data: &[u8]| {
    let Some((&zone, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let tz = ZONES[usize::from(zone) % ZONES.len()];
    let Ok(schedule) = Schedule::parse(text, tz) else {
        return;
    };
    let mut after: DateTime<Utc> = DateTime::from_timestamp(1_774_742_400, 0).unwrap_or_default();
    for _ in 0..8 {
        let Some(next) = schedule.next_after(after) else {
            break;
        };
        let next = next.with_timezone(&Utc);
        assert!(
            next > after,
            "{text:?} in {tz}: {next} is not after {after}"
        );
        after = next;
    }
});
