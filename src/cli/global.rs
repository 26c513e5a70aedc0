//! Flags every command takes, and what they give every command: the runbooks, the store.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::Result;
use clap::Args;

use crate::runbook::catalog::{self, Loaded};
use crate::runbook::plugins::Plugins;
use crate::store::Store;
use crate::store::database::{Database, DatabaseOptions, DatabaseUrl};
use crate::store::postgres::PgStore;
use crate::store::sled::SledStore;

/// Flags every command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Directory of runbook files (*.yaml, *.yml), searched recursively.
    #[arg(
        long,
        global = true,
        env = "UNTOIL_RUNBOOKS",
        default_value = "./runbooks"
    )]
    pub runbooks: PathBuf,
    /// Directory of plugin executables.
    #[arg(
        long,
        global = true,
        env = "UNTOIL_PLUGINS",
        default_value = "./plugins"
    )]
    pub plugins: PathBuf,
    /// Directory of alert source definitions (*.yaml: Grafana with signing, PagerDuty, signed
    /// webhooks); a missing `./sources` means none. See docs/sources.md.
    #[arg(
        long,
        global = true,
        env = "UNTOIL_SOURCES",
        default_value = "./sources"
    )]
    pub sources: PathBuf,
    /// Directory of the run store. While a daemon holds it, commands go through that daemon's
    /// API (it leaves its address there).
    #[arg(long, global = true, env = "UNTOIL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// A daemon's address, when it is not the one holding the store at --data on this machine
    /// (token from UNTOIL_TOKEN). It must answer, and serve the store --data names when that
    /// store is here.
    #[arg(long, global = true, env = "UNTOIL_SERVER")]
    pub server: Option<String>,
    /// Keep runs in this PostgreSQL database instead of --data (fleet mode, docs/fleet.md):
    /// postgres://user@host:port/database[?sslmode=require]. Give the password in a file
    /// (--database-password-file) or PGPASSWORD rather than on the command line.
    #[arg(
        long,
        global = true,
        env = "UNTOIL_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<DatabaseUrl>,
    /// File whose first line is the database password (when the URL has none).
    #[arg(
        long,
        global = true,
        env = "UNTOIL_DATABASE_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub database_password_file: Option<PathBuf>,
    /// PEM file of the certificates that sign the database's TLS certificate (default: the
    /// system's trust store).
    #[arg(
        long,
        global = true,
        env = "UNTOIL_DATABASE_CA_FILE",
        value_name = "FILE"
    )]
    pub database_ca_file: Option<PathBuf>,
    /// Most connections to the database this process opens.
    #[arg(
        long,
        global = true,
        env = "UNTOIL_DATABASE_POOL",
        default_value_t = 16,
        value_name = "N"
    )]
    pub database_pool: usize,
}

impl Global {
    /// Loads the runbooks the way every command does.
    pub fn load(&self, paths: &[PathBuf]) -> Loaded {
        let plugins = Plugins::discover(&self.plugins);
        let paths = if paths.is_empty() {
            vec![self.runbooks.clone()]
        } else {
            paths.to_vec()
        };
        catalog::load(&paths, &plugins)
    }

    /// The PostgreSQL database of `--database-url`, if one is given (fleet mode).
    pub fn database(&self) -> Option<DatabaseOptions> {
        self.database_url.as_ref().map(|url| DatabaseOptions {
            url: url.0.clone(),
            password_file: self.database_password_file.clone(),
            ca_file: self.database_ca_file.clone(),
            idle_in_transaction: None,
            pool_size: self.database_pool,
        })
    }

    /// Opens the run store: the database of `--database-url`, else the sled store at `--data`
    /// (creating it, private to this user).
    pub fn open_store(&self) -> Result<Arc<dyn Store>> {
        match self.database() {
            Some(options) => {
                let db = Database::new(&options, |k| std::env::var(k).ok())?;
                let store = block_on(PgStore::open(db.pool, db.name))??;
                Ok(Arc::new(store))
            }
            None => Ok(Arc::new(SledStore::open(&self.data)?)),
        }
    }
}

/// Runs a future to completion on the CLI's runtime (the CLI is synchronous). One runtime for
/// the whole command: a database connection pool made in one call is used by the next, and its
/// connections' tasks live on the runtime that opened them.
pub fn block_on<T>(f: impl Future<Output = T>) -> Result<T> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(f))
}
