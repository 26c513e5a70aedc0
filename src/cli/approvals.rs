//! `untoil approvals`, `untoil approve` and `untoil deny`: runs waiting for a person, through
//! the daemon that holds the store.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::connect::daemon;
use crate::cli::global::Global;
use crate::cli::whoami;
use crate::identity::claim;

/// Runs `untoil approve` or `untoil deny`: decides as the principal of UNTOIL_TOKEN, with
/// `--by` (default `$USER`) sent as a claim beside it. A refusal (403: not one of the
/// runbook's approvers) is the error, with the daemon's reason.
pub fn decide(g: &Global, id: &str, approve: bool, by: Option<String>) -> Result<ExitCode> {
    let r = daemon(g, if approve { "approve" } else { "deny" })?;
    let by = by.or_else(whoami::claimed_name);
    let verb = if approve { "approve" } else { "deny" };
    let record = r.post(
        &format!("/api/v1/runs/{id}/{verb}"),
        &serde_json::json!({ "by": by }),
    )?;
    let decided = &record["approval"];
    println!(
        "run {id}: {}{}{}",
        record["status"].as_str().unwrap_or("?"),
        decided["by"]
            .as_str()
            .map(|b| format!(
                ", {} by {}",
                if approve { "approved" } else { "denied" },
                claim::shown(b, decided["claimed_by"].as_str())
            ))
            .unwrap_or_default(),
        record["error"]
            .as_str()
            .filter(|_| approve)
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
