//! Guard decisions: cooldown, run-count limits and failure streaks that open a per-(runbook,
//! key) circuit breaker, and the overlap policy. Pure functions of (guards, state, now) with
//! the clock passed in, so every policy and boundary is unit tested; the daemon persists the
//! state so a restart forgets neither an open breaker nor a cooldown.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::run::status::RunStatus;
use crate::runbook::model::{Guards, Overlap};

/// An open circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

/// What the guards remember about one (runbook, key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// Admitted triggers within the longest window that matters (for `max_runs`).
    #[serde(default)]
    pub starts: Vec<DateTime<Utc>>,
    /// The last admitted trigger (for `cooldown`).
    #[serde(default)]
    pub last_start: Option<DateTime<Utc>>,
    /// Failures since the last success (for `trip_after_failures`).
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Open breaker, if any.
    #[serde(default)]
    pub breaker: Option<Breaker>,
}

/// Whether a trigger may become a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Run it.
    Admit,
    /// Record it as skipped, with this reason.
    Skip(String),
}

fn dur(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

/// Decides a trigger at `now` and returns the state to store. Checks, in order: an open breaker,
/// the cooldown (a trigger exactly `cooldown` after the last one is admitted), and `max_runs`
/// (a trigger that would exceed `count` within `per` opens the breaker and is skipped).
pub fn admit(g: &Guards, state: &KeyState, now: DateTime<Utc>) -> (Admission, KeyState) {
    let mut next = state.clone();
    if let Some(b) = &state.breaker {
        return (
            Admission::Skip(format!(
                "circuit breaker open since {}: {}",
                b.opened_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                b.reason
            )),
            next,
        );
    }
    if let (Some(cooldown), Some(last)) = (g.cooldown, state.last_start) {
        let until = last + dur(cooldown);
        if now < until {
            return (
                Admission::Skip(format!(
                    "cooldown: the last run of this key started at {}, next allowed at {}",
                    last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )),
                next,
            );
        }
    }
    if let Some(m) = &g.max_runs {
        let since = now - dur(m.per);
        next.starts.retain(|t| *t > since);
        if next.starts.len() >= m.count as usize {
            let reason = format!(
                "more than {} runs within {}",
                m.count,
                crate::runbook::model::format_duration(m.per)
            );
            next.breaker = Some(Breaker {
                opened_at: now,
                reason: reason.clone(),
            });
            return (
                Admission::Skip(format!("circuit breaker opened: {reason}")),
                next,
            );
        }
        next.starts.push(now);
    }
    next.last_start = Some(now);
    (Admission::Admit, next)
}

/// Updates the state when a run of the key ends: successes reset the failure streak; failures
/// and timeouts extend it and open the breaker at `trip_after_failures`.
pub fn finished(g: &Guards, state: &KeyState, status: RunStatus, now: DateTime<Utc>) -> KeyState {
    let mut next = state.clone();
    match status {
        RunStatus::Succeeded | RunStatus::Noop => next.consecutive_failures = 0,
        RunStatus::Failed | RunStatus::TimedOut => {
            next.consecutive_failures += 1;
            if let Some(n) = g.trip_after_failures
                && next.consecutive_failures >= n
                && next.breaker.is_none()
            {
                next.breaker = Some(Breaker {
                    opened_at: now,
                    reason: format!("{} consecutive failures", next.consecutive_failures),
                });
            }
        }
        _ => {}
    }
    next
}

/// Closes the breaker and forgets the failure streak and window (a person looked at it).
pub fn reset(state: &KeyState) -> KeyState {
    KeyState {
        breaker: None,
        consecutive_failures: 0,
        starts: Vec::new(),
        last_start: state.last_start,
    }
}

/// What to do with a run whose key already has `running` runs executing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapAction {
    /// Start it.
    Run,
    /// Wait until a slot frees.
    Wait,
    /// Record it as skipped.
    Skip,
    /// Cancel the running ones, then start it.
    CancelPrevious,
}

/// Applies `concurrency` and `overlap` (no concurrency limit: always run).
pub fn overlap(g: &Guards, running: usize) -> OverlapAction {
    let Some(limit) = g.concurrency else {
        return OverlapAction::Run;
    };
    if running < limit as usize {
        return OverlapAction::Run;
    }
    match g.overlap {
        Overlap::Queue => OverlapAction::Wait,
        Overlap::Skip => OverlapAction::Skip,
        Overlap::CancelPrevious => OverlapAction::CancelPrevious,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::model::MaxRuns;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0)
            .single()
            .unwrap_or_default()
    }

    fn guards() -> Guards {
        Guards::default()
    }

    #[test]
    fn cooldown_skips_until_exactly_the_edge() {
        let g = Guards {
            cooldown: Some(std::time::Duration::from_secs(600)),
            ..guards()
        };
        let (a, s) = admit(&g, &KeyState::default(), t(0));
        assert_eq!(a, Admission::Admit);
        let (a, _) = admit(&g, &s, t(599));
        assert!(matches!(a, Admission::Skip(r) if r.starts_with("cooldown")));
        let (a, _) = admit(&g, &s, t(600));
        assert_eq!(
            a,
            Admission::Admit,
            "exactly at the cooldown edge is allowed"
        );
    }

    #[test]
    fn max_runs_opens_the_breaker_on_the_run_too_many_and_the_window_rolls_over() {
        let g = Guards {
            max_runs: Some(MaxRuns {
                count: 2,
                per: std::time::Duration::from_secs(3600),
            }),
            ..guards()
        };
        let (a1, s) = admit(&g, &KeyState::default(), t(0));
        let (a2, s) = admit(&g, &s, t(10));
        assert_eq!((a1, a2), (Admission::Admit, Admission::Admit));
        // A third inside the hour trips it...
        let (a3, tripped) = admit(&g, &s, t(3599));
        assert!(matches!(a3, Admission::Skip(r) if r.contains("more than 2 runs within 1h")));
        assert!(tripped.breaker.is_some());
        // ...while without tripping, the window rolls over: the first start leaves at t=3600.
        let (a4, _) = admit(&g, &s, t(3600));
        assert_eq!(a4, Admission::Admit);
        // An open breaker skips everything until reset.
        let (a5, _) = admit(&g, &tripped, t(100_000));
        assert!(matches!(a5, Admission::Skip(r) if r.starts_with("circuit breaker open")));
        let (a6, _) = admit(&g, &reset(&tripped), t(100_000));
        assert_eq!(a6, Admission::Admit);
    }

    #[test]
    fn consecutive_failures_trip_the_breaker_and_success_resets_the_streak() {
        let g = Guards {
            trip_after_failures: Some(2),
            ..guards()
        };
        let s = finished(&g, &KeyState::default(), RunStatus::Failed, t(0));
        assert!(s.breaker.is_none());
        let s = finished(&g, &s, RunStatus::Succeeded, t(1));
        assert_eq!(s.consecutive_failures, 0);
        let s = finished(&g, &s, RunStatus::TimedOut, t(2));
        let s = finished(&g, &s, RunStatus::Failed, t(3));
        assert_eq!(
            s.breaker.as_ref().map(|b| b.reason.as_str()),
            Some("2 consecutive failures")
        );
        let s = finished(&g, &s, RunStatus::Cancelled, t(4));
        assert_eq!(s.consecutive_failures, 2, "cancellations do not count");
    }

    #[test]
    fn overlap_policies_apply_only_at_the_concurrency_limit() {
        let mut g = Guards {
            concurrency: Some(1),
            ..guards()
        };
        assert_eq!(overlap(&g, 0), OverlapAction::Run);
        assert_eq!(overlap(&g, 1), OverlapAction::Wait);
        g.overlap = Overlap::Skip;
        assert_eq!(overlap(&g, 1), OverlapAction::Skip);
        g.overlap = Overlap::CancelPrevious;
        assert_eq!(overlap(&g, 1), OverlapAction::CancelPrevious);
        assert_eq!(overlap(&guards(), 100), OverlapAction::Run);
    }
}
