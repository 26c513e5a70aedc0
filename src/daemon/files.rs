//! The open-file limit: connections are capped so that they can never take the descriptors runs
//! need. At start the soft limit is raised (up to the hard limit) to what the served
//! connections, the connections being refused and the runs need; when even the hard limit is
//! lower, both are lowered to fit, with a warning saying what to raise.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tracing::{info, warn};

use crate::server::listen::Limits;

/// Descriptors kept for the store, the listener, the runtime, the runbook watcher and logs.
const BASE: usize = 128;

/// Descriptors kept per worker for the run it executes: a step's pipes, sockets and files.
const PER_WORKER: usize = 16;

/// Descriptors the daemon needs for `limits` with `workers` runs at once.
pub fn needed(limits: &Limits, workers: usize) -> usize {
    limits.max_connections + limits.refusing + BASE + PER_WORKER * workers
}

/// The limits to serve with: `wanted`, after raising the soft open-file limit to what they need
/// when the hard limit allows; lower (and said) when it does not.
pub fn fit(wanted: Limits, workers: usize) -> Limits {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let want = needed(&wanted, workers) as u64;
    if soft >= want {
        return wanted;
    }
    let raised = want.min(hard);
    let limit = if raised > soft && setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
        info!("raised the open-file soft limit from {soft} to {raised}");
        raised
    } else {
        soft
    };
    if limit >= want {
        return wanted;
    }
    let room = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(BASE + PER_WORKER * workers);
    let cap = (room / 2).clamp(1, wanted.max_connections);
    let refusing = room.saturating_sub(cap).clamp(1, wanted.refusing);
    warn!(
        "the open-file limit {limit} leaves room for {cap} connections besides runs: serving at most {cap} of --max-connections {}; raise the limit to {want} (LimitNOFILE= in the systemd unit, `ulimit -n`) or lower --max-connections",
        wanted.max_connections
    );
    Limits {
        max_connections: cap,
        refusing,
        ..wanted
    }
}
