//! `untoil runs`: run history, and one run in full.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::cli::report::cause_list;
use crate::identity::claim;
use crate::report::table::Table;
use crate::report::{cell, human};
use crate::run::cause::CauseKind;
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::{RunStatus, StepStatus};
use crate::run::summary::RunSummary;
use crate::store::RunFilter;

use crate::cli::connect::{Target, target};
use crate::cli::global::{Global, block_on};

/// Arguments of `untoil runs`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    /// `show ID` for one run in full.
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    /// Only runs of this runbook.
    #[arg(long)]
    pub runbook: Option<String>,
    /// Only runs with this status (succeeded, failed, running, skipped, ...).
    #[arg(long)]
    pub status: Option<RunStatus>,
    /// Only runs started by one of these causes (repeatable or comma-separated).
    #[arg(long = "cause", value_enum, value_delimiter = ',')]
    pub causes: Vec<CauseKind>,
    /// At most this many, most recent first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `untoil runs show`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One run in full: steps, outputs, toil credited and why.
    Show {
        /// Run id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A duration for people (`33 ms`, `2.1 s`, `4 min 10 s`), or `-` for none.
fn ms(v: Option<u64>) -> String {
    v.map(human::duration_ms).unwrap_or_else(|| "-".into())
}

/// Runs `untoil runs`.
pub fn run(g: &Global, a: RunsArgs) -> Result<ExitCode> {
    let (remote, store) = match target(g)? {
        Target::Daemon(r) => (Some(r), None),
        Target::Local => (None, Some(g.open_store()?)),
    };
    let get_run = |id: &str| -> Result<Option<RunRecord>> {
        match (&remote, &store) {
            (Some(r), _) => match r.get(&format!("/api/v1/runs/{id}"), &[]) {
                Ok(body) => Ok(Some(serde_json::from_str(&body)?)),
                Err(e) if e.to_string().starts_with("no run with id") => Ok(None),
                Err(e) => Err(e),
            },
            (None, Some(s)) => Ok(block_on(s.get_run(&RunId(id.to_string())))??),
            (None, None) => Ok(None),
        }
    };
    match a.command {
        Some(RunsCommand::Show { id, json }) => {
            let Some(r) = get_run(&id)? else {
                anyhow::bail!("no run with id {id}; `untoil runs` lists recent runs");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", show(&r));
            }
        }
        None => {
            // Summaries both ways, so `--json` is the same shape from the daemon and the store.
            let runs: Vec<RunSummary> = match (&remote, &store) {
                (Some(r), _) => {
                    let mut q = vec![("limit", a.limit.to_string())];
                    if let Some(rb) = &a.runbook {
                        q.push(("runbook", rb.clone()));
                    }
                    if let Some(s) = a.status {
                        q.push(("status", s.to_string()));
                    }
                    if !a.causes.is_empty() {
                        q.push(("cause", cause_list(&a.causes)));
                    }
                    serde_json::from_str(&r.get("/api/v1/runs", &q)?)?
                }
                (None, Some(s)) => block_on(s.list_runs(&RunFilter {
                    runbook: a.runbook.clone(),
                    status: a.status,
                    causes: a.causes.clone(),
                    limit: a.limit,
                }))??
                .iter()
                .map(RunSummary::of)
                .collect(),
                (None, None) => Vec::new(),
            };
            if a.json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new([
                "ID",
                "RUNBOOK",
                "CAUSE",
                "INSTANCE",
                "STATUS",
                "STARTED",
                "DURATION",
                "TOIL (min)",
                "WHY SKIPPED",
            ]);
            t.align_right(6);
            t.align_right(7);
            for r in &runs {
                t.row([
                    r.id.0.clone(),
                    r.runbook.clone(),
                    match (r.cause.requested_by(), &r.replayed_alert) {
                        (Some(who), Some(_)) => format!("manual by {who} (alert replay)"),
                        (Some(who), None) => format!("manual by {who}"),
                        (None, _) => cell::terminal(&r.cause.shown_kind()),
                    },
                    r.instance.as_deref().unwrap_or("-").to_string(),
                    r.status.to_string(),
                    human::instant(r.started_at.unwrap_or(r.created_at)),
                    ms(r.duration_ms),
                    r.toil
                        .as_ref()
                        .map(|t| format!("{}", t.minutes))
                        .unwrap_or_else(|| "-".into()),
                    r.skip_reason().unwrap_or_default().to_string(),
                ]);
            }
            print!("{}", t.render());
            if runs.is_empty() {
                let place = match &remote {
                    Some(r) => format!("(daemon at {})", r.base()),
                    None => format!("in {}", g.data.display()),
                };
                eprintln!("{}", none_found(a.runbook.as_deref(), a.status, &place));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What an empty listing means: no runs at all, or none that pass the filters, and where.
fn none_found(runbook: Option<&str>, status: Option<RunStatus>, place: &str) -> String {
    let mut what = String::from("no runs");
    if let Some(rb) = runbook {
        what.push_str(&format!(" of runbook `{}`", cell::terminal(rb)));
    }
    if let Some(s) = status {
        what.push_str(&format!(" with status {s}"));
    }
    if runbook.is_none() && status.is_none() {
        what.push_str(" recorded");
    }
    format!("{what} {place}")
}

/// A run in full, for humans.
pub fn show(r: &RunRecord) -> String {
    let mut out = String::new();
    out.push_str(&format!("run       {}\n", r.id));
    out.push_str(&format!(
        "runbook   {} (version {})\n",
        r.runbook,
        &r.version[..r.version.len().min(12)]
    ));
    out.push_str(&format!(
        "owner     {}{}\n",
        r.owner,
        r.service
            .as_ref()
            .map(|s| format!(", service {s}"))
            .unwrap_or_default()
    ));
    let cause = match &r.cause {
        crate::run::cause::Cause::Manual { user, claimed_user } => {
            format!("manual, by {}", claim::shown(user, claimed_user.as_deref()))
        }
        crate::run::cause::Cause::Schedule { at } => {
            format!("schedule fire at {}", human::instant(*at))
        }
        crate::run::cause::Cause::Alert {
            source,
            fingerprint,
            starts_at,
            labels,
        } => format!(
            "alert {} from {} (fingerprint {}, started {})\n          labels {}",
            cell::terminal(labels.get("alertname").map(String::as_str).unwrap_or("?")),
            cell::terminal(source),
            cell::terminal(fingerprint),
            human::instant(*starts_at),
            labels
                .iter()
                .map(|(k, v)| cell::terminal(&format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    out.push_str(&format!("cause     {cause}\n"));
    if let Some(earlier) = &r.retry_of {
        out.push_str(&format!("retries   run {}\n", cell::terminal(&earlier.0)));
    }
    if let Some(replay) = r.replayed_alert() {
        out.push_str(&format!("          {}\n", cell::terminal(&replay)));
    }
    if let Some(b) = &r.bypassed {
        out.push_str(&format!("guards    bypassed: {}\n", b.describe()));
    }
    if let Some(decided) = crate::cli::waiting::decided(r) {
        out.push_str(&format!("approval  {decided}\n"));
    }
    out.push_str(&format!(
        "status    {}{}{}\n",
        r.status,
        human::status_note(r.status)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        r.error
            .as_ref()
            .map(|e| format!(": {}", cell::terminal(e)))
            .unwrap_or_default()
    ));
    if let Some(s) = r.started_at {
        out.push_str(&format!("started   {}\n", human::instant(s)));
    }
    out.push_str(&format!("duration  {}\n", ms(r.duration_ms())));
    if let Some(line) = human::remediated(r) {
        out.push_str(&format!("{line}\n"));
    }
    if let Some(line) = human::verdict(r) {
        out.push_str(&format!("{line}\n"));
    }
    if !r.params.is_empty() {
        let p: Vec<String> = r
            .params
            .iter()
            .map(|(k, v)| cell::terminal(&format!("{k}={v}")))
            .collect();
        out.push_str(&format!("params    {}\n", p.join(" ")));
    }
    if let Some(t) = &r.toil {
        out.push_str(&format!(
            "toil      {} credited: {}\n",
            human::toil_minutes(t.minutes),
            t.reason
        ));
    }
    out.push_str("steps\n");
    for (i, s) in r.steps.iter().enumerate() {
        out.push_str(&format!(
            "  [{}] {} ({}) {} in {}, {}{}{}\n",
            i + 1,
            s.name,
            s.kind,
            s.status.map(|s| s.as_str()).unwrap_or("?"),
            human::duration_ms(s.duration_ms),
            human::count(s.attempts as usize, "attempt"),
            s.exit_code
                .map(|c| format!(", exit {c}"))
                .unwrap_or_default(),
            s.http_status
                .map(|c| format!(", HTTP {c}"))
                .unwrap_or_default(),
        ));
        if !s.command.is_empty() {
            out.push_str("      ran:\n");
            for line in s.command.trim_end().lines() {
                out.push_str(&format!("        {}\n", cell::terminal_line(line)));
            }
        }
        if let Some(n) = &s.noop {
            out.push_str(&format!("      nothing to do: {}\n", cell::terminal(n)));
        }
        if let Some(e) = &s.error {
            // A skipped step's "error" is why it was skipped, not something that went wrong.
            let label = if s.status == Some(StepStatus::Skipped) {
                "skipped"
            } else {
                "error"
            };
            out.push_str(&format!("      {label}: {}\n", cell::terminal(e)));
        }
        // A remote step: each host's outcome (its output is in the step's, prefixed).
        if !s.hosts.is_empty() {
            out.push_str(&format!(
                "      hosts: {} of {} succeeded\n",
                s.hosts_succeeded(),
                s.hosts.len()
            ));
            for h in &s.hosts {
                out.push_str(&format!(
                    "        {} {}{}{}\n",
                    cell::terminal(&h.host),
                    h.status.map(|s| s.as_str()).unwrap_or("?"),
                    h.exit_code
                        .map(|c| format!(", exit {c}"))
                        .unwrap_or_default(),
                    h.error
                        .as_deref()
                        .map(|e| format!(": {}", cell::terminal(e)))
                        .unwrap_or_default(),
                ));
            }
        }
        for (label, text) in [
            ("stdout", &s.stdout),
            ("stderr", &s.stderr),
            ("body", &s.body),
            ("message", &s.message),
        ] {
            if !text.trim().is_empty() {
                out.push_str(&format!("      {label}:\n"));
                for line in text.trim_end().lines() {
                    out.push_str(&format!("        {}\n", cell::terminal_line(line)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::credit::Credit;
    use crate::run::step::StepResult;

    #[test]
    fn a_skipped_step_says_why_it_was_skipped_and_no_credit_has_a_sign() {
        let mut r = RunRecord::synthetic(0);
        r.steps = vec![StepResult {
            name: "notify".into(),
            status: Some(StepStatus::Skipped),
            error: Some("`when` is false".into()),
            ..Default::default()
        }];
        r.toil = Some(Credit {
            minutes: -0.0,
            reason: "no step with a toil figure succeeded".into(),
            ..Default::default()
        });
        let text = show(&r);
        assert!(text.contains("      skipped: `when` is false"), "{text}");
        assert!(!text.contains("error:"), "{text}");
        assert!(text.contains("toil      0 min credited"), "{text}");
    }

    #[test]
    fn a_remote_step_shows_each_host() {
        use crate::run::step::HostResult;
        let mut r = RunRecord::synthetic(0);
        let host = |h: &str, status, code, error: Option<&str>| HostResult {
            host: h.into(),
            status: Some(status),
            exit_code: code,
            error: error.map(Into::into),
            ..Default::default()
        };
        r.steps = vec![StepResult {
            name: "restart".into(),
            kind: "shell".into(),
            status: Some(StepStatus::Failed),
            hosts: vec![
                host("web-1", StepStatus::Succeeded, Some(0), None),
                host(
                    "web-2",
                    StepStatus::Failed,
                    None,
                    Some("cannot connect to web-2: refused"),
                ),
            ],
            ..Default::default()
        }];
        let text = show(&r);
        assert!(text.contains("      hosts: 1 of 2 succeeded\n"), "{text}");
        assert!(text.contains("        web-1 succeeded, exit 0\n"), "{text}");
        assert!(
            text.contains("        web-2 failed: cannot connect to web-2: refused\n"),
            "{text}"
        );
    }
}
