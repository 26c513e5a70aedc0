//! `untoil approvals`, `untoil approve` and `untoil deny`: runs waiting for a person, through
//! the daemon that holds the store.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::connect::daemon;
use crate::cli::global::Global;

/// Runs `untoil approve` or `untoil deny`.
pub fn decide(g: &Global, id: &str, approve: bool, by: Option<String>) -> Result<ExitCode> {
    let r = daemon(g, if approve { "approve" } else { "deny" })?;
    let by = by.unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "cli".into()));
    let verb = if approve { "approve" } else { "deny" };
    let record = r.post(
        &format!("/api/v1/runs/{id}/{verb}"),
        &serde_json::json!({ "by": by }),
    )?;
    println!(
        "run {id}: {}{}",
        record["status"].as_str().unwrap_or("?"),
        record["error"]
            .as_str()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `untoil approvals`.
pub fn list(g: &Global) -> Result<ExitCode> {
    let r = daemon(g, "approvals")?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&r.get("/api/v1/approvals", &[])?)?;
    if list.is_empty() {
        println!("no run is waiting for approval");
    }
    for item in &list {
        let run = &item["run"];
        println!(
            "{}  {}  cause {}  expires {}",
            run["id"].as_str().unwrap_or(""),
            run["runbook"].as_str().unwrap_or(""),
            run["cause"]["kind"].as_str().unwrap_or(""),
            item["expires_at"].as_str().unwrap_or("-")
        );
        for step in item["plan"].as_array().into_iter().flatten() {
            println!(
                "    {} ({}): {}",
                step["name"].as_str().unwrap_or(""),
                step["kind"].as_str().unwrap_or(""),
                step["detail"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
