//! The daemon's settings, from flags and environment.

use std::path::PathBuf;
use std::time::Duration;

use crate::server::auth::Auth;
use crate::server::site::{AllowedHost, PublicUrl};

/// Connections served at once by default: far more than Alertmanager, the CLI and dashboard
/// users open, few enough that a file limit of a few thousand leaves room for runs.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How long a connection may take to send its headers by default: any real client sends them
/// at once; one that dribbles them (or sends nothing) holds a connection only this long.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A replica's lease by default: long enough to ride out a database failover or a slow
/// heartbeat, short enough that a dead replica's runs are taken over within a minute.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// Daemon settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runbooks directory.
    pub runbooks: PathBuf,
    /// Plugins directory.
    pub plugins: PathBuf,
    /// Alert source definitions directory (docs/sources.md); may be missing.
    pub sources: PathBuf,
    /// Store directory.
    pub data: PathBuf,
    /// The PostgreSQL database that keeps runs instead of `data` (fleet mode).
    pub database: Option<crate::store::database::DatabaseOptions>,
    /// Concurrent runs.
    pub workers: usize,
    /// Runs waiting at most.
    pub queue_capacity: usize,
    /// How long running steps may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Who may call.
    pub auth: Auth,
    /// Largest webhook body.
    pub body_limit: usize,
    /// Time between SIGTERM and SIGKILL for steps.
    pub kill_grace: Duration,
    /// Variables of the daemon's environment every step gets besides the base.
    pub pass_env: Vec<String>,
    /// The address browsers use (`--public-url`): its host is answered, its origin is own.
    pub public_url: Option<PublicUrl>,
    /// Further hosts answered (`--allowed-host`), besides loopback and the listen address.
    pub allowed_hosts: Vec<AllowedHost>,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// How long a connection may take to send its request's headers before it is closed.
    pub header_read_timeout: Duration,
    /// On a database: how long a replica's lease lasts without renewal, so how soon the runs of
    /// a replica that died are taken over by the others.
    pub lease_ttl: Duration,
}

impl Settings {
    /// Defaults for the given directories.
    pub fn new(runbooks: PathBuf, plugins: PathBuf, data: PathBuf) -> Settings {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Settings {
            runbooks,
            plugins,
            sources: PathBuf::from("./sources"),
            data,
            database: None,
            // Runs mostly wait on their processes and on flushes that workers share; on a
            // CPU-bound storm more workers only take CPU from acknowledging (README, --workers).
            workers: cpus * 2,
            queue_capacity: 10_000,
            shutdown_grace: Duration::from_secs(30),
            auth: Auth::default(),
            body_limit: 1024 * 1024,
            kill_grace: crate::exec::executor::DEFAULT_GRACE,
            pass_env: Vec::new(),
            public_url: None,
            allowed_hosts: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}
