//! The toil report: rollups aggregated by team, service, runbook, cause and period, and its
//! renderings (table, JSON, CSV, Markdown).
//!
//! Reports read rollups, so their cost grows with the number of groups in the period, not the
//! number of runs. Periods are whole UTC days.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ledger::rollup::{Rollup, RollupKey};
use crate::report::cell;
use crate::report::period::Period;
use crate::report::query::{Dim, Format};
use crate::report::table::Table;
use crate::report::table::percent as pct;
use crate::store::Store;
use crate::store::error::StoreError;

/// One row of a toil report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Values of the group-by dimensions, in order.
    pub group: Vec<String>,
    /// The summed counters.
    #[serde(skip)]
    pub rollup: Rollup,
    /// Figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// The figures of a row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Runs.
    pub runs: u64,
    /// Succeeded runs.
    pub succeeded: u64,
    /// Failed, timed out or interrupted runs.
    pub failed: u64,
    /// Cancelled runs.
    pub cancelled: u64,
    /// succeeded / runs.
    pub success_rate: Option<f64>,
    /// Toil saved, minutes (exact to 1/1000).
    pub toil_minutes: f64,
    /// Toil saved, hours.
    pub toil_hours: f64,
    /// Median run duration, ms (within ~3%).
    pub median_ms: Option<u64>,
    /// 95th percentile run duration, ms (within ~3%).
    pub p95_ms: Option<u64>,
    /// Mean time to remediate (alert start to run end) of succeeded alert runs, ms.
    pub mttr_ms: Option<u64>,
}

impl Figures {
    /// Figures of a rollup.
    pub fn of(r: &Rollup) -> Figures {
        let minutes = r.toil_milli_minutes as f64 / 1000.0;
        Figures {
            runs: r.runs,
            succeeded: r.succeeded,
            failed: r.failed,
            cancelled: r.cancelled,
            success_rate: (r.runs > 0).then(|| r.succeeded as f64 / r.runs as f64),
            toil_minutes: minutes,
            toil_hours: minutes / 60.0,
            median_ms: r.durations.quantile(0.5),
            p95_ms: r.durations.quantile(0.95),
            mttr_ms: (r.remediations > 0).then(|| r.remediate_ms_sum / r.remediations),
        }
    }
}

/// A toil report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToilReport {
    /// The period.
    pub period: Period,
    /// Group-by dimensions.
    pub by: Vec<Dim>,
    /// Rows, sorted by group.
    pub rows: Vec<Row>,
    /// Totals over all rows.
    pub total: Figures,
    /// Total counters.
    #[serde(skip)]
    pub total_rollup: Rollup,
}

/// Groups rollups by the dimensions (pure).
pub fn aggregate<I>(period: Period, by: &[Dim], rollups: I) -> ToilReport
where
    I: IntoIterator<Item = (RollupKey, Rollup)>,
{
    let mut groups: BTreeMap<Vec<String>, Rollup> = BTreeMap::new();
    let mut total = Rollup::default();
    for (k, r) in rollups {
        if k.day < period.from || k.day > period.to {
            continue;
        }
        let group: Vec<String> = by.iter().map(|d| d.value(&k)).collect();
        groups.entry(group).or_default().merge(&r);
        total.merge(&r);
    }
    let rows = groups
        .into_iter()
        .map(|(group, rollup)| Row {
            figures: Figures::of(&rollup),
            group,
            rollup,
        })
        .collect();
    ToilReport {
        period,
        by: by.to_vec(),
        rows,
        total: Figures::of(&total),
        total_rollup: total,
    }
}

/// Builds the toil report of a period from the store.
pub async fn toil_report(
    store: &dyn Store,
    period: Period,
    by: &[Dim],
) -> Result<ToilReport, StoreError> {
    // Monthly rollups serve any grouping coarser than a week: far fewer groups to read.
    let by_month = !by.iter().any(|d| matches!(d, Dim::Day | Dim::Week));
    Ok(aggregate(
        period,
        by,
        store.rollups(period.from, period.to, by_month).await?,
    ))
}

fn ms(v: Option<u64>) -> String {
    v.map(crate::report::human::duration_ms)
        .unwrap_or_else(|| "-".into())
}

const COLUMNS: [&str; 8] = [
    "RUNS",
    "SUCCEEDED",
    "FAILED",
    "SUCCESS",
    "TOIL SAVED (h)",
    "MEDIAN",
    "P95",
    "MTTR",
];

fn cells(f: &Figures) -> Vec<String> {
    vec![
        f.runs.to_string(),
        f.succeeded.to_string(),
        f.failed.to_string(),
        pct(f.success_rate),
        format!("{:.2}", f.toil_hours),
        ms(f.median_ms),
        ms(f.p95_ms),
        ms(f.mttr_ms),
    ]
}

impl ToilReport {
    fn header(&self) -> Vec<String> {
        let mut h: Vec<String> = self.by.iter().map(|d| d.name().to_uppercase()).collect();
        h.extend(COLUMNS.iter().map(|c| c.to_string()));
        h
    }

    /// Renders the report.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            Format::Csv => self.csv(),
            Format::Table => {
                let mut t = Table::new(self.header());
                for i in self.by.len()..self.by.len() + COLUMNS.len() {
                    t.align_right(i);
                }
                for r in &self.rows {
                    let mut row = r.group.clone();
                    row.extend(cells(&r.figures));
                    t.row(row);
                }
                let mut total: Vec<String> = vec![String::new(); self.by.len()];
                if let Some(first) = total.first_mut() {
                    *first = "TOTAL".into();
                }
                total.extend(cells(&self.total));
                if self.by.is_empty() {
                    t.row(cells(&self.total));
                } else {
                    t.row(total);
                }
                format!(
                    "toil report {} .. {} (UTC days)\n{}",
                    self.period.from,
                    self.period.to,
                    t.render()
                )
            }
            Format::Markdown => {
                let header: Vec<String> = self.header().iter().map(|h| cell::markdown(h)).collect();
                let mut out = format!(
                    "Toil report {} .. {} (UTC days)\n\n| {} |\n|{}|\n",
                    self.period.from,
                    self.period.to,
                    header.join(" | "),
                    header
                        .iter()
                        .enumerate()
                        .map(|(i, _)| if i < self.by.len() { "---" } else { "---:" })
                        .collect::<Vec<_>>()
                        .join("|")
                );
                for r in &self.rows {
                    let mut row: Vec<String> = r.group.iter().map(|g| cell::markdown(g)).collect();
                    row.extend(cells(&r.figures));
                    out.push_str(&format!("| {} |\n", row.join(" | ")));
                }
                let mut total: Vec<String> = vec![String::new(); self.by.len()];
                if let Some(first) = total.first_mut() {
                    *first = "**total**".into();
                }
                total.extend(cells(&self.total));
                out.push_str(&format!("| {} |\n", total.join(" | ")));
                out
            }
        }
    }

    fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = self.by.iter().map(|d| d.name().to_string()).collect();
        header.extend(
            [
                "runs",
                "succeeded",
                "failed",
                "cancelled",
                "success_rate",
                "toil_minutes",
                "toil_hours",
                "median_ms",
                "p95_ms",
                "mttr_ms",
            ]
            .map(String::from),
        );
        let _ = w.write_record(header.iter().map(|h| cell::csv(h)));
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let line = |group: Vec<String>, f: &Figures| {
            let mut rec = group;
            rec.extend([
                f.runs.to_string(),
                f.succeeded.to_string(),
                f.failed.to_string(),
                f.cancelled.to_string(),
                f.success_rate
                    .map(|r| format!("{r:.4}"))
                    .unwrap_or_default(),
                format!("{:.3}", f.toil_minutes),
                format!("{:.4}", f.toil_hours),
                opt(f.median_ms),
                opt(f.p95_ms),
                opt(f.mttr_ms),
            ]);
            rec
        };
        for r in &self.rows {
            let _ = w.write_record(
                line(r.group.clone(), &r.figures)
                    .iter()
                    .map(|c| cell::csv(c)),
            );
        }
        let mut total = vec![String::new(); self.by.len()];
        if let Some(first) = total.first_mut() {
            *first = "TOTAL".into();
        }
        if !self.by.is_empty() {
            let _ = w.write_record(line(total, &self.total));
        } else {
            let _ = w.write_record(line(Vec::new(), &self.total));
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn key(day: &str, owner: &str, runbook: &str) -> RollupKey {
        RollupKey {
            day: NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap_or_default(),
            owner: owner.into(),
            service: String::new(),
            runbook: runbook.into(),
            cause: "manual".into(),
        }
    }

    fn rollup(runs: u64, succeeded: u64, milli: u64) -> Rollup {
        Rollup {
            runs,
            succeeded,
            failed: runs - succeeded,
            toil_milli_minutes: milli,
            ..Default::default()
        }
    }

    #[test]
    fn rows_group_by_dimensions_and_totals_add_up() {
        let period = Period {
            from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default(),
            to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap_or_default(),
        };
        let data = vec![
            (key("2026-11-02", "a", "x"), rollup(2, 1, 20_000)),
            (key("2026-11-20", "a", "y"), rollup(1, 1, 5_500)),
            (key("2026-11-20", "b", "z"), rollup(3, 3, 60_000)),
            (key("2026-10-31", "b", "z"), rollup(9, 9, 99_000)),
        ];
        let r = aggregate(period, &[Dim::Team, Dim::Month], data);
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[0].group, ["a", "2026-11"]);
        assert_eq!(r.rows[0].figures.runs, 3);
        assert_eq!(r.rows[0].figures.toil_minutes, 25.5);
        assert_eq!(r.total.runs, 6);
        assert_eq!(r.total.toil_minutes, 85.5);
        let table = r.render(Format::Table);
        assert!(table.contains("TOTAL"), "{table}");
        let csv = r.render(Format::Csv);
        assert!(csv.starts_with("team,month,runs,"), "{csv}");
        assert!(
            csv.lines()
                .any(|l| l.starts_with("TOTAL,,6,5,1,0,0.8333,85.500,")),
            "{csv}"
        );
    }

    #[test]
    fn weeks_are_iso_weeks() {
        assert_eq!(Dim::Week.value(&key("2026-01-01", "a", "x")), "2026-W01");
        assert_eq!(Dim::Week.value(&key("2027-01-01", "a", "x")), "2026-W53");
    }
}
