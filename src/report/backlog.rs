//! The automation backlog: alerts received that no runbook handles, ranked by the toil they
//! still cost people; and alerts a runbook handles whose runs did not fix them (failed, timed
//! out, interrupted or skipped), toil that still landed on people, ranked the same way.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::report::cell;
use crate::report::period::Period;
use crate::report::query::Format;
use crate::report::table::{Table, percent as pct};
use crate::run::status::RunStatus;
use crate::store::error::StoreError;
use crate::store::{AlertReceived, Store};
use crate::trigger::alert::AlertStatus;

/// One line of the automation backlog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogRow {
    /// The source the alerts came from: alerts of different sources are different rows.
    #[serde(default = "crate::trigger::source::default_source")]
    pub source: String,
    /// alertname plus the extra labels asked for.
    pub group: BTreeMap<String, String>,
    /// Alert episodes received that no runbook handled (or, in the second list, whose runs did
    /// not fix them).
    pub count: u64,
    /// Last time one was received.
    pub last_seen: DateTime<Utc>,
    /// Manual minutes assumed per alert.
    pub minutes_each: f64,
    /// count x minutes_each.
    pub estimated_minutes: f64,
    /// Second list only: the runbooks whose runs did not fix them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runbooks: Vec<String>,
    /// Second list only: how those runs ended (`failed`, `timed_out`, `interrupted`,
    /// `skipped`), with how many.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outcomes: BTreeMap<String, u64>,
}

/// The automation backlog: alerts received that no runbook handles, ranked by toil.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backlog {
    /// The period.
    pub period: Period,
    /// Rows, most toil first.
    pub rows: Vec<BacklogRow>,
    /// Alerts a runbook handles whose runs failed, timed out, were interrupted or were skipped:
    /// toil that still landed on people. Grouped and ranked like `rows`.
    pub not_remediated: Vec<BacklogRow>,
    /// All alert episodes received firing (an episode only its resolve was received of is no
    /// alert anyone had to handle).
    pub alerts_received: u64,
    /// Those a runbook handled.
    pub alerts_handled: u64,
    /// Those of them whose runs did not fix them (the second list's episodes).
    pub alerts_not_remediated: u64,
    /// handled / received.
    pub coverage: Option<f64>,
}

/// How one run of a handled episode ended: (runbook, status).
pub type Fate = (String, RunStatus);

/// The endings that leave an alert to people: the run did not fix it.
fn left_to_people(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Failed | RunStatus::TimedOut | RunStatus::Interrupted | RunStatus::Skipped
    )
}

/// Builds the backlog from alert episodes (pure). The minutes per alert come from its
/// `toil_minutes` annotation when it parses, else `assume_minutes`. `fates` holds, per handled
/// episode (its stored key, `fingerprint@startsAt`), how its firing runs ended: the latest run
/// per runbook, so an episode skipped and then run on a re-send counts by that run.
pub fn backlog(
    period: Period,
    alerts: &[AlertReceived],
    fates: &BTreeMap<String, Vec<Fate>>,
    labels: &[String],
    assume_minutes: f64,
) -> Backlog {
    let mut groups: Groups = BTreeMap::new();
    let mut failed: Groups = BTreeMap::new();
    let (mut received, mut handled, mut not_remediated) = (0, 0, 0);
    for a in alerts.iter().filter(|a| a.firing) {
        received += 1;
        let lost: Vec<&Fate> = fates
            .get(&a.episode().to_string())
            .into_iter()
            .flatten()
            .filter(|(_, status)| left_to_people(*status))
            .collect();
        let target = if a.matched.is_empty() {
            &mut groups
        } else {
            handled += 1;
            if lost.is_empty() {
                continue;
            }
            not_remediated += 1;
            &mut failed
        };
        let row = add(target, a, labels, assume_minutes);
        for (runbook, status) in lost {
            if !row.runbooks.contains(runbook) {
                row.runbooks.push(runbook.clone());
            }
            *row.outcomes.entry(status.as_str().to_string()).or_default() += 1;
        }
    }
    Backlog {
        period,
        rows: ranked(groups),
        not_remediated: ranked(failed),
        alerts_received: received,
        alerts_handled: handled,
        alerts_not_remediated: not_remediated,
        coverage: (received > 0).then(|| handled as f64 / received as f64),
    }
}

/// Backlog rows by source and group.
type Groups = BTreeMap<(String, BTreeMap<String, String>), BacklogRow>;

/// Counts an episode in its group's row (source, alertname plus `labels`); returns the row.
fn add<'a>(
    groups: &'a mut Groups,
    a: &AlertReceived,
    labels: &[String],
    assume_minutes: f64,
) -> &'a mut BacklogRow {
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
    let row = groups
        .entry((a.source.clone(), group.clone()))
        .or_insert(BacklogRow {
            source: a.source.clone(),
            group,
            count: 0,
            last_seen: a.last_seen,
            minutes_each: minutes,
            estimated_minutes: 0.0,
            runbooks: Vec::new(),
            outcomes: BTreeMap::new(),
        });
    row.count += 1;
    row.last_seen = row.last_seen.max(a.last_seen);
    row.estimated_minutes += minutes;
    row.minutes_each = row.estimated_minutes / row.count as f64;
    row
}

/// Rows, most toil first.
fn ranked(groups: Groups) -> Vec<BacklogRow> {
    let mut rows: Vec<BacklogRow> = groups.into_values().collect();
    rows.sort_by(|a, b| {
        b.estimated_minutes
            .total_cmp(&a.estimated_minutes)
            .then(b.count.cmp(&a.count))
    });
    rows
}

/// Builds the backlog of a period from the alert episodes the store kept and the runs of the
/// handled ones.
pub async fn backlog_report(
    store: &dyn Store,
    period: Period,
    labels: &[String],
    assume_minutes: f64,
) -> Result<Backlog, StoreError> {
    let (from, to) = period.instants();
    let alerts = store.alerts(from, to).await?;
    let mut fates = BTreeMap::new();
    for a in alerts.iter().filter(|a| a.firing && !a.matched.is_empty()) {
        let episode = a.episode();
        let mut ended = Vec::new();
        for id in store.runs_of_episode(&episode).await? {
            // A pruned run says nothing any more; runs on the resolve are not the fix.
            let Some(run) = store.get_run(&id).await? else {
                continue;
            };
            let on_resolve = run
                .alert
                .as_ref()
                .is_some_and(|c| c.alert.status == AlertStatus::Resolved);
            if !on_resolve && run.status.is_final() {
                ended.push((run.runbook, run.status));
            }
        }
        fates.insert(episode.to_string(), ended);
    }
    Ok(backlog(period, &alerts, &fates, labels, assume_minutes))
}

impl Backlog {
    /// Renders the backlog: the alerts no runbook handles, then those whose runs did not fix
    /// them (in CSV, one table with a `list` column saying which).
    pub fn render(&self, format: Format, labels: &[String]) -> String {
        let mut header = vec!["ALERTNAME".to_string(), "SOURCE".to_string()];
        header.extend(labels.iter().map(|l| l.to_uppercase()));
        header.extend(["COUNT", "LAST SEEN", "MIN EACH", "EST. TOIL (h)"].map(String::from));
        let mut failed_header = header.clone();
        failed_header.extend(["RUNBOOKS", "OUTCOMES"].map(String::from));
        let row_cells = |r: &BacklogRow| {
            let mut c = vec![
                r.group.get("alertname").cloned().unwrap_or_default(),
                r.source.clone(),
            ];
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
        let failed_cells = |r: &BacklogRow| {
            let mut c = row_cells(r);
            c.push(r.runbooks.join(" "));
            c.push(outcomes(r));
            c
        };
        let coverage = format!(
            "coverage: {} of {} alerts handled by a runbook ({})",
            self.alerts_handled,
            self.alerts_received,
            pct(self.coverage)
        );
        let second = format!(
            "handled by a runbook, but its run failed, timed out, was interrupted or was skipped: toil that still landed on people ({} of {} handled alerts)",
            self.alerts_not_remediated, self.alerts_handled
        );
        match format {
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            Format::Csv => {
                let mut w = csv::Writer::from_writer(Vec::new());
                let mut csv_header = failed_header.clone();
                csv_header.push("LIST".into());
                let _ = w.write_record(csv_header.iter().map(|h| cell::csv(&h.to_lowercase())));
                for r in &self.rows {
                    let mut c = row_cells(r);
                    c.extend([String::new(), String::new(), "unhandled".into()]);
                    let _ = w.write_record(c.iter().map(|c| cell::csv(c)));
                }
                for r in &self.not_remediated {
                    let mut c = failed_cells(r);
                    c.push("not_remediated".into());
                    let _ = w.write_record(c.iter().map(|c| cell::csv(c)));
                }
                String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
            }
            Format::Table => {
                let mut t = Table::new(header);
                for r in &self.rows {
                    t.row(row_cells(r));
                }
                let mut f = Table::new(failed_header);
                for r in &self.not_remediated {
                    f.row(failed_cells(r));
                }
                format!(
                    "automation backlog {} .. {}: alerts no runbook handles, most toil first\n{}{coverage}\n\n{second}\n{}",
                    self.period.from,
                    self.period.to,
                    t.render(),
                    f.render()
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
                out.push_str(&format!("\n{coverage}\n\n{}\n\n", cell::markdown(&second)));
                out.push_str(&format!(
                    "{}|{}|\n",
                    row(&failed_header),
                    vec!["---"; failed_header.len()].join("|")
                ));
                for r in &self.not_remediated {
                    out.push_str(&row(&failed_cells(r)));
                }
                out
            }
        }
    }
}

/// `failed 2, skipped 1`.
pub fn outcomes(r: &BacklogRow) -> String {
    r.outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(fingerprint: &str, name: &str, matched: &[&str], firing: bool) -> AlertReceived {
        let now = Utc::now();
        AlertReceived {
            source: crate::trigger::source::ALERTMANAGER.into(),
            fingerprint: fingerprint.into(),
            starts_at: now,
            received_at: now,
            last_seen: now,
            times_received: 1,
            labels: BTreeMap::from([("alertname".to_string(), name.to_string())]),
            annotations: BTreeMap::new(),
            matched: matched.iter().map(|m| m.to_string()).collect(),
            firing,
        }
    }

    fn period() -> Period {
        Period::parse_since("30d", Utc::now()).expect("period")
    }

    #[test]
    fn alerts_of_different_sources_are_different_rows() {
        let mut grafana = alert("grafana/a", "DiskFull", &[], true);
        grafana.source = crate::trigger::source::GRAFANA.into();
        let alerts = [alert("a", "DiskFull", &[], true), grafana];
        let b = backlog(period(), &alerts, &BTreeMap::new(), &[], 15.0);
        let mut sources: Vec<&str> = b.rows.iter().map(|r| r.source.as_str()).collect();
        sources.sort_unstable();
        assert_eq!(sources, ["alertmanager", "grafana"]);
        assert!(b.rows.iter().all(|r| r.count == 1), "{b:?}");
        let table = b.render(Format::Table, &[]);
        assert!(
            table.contains("SOURCE") && table.contains("grafana"),
            "{table}"
        );
    }

    #[test]
    fn a_resolve_only_episode_is_neither_backlog_nor_coverage() {
        let alerts = [
            alert("a", "Handled", &["rb"], true),
            alert("b", "Orphan", &[], false),
        ];
        let b = backlog(period(), &alerts, &BTreeMap::new(), &[], 15.0);
        assert!(b.rows.is_empty(), "{b:?}");
        assert_eq!((b.alerts_received, b.alerts_handled), (1, 1));
        assert_eq!(b.coverage, Some(1.0));
    }

    #[test]
    fn handled_alerts_whose_runs_did_not_fix_them_are_the_second_list_ranked_by_toil() {
        let alerts = [
            alert("ok", "Fixed", &["rb"], true),
            alert("f1", "Flaky", &["rb"], true),
            alert("s1", "Busy", &["busy"], true),
            alert("s2", "Busy", &["busy"], true),
            alert("none", "Unhandled", &[], true),
        ];
        let fate = |a: &AlertReceived, status| {
            let runbook = a.matched.first().cloned().unwrap_or_default();
            (a.episode().to_string(), vec![(runbook, status)])
        };
        let fates = BTreeMap::from([
            fate(&alerts[0], RunStatus::Succeeded),
            fate(&alerts[1], RunStatus::Failed),
            fate(&alerts[2], RunStatus::Skipped),
            fate(&alerts[3], RunStatus::Interrupted),
        ]);
        let b = backlog(period(), &alerts, &fates, &[], 15.0);
        assert_eq!(b.rows.len(), 1);
        assert_eq!(b.rows[0].group["alertname"], "Unhandled");
        let names: Vec<&str> = b
            .not_remediated
            .iter()
            .map(|r| r.group["alertname"].as_str())
            .collect();
        assert_eq!(names, ["Busy", "Flaky"], "most toil first");
        assert_eq!(b.not_remediated[0].estimated_minutes, 30.0);
        assert_eq!(b.not_remediated[0].runbooks, ["busy"]);
        assert_eq!(outcomes(&b.not_remediated[0]), "interrupted 1, skipped 1");
        assert_eq!((b.alerts_received, b.alerts_handled), (5, 4));
        assert_eq!(b.alerts_not_remediated, 3);
    }
}
