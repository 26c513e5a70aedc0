//! untoil: a toil-automation runbook executor.
//!
//! The folders follow the data flow, one way:
//!
//! ```text
//! runbook files -> runbook (load, validate, catalog)
//!   -> trigger (schedule, alert, dedupe key) -> guard -> engine (admission, queue, approvals)
//!   -> exec (executor, steps) -> store (runs, rollups; sled) -> report (toil, backlog)
//! server (HTTP API, dashboard) and cli on top; daemon wires them together.
//! run and ledger hold what a run is and what it is worth.
//! ```

pub mod cli;
pub mod daemon;
pub mod engine;
pub mod exec;
pub mod guard;
pub mod ledger;
pub mod report;
pub mod run;
pub mod runbook;
pub mod server;
pub mod store;
pub mod trigger;
