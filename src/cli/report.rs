//! `untoil report` (toil saved) and `untoil report unautomated` (the automation backlog).

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use clap::{Args, Subcommand};

use crate::report::backlog;
use crate::report::period::Period;
use crate::report::query::{Dim, Format};
use crate::report::toil::toil_report_compared;
use crate::run::cause::CauseKind;

use crate::cli::connect::{Target, target};
use crate::cli::global::{Global, block_on};
use crate::cli::remote::Remote;

/// Arguments of `untoil report`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReportArgs {
    /// Another report than toil saved.
    #[command(subcommand)]
    pub command: Option<ReportCommand>,
    /// The period.
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Group by (repeatable, combined in order): team, service, runbook, cause, day, week, month.
    #[arg(long = "by", value_enum)]
    pub by: Vec<Dim>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Only runs started by one of these causes (repeatable or comma-separated); a comparison
    /// uses the same filter.
    #[arg(long = "cause", value_enum, value_delimiter = ',')]
    pub causes: Vec<CauseKind>,
    /// Also show each figure for the previous period of the same number of UTC days, and the
    /// change.
    #[arg(long)]
    pub compare: bool,
}

/// Report kinds besides toil saved.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Alerts received that no runbook handles, ranked by estimated toil: the backlog.
    Unautomated(UnautomatedArgs),
}

/// Arguments of `untoil report unautomated`.
#[derive(Debug, Args)]
pub struct UnautomatedArgs {
    /// The period.
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Also group by this label (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Manual minutes assumed per alert without a `toil_minutes` annotation.
    #[arg(long, default_value_t = 15.0)]
    pub assume_minutes: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// The period of a report.
#[derive(Debug, Args, Clone)]
pub struct PeriodArgs {
    /// The last N days (or weeks, ...) up to today, e.g. 30d, 12w.
    #[arg(long, default_value = "30d", conflicts_with_all = ["from", "to"])]
    pub since: String,
    /// First day (YYYY-MM-DD, UTC), with --to.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last day (YYYY-MM-DD, UTC), inclusive.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
}

impl PeriodArgs {
    /// The period these flags name.
    pub fn period(&self) -> Result<Period> {
        match (&self.from, &self.to) {
            (Some(f), Some(t)) => {
                Period::between(f, t).map_err(|e| anyhow::anyhow!("--from/--to: {e}"))
            }
            _ => Period::parse_since(&self.since, Utc::now())
                .map_err(|e| anyhow::anyhow!("--since `{}`: {e}", self.since)),
        }
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Table => "table",
        Format::Json => "json",
        Format::Csv => "csv",
        Format::Markdown => "markdown",
    }
}

fn period_query(p: &PeriodArgs) -> Vec<(&'static str, String)> {
    match (&p.from, &p.to) {
        (Some(f), Some(t)) => vec![("from", f.clone()), ("to", t.clone())],
        _ => vec![("since", p.since.clone())],
    }
}

/// A cause filter as the API's `cause` parameter: `manual,alert`.
pub fn cause_list(causes: &[CauseKind]) -> String {
    causes
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// The same report from the daemon's API (it renders with the same code).
fn remote(r: &Remote, a: &ReportArgs) -> Result<String> {
    match &a.command {
        Some(ReportCommand::Unautomated(u)) => {
            let mut q = period_query(&u.period);
            q.push(("format", format_name(u.format).into()));
            q.push(("assume_minutes", u.assume_minutes.to_string()));
            if !u.labels.is_empty() {
                q.push(("label", u.labels.join(",")));
            }
            r.get("/api/v1/reports/unautomated", &q)
        }
        None => {
            let mut q = period_query(&a.period);
            q.push(("format", format_name(a.format).into()));
            let by: Vec<&str> = a.by.iter().map(|d| d.name()).collect();
            if !by.is_empty() {
                q.push(("by", by.join(",")));
            }
            if !a.causes.is_empty() {
                q.push(("cause", cause_list(&a.causes)));
            }
            if a.compare {
                q.push(("compare", "true".into()));
            }
            r.get("/api/v1/reports/toil", &q)
        }
    }
}

/// Runs `untoil report`.
pub fn run(g: &Global, a: ReportArgs) -> Result<ExitCode> {
    if let Target::Daemon(r) = target(g)? {
        print!("{}", remote(&r, &a)?);
        return Ok(ExitCode::SUCCESS);
    }
    let store = g.open_store()?;
    match a.command {
        Some(ReportCommand::Unautomated(u)) => {
            let period = u.period.period()?;
            let backlog = block_on(backlog::backlog_report(
                store.as_ref(),
                period,
                &u.labels,
                u.assume_minutes,
            ))??;
            print!("{}", backlog.render(u.format, &u.labels));
        }
        None => {
            let period = a.period.period()?;
            let by = if a.by.is_empty() {
                vec![Dim::Team]
            } else {
                a.by
            };
            let r = block_on(toil_report_compared(
                store.as_ref(),
                period,
                &by,
                &a.causes,
                a.compare,
            ))??;
            print!("{}", r.render(a.format));
        }
    }
    Ok(ExitCode::SUCCESS)
}
