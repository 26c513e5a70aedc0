//! Why the engine refused a trigger or a request about a run.

use crate::store::error::StoreError;

/// Why a trigger or a decision was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The run queue is full: try again later.
    #[error("the run queue is full ({0} runs waiting); retry later")]
    QueueFull(usize),
    /// The fleet's queue (runs queued in the shared database) is full: try again later.
    #[error(
        "the fleet's queue is full: {queued} runs queued in the database, capacity {capacity} (--queue-capacity); retry later (Alertmanager retries on its own)"
    )]
    FleetQueueFull {
        /// Runs queued in the fleet, as this replica last counted them.
        queued: u64,
        /// The bound.
        capacity: u64,
    },
    /// The daemon is shutting down.
    #[error("untoil is shutting down; retry later")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad request (unknown runbook, params).
    #[error("{0}")]
    Invalid(String),
    /// No such run.
    #[error("no run with id {0}")]
    NotFound(String),
    /// The request conflicts with the run's state.
    #[error("{0}")]
    Conflict(String),
    /// The principal may not do this (a runbook's approvers do not include it).
    #[error("{0}")]
    Forbidden(String),
}
