//! `untoil next`: the next fire times of a crontab expression, as the scheduler computes them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;

use crate::trigger::schedule::{Schedule, parse_timezone};

/// Arguments of `untoil next`.
#[derive(Debug, Args)]
pub struct NextArgs {
    /// Crontab expression: 5 fields, 6 with seconds first, or a macro such as @daily.
    pub expression: String,
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// Start after this instant (RFC 3339), default now.
    #[arg(long)]
    pub after: Option<String>,
    /// How many fire times.
    #[arg(short = 'n', long = "count", default_value_t = 5)]
    pub count: usize,
}

/// Runs `untoil next`.
pub fn run(a: NextArgs) -> Result<ExitCode> {
    let tz = match parse_timezone(&a.tz) {
        Ok(tz) => tz,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(h) = e.help() {
                eprintln!("  help: {h}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let schedule = match Schedule::parse(&a.expression, tz) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: invalid schedule `{}`: {e}", a.expression);
            if let Some(h) = e.help() {
                eprintln!("  help: {h}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let after: DateTime<Utc> = match &a.after {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .with_context(|| {
                format!("--after `{t}` is not an RFC 3339 time such as 2026-03-29T00:00:00+01:00")
            })?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let mut out = std::io::stdout().lock();
    for t in schedule.fires_after(after).take(a.count) {
        writeln!(out, "{}", t.to_rfc3339())?;
    }
    Ok(ExitCode::SUCCESS)
}
