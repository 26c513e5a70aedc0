//! `untoil cancel`: cancels a queued or running run, through the daemon that holds the store.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::connect::daemon;
use crate::cli::global::Global;

/// Runs `untoil cancel`.
pub fn run(g: &Global, id: &str) -> Result<ExitCode> {
    let remote = daemon(g, "cancel (a foreground `untoil run` stops with Ctrl-C)")?;
    remote.post(&format!("/api/v1/runs/{id}/cancel"), &serde_json::json!({}))?;
    println!("cancelling run {id}");
    Ok(ExitCode::SUCCESS)
}
