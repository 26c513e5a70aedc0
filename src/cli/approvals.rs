//! `untoil approvals`, `untoil approve` and `untoil deny`: runs waiting for a person, through
//! the daemon that holds the store.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::connect::daemon;
use crate::cli::global::Global;
use crate::cli::logging::escape;
use crate::cli::waiting;
use crate::cli::whoami;
use crate::identity::claim;
use crate::report::human;
use crate::run::cause::Cause;

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

/// Runs `untoil approvals`: each waiting run as the dashboard's approvals page shows it (who or
/// what asked, the alert's labels, when it expires, who may decide, every step with its
/// condition and what it will execute) and the commands that decide it.
pub fn list(g: &Global) -> Result<ExitCode> {
    let r = daemon(g, "approvals")?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&r.get("/api/v1/approvals", &[])?)?;
    if list.is_empty() {
        println!("no run is waiting for approval");
    }
    for item in &list {
        print!(
            "{}",
            waiting_run(item, r.base(), &waiting::server_flag(g.server.as_deref()))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One waiting run, for a terminal: every value from the API escaped (labels come from alerts).
fn waiting_run(item: &serde_json::Value, base: &str, server: &str) -> String {
    let run = &item["run"];
    let text = |v: &serde_json::Value| escape(v.as_str().unwrap_or("")).into_owned();
    let id = text(&run["id"]);
    let mut out = format!("{id}  {}\n", text(&run["runbook"]));
    let cause = match serde_json::from_value::<Cause>(run["cause"].clone()) {
        Ok(Cause::Manual { user, claimed_user }) => {
            format!(
                "requested by {}",
                claim::shown(&user, claimed_user.as_deref())
            )
        }
        Ok(Cause::Schedule { at }) => format!("for the schedule fire at {}", human::instant(at)),
        Ok(Cause::Alert { labels, .. }) => format!(
            "for alert {} ({})",
            labels.get("alertname").map(String::as_str).unwrap_or("?"),
            labels
                .iter()
                .filter(|(k, _)| *k != "alertname")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Err(_) => format!("cause {}", run["cause"]["kind"].as_str().unwrap_or("?")),
    };
    out.push_str(&format!("    {}\n", escape(&cause)));
    let at = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| human::instant(t.with_timezone(&chrono::Utc)))
            .unwrap_or_else(|| "-".into())
    };
    out.push_str(&format!(
        "    created {} · expires {}\n",
        at(&run["created_at"]),
        at(&item["expires_at"])
    ));
    if let Some(who) = waiting::approvers(&item["approvers"]) {
        out.push_str(&format!("    may be decided by {who}\n"));
    }
    match item["plan"].as_array() {
        Some(plan) => {
            let total = plan.len();
            for (i, step) in plan.iter().enumerate() {
                out.push_str(&format!(
                    "    [{}/{total}] {} ({})\n",
                    i + 1,
                    text(&step["name"]),
                    text(&step["kind"])
                ));
                if let Some(w) = step["when"].as_str() {
                    out.push_str(&format!("        when: {}\n", escape(w)));
                }
                for line in step["detail"].as_str().unwrap_or("").lines() {
                    out.push_str(&format!("        {}\n", escape(line)));
                }
                if let Some(p) = step["problem"].as_str() {
                    out.push_str(&format!("        would fail: {}\n", escape(p)));
                }
            }
        }
        None => out.push_str("    the plan cannot be rendered (runbook missing or invalid)\n"),
    }
    out.push_str(&format!(
        "    approve: untoil approve {id}{server}   deny: untoil deny {id}{server}   page: {base}/ui/approvals\n\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_run_shows_its_alert_plan_and_conditions_with_hostile_values_escaped() {
        let item = serde_json::json!({
            "run": {
                "id": "01X", "runbook": "disk-cleanup", "created_at": "2026-12-03T07:00:00.123Z",
                "cause": {"kind": "alert", "fingerprint": "f", "starts_at": "2026-12-03T07:00:00Z",
                          "labels": {"alertname": "DiskFull", "instance": "db-1\u{1b}[2J"}},
            },
            "expires_at": "2026-12-03T08:00:00.123456Z",
            "plan": [{"name": "compress", "kind": "shell",
                      "when": "{{eq alert.labels.severity \"critical\"}} -> true",
                      "detail": "/bin/sh -c gzip x\n  second line"}],
        });
        let text = waiting_run(&item, "http://127.0.0.1:1", "");
        assert!(text.contains("for alert DiskFull (instance=db-1"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("expires 2026-12-03 08:00:00 UTC"), "{text}");
        assert!(
            text.contains("when: {{eq alert.labels.severity \"critical\"}} -> true"),
            "{text}"
        );
        assert!(text.contains("        second line"), "{text}");
        assert!(text.contains("untoil approve 01X"), "{text}");
    }
}
