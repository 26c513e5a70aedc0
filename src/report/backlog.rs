//! The automation backlog: alerts received that no runbook handles, ranked by the toil they
//! still cost people.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::report::cell;
use crate::report::period::Period;
use crate::report::query::Format;
use crate::report::table::{Table, percent as pct};
use crate::store::error::StoreError;
use crate::store::{AlertReceived, Store};

/// One line of the automation backlog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogRow {
    /// alertname plus the extra labels asked for.
    pub group: BTreeMap<String, String>,
    /// Alert episodes received that no runbook handled.
    pub count: u64,
    /// Last time one was received.
    pub last_seen: DateTime<Utc>,
    /// Manual minutes assumed per alert.
    pub minutes_each: f64,
    /// count x minutes_each.
    pub estimated_minutes: f64,
}

/// The automation backlog: alerts received that no runbook handles, ranked by toil.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backlog {
    /// The period.
    pub period: Period,
    /// Rows, most toil first.
    pub rows: Vec<BacklogRow>,
    /// All alert episodes received.
    pub alerts_received: u64,
    /// Those a runbook handled.
    pub alerts_handled: u64,
    /// handled / received.
    pub coverage: Option<f64>,
}

/// Builds the backlog from alert episodes (pure). The minutes per alert come from its
/// `toil_minutes` annotation when it parses, else `assume_minutes`.
pub fn backlog(
    period: Period,
    alerts: &[AlertReceived],
    labels: &[String],
    assume_minutes: f64,
) -> Backlog {
    let mut groups: BTreeMap<BTreeMap<String, String>, BacklogRow> = BTreeMap::new();
    let mut handled = 0;
    for a in alerts {
        if !a.matched.is_empty() {
            handled += 1;
            continue;
        }
        let mut group = BTreeMap::new();
        group.insert(
            "alertname".to_string(),
            a.labels.get("alertname").cloned().unwrap_or_default(),
        );
        for l in labels {
            group.insert(l.clone(), a.labels.get(l).cloned().unwrap_or_default());
        }
        let minutes = a
            .annotations
            .get("toil_minutes")
            .and_then(|m| m.trim().parse::<f64>().ok())
            .filter(|m| m.is_finite() && *m >= 0.0)
            .unwrap_or(assume_minutes);
        let row = groups.entry(group.clone()).or_insert(BacklogRow {
            group,
            count: 0,
            last_seen: a.last_seen,
            minutes_each: minutes,
            estimated_minutes: 0.0,
        });
        row.count += 1;
        row.last_seen = row.last_seen.max(a.last_seen);
        row.estimated_minutes += minutes;
        row.minutes_each = row.estimated_minutes / row.count as f64;
    }
    let mut rows: Vec<BacklogRow> = groups.into_values().collect();
    rows.sort_by(|a, b| {
        b.estimated_minutes
            .total_cmp(&a.estimated_minutes)
            .then(b.count.cmp(&a.count))
    });
    let received = alerts.len() as u64;
    Backlog {
        period,
        rows,
        alerts_received: received,
        alerts_handled: handled,
        coverage: (received > 0).then(|| handled as f64 / received as f64),
    }
}

/// Builds the backlog of a period from the alert episodes the store kept.
pub async fn backlog_report(
    store: &dyn Store,
    period: Period,
    labels: &[String],
    assume_minutes: f64,
) -> Result<Backlog, StoreError> {
    let (from, to) = period.instants();
    let alerts = store.alerts(from, to).await?;
    Ok(backlog(period, &alerts, labels, assume_minutes))
}

impl Backlog {
    /// Renders the backlog.
    pub fn render(&self, format: Format, labels: &[String]) -> String {
        let mut header = vec!["ALERTNAME".to_string()];
        header.extend(labels.iter().map(|l| l.to_uppercase()));
        header.extend(["COUNT", "LAST SEEN", "MIN EACH", "EST. TOIL (h)"].map(String::from));
        let row_cells = |r: &BacklogRow| {
            let mut c = vec![r.group.get("alertname").cloned().unwrap_or_default()];
            c.extend(
                labels
                    .iter()
                    .map(|l| r.group.get(l).cloned().unwrap_or_default()),
            );
            c.extend([
                r.count.to_string(),
                r.last_seen.format("%Y-%m-%d %H:%M").to_string(),
                format!("{:.1}", r.minutes_each),
                format!("{:.2}", r.estimated_minutes / 60.0),
            ]);
            c
        };
        let coverage = format!(
            "coverage: {} of {} alerts handled by a runbook ({})",
            self.alerts_handled,
            self.alerts_received,
            pct(self.coverage)
        );
        match format {
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            Format::Csv => {
                let mut w = csv::Writer::from_writer(Vec::new());
                let _ = w.write_record(header.iter().map(|h| cell::csv(&h.to_lowercase())));
                for r in &self.rows {
                    let _ = w.write_record(row_cells(r).iter().map(|c| cell::csv(c)));
                }
                String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
            }
            Format::Table => {
                let mut t = Table::new(header);
                for r in &self.rows {
                    t.row(row_cells(r));
                }
                format!(
                    "automation backlog {} .. {}: alerts no runbook handles, most toil first\n{}{coverage}\n",
                    self.period.from,
                    self.period.to,
                    t.render()
                )
            }
            Format::Markdown => {
                let row = |cells: &[String]| {
                    let cells: Vec<String> = cells.iter().map(|c| cell::markdown(c)).collect();
                    format!("| {} |\n", cells.join(" | "))
                };
                let mut out = format!(
                    "{}|{}|\n",
                    row(&header),
                    vec!["---"; header.len()].join("|")
                );
                for r in &self.rows {
                    out.push_str(&row(&row_cells(r)));
                }
                out.push_str(&format!("\n{coverage}\n"));
                out
            }
        }
    }
}
