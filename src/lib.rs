//! untoil: a toil-automation runbook executor.
//!
//! The folders follow the data flow, one way (docs/architecture.md says more):
//!
//! ```text
//! runbook files -> runbook (load, validate, catalog) -> trigger (schedule, alert, dedupe key)
//!   -> engine (admission with guard decisions, queue and slots, approvals, worker)
//!   -> exec (plan, executor, steps) -> store (runs, rollups, guard state; sled)
//!   -> report (toil, backlog)
//! run and ledger: what a run is and what it is worth; guard: the guards' decisions.
//! source: alert sources beyond Alertmanager (definitions, body mappings), above runbook and trigger.
//! identity: who asks (principal, scope, claim, approvers), used by runbook, engine and server.
//! server (HTTP API, dashboard) and cli sit on top; daemon wires engine, tasks and server.
//! ```
//!
//! No module imports one that imports it back (`tests/suite/architecture.rs`).

pub mod cli;
pub mod daemon;
pub mod engine;
pub mod exec;
pub mod guard;
pub mod identity;
pub mod ledger;
pub mod report;
pub mod run;
pub mod runbook;
pub mod server;
pub mod source;
pub mod store;
pub mod trigger;
