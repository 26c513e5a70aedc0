//! `untoil store copy --to URL`: moves the sled store at --data into a PostgreSQL database,
//! then checks that both give the same report totals (see [`crate::store::copy`]).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::cli::global::{Global, block_on};
use crate::store::copy::{self, Progress};
use crate::store::database::{Database, DatabaseError, DatabaseOptions, DatabaseUrl};
use crate::store::error::StoreError;
use crate::store::postgres::PgStore;
use crate::store::sled::SledStore;

/// What to do with the store.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy the store at --data (runs, rollups, alert episodes, guard state, pending
    /// approvals, dedupe keys) into a PostgreSQL database; safe to run again.
    Copy(CopyArgs),
}

/// `untoil store copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The database to copy into: postgres://user@host:port/database[?sslmode=require]. Give
    /// the password in --database-password-file or PGPASSWORD rather than here.
    #[arg(long, value_name = "URL")]
    pub to: DatabaseUrl,
}

/// Runs `untoil store ...`.
pub fn run(g: &Global, command: StoreCommand) -> Result<ExitCode> {
    match command {
        StoreCommand::Copy(a) => copy_to(g, &a),
    }
}

/// Opens the source without creating one, and says plainly when a daemon holds it.
fn open_source(path: &Path) -> Result<SledStore> {
    // Opening a directory as a store creates one there and makes the directory private: only
    // a directory that holds sled's files already is a store to copy.
    if !(path.join("conf").is_file() && path.join("db").is_file()) {
        anyhow::bail!(
            "there is no store at {} to copy; give the store's directory with --data (UNTOIL_DATA)",
            path.display()
        );
    }
    match SledStore::open(path) {
        Ok(s) => Ok(s),
        Err(StoreError::Locked { path }) => anyhow::bail!(
            "the store at {path} is in use by another untoil process (a daemon?); stop it before copying, so that the copy sees every write"
        ),
        Err(e) => Err(e.into()),
    }
}

fn copy_to(g: &Global, a: &CopyArgs) -> Result<ExitCode> {
    let options = DatabaseOptions {
        url: a.to.0.clone(),
        password_file: g.database_password_file.clone(),
        ca_file: g.database_ca_file.clone(),
        idle_in_transaction: None,
        pool_size: g.database_pool,
    };
    let db = Database::new(&options, |k| std::env::var(k).ok()).map_err(|e| match e {
        // Those two name --database-url; here the URL came from --to.
        DatabaseError::Url(reason) => anyhow::anyhow!(
            "--to is not a PostgreSQL URL: {reason}; expected postgres://user@host:port/database"
        ),
        DatabaseError::NoHost => anyhow::anyhow!(
            "--to names no TCP host; give one, as in postgres://user@db.example:5432/untoil"
        ),
        other => other.into(),
    })?;
    // The URL is checked before the source is opened: a mistyped --to touches nothing.
    let source = open_source(&g.data)?;
    let target = block_on(PgStore::open(db.pool, db.name))??;
    eprintln!(
        "copying the store at {} (id {}) into {} (id {})",
        g.data.display(),
        crate::store::Store::id(&source),
        target.name(),
        crate::store::Store::id(&target)
    );
    let progress = |p: Progress<'_>| eprintln!("  {}: {} copied, {} new", p.what, p.read, p.new);
    let copied = block_on(copy::copy(&source, &target, &progress))??;
    let diffs = block_on(copy::check(&source, &target))??;
    let (r, n) = (copied.read, copied.new);
    println!(
        "copied {} runs ({} new), {} dedupe keys ({} new), {} alert episodes ({} new), {} guard states ({} new), {} delivery records ({} new), {} rollup groups",
        r.runs,
        n.runs,
        r.dedupe,
        n.dedupe,
        r.alerts,
        n.alerts,
        r.guards,
        n.guards,
        r.deliveries,
        n.deliveries,
        copied.rollup_groups
    );
    if diffs.is_empty() {
        println!("check: the target holds as many items and gives the same report totals");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("check failed: the target differs from the source:");
    for d in &diffs {
        eprintln!("  {d}");
    }
    eprintln!(
        "(a daemon that used the target since the copy adds its own runs; otherwise run the copy again)"
    );
    Ok(ExitCode::from(1))
}
