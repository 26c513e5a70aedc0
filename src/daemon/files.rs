//! The open-file limit: connections are capped so that they can never take the descriptors runs
//! need. At start the soft limit is raised (up to the hard limit) to what the cap, the refused
//! connections being answered and the runs need; when even the hard limit is lower, the cap is
//! lowered to fit, with a warning saying what to raise.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tracing::{info, warn};

use crate::server::listen::REFUSING;

/// Descriptors kept for the store, the listener, the runtime, the runbook watcher and logs.
const BASE: usize = 128;

/// Descriptors kept per worker for the run it executes: a step's pipes, sockets and files.
const PER_WORKER: usize = 16;

/// Descriptors the daemon needs to serve `max_connections` with `workers` runs at once.
pub fn needed(max_connections: usize, workers: usize) -> usize {
    max_connections + REFUSING + BASE + PER_WORKER * workers
}

/// The connection cap to serve with: `max_connections`, after raising the soft open-file limit
/// to what it needs when the hard limit allows; lower (and said) when it does not.
pub fn fit(max_connections: usize, workers: usize) -> usize {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return max_connections;
    };
    let want = needed(max_connections, workers) as u64;
    if soft >= want {
        return max_connections;
    }
    let raised = want.min(hard);
    let limit = if raised > soft && setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
        info!("raised the open-file soft limit from {soft} to {raised}");
        raised
    } else {
        soft
    };
    if limit >= want {
        return max_connections;
    }
    let room = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(needed(0, workers))
        .max(1);
    let cap = room.min(max_connections);
    warn!(
        "the open-file limit {limit} leaves room for {cap} connections besides runs: serving at most {cap} of --max-connections {max_connections}; raise the limit to {want} (LimitNOFILE= in the systemd unit, `ulimit -n`) or lower --max-connections"
    );
    cap
}
