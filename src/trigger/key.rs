//! Dedupe keys: what makes a trigger start at most one run, across re-sends, HA peers and
//! restarts. One alert episode runs each matching runbook once (and once more on its resolve,
//! for runbooks that act on it); one schedule fire runs once; a manual run is its own key; an
//! interrupted run of an idempotent runbook is started again once.
//!
//! The store keeps keys in their encoded form, which is fixed: changing it would let an alert
//! re-sent across an upgrade run a second time.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::trigger::schedule::Schedule;

/// A fixed-width UTC stamp at nanosecond precision: the same instant written differently
/// (`.307Z`, `.307000000Z`, `+01:00`) gives the same text, and texts sort by time.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// One firing episode of an alert: its fingerprint and when it started, at full precision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Episode {
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// When the episode started.
    pub starts_at: DateTime<Utc>,
}

impl Episode {
    /// The episode of a fingerprint that started at `starts_at`.
    pub fn new(fingerprint: &str, starts_at: DateTime<Utc>) -> Episode {
        Episode {
            fingerprint: fingerprint.to_string(),
            starts_at,
        }
    }

    /// The start of every dedupe key of this episode's runs.
    pub fn key_prefix(&self) -> String {
        format!("alert:{self}:")
    }
}

impl fmt::Display for Episode {
    /// `fingerprint@startsAt`, the episode's stored key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.fingerprint, stamp(self.starts_at))
    }
}

/// One schedule trigger of one runbook, as written: a changed expression or timezone is a new
/// schedule, whose fires are its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fire {
    /// The runbook.
    pub runbook: String,
    /// The trigger's index in the runbook.
    pub trigger: usize,
    /// `expression timezone`.
    pub schedule: String,
}

impl Fire {
    /// The schedule trigger `index` of runbook `runbook`.
    pub fn new(runbook: &str, index: usize, schedule: &Schedule) -> Fire {
        Fire {
            runbook: runbook.to_string(),
            trigger: index,
            schedule: format!("{} {}", schedule.expression(), schedule.timezone()),
        }
    }

    /// The start of every dedupe key of this schedule's fires.
    pub fn key_prefix(&self) -> String {
        format!("fire:{}:{}:{}:", self.runbook, self.trigger, self.schedule)
    }

    /// The fire time a dedupe key of this schedule stands for.
    pub fn time_of(&self, key: &str) -> Option<DateTime<Utc>> {
        let stamp = key.strip_prefix(&self.key_prefix())?;
        DateTime::parse_from_rfc3339(stamp)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// What a run is unique for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DedupeKey {
    /// A runbook acting on an alert episode (once firing, once resolved).
    Alert {
        /// The episode.
        episode: Episode,
        /// The runbook.
        runbook: String,
        /// The run acts on the episode's resolve.
        resolved: bool,
    },
    /// One fire of a schedule.
    Fire {
        /// The schedule.
        fire: Fire,
        /// The fire time.
        at: DateTime<Utc>,
    },
    /// A run started by hand: unique by its own id.
    Manual {
        /// The run's id.
        run: String,
    },
    /// An interrupted run of an idempotent runbook started again: once per interrupted run.
    Retry {
        /// The interrupted run's id.
        of: String,
    },
}

impl DedupeKey {
    /// The key as the store keeps it.
    pub fn encode(&self) -> String {
        match self {
            DedupeKey::Alert {
                episode,
                runbook,
                resolved,
            } => {
                let suffix = if *resolved { ":resolved" } else { "" };
                format!("{}{runbook}{suffix}", episode.key_prefix())
            }
            DedupeKey::Fire { fire, at } => format!("{}{}", fire.key_prefix(), stamp(*at)),
            DedupeKey::Manual { run } => format!("manual:{run}"),
            DedupeKey::Retry { of } => format!("retry:{of}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn encodings_are_those_stores_written_by_earlier_releases_hold() {
        let episode = Episode::new("1b821551d31d953a", at("2026-11-28T15:34:26.695089778Z"));
        let firing = DedupeKey::Alert {
            episode: episode.clone(),
            runbook: "disk-usage".into(),
            resolved: false,
        };
        assert_eq!(
            firing.encode(),
            "alert:1b821551d31d953a@2026-11-28T15:34:26.695089778Z:disk-usage"
        );
        let resolved = DedupeKey::Alert {
            episode,
            runbook: "disk-usage".into(),
            resolved: true,
        };
        assert_eq!(
            resolved.encode(),
            "alert:1b821551d31d953a@2026-11-28T15:34:26.695089778Z:disk-usage:resolved"
        );
        let schedule = Schedule::parse("*/5 * * * *", chrono_tz::UTC).expect("valid cron");
        let fire = Fire::new("log-cleanup", 0, &schedule);
        let key = DedupeKey::Fire {
            fire: fire.clone(),
            at: at("2026-12-01T10:05:00Z"),
        };
        assert_eq!(
            key.encode(),
            "fire:log-cleanup:0:*/5 * * * * UTC:2026-12-01T10:05:00.000000000Z"
        );
        assert_eq!(
            fire.time_of(&key.encode()),
            Some(at("2026-12-01T10:05:00Z"))
        );
        assert_eq!(
            DedupeKey::Manual { run: "01J".into() }.encode(),
            "manual:01J"
        );
        assert_eq!(DedupeKey::Retry { of: "01J".into() }.encode(), "retry:01J");
    }

    #[test]
    fn the_same_instant_written_differently_is_the_same_episode() {
        let a = Episode::new("f", at("2026-11-28T14:43:50.307Z"));
        let b = Episode::new("f", at("2026-11-28T15:43:50.307000000+01:00"));
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(a.to_string(), "f@2026-11-28T14:43:50.307000000Z");
    }

    #[test]
    fn a_fire_key_of_another_schedule_has_no_time_for_this_one() {
        let five = Fire::new(
            "r",
            0,
            &Schedule::parse("*/5 * * * *", chrono_tz::UTC).expect("cron"),
        );
        let ten = Fire::new(
            "r",
            0,
            &Schedule::parse("*/10 * * * *", chrono_tz::UTC).expect("cron"),
        );
        let key = DedupeKey::Fire {
            fire: ten,
            at: at("2026-12-01T10:10:00Z"),
        }
        .encode();
        assert_eq!(five.time_of(&key), None);
    }
}
