//! The end of a verification window: a succeeded alert run of a runbook with `verify` whose
//! alert has not resolved when its window ends (`RunRecord::verify_by`) becomes unverified then,
//! not only when a late resolve arrives. Timers run on the engine's clock and are re-armed at
//! start-up for runs still awaiting their verdict.

use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::engine::clock::Clock;
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

/// Verification windows of this daemon's finished alert runs.
pub struct Verdicts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Closed when the daemon stops: a window ending then is decided at the next start.
    queue: Arc<Queue>,
    /// A weak handle to itself, for timers: a pending one must not keep a stopped daemon (and
    /// its store) alive.
    me: Weak<Verdicts>,
}

impl Verdicts {
    /// Verdicts over `store`, timed by `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, queue: Arc<Queue>) -> Arc<Verdicts> {
        Arc::new_cyclic(|me| Verdicts {
            store,
            clock,
            queue,
            me: me.clone(),
        })
    }

    /// Waits for the end of `run`'s window, if it awaits a verdict; then, unless its alert
    /// resolved meanwhile, records it unverified.
    pub fn watch(&self, run: &RunRecord) {
        if let (Some(at), None) = (run.verify_by, &run.verification) {
            self.arm(run.id.clone(), at);
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
