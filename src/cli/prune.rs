//! `untoil prune`: deletes run details older than a retention period (rollups stay) and expired
//! delivery ids of signed webhooks.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;

use crate::cli::global::{Global, block_on};

/// Runs `untoil prune`.
pub fn run(g: &Global, retain: &str) -> Result<ExitCode> {
    let keep = crate::runbook::model::parse_duration(retain)
        .map_err(|e| anyhow::anyhow!("--retain `{retain}`: {e}"))?;
    let store = g.open_store()?;
    let before = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let n = block_on(store.prune(before))??;
    println!(
        "removed {} started before {}; rollups (report totals) are kept",
        crate::report::human::count(n, "run"),
        crate::report::human::instant(before)
    );
    // Delivery ids expire by their own source's `keep`, not by `--retain`.
    let d = block_on(store.prune_deliveries(Utc::now()))??;
    println!(
        "removed {} whose source's keep had passed",
        crate::report::human::count(d, "delivery id")
    );
    Ok(ExitCode::SUCCESS)
}
