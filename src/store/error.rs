//! What a store operation can fail with, said so that a person knows what to do.

/// A store operation that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store.
    #[error(
        "the store at {path} is in use by another untoil process that serves no API from it (a foreground `untoil run`, `untoil prune`, or a daemon still starting); wait for it to end, or stop it"
    )]
    Locked {
        /// The store directory.
        path: String,
    },
    /// The store was written by a newer untoil.
    #[error(
        "the store at {path} has schema version {found}, newer than this untoil understands ({supported}); upgrade untoil"
    )]
    NewerSchema {
        /// The store directory.
        path: String,
        /// Version on disk.
        found: u32,
        /// Version this build writes.
        supported: u32,
    },
    /// A run id that is not in the store.
    #[error("no run with id {0}")]
    NoSuchRun(String),
    /// A record that cannot be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// This replica no longer holds the lease of a run it was running: its own lease expired
    /// (it could not renew, e.g. paused or cut off from the database) and another replica may
    /// have ended or taken over the run. The write was refused; the run's steps must stop.
    #[error(
        "run {run}: replica {replica} lost its lease and the run was taken over (or is about to be) by another replica; nothing was recorded, and this replica must stop the run's steps"
    )]
    LeaseLost {
        /// The run.
        run: String,
        /// This replica's id.
        replica: String,
    },
    /// The database failed.
    #[error("store error at {path}: {reason}")]
    Backend {
        /// The store directory.
        path: String,
        /// What the backend said.
        reason: String,
    },
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;
