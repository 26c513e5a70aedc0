//! What the replicas of a fleet tell each other about runs, as the engine says it
//! ([`crate::engine::fleet`]); how it travels is the backend's ([`crate::store::postgres::signal`]
//! on PostgreSQL; sled, one node, has none).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::store::error::StoreError;

/// What one replica tells every replica (itself included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Signal {
    /// Stop this run if it runs here.
    Cancel {
        /// The run.
        run: RunId,
    },
    /// Forward this run's events to `token`, if it is in progress here (sent again while the
    /// follower wants them: a keepalive).
    Follow {
        /// The run.
        run: RunId,
        /// The follower's token.
        token: String,
    },
    /// Events for a follower: `seq` is the index of the first in the forwarded stream, so a
    /// follower drops what it already has and notices what it missed.
    Events {
        /// The follower's token.
        token: String,
        /// Index of `events[0]` among the events forwarded to this token.
        seq: u64,
        /// The events, in order (never `RunFinished`: the follower reads the record).
        events: Vec<RunEvent>,
    },
    /// The run ended: its record is final in the store.
    End {
        /// The follower's token.
        token: String,
    },
}

/// How signals reach the fleet's replicas.
#[async_trait]
pub trait Signals: Send + Sync {
    /// Sends `signal` to every replica, this one included.
    async fn send(&self, signal: &Signal) -> Result<(), StoreError>;
}
