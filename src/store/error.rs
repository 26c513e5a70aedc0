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
