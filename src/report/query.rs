//! What a report asks for besides its [`Period`](crate::report::period::Period): the dimensions
//! to group by, and the output format.

use chrono::Datelike;
use serde::Serialize;

use crate::ledger::rollup::RollupKey;

/// A dimension to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Dim {
    /// The owning team.
    Team,
    /// The service.
    Service,
    /// The runbook.
    Runbook,
    /// manual, schedule or alert.
    Cause,
    /// UTC day.
    Day,
    /// ISO week.
    Week,
    /// Calendar month.
    Month,
}

impl Dim {
    /// Column name.
    pub fn name(self) -> &'static str {
        match self {
            Dim::Team => "team",
            Dim::Service => "service",
            Dim::Runbook => "runbook",
            Dim::Cause => "cause",
            Dim::Day => "day",
            Dim::Week => "week",
            Dim::Month => "month",
        }
    }

    /// The value of this dimension for a rollup group.
    pub fn value(self, k: &RollupKey) -> String {
        match self {
            Dim::Team => k.owner.clone(),
            Dim::Service => {
                if k.service.is_empty() {
                    "-".into()
                } else {
                    k.service.clone()
                }
            }
            Dim::Runbook => k.runbook.clone(),
            Dim::Cause => k.cause.clone(),
            Dim::Day => k.day.format("%Y-%m-%d").to_string(),
            Dim::Week => {
                let w = k.day.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Dim::Month => k.day.format("%Y-%m").to_string(),
        }
    }
}

/// Output format of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a totals row.
    Table,
    /// JSON.
    Json,
    /// CSV with a header row.
    Csv,
    /// A Markdown table.
    Markdown,
}
