//! How a PostgreSQL store operation fails, and how its transaction is retried.
//!
//! Writes run at READ COMMITTED with explicit row locks (`SELECT ... FOR UPDATE`), so two
//! writers of one row wait for each other instead of failing; what can still fail for reasons a
//! second attempt cures (a deadlock between two writers locking rows in different orders, a
//! notification removed by a concurrent prune, a serialization failure should an operator raise
//! the default isolation) is retried whole, a bounded number of times, by [`in_tx!`].

use crate::store::error::StoreError;

/// How many attempts a transaction gets before its last failure is returned.
pub const ATTEMPTS: u32 = 12;

/// What failed inside a transaction.
#[derive(Debug)]
pub enum Fail {
    /// The database (or the connection to it) failed.
    Db(tokio_postgres::Error),
    /// A store-level failure (a record that does not decode, a refusal).
    Store(StoreError),
    /// A row that concurrent writers kept removing and adding while this one tried to lock it
    /// (what it was); retried like a deadlock.
    Contended(String),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Fail {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

impl Fail {
    /// Whether running the whole transaction again may succeed: a serialization failure
    /// (40001), a deadlock (40P01), or a foreign key violation (23503: prune removed a
    /// notification between a writer's check of it and its commit).
    pub fn retryable(&self) -> bool {
        match self {
            Fail::Db(e) => e
                .code()
                .is_some_and(|c| matches!(c.code(), "40001" | "40P01" | "23503")),
            Fail::Store(_) => false,
            Fail::Contended(_) => true,
        }
    }

    /// The store error it is, naming the database (`name`) and what was being done.
    pub fn into_store(self, name: &str, what: &str) -> StoreError {
        match self {
            Fail::Db(e) => backend(name, what, &e),
            Fail::Store(e) => e,
            Fail::Contended(row) => StoreError::Backend {
                path: name.to_string(),
                reason: format!("{what}: {row} kept changing under concurrent writers"),
            },
        }
    }
}

/// A pool that gave no connection (database down, unreachable, or refusing the password), said
/// with what to check.
pub fn no_connection(name: &str, what: &str, e: &(dyn std::error::Error + 'static)) -> StoreError {
    match backend(name, &format!("{what}: no database connection"), e) {
        StoreError::Backend { path, reason } => StoreError::Backend {
            path,
            reason: format!(
                "{reason}; check --database-url (UNTOIL_DATABASE_URL), the password, and that PostgreSQL accepts connections from this host"
            ),
        },
        other => other,
    }
}

/// A database failure while doing `what` on the database `name` (a URL without its password).
/// The reason is the error with its causes: tokio-postgres says only "db error" at the top and
/// keeps the server's message (which never holds the password) in its source.
pub fn backend(name: &str, what: &str, e: &(dyn std::error::Error + 'static)) -> StoreError {
    let mut reason = format!("{what}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !reason.ends_with(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = s.source();
    }
    if let Some(code) = e
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
    {
        reason.push_str(&format!(" (SQLSTATE {})", code.code()));
    }
    StoreError::Backend {
        path: name.to_string(),
        reason,
    }
}

/// A stored value that does not decode.
pub fn corrupt(key: impl Into<String>, e: impl std::fmt::Display) -> Fail {
    Fail::Store(StoreError::Corrupt {
        key: key.into(),
        reason: e.to_string(),
    })
}

/// A short pause before attempt `n` again, growing, so that two writers that deadlocked do not
/// meet again at once.
pub async fn backoff(n: u32) {
    let ms = 2u64.saturating_pow(n.min(7)) + u64::from(rand_jitter());
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// A few milliseconds of jitter from the clock (no random generator needed for this).
fn rand_jitter() -> u8 {
    (chrono::Utc::now().timestamp_subsec_nanos() % 7) as u8
}

/// How many times a write tries to lock a row it inserts when missing (insert-if-missing, then
/// lock) before it reports [`Fail::Contended`]: only a concurrent delete between the two steps
/// makes it go round again.
pub const LOCK_TRIES: usize = 8;

/// Runs `$body` (which uses the transaction `$tx` and returns `Result<T, Fail>`) in a fresh
/// transaction from `$store`'s pool, commits it, and runs it all again on a retryable failure;
/// evaluates to `Result<T, StoreError>`. A macro, not a function: the body borrows the
/// transaction across awaits, which a closure type cannot say.
macro_rules! in_tx {
    ($store:expr, $what:expr, |$tx:ident| $body:expr) => {{
        let what: &str = $what;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut client = match $store.client(what).await {
                Ok(c) => c,
                Err(e) => break Err(e),
            };
            let $tx = match client.transaction().await {
                Ok(t) => t,
                Err(e) => break Err($crate::store::postgres::tx::backend(&$store.name, what, &e)),
            };
            let result: std::result::Result<_, $crate::store::postgres::tx::Fail> =
                async { $body }.await;
            let result = match result {
                Ok(v) => $tx
                    .commit()
                    .await
                    .map(|()| v)
                    .map_err($crate::store::postgres::tx::Fail::Db),
                Err(e) => {
                    drop($tx);
                    Err(e)
                }
            };
            match result {
                Ok(v) => break Ok(v),
                Err(e) if e.retryable() && attempt < $crate::store::postgres::tx::ATTEMPTS => {
                    $crate::store::postgres::tx::backoff(attempt).await;
                }
                Err(e) => break Err(e.into_store(&$store.name, what)),
            }
        }
    }};
}

pub(crate) use in_tx;
