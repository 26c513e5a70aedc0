//! What replicas of a fleet tell each other about runs (None on sled, one node): cancel a run
//! running elsewhere, and follow a run in progress elsewhere ([`remote`] on the follower's
//! side, [`forward`] on the side that runs it). The engine speaks in [`Signal`]s through
//! [`Signals`]; how they travel (PostgreSQL's NOTIFY) is the store's business
//! (`store::postgres::signal`), and the daemon hands what arrives to the engine
//! (`daemon::signals`).
//!
//! A signal names a run or a follower's token, never anything to execute: a replica that gets
//! `follow` looks the run up in its own memory, and nothing in a signal becomes a command.
//!
//! [`remote`]: crate::engine::remote
//! [`forward`]: crate::engine::forward

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::error::StoreError;
use crate::store::signals::{Signal, Signals};

/// Followers here of runs elsewhere, and forwards from here to followers elsewhere.
pub struct Fleet {
    signals: Arc<dyn Signals>,
    /// A follower's token to where its signals go ([`crate::engine::remote`]).
    routes: Mutex<HashMap<String, mpsc::Sender<Signal>>>,
    /// A forward's token to when its follower last asked for it.
    forwards: Mutex<HashMap<String, Instant>>,
    /// Cancelled when this replica stops: its followers of runs elsewhere end (a run elsewhere
    /// may go on for long after this replica's shutdown grace).
    closing: CancellationToken,
    /// Whether this replica's listener is listening (see [`Fleet::set_listening`]).
    listening: std::sync::atomic::AtomicBool,
}

/// Signals buffered per follower before the slowest is dropped from (it then finishes from the
/// record).
const ROUTED: usize = 1024;

/// Most forwards made from one replica at once.
pub const MOST_FORWARDS: usize = 256;

impl Fleet {
    /// A fleet reached through `signals`.
    pub fn new(signals: Arc<dyn Signals>) -> Fleet {
        Fleet {
            signals,
            routes: Mutex::new(HashMap::new()),
            forwards: Mutex::new(HashMap::new()),
            closing: CancellationToken::new(),
            listening: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Says whether this replica's listener is listening. Its followers ask for a forward only
    /// while it is: the holder sends a run's history once, at the first ask, and what it sends
    /// before this replica listens is lost.
    pub fn set_listening(&self, on: bool) {
        self.listening
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this replica's listener is listening.
    pub fn listening(&self) -> bool {
        self.listening.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// This replica stops: its followers of runs elsewhere end now.
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Resolves once this replica stops.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    /// Sends `signal` to every replica.
    pub async fn send(&self, signal: &Signal) -> Result<(), StoreError> {
        self.signals.send(signal).await
    }

    fn routes(&self) -> MutexGuard<'_, HashMap<String, mpsc::Sender<Signal>>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forwards(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.forwards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a follower here: the signals for `token` arrive on the receiver until
    /// [`Fleet::unroute`].
    pub fn route(&self, token: &str) -> mpsc::Receiver<Signal> {
        let (tx, rx) = mpsc::channel(ROUTED);
        self.routes().insert(token.to_string(), tx);
        rx
    }

    /// Forgets a follower here.
    pub fn unroute(&self, token: &str) {
        self.routes().remove(token);
    }

    /// The follower of the forward to `token` asked for it again: true when that forward is
    /// under way (its time is renewed), false when there is none (it never started, or ended:
    /// then nothing is kept for the token).
    pub fn kept_alive(&self, token: &str) -> bool {
        match self.forwards().get_mut(token) {
            Some(at) => {
                *at = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Takes on a new forward to `token`: false when one to it is under way, or when
    /// [`MOST_FORWARDS`] are (a flood of follow signals must not start a task each).
    pub fn forward_to(&self, token: &str) -> bool {
        let mut forwards = self.forwards();
        if forwards.len() >= MOST_FORWARDS || forwards.contains_key(token) {
            return false;
        }
        forwards.insert(token.to_string(), Instant::now());
        true
    }

    /// When the follower of a forward last asked for it (None once it ended).
    pub fn last_asked(&self, token: &str) -> Option<Instant> {
        self.forwards().get(token).copied()
    }

    /// A forward ended.
    pub fn forwarded(&self, token: &str) {
        self.forwards().remove(token);
    }

    /// Forwards being made from here (for tests and diagnostics).
    pub fn forwarding(&self) -> usize {
        self.forwards().len()
    }

    /// Hands a signal to the follower here with `token`, if there is one.
    pub fn deliver(&self, token: &str, signal: Signal) {
        let tx = self.routes().get(token).cloned();
        // Not a follower here (another replica's), or one too slow to keep up.
        if let Some(tx) = tx {
            let _ = tx.try_send(signal);
        }
    }
}

/// Signals kept instead of sent (tests of what the engine tells the fleet).
#[cfg(test)]
#[derive(Default)]
pub struct Kept(pub Mutex<Vec<Signal>>);

#[cfg(test)]
#[async_trait::async_trait]
impl Signals for Kept {
    async fn send(&self, signal: &Signal) -> Result<(), StoreError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(signal.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keepalive_renews_only_a_forward_under_way_and_forwards_are_bounded() {
        let fleet = Fleet::new(Arc::new(Kept::default()));
        assert!(!fleet.kept_alive("t0"), "no forward to keep alive");
        assert_eq!(fleet.forwarding(), 0, "and none is made by asking");
        assert!(fleet.forward_to("t0"));
        assert!(!fleet.forward_to("t0"), "one forward per token");
        assert!(fleet.kept_alive("t0"));
        for i in 1..MOST_FORWARDS {
            assert!(fleet.forward_to(&format!("t{i}")));
        }
        assert!(!fleet.forward_to("one-too-many"));
        fleet.forwarded("t0");
        assert!(!fleet.kept_alive("t0"), "an ended forward is not revived");
        assert!(fleet.forward_to("one-too-many"), "room again");
    }
}
