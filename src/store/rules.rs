//! What every backend decides the same way, kept once: whether an alert's dedupe key may be
//! taken again, how a re-sent alert episode merges into the stored one, what a verification
//! verdict does to a run, and how a range of days splits into whole months (read from monthly
//! rollups) and the partial months at its edges (read from daily ones).

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use crate::run::record::{RunRecord, Verification};
use crate::run::status::RunStatus;
use crate::store::AlertReceived;

/// What admission reads of the run an alert's dedupe key points to.
#[derive(Deserialize)]
pub struct Earlier {
    status: RunStatus,
    #[serde(default)]
    approval: Option<EarlierApproval>,
}

#[derive(Deserialize)]
struct EarlierApproval {
    approved: bool,
}

impl Earlier {
    /// A guard skipped it (cooldown, run limits, overlap, an open breaker): the episode may run
    /// on a re-send. A run admitted to run, or skipped by a person's denial or an expired
    /// approval, keeps the key taken.
    pub fn guard_skipped(&self) -> bool {
        self.status == RunStatus::Skipped && self.approval.as_ref().is_none_or(|a| a.approved)
    }
}

/// Merges `again` (the same episode received once more) into the stored `old`: last seen, times
/// received (at least one more), ever firing, runbooks matched.
pub fn received_again(old: &mut AlertReceived, again: &AlertReceived) {
    old.last_seen = old.last_seen.max(again.last_seen);
    old.times_received += again.times_received.max(1);
    old.firing |= again.firing;
    for m in &again.matched {
        if !old.matched.contains(m) {
            old.matched.push(m.clone());
        }
    }
}

/// `old` with its first verification verdict, credited as the verdict makes it.
pub fn with_verdict(old: &RunRecord, verification: &Verification) -> RunRecord {
    let mut run = old.clone();
    run.verification = Some(verification.clone());
    run.toil = run
        .toil
        .as_ref()
        .map(|c| crate::ledger::toil::verdict(c, verification.verified));
    run
}

/// The first day of `d`'s month.
pub fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// The first day of the month after `d`'s.
pub fn next_month(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MAX)
}

/// A piece of a range of days, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// A whole calendar month (its first day).
    Month(NaiveDate),
    /// Days [from, to] of a month the range covers in part.
    Days(NaiveDate, NaiveDate),
}

/// The whole months in [from, to] and the partial months at its edges, in order.
pub fn spans(from: NaiveDate, to: NaiveDate) -> Vec<Span> {
    let mut out = Vec::new();
    if from > to {
        return out;
    }
    let mut month = first_of_month(from);
    while month <= to {
        let next = next_month(month);
        let last = next.pred_opt().unwrap_or(month);
        if month >= from && last <= to {
            out.push(Span::Month(month));
        } else {
            out.push(Span::Days(from.max(month), to.min(last)));
        }
        if next <= month {
            break;
        }
        month = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("date")
    }

    #[test]
    fn a_range_splits_into_its_whole_months_and_the_days_at_its_edges() {
        assert_eq!(
            spans(d(2026, 10, 15), d(2027, 1, 3)),
            vec![
                Span::Days(d(2026, 10, 15), d(2026, 10, 31)),
                Span::Month(d(2026, 11, 1)),
                Span::Month(d(2026, 12, 1)),
                Span::Days(d(2027, 1, 1), d(2027, 1, 3)),
            ]
        );
        assert_eq!(
            spans(d(2026, 2, 1), d(2026, 2, 28)),
            vec![Span::Month(d(2026, 2, 1))]
        );
        assert_eq!(
            spans(d(2026, 2, 3), d(2026, 2, 3)),
            vec![Span::Days(d(2026, 2, 3), d(2026, 2, 3))]
        );
        assert!(spans(d(2026, 2, 3), d(2026, 2, 1)).is_empty());
        assert_eq!(next_month(d(2026, 12, 5)), d(2027, 1, 1));
        assert!(
            spans(NaiveDate::MAX, NaiveDate::MAX).len() <= 2,
            "the last representable month ends the loop"
        );
    }

    #[test]
    fn only_a_guard_skipped_run_frees_its_alert_key() {
        let earlier = |json: &str| serde_json::from_str::<Earlier>(json).expect("earlier");
        assert!(earlier(r#"{"status":"skipped"}"#).guard_skipped());
        assert!(earlier(r#"{"status":"skipped","approval":{"approved":true}}"#).guard_skipped());
        assert!(!earlier(r#"{"status":"skipped","approval":{"approved":false}}"#).guard_skipped());
        assert!(!earlier(r#"{"status":"succeeded"}"#).guard_skipped());
    }
}
