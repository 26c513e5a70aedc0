//! untoil: a toil-automation runbook executor.
//!
//! Layout (data flows one way):
//! runbook files -> [`loader`] -> [`validator`] -> catalog -> triggers -> queue -> executor
//! -> steps -> store -> reports.

pub mod alert;
pub mod auth;
pub mod capture;
pub mod catalog;
pub mod cli;
pub mod daemon;
pub mod diagnostic;
pub mod executor;
pub mod guard;
pub mod histogram;
pub mod loader;
pub mod metrics;
pub mod plugin;
pub mod process;
pub mod recorder;
pub mod redact;
pub mod reload;
pub mod render;
pub mod report;
pub mod run;
pub mod runbook;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod source_map;
pub mod spec;
pub mod step;
pub mod store;
pub mod table;
pub mod template;
pub mod toil;
pub mod validator;
