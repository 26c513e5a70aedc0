//! Verification verdicts: a succeeded alert run of a runbook with `verify` is verified when its
//! alert resolves between the run's start and the end of its window (`RunRecord::verify_by`),
//! and unverified when the window ends with the alert still firing. Timers run on the engine's
//! clock and are re-armed at start-up for runs still awaiting their verdict. A resolve that
//! arrives while the run is queued or running is remembered here and decides the verdict as
//! soon as the run finishes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::engine::clock::Clock;
use crate::engine::metrics::Metrics;
use crate::engine::queue::Queue;
use crate::run::id::RunId;
use crate::run::record::{RunRecord, Verification};
use crate::store::Store;

/// Whether a fix worked: its alert resolved (`resolved_at`: its `endsAt`, else when the resolve
/// arrived) no earlier than the run started and no later than its window's end. An alert that
/// resolved before the run started cleared on its own; one that resolved after the window, late.
pub fn within(
    started_at: DateTime<Utc>,
    resolved_at: DateTime<Utc>,
    verify_by: DateTime<Utc>,
) -> bool {
    started_at <= resolved_at && resolved_at <= verify_by
}

/// Verification windows of this daemon's alert runs.
pub struct Verdicts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Closed when the daemon stops: a window ending then is decided at the next start.
    queue: Arc<Queue>,
    /// Runs whose alert resolved before they finished: run id -> when it resolved. In memory
    /// only: a run running now finishes in this process or is interrupted (and an interrupted
    /// run gets no verdict); a queued run resumed after a restart loses its entry and is judged
    /// by its window alone (docs/toil.md says so).
    early: Mutex<HashMap<RunId, DateTime<Utc>>>,
    /// A weak handle to itself, for timers: a pending one must not keep a stopped daemon (and
    /// its store) alive.
    me: Weak<Verdicts>,
}

impl Verdicts {
    /// Verdicts over `store`, timed by `clock`; the minutes a verdict releases count in `metrics`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        queue: Arc<Queue>,
    ) -> Arc<Verdicts> {
        Arc::new_cyclic(|me| Verdicts {
            store,
            clock,
            metrics,
            queue,
            early: Mutex::new(HashMap::new()),
            me: me.clone(),
        })
    }

    /// Remembers that the alert of `id`, a run not yet finished, resolved at `resolved_at`: its
    /// verdict is decided when it finishes ([`Verdicts::watch`]). The first resolve stands.
    pub fn resolved_early(&self, id: &RunId, resolved_at: DateTime<Utc>) {
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        early.entry(id.clone()).or_insert(resolved_at);
    }

    /// Takes the resolve remembered for `id`, if any: whoever takes it decides the verdict.
    pub fn take_early(&self, id: &RunId) -> Option<DateTime<Utc>> {
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        early.remove(id)
    }

    /// For a finished `run`: decides its verdict now when its alert resolved before it finished,
    /// else waits for the end of its window, if it awaits a verdict, and then, unless its alert
    /// resolved meanwhile, records it unverified.
    pub async fn watch(&self, run: &RunRecord) {
        let early = self.take_early(&run.id);
        let (Some(at), None) = (run.verify_by, &run.verification) else {
            return;
        };
        match early {
            Some(resolved_at) => {
                self.decide(run, at, resolved_at).await;
            }
            None => self.arm(run.id.clone(), at),
        }
    }

    /// Records `run`'s verdict for an alert that resolved at `resolved_at`, its window ending at
    /// `verify_by`; a verified run's held minutes count in the toil metric now. False when the
    /// run had a verdict already (the first stands) or it could not be recorded.
    pub async fn decide(
        &self,
        run: &RunRecord,
        verify_by: DateTime<Utc>,
        resolved_at: DateTime<Utc>,
    ) -> bool {
        // A succeeded run has started; the start of its record stands in for one that did not.
        let started = run.started_at.unwrap_or(run.created_at);
        let ok = within(started, resolved_at, verify_by);
        let verification = Verification {
            verified: ok,
            at: self.clock.now(),
            resolved_at: Some(resolved_at),
        };
        match self.store.set_verified(&run.id, verification).await {
            Ok(true) => {
                if let (true, Some(held)) = (ok, run.toil.as_ref().and_then(|t| t.held)) {
                    self.metrics.toil_released(&run.runbook, &run.owner, held);
                }
                true
            }
            Ok(false) => false,
            Err(e) => {
                warn!(run_id = %run.id, "cannot record the verdict of a resolved alert: {e}");
                false
            }
        }
    }

    fn arm(&self, id: RunId, at: DateTime<Utc>) {
        let (me, clock) = (self.me.clone(), self.clock.clone());
        tokio::spawn(async move {
            clock.sleep_until(at).await;
            let Some(me) = me.upgrade() else {
                return;
            };
            if me.queue.is_closed() {
                return;
            }
            let verification = Verification {
                verified: false,
                at: me.clock.now(),
                resolved_at: None,
            };
            // The store keeps the first verdict: a resolve recorded before this one stands.
            match me.store.set_verified(&id, verification).await {
                Ok(true) => {
                    info!(run_id = %id, "unverified: its alert did not resolve within the window")
                }
                Ok(false) => {}
                Err(e) => warn!(run_id = %id, "cannot record the run unverified: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, s)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn verified_iff_the_alert_resolved_between_the_start_and_the_window_end() {
        let (start, deadline) = (at(10), at(40));
        assert!(within(start, at(10), deadline), "exactly at the start");
        assert!(
            within(start, at(40), deadline),
            "exactly at the window's end"
        );
        assert!(
            within(start, at(20), deadline),
            "during the run or the window"
        );
        assert!(!within(start, at(9), deadline), "before the run started");
        assert!(!within(start, at(41), deadline), "after the window ended");
    }
}
