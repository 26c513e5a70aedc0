//! What a report asks for: the period, the dimensions to group by, and the output format.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
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

/// An inclusive range of UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

impl Period {
    /// The last `days` days up to and including today.
    pub fn since(days: std::time::Duration, now: DateTime<Utc>) -> Period {
        let today = now.date_naive();
        let back = Duration::seconds(days.as_secs() as i64);
        Period {
            from: (now - back).date_naive(),
            to: today,
        }
    }

    /// Instants covering the period: [from 00:00, to + 1 day 00:00).
    pub fn instants(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = self.from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        let end = (self.to + Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        (start, end)
    }
}
