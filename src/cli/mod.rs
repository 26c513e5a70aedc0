//! The `untoil` command line: the only place that prints for humans. One file per subcommand;
//! [`connect`] is how every command that can go through a daemon finds it.

// The rest of the crate may not print (the lints say so); this module is for humans.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod approvals;
pub mod breaker;
pub mod cancel;
pub mod connect;
pub mod credentials;
pub mod file_errors;
pub mod global;
pub mod hosts;
pub mod list;
pub mod logging;
pub mod next;
pub mod plugins;
pub mod progress;
pub mod prune;
pub mod remote;
pub mod report;
pub mod run;
pub mod runs;
pub mod serve;
pub mod store;
pub mod stress;
pub mod validate;
pub mod waiting;
pub mod whoami;
pub mod words;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::cli::global::Global;

/// untoil: runs toil-automation runbooks and proves the toil they save.
#[derive(Debug, Parser)]
#[command(name = "untoil", version, about, long_about = None)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check runbook files and report every problem with its exact place.
    Validate(validate::ValidateArgs),
    /// List the runbooks with their owner, triggers, next scheduled fire and toil estimate.
    List(list::ListArgs),
    /// Print the next fire times of a crontab expression, as the scheduler computes them.
    Next(next::NextArgs),
    /// Print the JSON Schema of the runbook format, for editor completion and checks.
    Schema,
    /// Run the daemon: schedules, the Alertmanager receiver and the HTTP API.
    Serve(serve::ServeArgs),
    /// Run one runbook now, in the foreground, streaming its steps.
    Run(run::RunArgs),
    /// List the installed plugins.
    Plugins,
    /// SSH hosts of remote steps: `hosts add HOST` shows its key fingerprints and adds them to
    /// untoil's known-hosts file once confirmed.
    Hosts {
        /// What to do.
        #[command(subcommand)]
        command: hosts::HostsCommand,
    },
    /// Toil saved by team, service, runbook, cause and period; or the automation backlog.
    Report(report::ReportArgs),
    /// Run history; `runs show ID` prints one run in full.
    Runs(runs::RunsArgs),
    /// Approve a run waiting for approval (through the daemon).
    Approve {
        /// Run id.
        id: String,
        /// The name to record as a claim beside the principal of UNTOIL_TOKEN (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Deny a run waiting for approval (through the daemon).
    Deny {
        /// Run id.
        id: String,
        /// The name to record as a claim beside the principal of UNTOIL_TOKEN (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Runs waiting for approval, with what they would execute.
    Approvals,
    /// Circuit breakers: list them, or reset one runbook's.
    Breaker {
        /// list (the default) or reset.
        #[command(subcommand)]
        command: Option<breaker::BreakerCommand>,
    },
    /// Cancel a queued or running run (through the daemon).
    Cancel {
        /// Run id.
        id: String,
    },
    /// Delete run details older than a retention period (rollups stay) and expired delivery ids.
    Prune {
        /// Keep this much history, e.g. 400d.
        #[arg(long)]
        retain: String,
    },
    /// The run store: `store copy --to URL` moves it into PostgreSQL.
    Store {
        /// What to do.
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// Records runs as fast as it can, printing each id once durable (crash tests).
    #[command(hide = true)]
    StoreStress {
        /// How many runs.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Writer threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
}

/// Parses arguments, runs the command and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Validate(a) => validate::run(&g, a),
        Command::List(a) => list::run(&g, a),
        Command::Next(a) => next::run(a),
        Command::Run(a) => run::run(&g, a),
        Command::Serve(a) => serve::run(&g, a),
        Command::Plugins => plugins::run(&g),
        Command::Hosts { command } => hosts::run(command),
        Command::Report(a) => report::run(&g, a),
        Command::Runs(a) => runs::run(&g, a),
        Command::Prune { retain } => prune::run(&g, &retain),
        Command::Cancel { id } => cancel::run(&g, &id),
        Command::Approve { id, by } => approvals::decide(&g, &id, true, by),
        Command::Deny { id, by } => approvals::decide(&g, &id, false, by),
        Command::Approvals => approvals::list(&g),
        Command::Breaker { command } => breaker::run(&g, command),
        Command::Store { command } => store::run(&g, command),
        Command::StoreStress { count, threads } => stress::run(&g, count, threads),
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&crate::runbook::spec::json_schema())?;
            println!("{schema}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
