//! The integration tests, one binary (one link, one process start per test run): each module
//! is one area, named as nextest shows it (`storm::...`, `cli::...`).

// Tests report what they measured (storms, floods) on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod alertmanager;
mod alertmanager_ha;
mod approvals;
mod architecture;
mod bad_input;
mod browser;
mod cli;
mod common;
mod conformance;
mod connections;
mod crash;
mod credit;
mod cross_site;
mod daemon;
mod dashboard;
mod diagnostics;
mod digest;
mod engine;
mod executor;
mod fleet;
mod guards;
mod honest_alerts;
mod hygiene;
mod identity;
mod lost_replies;
mod matchers;
mod migration;
mod mobile;
mod new_user;
mod pgcluster;
mod plugins;
mod postgres;
mod redaction;
mod remote;
mod replicas;
mod reports;
mod signatures;
mod sources;
mod store;
mod store_copy;
mod storm;
mod toil_numbers;
mod trust;
