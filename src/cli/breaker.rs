//! `untoil breaker`: circuit breakers, listed or reset, through the daemon that holds the store.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::cli::connect::daemon;
use crate::cli::global::Global;
use crate::cli::whoami;
use crate::identity::claim;
use crate::report::table::Table;

/// `untoil breaker` subcommands.
#[derive(Debug, Subcommand)]
pub enum BreakerCommand {
    /// Every breaker with its state (the default).
    List,
    /// Close a runbook's breakers.
    Reset {
        /// Runbook name.
        runbook: String,
        /// Only this guard key.
        #[arg(long)]
        key: Option<String>,
    },
}

/// Runs `untoil breaker`.
pub fn run(g: &Global, command: Option<BreakerCommand>) -> Result<ExitCode> {
    let r = daemon(g, "breaker")?;
    match command.unwrap_or(BreakerCommand::List) {
        BreakerCommand::List => {
            let list: Vec<serde_json::Value> =
                serde_json::from_str(&r.get("/api/v1/breakers", &[])?)?;
            let mut t = Table::new(["RUNBOOK", "KEY", "STATE", "FAILURES", "REASON"]);
            for b in &list {
                t.row([
                    b["runbook"].as_str().unwrap_or("").to_string(),
                    b["key"].as_str().unwrap_or("").to_string(),
                    if b["open"] == true {
                        "open".into()
                    } else {
                        "closed".to_string()
                    },
                    b["consecutive_failures"].to_string(),
                    b["reason"].as_str().unwrap_or("").to_string(),
                ]);
            }
            print!("{}", t.render());
        }
        BreakerCommand::Reset { runbook, key } => {
            let answer = r.post(
                &format!("/api/v1/breakers/{runbook}/reset"),
                &serde_json::json!({ "key": key, "by": whoami::claimed_name() }),
            )?;
            let keys: Vec<String> = answer["reset"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(String::from))
                .collect();
            let by = answer["by"]
                .as_str()
                .map(|b| format!(" (as {})", claim::shown(b, answer["claimed_by"].as_str())))
                .unwrap_or_default();
            println!(
                "reset {} breaker(s) of {runbook}: {}{by}",
                keys.len(),
                keys.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
