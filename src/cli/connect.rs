//! The one way the CLI finds the daemon that holds a store: the address the daemon left in the
//! store's directory (or `--server`), checked to serve that very store. Every command that can
//! go through a daemon (`run`, `runs`, `report`, `list`, `cancel`, approvals, breakers) asks here.

use anyhow::{Result, bail};

use crate::cli::global::Global;
use crate::cli::remote::Remote;
use crate::daemon::locator;

/// Where a command's work goes.
pub enum Target {
    /// The daemon that serves the store.
    Daemon(Remote),
    /// No daemon holds the store: the command opens it itself.
    Local,
}

/// Whether a process is alive (it may belong to another user: then it is).
fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// Finds the daemon serving the store at `--data`, or `--server`'s.
pub fn target(g: &Global) -> Result<Target> {
    // In fleet mode the store is the database: no daemon leaves its address in --data, and
    // commands that need one are told which with --server; reads go to the database.
    let here = match g.database_url {
        Some(_) => None,
        None => locator::read(&g.data),
    };
    if let Some(server) = &g.server {
        let remote = Remote::new(server)?;
        if !remote.healthy() {
            bail!(
                "no daemon answers at {server} (--server / UNTOIL_SERVER); {}",
                here_instead(g, here.as_ref())?
            );
        }
        if let Some(loc) = &here {
            let theirs = remote.store_id()?;
            if theirs != loc.store_id {
                bail!(
                    "the daemon at {server} serves another store (id {theirs}) than the one at {} (id {}, served at {}); point --server at that daemon, or --data at its store",
                    g.data.display(),
                    loc.store_id,
                    loc.url
                );
            }
        }
        return Ok(Target::Daemon(remote));
    }
    let Some(loc) = here else {
        return Ok(Target::Local);
    };
    let remote = Remote::new(&loc.url)?;
    if remote.healthy() {
        match remote.store_id() {
            Ok(id) if id == loc.store_id => return Ok(Target::Daemon(remote)),
            Ok(id) => bail!(
                "the daemon answering at {} serves another store (id {id}) than the one at {} (id {}); the daemon of that store is gone or moved: stop the other one, or start `untoil serve --data {}`",
                loc.url,
                g.data.display(),
                loc.store_id,
                g.data.display()
            ),
            Err(e) => return Err(e),
        }
    }
    if alive(loc.pid) {
        bail!(
            "the store at {} is held by untoil process {}, which does not answer at {}; wait for it to start or stop it",
            g.data.display(),
            loc.pid,
            loc.url
        );
    }
    // A daemon that died without removing its address: the store is free.
    Ok(Target::Local)
}

/// What to do instead of a `--server` that does not answer, as the store at `--data` (held by
/// its daemon, by a process that does not answer, or free) allows.
fn here_instead(g: &Global, here: Option<&locator::Location>) -> Result<String> {
    let data = g.data.display();
    let Some(loc) = here else {
        return Ok(format!(
            "start `untoil serve` there, or leave --server out to use the store at {data}"
        ));
    };
    if Remote::new(&loc.url)?.healthy() {
        return Ok(format!(
            "the store at {data} is held by the daemon at {}: leave --server out to go through it, or point --server at it",
            loc.url
        ));
    }
    if alive(loc.pid) {
        return Ok(format!(
            "and the store at {data} is in use by untoil process {}, which does not answer at {} either; wait for it to start, or stop it",
            loc.pid, loc.url
        ));
    }
    Ok(format!(
        "start `untoil serve` there, or leave --server out to use the store at {data}"
    ))
}

/// The daemon, for commands only a daemon can do (`what` names the command).
pub fn daemon(g: &Global, what: &str) -> Result<Remote> {
    match target(g)? {
        Target::Daemon(r) => Ok(r),
        Target::Local if g.database_url.is_some() => bail!(
            "{what} needs a running `untoil serve`: with --database-url, give one replica's address with --server (UNTOIL_SERVER)"
        ),
        Target::Local => bail!(
            "no daemon holds the store at {}: {what} needs a running `untoil serve` (or --server for a daemon elsewhere)",
            g.data.display()
        ),
    }
}
