//! One daemon per database, until replicas share work by leases: a daemon on PostgreSQL holds a
//! session advisory lock for as long as it runs. A second one would reconcile at start, which
//! marks every `running` run interrupted, including the first daemon's live ones; it is refused
//! instead, with a message that says why.

use deadpool_postgres::{ClientWrapper, Object, Pool};

/// The advisory lock key ("untoil" and 2; the schema migration lock is 1).
const KEY: i64 = 0x756e_746f_696c_0002;

/// The held lock: the connection that holds it, out of the pool (never recycled). Dropping it
/// closes the connection, which releases the lock.
pub struct Sole {
    _client: ClientWrapper,
}

/// Why a daemon cannot serve the database.
#[derive(Debug, thiserror::Error)]
pub enum SoleError {
    /// Another daemon holds the lock.
    #[error(
        "another untoil daemon already serves the database {0}; until replicas share work by leases (docs/fleet.md), one daemon serves one database: stop it first, or point CLI commands at it with --server"
    )]
    Taken(String),
    /// The database cannot be asked.
    #[error(
        "cannot reach the database {name}: {reason}; check --database-url and that PostgreSQL accepts connections"
    )]
    Unreachable {
        /// The database (no password).
        name: String,
        /// What failed.
        reason: String,
    },
}

/// How often the lock's connection is checked, and a lost lock tried again.
const CHECK: std::time::Duration = std::time::Duration::from_secs(2);

impl Sole {
    /// Keeps the lock for as long as the daemon runs: a database restart closes the connection
    /// that held it, so it is taken again on a new one once the database is back. Returns only
    /// when another daemon took it in between (the caller then stops: two daemons must not
    /// serve one database).
    pub async fn keep(mut self, pool: Pool, name: String) -> SoleError {
        loop {
            tokio::time::sleep(CHECK).await;
            if !self._client.is_closed() {
                continue;
            }
            match hold(&pool, &name).await {
                Ok(again) => {
                    tracing::info!(
                        "the database {name} is back; this daemon serves it alone again"
                    );
                    self = again;
                }
                Err(e @ SoleError::Taken(_)) => return e,
                // Still away: the next check tries again.
                Err(SoleError::Unreachable { .. }) => {}
            }
        }
    }
}

/// Takes the lock, or says who has it.
pub async fn hold(pool: &Pool, name: &str) -> Result<Sole, SoleError> {
    let unreachable = |e: &dyn std::fmt::Display| SoleError::Unreachable {
        name: name.to_string(),
        reason: e.to_string(),
    };
    let client = Object::take(pool.get().await.map_err(|e| unreachable(&e))?);
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&KEY])
        .await
        .map_err(|e| unreachable(&e))?;
    let got: bool = row.try_get(0).map_err(|e| unreachable(&e))?;
    if !got {
        return Err(SoleError::Taken(name.to_string()));
    }
    Ok(Sole { _client: client })
}
