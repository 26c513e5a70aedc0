//! How figures are written for people, the same in the CLI and on the dashboard: a duration at
//! its scale (`33 ms`, `2.1 s`, `4 min 10 s`, `2 h 5 min`, `4 d 5 h`), an instant to the second
//! in UTC, a count with its noun in the right number. Exact values stay in JSON.

use chrono::{DateTime, Utc};

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// A duration in milliseconds at its scale: `33 ms`, `2.1 s`, `4 min 10 s`, `2 h 5 min`,
/// `4 d 5 h` (the smaller unit left out when it is zero).
pub fn duration_ms(ms: u64) -> String {
    if ms < SECOND {
        return format!("{ms} ms");
    }
    // Rounded to the unit shown: 59.96 s is a minute, not `60.0 s`.
    let ms = u128::from(ms);
    let round = |unit: u64| (ms + u128::from(unit) / 2) / u128::from(unit);
    let tenths = round(SECOND / 10);
    if tenths < 600 {
        return format!("{}.{} s", tenths / 10, tenths % 10);
    }
    let (big, small, units) = if round(SECOND) < 3_600 {
        let s = round(SECOND);
        (s / 60, s % 60, ("min", "s"))
    } else if round(MINUTE) < 24 * 60 {
        let m = round(MINUTE);
        (m / 60, m % 60, ("h", "min"))
    } else {
        let h = round(HOUR);
        (h / 24, h % 24, ("d", "h"))
    };
    if small == 0 {
        format!("{big} {}", units.0)
    } else {
        format!("{big} {} {small} {}", units.0, units.1)
    }
}

/// [`duration_ms`] of a [`std::time::Duration`].
pub fn duration(d: std::time::Duration) -> String {
    duration_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`duration_ms`] from `start` to `end` (zero when `end` is earlier).
pub fn between(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    duration_ms(u64::try_from((end - start).num_milliseconds()).unwrap_or(0))
}

/// An instant to the second: `2026-11-28 14:03:09 UTC`.
pub fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Toil minutes to a tenth, without a sign on zero: `20 min`, `1.5 min`, `0 min`.
pub fn toil_minutes(minutes: f64) -> String {
    let tenths = (minutes * 10.0).round();
    // `-0.0` (a credit of nothing, reduced) reads as a loss: `+ 0.0` drops the sign.
    let tenths = if tenths == 0.0 { 0.0 } else { tenths };
    if tenths % 10.0 == 0.0 {
        format!("{} min", tenths / 10.0 + 0.0)
    } else {
        format!("{:.1} min", tenths / 10.0)
    }
}

/// A count with its noun: `1 step`, `3 steps`, `0 files`.
pub fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// What a status means when its name alone could mislead, for `runs show` and the run page.
pub fn status_note(s: crate::run::status::RunStatus) -> Option<&'static str> {
    use crate::run::status::RunStatus;
    match s {
        RunStatus::Noop => Some("found nothing to do: a success that credits no toil"),
        RunStatus::Interrupted => {
            Some("untoil stopped or crashed while it ran: not counted as a failure")
        }
        _ => None,
    }
}

/// `remediated 3 min after the alert started`: only a succeeded run started by an alert
/// remediated anything (a failed, denied or skipped one did not).
pub fn remediated(r: &crate::run::record::RunRecord) -> Option<String> {
    match (&r.cause, r.finished_at) {
        (crate::run::cause::Cause::Alert { starts_at, .. }, Some(end))
            if r.status == crate::run::status::RunStatus::Succeeded =>
        {
            Some(format!(
                "remediated {} after the alert started",
                between(*starts_at, end)
            ))
        }
        _ => None,
    }
}

/// The verify verdict of an alert run, when known: `verified: alert resolved 2 min after the
/// run ended, within the verify window`, `unverified: alert still firing when the verify window
/// ended (2026-12-03 10:15:00 UTC)`, or why a resolve did not count. Times are those the verdict
/// was based on: the alert's `endsAt` and the run's `verify_by`.
pub fn verdict(r: &crate::run::record::RunRecord) -> Option<String> {
    let v = r.verification.as_ref()?;
    // Records before `resolved_at` existed know neither when the alert resolved nor, for a
    // verdict taken at a restart, the window's end apart from `verify_by`.
    let window_end = r.verify_by.unwrap_or(v.at);
    Some(match (v.verified, v.resolved_at) {
        (true, None) => "verified: alert resolved within the verify window".into(),
        (true, Some(at)) => {
            let when = match r.finished_at {
                Some(end) if at >= end => format!("{} after the run ended", between(end, at)),
                Some(_) => "while the run was running".into(),
                None => format!("at {}", instant(at)),
            };
            format!("verified: alert resolved {when}, within the verify window")
        }
        (false, Some(at)) if r.started_at.is_some_and(|start| at < start) => {
            "unverified: alert resolved before the run started: it cleared on its own".into()
        }
        (false, Some(at)) => format!(
            "unverified: alert resolved {} after the verify window ended ({})",
            between(window_end, at),
            instant(window_end)
        ),
        (false, None) => format!(
            "unverified: alert still firing when the verify window ended ({})",
            instant(window_end)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn durations_read_at_their_scale() {
        for (ms, want) in [
            (0, "0 ms"),
            (33, "33 ms"),
            (999, "999 ms"),
            (1_000, "1.0 s"),
            (2_140, "2.1 s"),
            (59_940, "59.9 s"),
            (59_960, "1 min"),
            (60_000, "1 min"),
            (250_000, "4 min 10 s"),
            (3_599_400, "59 min 59 s"),
            (3_600_000, "1 h"),
            (7_500_000, "2 h 5 min"),
            (86_399_000, "1 d"),
            (365_144_600, "4 d 5 h"),
            (u64::MAX, "213503982334 d 14 h"),
        ] {
            assert_eq!(duration_ms(ms), want, "{ms} ms");
        }
        assert_eq!(duration(std::time::Duration::from_millis(2_100)), "2.1 s");
    }

    #[test]
    fn a_span_backwards_is_zero() {
        let t = Utc.with_ymd_and_hms(2026, 12, 2, 21, 13, 49).single();
        let t = t.unwrap_or_default();
        assert_eq!(between(t, t + chrono::Duration::seconds(90)), "1 min 30 s");
        assert_eq!(between(t, t - chrono::Duration::seconds(90)), "0 ms");
    }

    #[test]
    fn instants_are_to_the_second_and_counts_agree_with_their_noun() {
        let t = Utc.timestamp_opt(1_796_246_029, 430_451_699).single();
        assert_eq!(instant(t.unwrap_or_default()), "2026-12-02 21:13:49 UTC");
        assert_eq!(count(1, "step"), "1 step");
        assert_eq!(count(0, "step"), "0 steps");
        assert_eq!(count(3, "attempt"), "3 attempts");
    }

    #[test]
    fn only_succeeded_alert_runs_say_remediated_and_verdicts_read_both_ways() {
        use crate::run::cause::Cause;
        use crate::run::record::{RunRecord, Verification};
        use crate::run::status::RunStatus;
        let start = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).single();
        let start = start.unwrap_or_default();
        let mut r = RunRecord {
            cause: Cause::Alert {
                source: crate::trigger::source::ALERTMANAGER.into(),
                fingerprint: "f".into(),
                starts_at: start,
                labels: Default::default(),
            },
            finished_at: Some(start + chrono::Duration::minutes(3)),
            status: RunStatus::Succeeded,
            verification: None,
            ..RunRecord::synthetic(1)
        };
        assert_eq!(
            remediated(&r).as_deref(),
            Some("remediated 3 min after the alert started")
        );
        assert_eq!(verdict(&r), None);
        for s in [
            RunStatus::Failed,
            RunStatus::Skipped,
            RunStatus::Cancelled,
            RunStatus::Noop,
            RunStatus::Interrupted,
            RunStatus::TimedOut,
        ] {
            r.status = s;
            assert_eq!(remediated(&r), None, "{s}");
        }
        // Old records: no `resolved_at`; the window's end is the run's `verify_by`.
        r.verification = Some(Verification {
            verified: true,
            at: start + chrono::Duration::minutes(5),
            resolved_at: None,
        });
        assert_eq!(
            verdict(&r).as_deref(),
            Some("verified: alert resolved within the verify window")
        );
        r.verification = Some(Verification {
            verified: false,
            at: start + chrono::Duration::minutes(18),
            resolved_at: None,
        });
        assert_eq!(
            verdict(&r).as_deref(),
            Some(
                "unverified: alert still firing when the verify window ended (2026-12-02 10:18:00 UTC)"
            )
        );
        // The window's end is `verify_by`, not when a restart recorded the verdict.
        r.verify_by = Some(start + chrono::Duration::minutes(13));
        assert_eq!(
            verdict(&r).as_deref(),
            Some(
                "unverified: alert still firing when the verify window ended (2026-12-02 10:13:00 UTC)"
            )
        );
        // Times are to the alert's `endsAt` the verdict used, not to the resolve's arrival.
        r.started_at = Some(start + chrono::Duration::minutes(1));
        r.verification = Some(Verification {
            verified: true,
            at: start + chrono::Duration::minutes(9),
            resolved_at: Some(start + chrono::Duration::minutes(5)),
        });
        assert_eq!(
            verdict(&r).as_deref(),
            Some("verified: alert resolved 2 min after the run ended, within the verify window")
        );
        r.verification = Some(Verification {
            verified: true,
            at: start + chrono::Duration::minutes(9),
            resolved_at: Some(start + chrono::Duration::minutes(2)),
        });
        assert_eq!(
            verdict(&r).as_deref(),
            Some("verified: alert resolved while the run was running, within the verify window")
        );
        r.verification = Some(Verification {
            verified: false,
            at: start + chrono::Duration::minutes(9),
            resolved_at: Some(start),
        });
        assert_eq!(
            verdict(&r).as_deref(),
            Some("unverified: alert resolved before the run started: it cleared on its own")
        );
        r.verification = Some(Verification {
            verified: false,
            at: start + chrono::Duration::minutes(30),
            resolved_at: Some(start + chrono::Duration::minutes(20)),
        });
        assert_eq!(
            verdict(&r).as_deref(),
            Some(
                "unverified: alert resolved 7 min after the verify window ended (2026-12-02 10:13:00 UTC)"
            )
        );
        let manual = RunRecord {
            status: RunStatus::Succeeded,
            ..RunRecord::synthetic(2)
        };
        assert_eq!(remediated(&manual), None);
        assert!(status_note(RunStatus::Noop).is_some_and(|n| n.contains("nothing to do")));
        assert!(status_note(RunStatus::Interrupted).is_some_and(|n| n.contains("not counted")));
        assert_eq!(status_note(RunStatus::Failed), None);
    }

    #[test]
    fn toil_minutes_are_written_to_a_tenth_and_zero_has_no_sign() {
        assert_eq!(toil_minutes(20.0), "20 min");
        assert_eq!(toil_minutes(1.54), "1.5 min");
        assert_eq!(toil_minutes(-0.0), "0 min");
        assert_eq!(toil_minutes(-0.01), "0 min");
        assert_eq!(toil_minutes(0.0), "0 min");
    }
}
