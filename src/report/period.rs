//! The days a report covers: an inclusive range of UTC days, read from a length back from today
//! (`since`, e.g. `30d`) or from two dates. Every reader (the API, `untoil report`, the
//! dashboard) goes through here, so a period out of range (before 0001-01-01, after
//! 9999-12-31, or ending before it starts) is refused with a message, never a panic.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Serialize;

/// The first day a period may start on.
pub const FIRST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(1, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// The last day a period may end on: dates have four-digit years.
pub const LAST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(d) => d,
    None => NaiveDate::MAX,
};

/// An inclusive range of UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

/// A day written `YYYY-MM-DD`, within [`FIRST_DAY`] ..= [`LAST_DAY`].
pub fn day(text: &str) -> Result<NaiveDate, String> {
    let d = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a date such as 2026-11-01"))?;
    if !(FIRST_DAY..=LAST_DAY).contains(&d) {
        return Err(format!(
            "`{text}` is out of range: days run from {FIRST_DAY} to {LAST_DAY}"
        ));
    }
    Ok(d)
}

impl Period {
    /// The days from `from` to `to`, both included.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Period, String> {
        for d in [from, to] {
            if !(FIRST_DAY..=LAST_DAY).contains(&d) {
                return Err(format!(
                    "{d} is out of range: days run from {FIRST_DAY} to {LAST_DAY}"
                ));
            }
        }
        if from > to {
            return Err(format!("the first day {from} is after the last day {to}"));
        }
        Ok(Period { from, to })
    }

    /// The days written `from` and `to` (`YYYY-MM-DD`).
    pub fn between(from: &str, to: &str) -> Result<Period, String> {
        Period::new(day(from)?, day(to)?)
    }

    /// The days of the last `length` up to and including today.
    pub fn since(length: std::time::Duration, now: DateTime<Utc>) -> Result<Period, String> {
        let start = i64::try_from(length.as_secs())
            .ok()
            .and_then(TimeDelta::try_seconds)
            .and_then(|back| now.checked_sub_signed(back))
            .map(|t| t.date_naive())
            .filter(|d| *d >= FIRST_DAY);
        match start {
            Some(from) => Period::new(from, now.date_naive()),
            None => Err(format!(
                "reaches back before {FIRST_DAY}: ask for a shorter period"
            )),
        }
    }

    /// The days of the last `text` (a duration such as `30d` or `12w`) up to today.
    pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<Period, String> {
        let length = crate::runbook::model::parse_duration(text)?;
        Period::since(length, now)
    }

    /// The ISO week before the one `now` falls in: Monday to Sunday, UTC days (what a weekly
    /// digest sent on a Monday reports).
    pub fn last_week(now: DateTime<Utc>) -> Result<Period, String> {
        let today = now.date_naive();
        let monday = today.checked_sub_signed(TimeDelta::days(i64::from(
            today.weekday().num_days_from_monday(),
        )));
        let from = monday.and_then(|m| m.checked_sub_signed(TimeDelta::days(7)));
        let to = monday.and_then(|m| m.pred_opt());
        match (from, to) {
            (Some(from), Some(to)) => Period::new(from, to),
            _ => Err(format!("the week before {today} is out of range")),
        }
    }

    /// Number of UTC days in the period.
    pub fn days(&self) -> u64 {
        u64::try_from((self.to - self.from).num_days() + 1).unwrap_or(1)
    }

    /// The period of the same number of UTC days just before this one (what `--compare` sets a
    /// report against), or None when it would start before [`FIRST_DAY`].
    pub fn previous(&self) -> Option<Period> {
        let to = self.from.pred_opt()?;
        let from = self.from.checked_sub_days(Days::new(self.days()))?;
        Period::new(from, to).ok()
    }

    /// Instants covering the period: [from 00:00, to + 1 day 00:00).
    pub fn instants(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = self.from.and_time(NaiveTime::MIN).and_utc();
        let end = self.to.succ_opt().map_or(DateTime::<Utc>::MAX_UTC, |d| {
            d.and_time(NaiveTime::MIN).and_utc()
        });
        (start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn lengths_and_dates_out_of_range_are_refused() {
        // (since, accepted)
        for (text, ok) in [
            ("30d", true),
            ("0s", true),
            ("2025y", true),
            ("2026y", false),
            ("300000y", false),
            ("262144y", false),
            ("9000000000000000s", false),
            ("18446744073709551615s", false),
            ("99999999999999999999d", false),
            ("-1d", false),
            ("", false),
            ("d", false),
        ] {
            assert_eq!(Period::parse_since(text, now()).is_ok(), ok, "{text}");
        }
        // (from, to, accepted)
        for (from, to, ok) in [
            ("0001-01-01", "9999-12-31", true),
            ("2026-01-01", "2026-01-01", true),
            ("2026-01-02", "2026-01-01", false),
            ("+262142-12-31", "+262142-12-31", false),
            ("+10000-01-01", "+10000-01-01", false),
            ("-0001-01-01", "2026-01-01", false),
            ("0000-12-31", "2026-01-01", false),
            ("2026-02-30", "2026-03-01", false),
            ("2026-1-1", "2026-01-01", true),
            ("yesterday", "2026-01-01", false),
        ] {
            assert_eq!(Period::between(from, to).is_ok(), ok, "{from} {to}");
        }
        let last = Period::new(LAST_DAY, LAST_DAY).map(|p| p.instants().1);
        assert!(last.is_ok_and(|end| end > LAST_DAY.and_time(NaiveTime::MIN).and_utc()));
    }

    #[test]
    fn last_week_is_the_iso_week_before_this_one() {
        let at = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        let week = |from: &str, to: &str| Period::between(from, to).ok();
        // Thursday 2026-12-03: the week of Monday 2026-11-23.
        assert_eq!(
            Period::last_week(now()).ok(),
            week("2026-11-23", "2026-11-29")
        );
        // A Monday morning (when the digest is sent) and a Sunday night.
        assert_eq!(
            Period::last_week(at("2026-11-30T09:00:00Z")).ok(),
            week("2026-11-23", "2026-11-29")
        );
        assert_eq!(
            Period::last_week(at("2026-11-29T23:59:59Z")).ok(),
            week("2026-11-16", "2026-11-22")
        );
        // Across a year: ISO week 53 of 2026 runs to Sunday 2027-01-03.
        assert_eq!(
            Period::last_week(at("2027-01-04T09:00:00Z")).ok(),
            week("2026-12-28", "2027-01-03")
        );
    }

    #[test]
    fn the_previous_period_has_as_many_days_and_ends_the_day_before() {
        let d = |s: &str| day(s).unwrap_or(FIRST_DAY);
        // `--since 7d` on 2026-12-03 covers 2026-11-26 ..= 2026-12-03, eight UTC days.
        let week = Period::parse_since("7d", now()).map(|p| p.previous());
        assert_eq!(
            week,
            Ok(Some(Period {
                from: d("2026-11-18"),
                to: d("2026-11-25")
            }))
        );
        let march = Period::between("2026-03-01", "2026-03-31").map(|p| p.previous());
        assert_eq!(
            march,
            Ok(Some(Period {
                from: d("2026-01-29"),
                to: d("2026-02-28")
            }))
        );
        let first = Period::new(FIRST_DAY, FIRST_DAY).map(|p| p.previous());
        assert_eq!(first, Ok(None));
    }

    proptest! {
        #[test]
        fn any_length_is_a_period_or_a_refusal(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let length = std::time::Duration::new(secs, nanos);
            if let Ok(p) = Period::since(length, now()) {
                prop_assert!(p.from >= FIRST_DAY && p.from <= p.to && p.to == now().date_naive());
                let (start, end) = p.instants();
                prop_assert!(start < end);
            }
        }

        #[test]
        fn any_text_is_a_period_or_a_refusal(since in "\\PC{0,30}", from in "[-+]?[0-9]{1,7}-[0-9]{1,2}-[0-9]{1,2}", to in "[-+]?[0-9]{1,7}-[0-9]{1,2}-[0-9]{1,2}") {
            for p in [Period::parse_since(&since, now()), Period::between(&from, &to)].into_iter().flatten() {
                prop_assert!(FIRST_DAY <= p.from && p.from <= p.to && p.to <= LAST_DAY);
                let (start, end) = p.instants();
                prop_assert!(start < end);
            }
        }
    }
}
