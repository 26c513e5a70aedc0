//! Flags every command takes, and what they give every command: the runbooks, the store.

use std::future::Future;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::runbook::catalog::{self, Loaded};
use crate::runbook::plugins::Plugins;
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

    /// Opens the run store at `--data` (creating it, private to this user).
    pub fn open_store(&self) -> Result<SledStore> {
        Ok(SledStore::open(&self.data)?)
    }
}

/// Runs a future to completion on a runtime of its own (the CLI is synchronous).
pub fn block_on<T>(f: impl Future<Output = T>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(f))
}
