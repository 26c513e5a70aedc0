//! Crontab schedules, read and timed the way Vixie cron / cronie run them.
//!
//! # Syntax
//!
//! The expression is a standard crontab time spec:
//!
//! * 5 fields: `minute hour day-of-month month day-of-week`, or 6 fields with
//!   **seconds first**. Any other count is an error (7 fields is not read as a
//!   year, and a 6-field spec is never read as 5 fields plus something).
//! * Values, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`. Day-of-week is
//!   0-7, where 0 and 7 are both Sunday. `JAN`-`DEC` and `SUN`-`SAT` work in
//!   their own fields, in any case. `SUN` closing a range means 7, so `FRI-SUN`
//!   is Friday to Sunday (cronie itself rejects that spelling; the meaning is
//!   not in doubt, so it is accepted). Ranges never wrap around.
//! * Macros `@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`,
//!   `@yearly`/`@annually` (any case), exactly as cronie expands them (`0 * * * *`,
//!   `0 0 * * *`, `0 0 * * 0`, `0 0 1 * *`, `0 0 1 1 *`). `@reboot` is rejected:
//!   a daemon schedule needs clock times.
//! * croner's extensions (`L`, `W`, `#`, `?`, a `+` day-of-week prefix, a year
//!   field, names outside their field) are rejected, so a schedule means here
//!   what it means in a crontab.
//!
//! # Day of month and day of week
//!
//! Like cronie's `entry.c`, a day field counts as "star" when its text *starts*
//! with `*` (so `*/2` is a star field). If either day field is a star field, a
//! day must match both (a bare `*` matches every day, so only the other field
//! restricts); otherwise a day matching **either** field fires (the Vixie OR
//! rule). So `0 0 1,15 * MON` fires on the 1st, the 15th and every Monday, while
//! `0 0 */2 * MON` fires on Mondays with an odd date.
//!
//! # Daylight saving time
//!
//! Matching is done on the wall clock of the schedule's zone; what a matching
//! wall time means when the clock jumps follows cronie's `cron.c`. A job is
//! *fixed-time* unless its minute or hour field starts with `*` (cronie's
//! `MIN_STAR`/`HR_STAR`); `*/15 * * * *`, `0 * * * *` and `@hourly` are
//! *wildcard* jobs, `30 2 * * *` and `0,30 2 * * *` are fixed-time. The seconds
//! field plays no part in this. cronie sizes a jump as the minutes between the
//! last wall-clock minute it handled and the one it wakes to:
//!
//! * **Clock forward by 5 to 179 minutes** (every real DST start): fixed-time
//!   matches inside the skipped wall-clock range run at the first instant after
//!   the gap (02:30 on Berlin's spring-forward day fires at 03:00 CEST);
//!   wildcard matches inside it are dropped.
//! * **Clock back by up to 181 minutes** (every real DST end): a repeated wall
//!   time fires once, at its first occurrence, for fixed-time jobs; wildcard
//!   jobs fire on both occurrences, since the wall clock shows them twice.
//! * Rarer jumps, as cronie treats them: forward by under 5 minutes runs every
//!   skipped match, wildcard or not, right after the gap; forward by 3 hours or
//!   more (a zone skipping a day) drops the skipped matches; back by more than
//!   181 minutes runs every repeated match again.
//!
//! Several matches caught up at the same instant fire once (cronie would run a
//! fixed-time job once per skipped matching minute, all at that instant). This
//! models a cron daemon whose own clock is in the schedule's zone; cronie's
//! per-job `CRON_TZ` is weaker around DST and is not imitated.
//!
//! Unlike cronie, a spec that can never fire (`0 0 30 2 *`) is rejected rather
//! than silently accepted.

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, TZ_VARIANTS, Tz};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The macros crontab knows, with what cronie means by each.
const MACROS: &[(&str, &str)] = &[
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Longest length of each month, February counting leap years.
const MONTH_DAYS: [u16; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// Guards the search loops; real searches take a handful of steps because
/// skipped ranges are jumped over whole.
const SCAN_LIMIT: usize = 10_000;

/// A parsed crontab schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    tz: Tz,
    /// Boxed: croner's pattern is a few hundred bytes, and schedules sit in
    /// enums and lists elsewhere.
    cron: Box<Cron>,
    /// cronie's fixed-time class: neither minute nor hour starts with `*`.
    fixed_time: bool,
}

impl Schedule {
    /// Parses a crontab expression (5 fields, 6 with seconds first, or a macro) for a time zone.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let spec = if trimmed.starts_with('@') {
            expand_macro(trimmed)?
        } else {
            trimmed
        };
        let fields: Vec<&str> = spec.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => (None, &fields[..]),
            6 => (Some(fields[0]), &fields[1..]),
            found => return Err(ScheduleError::FieldCount { found }),
        };
        let &[minute, hour, dom, month, dow] = rest else {
            return Err(ScheduleError::FieldCount {
                found: fields.len(),
            });
        };

        let second = match second {
            Some(text) => check_field(CronField::Second, text)?,
            None => "0".to_string(),
        };
        let normalized = [
            second,
            check_field(CronField::Minute, minute)?,
            check_field(CronField::Hour, hour)?,
            check_field(CronField::DayOfMonth, dom)?,
            check_field(CronField::Month, month)?,
            check_field(CronField::DayOfWeek, dow)?,
        ]
        .join(" ");

        // cronie classifies fields by their first character, before expanding them.
        let days_and = dom.starts_with('*') || dow.starts_with('*');
        let fixed_time = !minute.starts_with('*') && !hour.starts_with('*');

        // Always six fields, so croner never has to guess which one is missing.
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .dom_and_dow(days_and)
            .build()
            .parse(&normalized)
            .map_err(|err| ScheduleError::Rejected {
                expr: trimmed.to_string(),
                reason: err.to_string(),
            })?;

        // With AND days the weekday always exists, so only the dates can rule out every fire.
        if days_and {
            let days = cron.pattern.days.values();
            let fits = cron.pattern.months.values().iter().any(|&m| {
                let longest = MONTH_DAYS.get(usize::from(m).saturating_sub(1)).copied();
                days.iter().any(|&d| longest.is_some_and(|l| d <= l))
            });
            if !fits {
                return Err(ScheduleError::NeverFires {
                    expr: trimmed.to_string(),
                });
            }
        }

        Ok(Schedule {
            expr: trimmed.to_string(),
            tz,
            cron: Box::new(cron),
            fixed_time,
        })
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The time zone the schedule's wall-clock times are read in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        // Beyond year 9999 there is nothing to schedule, and chrono's local-time conversion
        // panics near its own limits.
        if after.year() > 9999 || after.year() < 1 {
            return None;
        }
        let wall = after.with_timezone(&self.tz).naive_local();
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Ambiguous(earlier, later) => {
                let (start, end) = self.repeated_range(&earlier, &later)?;
                if after < later {
                    // First pass: the repeat of the whole range, including
                    // wall times already behind us, still lies ahead.
                    earliest(
                        self.first_fire(wall, after),
                        self.repeat_fire(start, end, after),
                    )
                } else {
                    // Second pass: only this pass's rest is left, then normal time.
                    earliest(
                        self.first_fire(end, after),
                        self.repeat_fire(wall, end, after),
                    )
                }
            }
            _ => self.first_fire(wall, after),
        }
    }

    /// Successive fires strictly after `after` (lazy iterator).
    pub fn fires_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Tz>> + '_ {
        let mut last = after;
        std::iter::from_fn(move || {
            let next = self.next_after(last)?;
            last = next.with_timezone(&Utc);
            Some(next)
        })
    }

    /// Fires in the half-open interval (from, to], in order. Pure: used by the scheduler for catch-up.
    pub fn due(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Tz>> {
        if to <= from {
            return Vec::new();
        }
        self.fires_after(from).take_while(|t| *t <= to).collect()
    }

    /// The earliest fire after `after` among "first" fires (single, first of
    /// a repeat, or after a gap) of wall times from `start` on. Those fires
    /// never go down as the wall clock goes up, so the first one found wins.
    fn first_fire(&self, start: NaiveDateTime, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        let mut cursor = start;
        for _ in 0..SCAN_LIMIT {
            let wall = self.cron.find_next_occurrence(&cursor, true).ok()?;
            let next = wall.checked_add_signed(TimeDelta::seconds(1))?;
            cursor = next;
            match self.occurrence(wall) {
                Occurrence::Once(at) | Occurrence::Twice { earlier: at, .. } => {
                    if at > after {
                        return Some(at);
                    }
                }
                Occurrence::Skipped { fire, resume } => {
                    if let Some(at) = fire
                        && at > after
                    {
                        return Some(at);
                    }
                    // Nothing else in the gap can fire differently: jump it.
                    cursor = resume.map_or(next, |r| r.max(next));
                }
            }
        }
        None
    }

    /// The earliest second-pass fire after `after` of wall times in `[from, to)`,
    /// a range the clock repeats.
    fn repeat_fire(
        &self,
        from: NaiveDateTime,
        to: NaiveDateTime,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Tz>> {
        let mut cursor = from;
        for _ in 0..SCAN_LIMIT {
            let wall = self.cron.find_next_occurrence(&cursor, true).ok()?;
            if wall >= to {
                return None;
            }
            match self.occurrence(wall) {
                Occurrence::Twice {
                    later: Some(later), ..
                } if later > after => return Some(later),
                // The job skips repeats in this range, for every wall time alike.
                Occurrence::Twice { later: None, .. } => return None,
                _ => {}
            }
            cursor = wall.checked_add_signed(TimeDelta::seconds(1))?;
        }
        None
    }

    /// The wall-clock range `[start, end)` repeated by the fall-back between
    /// the two instants of one ambiguous wall time.
    fn repeated_range(
        &self,
        earlier: &DateTime<Tz>,
        later: &DateTime<Tz>,
    ) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let before = earlier.offset().fix();
        let offset_at = |ts: i64| {
            DateTime::from_timestamp(ts, 0)
                .map(|t| self.tz.offset_from_utc_datetime(&t.naive_utc()).fix())
        };
        // Bisect for the first whole second on the new offset: the transition.
        let (mut lo, mut hi) = (earlier.timestamp(), later.timestamp());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if offset_at(mid)? == before {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let switch = DateTime::from_timestamp(hi, 0)?.naive_utc();
        let offset = |o: chrono::FixedOffset| TimeDelta::seconds(i64::from(o.local_minus_utc()));
        Some((
            switch.checked_add_signed(offset(later.offset().fix()))?,
            switch.checked_add_signed(offset(before))?,
        ))
    }

    /// What a matching wall-clock time means on the time line, per cronie.
    fn occurrence(&self, wall: NaiveDateTime) -> Occurrence {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(at) => Occurrence::Once(at),
            LocalResult::Ambiguous(earlier, later) => {
                let back_minutes = (later - earlier).num_seconds() / 60;
                let repeats = !self.fixed_time || jump_kind(1 - back_minutes) == Jump::Large;
                Occurrence::Twice {
                    earlier,
                    later: repeats.then_some(later),
                }
            }
            LocalResult::None => {
                let Some(end) = GapInfo::new(&wall, &self.tz).and_then(|gap| gap.end) else {
                    return Occurrence::Skipped {
                        fire: None,
                        resume: None,
                    };
                };
                let after_gap = end.offset().fix().local_minus_utc();
                let before_gap = end
                    .checked_sub_signed(TimeDelta::seconds(1))
                    .map_or(after_gap, |t| t.offset().fix().local_minus_utc());
                let gap_minutes = i64::from(after_gap - before_gap) / 60;
                let fires = match jump_kind(gap_minutes + 1) {
                    Jump::Normal | Jump::Small => true,
                    Jump::Medium => self.fixed_time,
                    Jump::Negative | Jump::Large => false,
                };
                Occurrence::Skipped {
                    fire: fires.then_some(end),
                    resume: Some(end.naive_local()),
                }
            }
        }
    }
}

/// One matching wall-clock time placed on the time line.
enum Occurrence {
    /// The wall time exists once.
    Once(DateTime<Tz>),
    /// The clock went back and shows the wall time twice; `later` is `None`
    /// when the job does not run again on the repeat.
    Twice {
        earlier: DateTime<Tz>,
        later: Option<DateTime<Tz>>,
    },
    /// The clock jumped over the wall time; `fire` is the catch-up run right
    /// after the gap, if any, and `resume` the first wall time after the gap.
    Skipped {
        fire: Option<DateTime<Tz>>,
        resume: Option<NaiveDateTime>,
    },
}

/// cronie's classes of clock change (`enum timejump` in `cron.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Jump {
    Normal,
    Small,
    Medium,
    Negative,
    Large,
}

/// Classifies `time_diff`, the minutes from the last wall-clock minute cronie
/// handled to the one it woke to, exactly as cronie's main loop does.
fn jump_kind(time_diff: i64) -> Jump {
    if time_diff == 1 {
        Jump::Normal
    } else if !(-180..=180).contains(&time_diff) {
        Jump::Large
    } else if time_diff > 5 {
        Jump::Medium
    } else if time_diff > 0 {
        Jump::Small
    } else {
        Jump::Negative
    }
}

fn earliest(a: Option<DateTime<Tz>>, b: Option<DateTime<Tz>>) -> Option<DateTime<Tz>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Returns the fields a macro stands for.
fn expand_macro(spec: &str) -> Result<&'static str, ScheduleError> {
    let mut words = spec.split_whitespace();
    let name = words.next().unwrap_or(spec);
    if name.eq_ignore_ascii_case("@reboot") {
        return Err(ScheduleError::Reboot);
    }
    let Some(&(_, fields)) = MACROS.iter().find(|(m, _)| m.eq_ignore_ascii_case(name)) else {
        return Err(ScheduleError::UnknownMacro {
            name: name.to_string(),
        });
    };
    if words.next().is_some() {
        return Err(ScheduleError::MacroWithFields {
            name: name.to_string(),
        });
    }
    Ok(fields)
}

/// Checks one field against crontab's grammar (list of `*`, `a` or `a-b`,
/// each with an optional `/step`) and returns it with names turned into
/// numbers. croner does the real parsing; this only words the errors and
/// keeps out what crontab does not have.
fn check_field(field: CronField, text: &str) -> Result<String, ScheduleError> {
    let invalid = |reason: String| ScheduleError::InvalidField {
        field,
        text: text.to_string(),
        reason,
    };
    let mut out = Vec::new();
    let is_list = text.contains(',');
    for element in text.split(',') {
        if element.is_empty() {
            return Err(invalid("a list has an empty element".to_string()));
        }
        let (range, step) = match element.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (element, None),
        };
        let mut normalized = if range == "*" && is_list {
            // crontab takes `*` as the whole range anywhere in a list (`*,5`, `*/15,7`);
            // croner takes it only alone, so spell the range out.
            let (min, max) = field.range();
            format!("{min}-{max}")
        } else if range == "*" {
            "*".to_string()
        } else {
            let (lo, hi) = match range.split_once('-') {
                Some((lo, hi)) => (lo, Some(hi)),
                None => (range, None),
            };
            let lo_value = field_value(field, text, lo, None)?;
            match hi {
                None => lo_value.to_string(),
                Some(hi) => {
                    let hi_value = field_value(field, text, hi, Some(lo_value))?;
                    if lo_value > hi_value {
                        return Err(invalid(format!(
                            "range '{range}' runs backwards; crontab ranges go from low to high"
                        )));
                    }
                    format!("{lo_value}-{hi_value}")
                }
            }
        };
        if let Some(step) = step {
            if !step.bytes().all(|b| b.is_ascii_digit()) || step.is_empty() {
                unsupported(field, text, step)?;
                return Err(invalid(format!("step '{step}' is not a whole number")));
            }
            match step.parse::<u32>() {
                Ok(0) => return Err(invalid("a step must be at least 1".to_string())),
                Ok(_) => {}
                Err(_) => return Err(invalid(format!("step '{step}' is too large"))),
            }
            if !normalized.contains('-') && range != "*" {
                let (_, max) = field.range();
                return Err(invalid(format!(
                    "'{element}' steps from a single value; crontab steps a range, \
                     as in '*/{step}' or '{range}-{max}/{step}'"
                )));
            }
            normalized = format!("{normalized}/{step}");
        }
        out.push(normalized);
    }
    Ok(out.join(","))
}

/// Reads one value of a field: a number in range, or a name where the field
/// has names. `range_start` is set for the end of a range.
fn field_value(
    field: CronField,
    text: &str,
    value: &str,
    range_start: Option<u32>,
) -> Result<u32, ScheduleError> {
    let invalid = |reason: String| ScheduleError::InvalidField {
        field,
        text: text.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("a range is missing a value".to_string()));
    }
    if value == "*" {
        return Err(invalid(
            "'*' cannot be one end of a range; write '*', '*/5' or a range such as '1-5'"
                .to_string(),
        ));
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let (min, max) = field.range();
        return match value.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ScheduleError::OutOfRange {
                field,
                value: value.to_string(),
                min,
                max,
            }),
        };
    }
    let names = field.names();
    if let Some(index) = names.iter().position(|n| n.eq_ignore_ascii_case(value)) {
        let number = u32::try_from(index).unwrap_or(0) + field.range().0;
        // Sunday closing a range is day 7, so FRI-SUN means Friday to Sunday.
        return Ok(match (field, range_start) {
            (CronField::DayOfWeek, Some(start)) if number == 0 && start > 0 => 7,
            _ => number,
        });
    }
    unsupported(field, text, value)?;
    Err(invalid(match field {
        CronField::Month => format!("'{value}' is not a number 1-12 or a month name JAN-DEC"),
        CronField::DayOfWeek => format!("'{value}' is not a number 0-7 or a day name SUN-SAT"),
        _ => format!("'{value}' is not a number"),
    }))
}

/// Rejects croner's extensions by name, so the error says what crontab lacks.
fn unsupported(field: CronField, text: &str, part: &str) -> Result<(), ScheduleError> {
    let upper = part.to_ascii_uppercase();
    // L and W only as croner spells them ("L", "5L", "15W", "LW"), not inside a misspelt name.
    let letters: String = upper.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    let feature =
        ['#', '?', '+']
            .into_iter()
            .find(|c| upper.contains(*c))
            .or(match letters.as_str() {
                "L" | "LW" => Some('L'),
                "W" => Some('W'),
                _ => None,
            });
    match feature {
        Some(feature) => Err(ScheduleError::Unsupported {
            field,
            text: text.to_string(),
            feature,
        }),
        None => Ok(()),
    }
}

/// A crontab field, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronField {
    /// The optional leading seconds field (0-59).
    Second,
    /// Minute (0-59).
    Minute,
    /// Hour (0-23).
    Hour,
    /// Day of month (1-31).
    DayOfMonth,
    /// Month (1-12 or JAN-DEC).
    Month,
    /// Day of week (0-7 or SUN-SAT; 0 and 7 are Sunday).
    DayOfWeek,
}

impl CronField {
    /// The values the field accepts.
    pub fn range(self) -> (u32, u32) {
        match self {
            CronField::Second | CronField::Minute => (0, 59),
            CronField::Hour => (0, 23),
            CronField::DayOfMonth => (1, 31),
            CronField::Month => (1, 12),
            CronField::DayOfWeek => (0, 7),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            CronField::Month => &MONTH_NAMES,
            CronField::DayOfWeek => &DAY_NAMES,
            _ => &[],
        }
    }

    fn range_note(self) -> &'static str {
        match self {
            CronField::DayOfWeek => " (0 and 7 are Sunday)",
            _ => "",
        }
    }
}

impl std::fmt::Display for CronField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CronField::Second => "second",
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        })
    }
}

/// Why an expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Nothing but whitespace.
    #[error(
        "empty schedule: expected 5 fields (minute hour day-of-month month day-of-week), \
         6 with seconds first, or a macro such as @daily"
    )]
    Empty,
    /// Not 5 or 6 fields.
    #[error(
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, \
         found {found}"
    )]
    FieldCount {
        /// How many whitespace-separated fields there were.
        found: usize,
    },
    /// `@reboot`, which names no clock time.
    #[error(
        "@reboot is not supported: a daemon schedule needs clock times, not 'when cron starts'"
    )]
    Reboot,
    /// An `@word` that is not a crontab macro.
    #[error(
        "unknown macro '{name}': expected one of @hourly, @daily, @midnight, @weekly, @monthly, \
         @yearly, @annually"
    )]
    UnknownMacro {
        /// The macro as written.
        name: String,
    },
    /// A macro followed by more text.
    #[error("{name} is a whole schedule on its own; found more fields after it")]
    MacroWithFields {
        /// The macro as written.
        name: String,
    },
    /// A number outside its field's range.
    #[error("{field} value {value} is out of range {min}-{max}{note}", note = .field.range_note())]
    OutOfRange {
        /// The field.
        field: CronField,
        /// The value as written.
        value: String,
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
    },
    /// A croner/Quartz extension that crontab lacks.
    #[error("{field} field '{text}' uses '{feature}', which crontab does not support")]
    Unsupported {
        /// The field.
        field: CronField,
        /// The whole field as written.
        text: String,
        /// The offending character.
        feature: char,
    },
    /// A field that does not follow crontab's grammar.
    #[error("{field} field '{text}' is invalid: {reason}")]
    InvalidField {
        /// The field.
        field: CronField,
        /// The whole field as written.
        text: String,
        /// What is wrong, and what was expected.
        reason: String,
    },
    /// Only dates that do not exist, such as 30 February.
    #[error("'{expr}' never fires: its months do not have the days of month it names")]
    NeverFires {
        /// The expression as written.
        expr: String,
    },
    /// croner refused a spec that passed the crontab checks.
    #[error("cron expression '{expr}' was rejected: {reason}")]
    Rejected {
        /// The expression as written.
        expr: String,
        /// croner's reason.
        reason: String,
    },
    /// A time zone name that is not in the IANA database.
    #[error("unknown time zone '{name}': expected an IANA name such as Europe/Berlin")]
    UnknownTimezone {
        /// The name as written.
        name: String,
        /// Up to three close IANA names.
        suggestions: Vec<String>,
    },
}

impl ScheduleError {
    /// A hint on how to fix the expression, if there is a useful one.
    pub fn help(&self) -> Option<String> {
        let text = match self {
            ScheduleError::Empty => "for example, '0 9 * * 1-5' runs at 09:00 Monday to Friday",
            ScheduleError::FieldCount { found: 7 } => {
                "crontab has no year field; drop the seventh field"
            }
            ScheduleError::FieldCount { found } if *found < 5 => {
                "give all five fields, e.g. '*/15 * * * *' for every quarter hour"
            }
            ScheduleError::FieldCount { .. } => {
                "give only the time fields, quoted; the command does not belong in the schedule"
            }
            ScheduleError::Reboot => {
                "use a clock schedule such as @daily, or run the runbook by hand"
            }
            ScheduleError::UnknownMacro { name } => {
                let lower = name.to_ascii_lowercase();
                let close = MACROS
                    .iter()
                    .map(|(m, _)| (strsim::normalized_damerau_levenshtein(&lower, m), *m))
                    .filter(|(score, _)| *score >= 0.6)
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                return Some(match close {
                    Some((_, m)) => format!("did you mean {m}?"),
                    None => "write the five fields instead, e.g. '*/5 * * * *'".to_string(),
                });
            }
            ScheduleError::MacroWithFields { .. } => "use either a macro or the fields, not both",
            ScheduleError::OutOfRange {
                field: CronField::DayOfWeek,
                ..
            } => "use 0-7 or SUN-SAT; 0 and 7 are both Sunday",
            ScheduleError::OutOfRange {
                field: CronField::Month,
                ..
            } => "use 1-12 or JAN-DEC",
            ScheduleError::OutOfRange {
                field: CronField::Hour,
                value,
                ..
            } if value == "24" => "midnight is hour 0",
            ScheduleError::OutOfRange { .. } => return None,
            ScheduleError::Unsupported { feature: '?', .. } => "crontab has no '?'; use '*'",
            ScheduleError::Unsupported { feature: '+', .. } => {
                "crontab has no '+'; when both day fields are restricted, a day matching either fires"
            }
            ScheduleError::Unsupported { .. } => {
                "crontab has no L, W or # day modifiers; list the days explicitly"
            }
            ScheduleError::InvalidField { .. } | ScheduleError::Rejected { .. } => return None,
            ScheduleError::NeverFires { .. } => {
                "February has at most 29 days; April, June, September and November have 30"
            }
            ScheduleError::UnknownTimezone { suggestions, .. } => {
                return Some(match suggestions.as_slice() {
                    [] => "use an IANA name such as UTC, Europe/Berlin or America/New_York"
                        .to_string(),
                    [one] => format!("did you mean {one}?"),
                    many => format!("did you mean one of {}?", many.join(", ")),
                });
            }
        };
        Some(text.to_string())
    }
}

/// Parses an IANA time zone name, with a "did you mean" friendly error message listing nothing huge.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    let wanted = name.trim();
    if let Ok(tz) = wanted.parse::<Tz>() {
        return Ok(tz);
    }
    // Case is the most common slip, and it cannot pick the wrong zone.
    if let Some(tz) = TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(wanted))
    {
        return Ok(*tz);
    }
    Err(ScheduleError::UnknownTimezone {
        name: wanted.to_string(),
        suggestions: suggest_zones(wanted),
    })
}

/// Up to three zone names close to `name`, by city or by spelling.
fn suggest_zones(name: &str) -> Vec<String> {
    // No zone name is this long; comparing a huge string with every zone would only cost time.
    if name.len() > 64 {
        return Vec::new();
    }
    let wanted = name.to_ascii_lowercase().replace(' ', "_");
    let mut scored: Vec<(f64, &'static str)> = TZ_VARIANTS
        .iter()
        .map(|tz| {
            let full = tz.name().to_ascii_lowercase();
            let city = full.rsplit('/').next().unwrap_or(&full);
            let score = if city == wanted {
                1.0
            } else {
                strsim::normalized_damerau_levenshtein(&wanted, &full)
                    .max(strsim::normalized_damerau_levenshtein(&wanted, city) * 0.9)
            };
            (score, tz.name())
        })
        .filter(|(score, _)| *score >= 0.75)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(3)
        .map(|(_, name)| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    fn zone(name: &str) -> Tz {
        name.parse().expect("test zone")
    }

    fn next_n(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
        Schedule::parse(expr, zone(tz))
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .fires_after(utc(after))
            .take(n)
            .map(|t| t.to_rfc3339())
            .collect()
    }

    fn error(expr: &str) -> ScheduleError {
        Schedule::parse(expr, Tz::UTC).expect_err(expr)
    }

    /// (expression, zone, after, the next fires cronie would run).
    /// 2026-01-01 is a Thursday; 2026-02-13 and 2026-03-13 are Fridays.
    const TABLE: &[(&str, &str, &str, &[&str])] = &[
        // Monday to Friday, starting on a Friday: the weekend is skipped, not Sun-Thu.
        (
            "0 9 * * 1-5",
            "UTC",
            "2026-01-02T10:00:00Z",
            &[
                "2026-01-05T09:00:00+00:00",
                "2026-01-06T09:00:00+00:00",
                "2026-01-07T09:00:00+00:00",
                "2026-01-08T09:00:00+00:00",
                "2026-01-09T09:00:00+00:00",
            ],
        ),
        (
            "0 9 * * MON-FRI",
            "America/New_York",
            "2026-01-02T15:00:00Z",
            &["2026-01-05T09:00:00-05:00", "2026-01-06T09:00:00-05:00"],
        ),
        // Sunday is 0 and 7, by number or name, in any case.
        (
            "0 0 * * 0",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-04T00:00:00+00:00",
                "2026-01-11T00:00:00+00:00",
                "2026-01-18T00:00:00+00:00",
            ],
        ),
        (
            "0 0 * * 7",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-04T00:00:00+00:00",
                "2026-01-11T00:00:00+00:00",
                "2026-01-18T00:00:00+00:00",
            ],
        ),
        (
            "0 0 * * sun",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"],
        ),
        // SUN-SUN is Sunday alone, as in cronie (not 0-7, every day).
        (
            "0 0 * * SUN-SUN",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"],
        ),
        // Sunday closing a range is 7.
        (
            "0 12 * * FRI-SUN",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-02T12:00:00+00:00",
                "2026-01-03T12:00:00+00:00",
                "2026-01-04T12:00:00+00:00",
                "2026-01-09T12:00:00+00:00",
            ],
        ),
        // Both day fields restricted: the 1st, the 15th OR any Monday.
        (
            "0 0 1,15 * MON",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-05T00:00:00+00:00",
                "2026-01-12T00:00:00+00:00",
                "2026-01-15T00:00:00+00:00",
                "2026-01-19T00:00:00+00:00",
                "2026-01-26T00:00:00+00:00",
                "2026-02-01T00:00:00+00:00",
                "2026-02-02T00:00:00+00:00",
            ],
        ),
        // The 13th OR a Friday; Friday the 13th (Feb) fires once.
        (
            "0 0 13 * FRI",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-02T00:00:00+00:00",
                "2026-01-09T00:00:00+00:00",
                "2026-01-13T00:00:00+00:00",
                "2026-01-16T00:00:00+00:00",
                "2026-01-23T00:00:00+00:00",
                "2026-01-30T00:00:00+00:00",
                "2026-02-06T00:00:00+00:00",
                "2026-02-13T00:00:00+00:00",
                "2026-02-20T00:00:00+00:00",
            ],
        ),
        // A day field starting with '*' makes cronie AND the day fields:
        // odd dates that are Mondays.
        (
            "0 0 */2 * 1",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-05T00:00:00+00:00",
                "2026-01-19T00:00:00+00:00",
                "2026-02-09T00:00:00+00:00",
                "2026-02-23T00:00:00+00:00",
                "2026-03-09T00:00:00+00:00",
            ],
        ),
        // The same rule from the other side: the first Sunday of each month.
        (
            "0 0 1-7 * */7",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-04T00:00:00+00:00",
                "2026-02-01T00:00:00+00:00",
                "2026-03-01T00:00:00+00:00",
                "2026-04-05T00:00:00+00:00",
            ],
        ),
        (
            "*/15 * * * *",
            "UTC",
            "2026-01-01T00:07:00Z",
            &[
                "2026-01-01T00:15:00+00:00",
                "2026-01-01T00:30:00+00:00",
                "2026-01-01T00:45:00+00:00",
                "2026-01-01T01:00:00+00:00",
            ],
        ),
        (
            "1-30/5 * * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T00:01:00+00:00",
                "2026-01-01T00:06:00+00:00",
                "2026-01-01T00:11:00+00:00",
                "2026-01-01T00:16:00+00:00",
                "2026-01-01T00:21:00+00:00",
                "2026-01-01T00:26:00+00:00",
                "2026-01-01T01:01:00+00:00",
            ],
        ),
        (
            "30 4 1 JAN *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T04:30:00+00:00",
                "2027-01-01T04:30:00+00:00",
                "2028-01-01T04:30:00+00:00",
            ],
        ),
        (
            "0 0 1 jan,Jul *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-07-01T00:00:00+00:00",
                "2027-01-01T00:00:00+00:00",
                "2027-07-01T00:00:00+00:00",
            ],
        ),
        (
            "0 0 29 2 *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"],
        ),
        // Macros.
        (
            "@hourly",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"],
        ),
        (
            "@daily",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00"],
        ),
        (
            "@midnight",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00"],
        ),
        (
            "@weekly",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"],
        ),
        (
            "@monthly",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"],
        ),
        (
            "@yearly",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"],
        ),
        (
            "@annually",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"],
        ),
        // Six fields: seconds first.
        (
            "*/10 * * * * *",
            "UTC",
            "2026-01-01T00:00:05Z",
            &[
                "2026-01-01T00:00:10+00:00",
                "2026-01-01T00:00:20+00:00",
                "2026-01-01T00:00:30+00:00",
                "2026-01-01T00:00:40+00:00",
            ],
        ),
        (
            "0 30 9 * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T09:30:00+00:00", "2026-01-02T09:30:00+00:00"],
        ),
        // A `*` inside a list is the whole range, as in cronie (croner alone refuses it).
        (
            "*,5 * * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T00:01:00+00:00", "2026-01-01T00:02:00+00:00"],
        ),
        (
            "*/15,7 * * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T00:07:00+00:00",
                "2026-01-01T00:15:00+00:00",
                "2026-01-01T00:30:00+00:00",
                "2026-01-01T00:45:00+00:00",
                "2026-01-01T01:00:00+00:00",
            ],
        ),
        // A list starting with `*` still counts as a star for cronie's day rule: AND, so
        // `15 * *,1` is the 15th of every month and `*,1 * 1` is every Monday.
        (
            "0 0 15 * *,1",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-15T00:00:00+00:00", "2026-02-15T00:00:00+00:00"],
        ),
        (
            "0 12 *,1 * 1",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-01-05T12:00:00+00:00", "2026-01-12T12:00:00+00:00"],
        ),
    ];

    #[test]
    fn the_table_of_crontab_expressions_gives_the_fire_times_cronie_would() {
        for (expr, tz, after, want) in TABLE {
            assert_eq!(
                next_n(expr, tz, after, want.len()),
                *want,
                "{expr} in {tz} after {after}"
            );
        }
    }

    #[test]
    fn invalid_expressions_are_rejected_with_what_was_expected() {
        let cases: &[(&str, &str)] = &[
            ("60 * * * *", "minute value 60 is out of range 0-59"),
            (
                "* * * *",
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found 4",
            ),
            (
                "0 0 0 1 1 * 2027",
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found 7",
            ),
            (
                "0 0 * * 8",
                "day-of-week value 8 is out of range 0-7 (0 and 7 are Sunday)",
            ),
            ("0 24 * * *", "hour value 24 is out of range 0-23"),
            ("0 0 0 * *", "day-of-month value 0 is out of range 1-31"),
            ("0 0 * 13 *", "month value 13 is out of range 1-12"),
            ("60 * * * * *", "second value 60 is out of range 0-59"),
            (
                "@reboot",
                "@reboot is not supported: a daemon schedule needs clock times, not 'when cron starts'",
            ),
            (
                "@every 5m",
                "unknown macro '@every': expected one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually",
            ),
            (
                "@daily 0",
                "@daily is a whole schedule on its own; found more fields after it",
            ),
            (
                "hello world",
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found 2",
            ),
            (
                "a b c d e",
                "minute field 'a' is invalid: 'a' is not a number",
            ),
            (
                "0 0 * * FOO",
                "day-of-week field 'FOO' is invalid: 'FOO' is not a number 0-7 or a day name SUN-SAT",
            ),
            (
                "MON * * * *",
                "minute field 'MON' is invalid: 'MON' is not a number",
            ),
            (
                "0 0 * JAN-MON *",
                "month field 'JAN-MON' is invalid: 'MON' is not a number 1-12 or a month name JAN-DEC",
            ),
            (
                "*-5,9 * * * *",
                "minute field '*-5,9' is invalid: '*' cannot be one end of a range; write '*', '*/5' or a range such as '1-5'",
            ),
            (
                "5/10 * * * *",
                "minute field '5/10' is invalid: '5/10' steps from a single value; crontab steps a range, as in '*/10' or '5-59/10'",
            ),
            (
                "*/0 * * * *",
                "minute field '*/0' is invalid: a step must be at least 1",
            ),
            (
                "1,,2 * * * *",
                "minute field '1,,2' is invalid: a list has an empty element",
            ),
            (
                "0 0 5-3 * *",
                "day-of-month field '5-3' is invalid: range '5-3' runs backwards; crontab ranges go from low to high",
            ),
            (
                "0 0 * * 5-0",
                "day-of-week field '5-0' is invalid: range '5-0' runs backwards; crontab ranges go from low to high",
            ),
            (
                "0 0 L * *",
                "day-of-month field 'L' uses 'L', which crontab does not support",
            ),
            (
                "0 0 15W * *",
                "day-of-month field '15W' uses 'W', which crontab does not support",
            ),
            (
                "0 0 * * 5#2",
                "day-of-week field '5#2' uses '#', which crontab does not support",
            ),
            (
                "0 0 * * 5L",
                "day-of-week field '5L' uses 'L', which crontab does not support",
            ),
            (
                "0 0 ? * 1",
                "day-of-month field '?' uses '?', which crontab does not support",
            ),
            (
                "0 0 1 * +1",
                "day-of-week field '+1' uses '+', which crontab does not support",
            ),
            (
                "0 0 31 2,4 *",
                "'0 0 31 2,4 *' never fires: its months do not have the days of month it names",
            ),
            (
                "   ",
                "empty schedule: expected 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or a macro such as @daily",
            ),
        ];
        for (expr, message) in cases {
            assert_eq!(error(expr).to_string(), *message, "{expr}");
        }
    }

    #[test]
    fn errors_offer_a_hint_where_one_helps() {
        assert_eq!(
            error("0 0 0 1 1 * 2027").help().as_deref(),
            Some("crontab has no year field; drop the seventh field")
        );
        assert_eq!(
            error("0 0 * * 8").help().as_deref(),
            Some("use 0-7 or SUN-SAT; 0 and 7 are both Sunday")
        );
        assert_eq!(
            error("@dayly").help().as_deref(),
            Some("did you mean @daily?")
        );
        assert_eq!(
            error("0 0 ? * 1").help().as_deref(),
            Some("crontab has no '?'; use '*'")
        );
        assert!(error("@reboot").help().is_some());
        assert_eq!(error("0 0 5-3 * *").help(), None);
    }

    #[test]
    fn a_day_of_the_month_no_chosen_month_has_is_fine_when_the_weekday_can_fire() {
        // Vixie OR: Mondays in February still fire.
        let fires = next_n("0 0 30 2 MON", "UTC", "2026-01-01T00:00:00Z", 2);
        assert_eq!(
            fires,
            ["2026-02-02T00:00:00+00:00", "2026-02-09T00:00:00+00:00"]
        );
    }

    #[test]
    fn the_expression_and_zone_are_kept_as_given() {
        let schedule = Schedule::parse("  */5 * * * *  ", zone("Europe/Berlin")).expect("valid");
        assert_eq!(schedule.expression(), "*/5 * * * *");
        assert_eq!(schedule.timezone(), zone("Europe/Berlin"));
    }

    #[test]
    fn next_after_is_strictly_after_even_on_a_fire_time() {
        let schedule = Schedule::parse("*/15 * * * *", Tz::UTC).expect("valid");
        let next = schedule.next_after(utc("2026-01-01T00:15:00Z"));
        assert_eq!(
            next.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-01-01T00:30:00+00:00")
        );
        let next = schedule.next_after(utc("2026-01-01T00:14:59.999Z"));
        assert_eq!(
            next.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-01-01T00:15:00+00:00")
        );
    }

    #[test]
    fn fires_after_is_lazy_on_an_every_second_schedule() {
        let schedule = Schedule::parse("* * * * * *", Tz::UTC).expect("valid");
        let fires: Vec<_> = schedule
            .fires_after(utc("2026-01-01T00:00:00Z"))
            .take(3)
            .map(|t| t.to_rfc3339())
            .collect();
        assert_eq!(
            fires,
            [
                "2026-01-01T00:00:01+00:00",
                "2026-01-01T00:00:02+00:00",
                "2026-01-01T00:00:03+00:00"
            ]
        );
    }

    // Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC);
    // 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC), so 02:00-02:59 repeats.

    #[test]
    fn a_fixed_time_job_in_the_spring_gap_runs_right_after_it_in_berlin() {
        assert_eq!(
            next_n("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", 3),
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ]
        );
    }

    #[test]
    fn several_fixed_times_in_the_gap_run_once_after_it() {
        // A list is still fixed-time in cronie (croner alone would drop both).
        assert_eq!(
            next_n("0,30 2 * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", 3),
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:00:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ]
        );
    }

    #[test]
    fn a_spelled_out_minute_range_is_fixed_time_like_in_cronie() {
        // '0-59' does not start with '*', so cronie catches 02:00-02:59 up at 03:00.
        assert_eq!(
            next_n("0-59 2 * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", 2),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]
        );
    }

    #[test]
    fn a_wildcard_job_skips_the_wall_times_the_spring_gap_removes() {
        assert_eq!(
            next_n("*/30 * * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", 3),
            [
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:30:00+02:00"
            ]
        );
        assert_eq!(
            next_n("0 * * * *", "Europe/Berlin", "2026-03-28T23:30:00Z", 3),
            [
                "2026-03-29T01:00:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T04:00:00+02:00"
            ]
        );
        // Minute '*' makes it wildcard, so the whole 02 hour is skipped that day.
        assert_eq!(
            next_n("* 2 * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", 1),
            ["2026-03-30T02:00:00+02:00"]
        );
    }

    #[test]
    fn a_fixed_time_job_in_the_repeated_hour_runs_once_in_berlin() {
        assert_eq!(
            next_n("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
    }

    #[test]
    fn a_fixed_time_job_does_not_rerun_when_asked_during_the_first_pass() {
        // 02:10 CEST: 02:00 already ran and is not repeated; 02:45 is still ahead.
        assert_eq!(
            next_n("0 2 * * *", "Europe/Berlin", "2026-10-25T00:10:00Z", 1),
            ["2026-10-26T02:00:00+01:00"]
        );
        assert_eq!(
            next_n("45 2 * * *", "Europe/Berlin", "2026-10-25T00:10:00Z", 2),
            ["2026-10-25T02:45:00+02:00", "2026-10-26T02:45:00+01:00"]
        );
        // 02:10 CET, in the second pass.
        assert_eq!(
            next_n("45 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", 1),
            ["2026-10-26T02:45:00+01:00"]
        );
    }

    #[test]
    fn a_wildcard_job_runs_in_both_passes_of_the_repeated_hour() {
        assert_eq!(
            next_n("*/30 * * * *", "Europe/Berlin", "2026-10-24T23:00:00Z", 6),
            [
                "2026-10-25T01:30:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
        assert_eq!(
            next_n("0 * * * *", "Europe/Berlin", "2026-10-24T22:30:00Z", 4),
            [
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
    }

    #[test]
    fn a_wildcard_job_started_inside_the_repeated_hour_continues_from_its_pass() {
        // 02:10 CEST, first pass: the rest of it, then all of the repeat.
        assert_eq!(
            next_n("*/30 * * * *", "Europe/Berlin", "2026-10-25T00:10:00Z", 4),
            [
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
        // 02:10 CET, second pass.
        assert_eq!(
            next_n("*/30 * * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", 2),
            ["2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00"]
        );
        // Every second, from the last second of the first pass.
        assert_eq!(
            next_n("* * * * * *", "Europe/Berlin", "2026-10-25T00:59:58Z", 3),
            [
                "2026-10-25T02:59:59+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:00:01+01:00"
            ]
        );
    }

    // America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC);
    // 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC), so 01:00-01:59 repeats.

    #[test]
    fn a_fixed_time_job_in_the_spring_gap_runs_right_after_it_in_new_york() {
        assert_eq!(
            next_n("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
        );
    }

    #[test]
    fn a_fixed_time_job_in_the_repeated_hour_runs_once_in_new_york() {
        assert_eq!(
            next_n("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
    }

    #[test]
    fn wildcard_jobs_follow_the_wall_clock_across_both_new_york_transitions() {
        assert_eq!(
            next_n("0 * * * *", "America/New_York", "2026-03-08T05:30:00Z", 3),
            [
                "2026-03-08T01:00:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T04:00:00-04:00"
            ]
        );
        assert_eq!(
            next_n(
                "*/30 * * * *",
                "America/New_York",
                "2026-11-01T04:45:00Z",
                5
            ),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T02:00:00-05:00"
            ]
        );
    }

    #[test]
    fn due_lists_the_fires_in_a_half_open_window_across_the_fall_back() {
        let schedule = Schedule::parse("*/30 * * * *", zone("Europe/Berlin")).expect("valid");
        let due: Vec<String> = schedule
            .due(utc("2026-10-25T00:00:00Z"), utc("2026-10-25T02:00:00Z"))
            .iter()
            .map(|t| t.to_rfc3339())
            .collect();
        // 00:00Z (02:00 CEST) is the open end; 02:00Z (03:00 CET) the closed one.
        assert_eq!(
            due,
            [
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
    }

    #[test]
    fn due_over_a_transition_day_runs_a_fixed_time_job_exactly_once() {
        let berlin = Schedule::parse("30 2 * * *", zone("Europe/Berlin")).expect("valid");
        let spring = berlin.due(utc("2026-03-28T23:00:00Z"), utc("2026-03-29T22:00:00Z"));
        assert_eq!(
            spring.iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>(),
            ["2026-03-29T03:00:00+02:00"]
        );
        let new_york = Schedule::parse("30 1 * * *", zone("America/New_York")).expect("valid");
        let fall = new_york.due(utc("2026-11-01T04:00:00Z"), utc("2026-11-02T04:00:00Z"));
        assert_eq!(
            fall.iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>(),
            ["2026-11-01T01:30:00-04:00"]
        );
    }

    #[test]
    fn an_every_second_job_fires_on_every_real_second_through_both_transitions() {
        let schedule = Schedule::parse("* * * * * *", zone("Europe/Berlin")).expect("valid");
        for (from, to) in [
            ("2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z"),
            ("2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z"),
        ] {
            let due = schedule.due(utc(from), utc(to));
            assert_eq!(due.len(), 7200, "{from}..{to}");
            assert!(due.windows(2).all(|w| w[1] - w[0] == TimeDelta::seconds(1)));
        }
    }

    #[test]
    fn a_fixed_time_job_with_seconds_runs_its_minute_once_on_the_fall_back_day() {
        let schedule = Schedule::parse("* 30 2 * * *", zone("Europe/Berlin")).expect("valid");
        let due = schedule.due(utc("2026-10-24T22:00:00Z"), utc("2026-10-25T22:00:00Z"));
        assert_eq!(due.len(), 60);
        assert_eq!(due[0].to_rfc3339(), "2026-10-25T02:30:00+02:00");
        assert_eq!(due[59].to_rfc3339(), "2026-10-25T02:30:59+02:00");
    }

    #[test]
    fn due_is_empty_for_an_empty_or_reversed_window() {
        let schedule = Schedule::parse("* * * * *", Tz::UTC).expect("valid");
        let t = utc("2026-01-01T00:00:00Z");
        assert!(schedule.due(t, t).is_empty());
        assert!(schedule.due(t, utc("2025-12-31T00:00:00Z")).is_empty());
    }

    #[test]
    fn a_zone_skipping_a_whole_day_drops_the_skipped_fixed_times_like_cronie() {
        // Samoa went from 2011-12-29 24:00 (-10) to 2011-12-31 00:00 (+14).
        // A 24-hour jump is cronie's "clock jumped": nothing is caught up.
        assert_eq!(
            next_n("0 12 * * *", "Pacific/Apia", "2011-12-29T22:00:00Z", 2),
            ["2011-12-31T12:00:00+14:00", "2012-01-01T12:00:00+14:00"]
        );
    }

    #[test]
    fn a_zone_repeating_a_whole_day_reruns_fixed_times_like_cronie() {
        // Juneau, 1867-10-19: the clock went back a day (+15:02:19 -> -08:57:41).
        let schedule = Schedule::parse("0 12 * * *", zone("America/Juneau")).expect("valid");
        let fires: Vec<String> = schedule
            .fires_after(utc("1867-10-18T00:00:00Z"))
            .take(3)
            .map(|t| t.with_timezone(&Utc).to_rfc3339())
            .collect();
        assert_eq!(
            fires,
            [
                "1867-10-18T20:57:41+00:00",
                "1867-10-19T20:57:41+00:00",
                "1867-10-20T20:57:41+00:00"
            ]
        );
    }

    #[test]
    fn clock_jumps_are_classified_as_cronie_does() {
        assert_eq!(jump_kind(1), Jump::Normal);
        assert_eq!(jump_kind(3), Jump::Small);
        assert_eq!(jump_kind(5), Jump::Small);
        assert_eq!(jump_kind(6), Jump::Medium);
        assert_eq!(jump_kind(61), Jump::Medium);
        assert_eq!(jump_kind(180), Jump::Medium);
        assert_eq!(jump_kind(181), Jump::Large);
        assert_eq!(jump_kind(0), Jump::Negative);
        assert_eq!(jump_kind(-59), Jump::Negative);
        assert_eq!(jump_kind(-180), Jump::Negative);
        assert_eq!(jump_kind(-181), Jump::Large);
    }

    #[test]
    fn time_zones_parse_by_iana_name_in_any_case() {
        assert_eq!(parse_timezone("Europe/Berlin"), Ok(zone("Europe/Berlin")));
        assert_eq!(parse_timezone(" europe/berlin "), Ok(zone("Europe/Berlin")));
        assert_eq!(parse_timezone("utc"), Ok(Tz::UTC));
    }

    #[test]
    fn an_unknown_time_zone_suggests_a_few_close_names() {
        let err = parse_timezone("Europe/Berln").expect_err("misspelt");
        assert_eq!(
            err.to_string(),
            "unknown time zone 'Europe/Berln': expected an IANA name such as Europe/Berlin"
        );
        let help = err.help().expect("a hint");
        assert!(help.contains("Europe/Berlin"), "{help}");

        let err = parse_timezone("New York").expect_err("city only");
        assert!(err.help().expect("a hint").contains("America/New_York"));

        let ScheduleError::UnknownTimezone { suggestions, .. } =
            parse_timezone("Mars/Olympus_Mons").expect_err("no such zone")
        else {
            panic!("wrong error kind");
        };
        assert!(suggestions.len() <= 3, "{suggestions:?}");
    }

    #[test]
    fn instants_beyond_chronos_limits_have_no_next_fire_instead_of_panicking() {
        let s = Schedule::parse("* * * * *", chrono_tz::Europe::Berlin).expect("parses");
        assert_eq!(s.next_after(DateTime::<Utc>::MAX_UTC), None);
        assert_eq!(s.next_after(DateTime::<Utc>::MIN_UTC), None);
    }
}
