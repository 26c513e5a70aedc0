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
