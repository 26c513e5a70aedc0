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
use crate::run::cause::CauseKind;
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
    /// The same group's figures in the previous period (with `--compare`, when no dimension is
    /// a time: a day or week has no namesake in another period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Figures>,
    /// Each figure's change against `previous`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

/// The figures of a row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Runs.
    pub runs: u64,
    /// Succeeded runs.
    pub succeeded: u64,
    /// Runs that found nothing to do (a success that credits nothing).
    pub noop: u64,
    /// Failed or timed out runs.
    pub failed: u64,
    /// Runs interrupted by a shutdown or crash (not failures).
    pub interrupted: u64,
    /// Cancelled runs.
    pub cancelled: u64,
    /// (succeeded + noop) / (succeeded + noop + failed); None when that is 0 / 0.
    pub success_rate: Option<f64>,
    /// Toil saved, minutes (exact to 1/1000).
    pub toil_minutes: f64,
    /// Toil saved, hours.
    pub toil_hours: f64,
    /// Median run duration, ms (within ~3%).
    pub median_ms: Option<u64>,
    /// 95th percentile run duration, ms (within ~3%).
    pub p95_ms: Option<u64>,
    /// Succeeded alert runs with a time to remediate.
    pub remediations: u64,
    /// Median time to remediate (alert start to the end of a succeeded alert run), ms (~3%).
    pub ttr_median_ms: Option<u64>,
    /// 90th percentile time to remediate, ms (~3%).
    pub ttr_p90_ms: Option<u64>,
    /// Mean time to remediate, ms (exact; legacy runs included).
    pub mttr_ms: Option<u64>,
    /// Alert runs whose alert resolved within the runbook's verify window.
    pub verified: u64,
    /// Alert runs whose alert was still firing when the window ended.
    pub unverified: u64,
    /// verified / (verified + unverified); None when neither is known.
    pub verified_share: Option<f64>,
    /// Runs counted before schema 3 whose details were pruned before the migration: their
    /// noop/interrupted split and times to remediate are unknown (see [`LEGACY_NOTE`]).
    pub legacy_runs: u64,
}

/// What a report cannot show for legacy runs, said under the table rather than guessed.
pub const LEGACY_NOTE: &str = "counted before the store's schema 3 migration whose details \
had been pruned: untoil did not yet keep interrupted and noop runs apart nor time-to-remediate \
percentiles, so their split is unknown (their interrupted runs are in FAILED, their noop ones in \
SUCCEEDED, and TTR MEDIAN/P90 leave them out)";

/// The share `part / (part + rest)`, None when both are 0.
fn share(part: u64, rest: u64) -> Option<f64> {
    let whole = part + rest;
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The success rate of a rollup: (succeeded + noop) / (succeeded + noop + failed). Interrupted
/// and cancelled runs are neither (nobody's runbook failed).
pub fn success_rate(r: &Rollup) -> Option<f64> {
    share(r.succeeded + r.noop, r.failed)
}

/// Median and 90th percentile time to remediate, ms, from the rollup's histogram: the one place
/// the CLI, the API and the dashboard take them from.
pub fn time_to_remediate(r: &Rollup) -> (Option<u64>, Option<u64>) {
    (r.remediate_ms.quantile(0.5), r.remediate_ms.quantile(0.9))
}

impl Figures {
    /// Figures of a rollup.
    pub fn of(r: &Rollup) -> Figures {
        let minutes = r.toil_milli_minutes as f64 / 1000.0;
        let (ttr_median_ms, ttr_p90_ms) = time_to_remediate(r);
        Figures {
            runs: r.runs,
            succeeded: r.succeeded,
            noop: r.noop,
            failed: r.failed,
            interrupted: r.interrupted,
            cancelled: r.cancelled,
            success_rate: success_rate(r),
            toil_minutes: minutes,
            toil_hours: minutes / 60.0,
            median_ms: r.durations.quantile(0.5),
            p95_ms: r.durations.quantile(0.95),
            remediations: r.remediations,
            ttr_median_ms,
            ttr_p90_ms,
            mttr_ms: (r.remediations > 0).then(|| r.remediate_ms_sum / r.remediations),
            verified: r.verified,
            unverified: r.unverified,
            verified_share: share(r.verified, r.unverified),
            legacy_runs: r.legacy_runs,
        }
    }
}

/// How a figure is written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Count,
    Ratio,
    Minutes,
    Hours,
    Ms,
}

/// One figure: its JSON/CSV name, its table header (None: JSON and CSV only), how it is written.
struct Col {
    key: &'static str,
    head: Option<&'static str>,
    kind: Kind,
    get: fn(&Figures) -> Option<f64>,
}

const COLS: [Col; 19] = [
    Col {
        key: "runs",
        head: Some("RUNS"),
        kind: Kind::Count,
        get: |f| Some(f.runs as f64),
    },
    Col {
        key: "succeeded",
        head: Some("SUCCEEDED"),
        kind: Kind::Count,
        get: |f| Some(f.succeeded as f64),
    },
    Col {
        key: "noop",
        head: Some("NOOP"),
        kind: Kind::Count,
        get: |f| Some(f.noop as f64),
    },
    Col {
        key: "failed",
        head: Some("FAILED"),
        kind: Kind::Count,
        get: |f| Some(f.failed as f64),
    },
    Col {
        key: "interrupted",
        head: Some("INTERRUPTED"),
        kind: Kind::Count,
        get: |f| Some(f.interrupted as f64),
    },
    Col {
        key: "cancelled",
        head: Some("CANCELLED"),
        kind: Kind::Count,
        get: |f| Some(f.cancelled as f64),
    },
    Col {
        key: "success_rate",
        head: Some("SUCCESS RATE"),
        kind: Kind::Ratio,
        get: |f| f.success_rate,
    },
    Col {
        key: "toil_minutes",
        head: None,
        kind: Kind::Minutes,
        get: |f| Some(f.toil_minutes),
    },
    Col {
        key: "toil_hours",
        head: Some("TOIL SAVED (h)"),
        kind: Kind::Hours,
        get: |f| Some(f.toil_hours),
    },
    Col {
        key: "median_ms",
        head: Some("MEDIAN"),
        kind: Kind::Ms,
        get: |f| f.median_ms.map(|v| v as f64),
    },
    Col {
        key: "p95_ms",
        head: Some("P95"),
        kind: Kind::Ms,
        get: |f| f.p95_ms.map(|v| v as f64),
    },
    Col {
        key: "remediations",
        head: None,
        kind: Kind::Count,
        get: |f| Some(f.remediations as f64),
    },
    Col {
        key: "ttr_median_ms",
        head: Some("TTR MEDIAN"),
        kind: Kind::Ms,
        get: |f| f.ttr_median_ms.map(|v| v as f64),
    },
    Col {
        key: "ttr_p90_ms",
        head: Some("TTR P90"),
        kind: Kind::Ms,
        get: |f| f.ttr_p90_ms.map(|v| v as f64),
    },
    Col {
        key: "mttr_ms",
        head: None,
        kind: Kind::Ms,
        get: |f| f.mttr_ms.map(|v| v as f64),
    },
    Col {
        key: "verified",
        head: Some("VERIFIED"),
        kind: Kind::Count,
        get: |f| Some(f.verified as f64),
    },
    Col {
        key: "unverified",
        head: Some("UNVERIFIED"),
        kind: Kind::Count,
        get: |f| Some(f.unverified as f64),
    },
    Col {
        key: "verified_share",
        head: Some("VERIFIED %"),
        kind: Kind::Ratio,
        get: |f| f.verified_share,
    },
    Col {
        key: "legacy_runs",
        head: None,
        kind: Kind::Count,
        get: |f| Some(f.legacy_runs as f64),
    },
];

/// A figure's change against the previous period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Delta {
    /// Now minus before (a ratio's in fractions: 0.05 is 5 percentage points); None when either
    /// side has no value.
    pub delta: Option<f64>,
    /// The delta as a percentage of the previous value; None for ratios and when the previous
    /// value is 0 or missing.
    pub percent: Option<f64>,
}

/// Every figure's change, by its JSON name.
pub type Change = BTreeMap<&'static str, Delta>;

/// Each figure of `now` against `before`.
pub fn change(now: &Figures, before: &Figures) -> Change {
    COLS.iter()
        .map(|c| {
            let (n, b) = ((c.get)(now), (c.get)(before));
            let delta = n.zip(b).map(|(n, b)| n - b);
            let percent = match (c.kind, delta, b) {
                (Kind::Ratio, _, _) => None,
                (_, Some(d), Some(b)) if b != 0.0 => Some(d / b * 100.0),
                _ => None,
            };
            (c.key, Delta { delta, percent })
        })
        .collect()
}

/// The previous period a report is compared with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Previous {
    /// The same number of UTC days just before the report's period.
    pub period: Period,
    /// Its totals.
    pub total: Figures,
    /// Each total figure's change against it.
    pub change: Change,
    /// Its total counters.
    #[serde(skip)]
    pub total_rollup: Rollup,
}

/// A toil report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToilReport {
    /// The period.
    pub period: Period,
    /// Group-by dimensions.
    pub by: Vec<Dim>,
    /// The causes it is limited to (empty: every cause).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<CauseKind>,
    /// Rows, sorted by group.
    pub rows: Vec<Row>,
    /// Totals over all rows.
    pub total: Figures,
    /// Total counters.
    #[serde(skip)]
    pub total_rollup: Rollup,
    /// The previous period's totals (with `--compare`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// What the report cannot show, when that applies (legacy runs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Groups rollups by the dimensions (pure).
pub fn aggregate<I>(period: Period, by: &[Dim], rollups: I) -> ToilReport
where
    I: IntoIterator<Item = (RollupKey, Rollup)>,
{
    aggregate_causes(period, by, &[], rollups)
}

/// [`aggregate`] of the rollups whose cause is one of `causes` (empty: every cause): the one
/// place a report is filtered by cause, so its rows and totals agree.
pub fn aggregate_causes<I>(
    period: Period,
    by: &[Dim],
    causes: &[CauseKind],
    rollups: I,
) -> ToilReport
where
    I: IntoIterator<Item = (RollupKey, Rollup)>,
{
    let mut groups: BTreeMap<Vec<String>, Rollup> = BTreeMap::new();
    let mut total = Rollup::default();
    for (k, r) in rollups {
        if k.day < period.from || k.day > period.to {
            continue;
        }
        // A key whose cause names no kind (never written so) passes only an unfiltered report.
        let kind = k.cause.parse::<CauseKind>().ok();
        if !causes.is_empty() && !kind.is_some_and(|c| causes.contains(&c)) {
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
            previous: None,
            change: None,
        })
        .collect();
    let notes = if total.legacy_runs > 0 {
        vec![format!(
            "{} {LEGACY_NOTE}.",
            crate::report::human::count(total.legacy_runs as usize, "run")
        )]
    } else {
        Vec::new()
    };
    ToilReport {
        period,
        by: by.to_vec(),
        causes: causes.to_vec(),
        rows,
        total: Figures::of(&total),
        total_rollup: total,
        previous: None,
        notes,
    }
}

impl ToilReport {
    /// This report set against `before` (the same grouping over the previous period): its
    /// totals, and each row's group there when no dimension is a time.
    pub fn compared(mut self, before: &ToilReport) -> ToilReport {
        if !self
            .by
            .iter()
            .any(|d| matches!(d, Dim::Day | Dim::Week | Dim::Month))
        {
            let old: BTreeMap<&Vec<String>, &Row> =
                before.rows.iter().map(|r| (&r.group, r)).collect();
            let none = Figures::of(&Rollup::default());
            for row in &mut self.rows {
                // A group that did not exist before had no runs then.
                let prev = old
                    .get(&row.group)
                    .map_or(none.clone(), |r| r.figures.clone());
                row.change = Some(change(&row.figures, &prev));
                row.previous = Some(prev);
            }
        }
        self.previous = Some(Previous {
            period: before.period,
            change: change(&self.total, &before.total),
            total: before.total.clone(),
            total_rollup: before.total_rollup.clone(),
        });
        self
    }
}

/// Builds the toil report of a period from the store.
pub async fn toil_report(
    store: &dyn Store,
    period: Period,
    by: &[Dim],
) -> Result<ToilReport, StoreError> {
    toil_report_of_causes(store, period, by, &[]).await
}

/// [`toil_report`] of the runs whose cause is one of `causes` (empty: every cause).
pub async fn toil_report_of_causes(
    store: &dyn Store,
    period: Period,
    by: &[Dim],
    causes: &[CauseKind],
) -> Result<ToilReport, StoreError> {
    // Monthly rollups serve any grouping coarser than a week: far fewer groups to read.
    let by_month = !by.iter().any(|d| matches!(d, Dim::Day | Dim::Week));
    Ok(aggregate_causes(
        period,
        by,
        causes,
        store.rollups(period.from, period.to, by_month).await?,
    ))
}

/// [`toil_report_of_causes`], set against the previous period of the same length, with the
/// same cause filter, when `compare` (and there is one: it would not start before 0001-01-01).
pub async fn toil_report_compared(
    store: &dyn Store,
    period: Period,
    by: &[Dim],
    causes: &[CauseKind],
    compare: bool,
) -> Result<ToilReport, StoreError> {
    let mut report = toil_report_of_causes(store, period, by, causes).await?;
    if !compare {
        return Ok(report);
    }
    match period.previous() {
        Some(p) => Ok(report.compared(&toil_report_of_causes(store, p, by, causes).await?)),
        None => {
            // Said rather than left out silently: the caller asked for a comparison.
            report.notes.push(format!(
                "no previous period to compare with: it would start before {}",
                crate::report::period::FIRST_DAY
            ));
            Ok(report)
        }
    }
}

/// A figure as the table and Markdown write it.
fn human(kind: Kind, v: Option<f64>) -> String {
    match (kind, v) {
        (_, None) => "-".into(),
        (Kind::Count, Some(v)) => format!("{v:.0}"),
        (Kind::Ratio, v) => pct(v),
        (Kind::Minutes, Some(v)) => format!("{v:.1}"),
        (Kind::Hours, Some(v)) => format!("{v:.2}"),
        (Kind::Ms, Some(v)) => crate::report::human::duration_ms(v as u64),
    }
}

/// A figure's change as the table and Markdown write it: `+2 (+25%)`, `-0.50 h`, `+5.0 pp`.
fn human_change(kind: Kind, d: &Delta) -> String {
    let Some(delta) = d.delta else {
        return "-".into();
    };
    let sign = if delta < 0.0 { "-" } else { "+" };
    let abs = delta.abs();
    let text = match kind {
        Kind::Ratio => return format!("{sign}{:.1} pp", abs * 100.0),
        Kind::Count => format!("{sign}{abs:.0}"),
        Kind::Minutes => format!("{sign}{abs:.1}"),
        Kind::Hours => format!("{sign}{abs:.2}"),
        Kind::Ms => format!("{sign}{}", crate::report::human::duration_ms(abs as u64)),
    };
    match d.percent {
        Some(p) if abs > 0.0 => format!("{text} ({p:+.0}%)"),
        _ if abs == 0.0 => "0".into(),
        _ => text,
    }
}

/// The change of the figure named `key` (its JSON name) as the table writes it, e.g.
/// `+2 (+25%)`, `+5.0 pp`, `-1 min 3 s`; `-` when unknown.
pub fn change_text(change: &Change, key: &str) -> String {
    match (COLS.iter().find(|c| c.key == key), change.get(key)) {
        (Some(c), Some(d)) => human_change(c.kind, d),
        _ => "-".into(),
    }
}

/// The CSV form of a figure: exact, no unit.
fn csv_value(kind: Kind, v: Option<f64>) -> String {
    match (kind, v) {
        (_, None) => String::new(),
        (Kind::Count | Kind::Ms, Some(v)) => format!("{v:.0}"),
        (Kind::Ratio, Some(v)) => format!("{v:.4}"),
        (Kind::Minutes, Some(v)) => format!("{v:.3}"),
        (Kind::Hours, Some(v)) => format!("{v:.4}"),
    }
}

fn shown() -> impl Iterator<Item = &'static Col> {
    COLS.iter().filter(|c| c.head.is_some())
}

/// The table/Markdown cells of a row's figures; a row with legacy runs is marked `*`.
fn cells(f: &Figures) -> Vec<String> {
    shown()
        .map(|c| {
            let v = human(c.kind, (c.get)(f));
            if c.key == "runs" && f.legacy_runs > 0 {
                format!("{v}*")
            } else {
                v
            }
        })
        .collect()
}

fn change_cells(d: &Change) -> Vec<String> {
    shown()
        .map(|c| d.get(c.key).map_or("-".into(), |d| human_change(c.kind, d)))
        .collect()
}

/// One line of the table or Markdown: (period label when compared, group cells, figures).
type Line = (Option<&'static str>, Vec<String>, Vec<String>);

impl ToilReport {
    fn header(&self) -> Vec<String> {
        let mut h: Vec<String> = Vec::new();
        if self.previous.is_some() {
            h.push("PERIOD".into());
        }
        h.extend(self.by.iter().map(|d| d.name().to_uppercase()));
        h.extend(shown().filter_map(|c| c.head).map(String::from));
        h
    }

    /// The lines of the table and Markdown: each row (with its previous figures and change
    /// when compared), then the totals.
    fn lines(&self, total_label: &str) -> Vec<Line> {
        let compared = self.previous.is_some();
        let label = |l: &'static str| compared.then_some(l);
        let blank = vec![String::new(); self.by.len()];
        let mut out: Vec<Line> = Vec::new();
        for r in &self.rows {
            out.push((label("current"), r.group.clone(), cells(&r.figures)));
            if let (Some(p), Some(c)) = (&r.previous, &r.change) {
                out.push((label("previous"), blank.clone(), cells(p)));
                out.push((label("change"), blank.clone(), change_cells(c)));
            }
        }
        let mut total = blank.clone();
        if let Some(first) = total.first_mut() {
            *first = total_label.into();
        }
        out.push((label("current"), total, cells(&self.total)));
        if let Some(p) = &self.previous {
            out.push((label("previous"), blank.clone(), cells(&p.total)));
            out.push((label("change"), blank, change_cells(&p.change)));
        }
        out
    }

    fn title(&self) -> String {
        let mut t = format!("{} .. {} (UTC days)", self.period.from, self.period.to);
        // A filtered table must not read as the whole picture.
        if !self.causes.is_empty() {
            let names: Vec<&str> = self.causes.iter().map(|c| c.name()).collect();
            t.push_str(&format!(", only runs caused by {}", names.join(" or ")));
        }
        if let Some(p) = &self.previous {
            t.push_str(&format!(
                ", compared with the previous {} days {} .. {}",
                self.period.days(),
                p.period.from,
                p.period.to
            ));
        }
        t
    }

    fn footnotes(&self) -> String {
        self.notes.iter().map(|n| format!("* {n}\n")).collect()
    }

    /// Renders the report.
    pub fn render(&self, format: Format) -> String {
        let lead = usize::from(self.previous.is_some()) + self.by.len();
        match format {
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            Format::Csv => self.csv(),
            Format::Table => {
                let mut t = Table::new(self.header());
                for i in lead..lead + shown().count() {
                    t.align_right(i);
                }
                for (label, group, figures) in self.lines("TOTAL") {
                    let mut row: Vec<String> = label.map(String::from).into_iter().collect();
                    row.extend(group);
                    row.extend(figures);
                    t.row(row);
                }
                let notes = self.footnotes();
                format!("toil report {}\n{}{notes}", self.title(), t.render())
            }
            Format::Markdown => {
                let header: Vec<String> = self.header().iter().map(|h| cell::markdown(h)).collect();
                let mut out = format!(
                    "Toil report {}\n\n| {} |\n|{}|\n",
                    self.title(),
                    header.join(" | "),
                    header
                        .iter()
                        .enumerate()
                        .map(|(i, _)| if i < lead { "---" } else { "---:" })
                        .collect::<Vec<_>>()
                        .join("|")
                );
                for (label, group, figures) in self.lines("**total**") {
                    let mut row: Vec<String> = label.map(String::from).into_iter().collect();
                    row.extend(group.iter().map(|g| {
                        if g == "**total**" {
                            g.clone()
                        } else {
                            cell::markdown(g)
                        }
                    }));
                    // The legacy mark is a literal `*`, not emphasis.
                    row.extend(figures.iter().map(|f| f.replace('*', "\\*")));
                    out.push_str(&format!("| {} |\n", row.join(" | ")));
                }
                if !self.notes.is_empty() {
                    out.push('\n');
                    out.push_str(&self.footnotes().replace("* ", "\\* "));
                }
                out
            }
        }
    }

    fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let compared = self.previous.is_some();
        let mut header: Vec<String> = self.by.iter().map(|d| d.name().to_string()).collect();
        header.extend(COLS.iter().map(|c| c.key.to_string()));
        if compared {
            header.extend(COLS.iter().map(|c| format!("previous_{}", c.key)));
            header.extend(COLS.iter().map(|c| format!("change_{}", c.key)));
        }
        let _ = w.write_record(header.iter().map(|h| cell::csv(h)));
        // Only group values are text a spreadsheet could read as a formula; the figures are
        // numbers written here, and a negative change must stay a number (`-2`, not `'-2`).
        let line = |group: Vec<String>, f: &Figures, before: Option<(&Figures, &Change)>| {
            let mut rec: Vec<String> = group.iter().map(|g| cell::csv(g)).collect();
            rec.extend(COLS.iter().map(|c| csv_value(c.kind, (c.get)(f))));
            if compared {
                match before {
                    Some((p, d)) => {
                        rec.extend(COLS.iter().map(|c| csv_value(c.kind, (c.get)(p))));
                        rec.extend(
                            COLS.iter()
                                .map(|c| csv_value(c.kind, d.get(c.key).and_then(|d| d.delta))),
                        );
                    }
                    None => rec.extend(vec![String::new(); 2 * COLS.len()]),
                }
            }
            rec
        };
        for r in &self.rows {
            let before = r.previous.as_ref().zip(r.change.as_ref());
            let _ = w.write_record(line(r.group.clone(), &r.figures, before));
        }
        let mut total = vec![String::new(); self.by.len()];
        if let Some(first) = total.first_mut() {
            *first = "TOTAL".into();
        }
        let before = self.previous.as_ref().map(|p| (&p.total, &p.change));
        let _ = w.write_record(line(total, &self.total, before));
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
                .any(|l| l.starts_with("TOTAL,,6,5,0,1,0,0,0.8333,85.500,")),
            "{csv}"
        );
    }

    fn november() -> Period {
        Period {
            from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default(),
            to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap_or_default(),
        }
    }

    #[test]
    fn a_cause_filter_keeps_only_those_causes_in_rows_and_totals() {
        let caused = |cause: &str| RollupKey {
            cause: cause.into(),
            ..key("2026-11-02", "a", "x")
        };
        let data = || {
            [
                (caused("manual"), rollup(1, 1, 1000)),
                (caused("schedule"), rollup(2, 2, 2000)),
                (caused("alert"), rollup(4, 3, 4000)),
            ]
        };
        let all = aggregate(november(), &[Dim::Cause], data());
        assert_eq!(all.total.runs, 7);
        let some = aggregate_causes(
            november(),
            &[Dim::Cause],
            &[CauseKind::Alert, CauseKind::Manual],
            data(),
        );
        let groups: Vec<&str> = some.rows.iter().map(|r| r.group[0].as_str()).collect();
        assert_eq!(groups, ["alert", "manual"]);
        assert_eq!((some.total.runs, some.total.toil_minutes), (5, 5.0));
        assert_eq!(some.causes, [CauseKind::Alert, CauseKind::Manual]);
        let table = some.render(Format::Table);
        assert!(
            table.starts_with(
                "toil report 2026-11-01 .. 2026-11-30 (UTC days), only runs caused by alert or manual\n"
            ),
            "{table}"
        );
        // Grouped by something else, the filter still applies.
        let by_team = aggregate_causes(november(), &[Dim::Team], &[CauseKind::Schedule], data());
        assert_eq!(by_team.rows.len(), 1);
        assert_eq!(by_team.rows[0].figures.runs, 2);
    }

    #[test]
    fn success_rate_counts_noop_as_success_and_leaves_interrupted_and_cancelled_out() {
        let r = Rollup {
            runs: 8,
            succeeded: 3,
            noop: 1,
            failed: 1,
            interrupted: 2,
            cancelled: 1,
            ..Default::default()
        };
        let f = Figures::of(&r);
        // (3 + 1) / (3 + 1 + 1): the interrupted and the cancelled runs are neither.
        assert_eq!(f.success_rate, Some(0.8));
        assert_eq!((f.noop, f.interrupted, f.cancelled), (1, 2, 1));
        let none = Rollup {
            runs: 2,
            interrupted: 1,
            cancelled: 1,
            ..Default::default()
        };
        assert_eq!(Figures::of(&none).success_rate, None);
    }

    #[test]
    fn time_to_remediate_is_median_and_p90_of_the_histogram_with_the_mean_beside() {
        let mut r = Rollup::default();
        // Nine remediations of a minute and one alert that started four days earlier.
        for ms in [60_000u64; 9].into_iter().chain([4 * 86_400_000]) {
            r.remediations += 1;
            r.remediate_ms_sum += ms;
            r.remediate_ms.record(ms);
        }
        let f = Figures::of(&r);
        let median = f.ttr_median_ms.unwrap_or(0);
        assert!(
            (median as f64 - 60_000.0).abs() < 60_000.0 * 0.04,
            "{median}"
        );
        assert_eq!(
            f.ttr_p90_ms, f.ttr_median_ms,
            "the 9th of 10 values is a minute too"
        );
        assert_eq!(f.mttr_ms, Some((9 * 60_000 + 4 * 86_400_000) / 10));
        assert_eq!(time_to_remediate(&r), (f.ttr_median_ms, f.ttr_p90_ms));
        let table =
            aggregate(november(), &[], [(key("2026-11-02", "a", "x"), r)]).render(Format::Table);
        assert!(
            table.contains("TTR MEDIAN") && table.contains("TTR P90"),
            "{table}"
        );
        assert!(!table.contains("MTTR"), "{table}");
        assert!(table.contains("1 min"), "{table}");
    }

    #[test]
    fn verified_share_is_of_the_runs_with_a_verdict() {
        let r = Rollup {
            runs: 5,
            succeeded: 5,
            verified: 3,
            unverified: 1,
            ..Default::default()
        };
        let f = Figures::of(&r);
        assert_eq!(
            (f.verified, f.unverified, f.verified_share),
            (3, 1, Some(0.75))
        );
        assert_eq!(Figures::of(&Rollup::default()).verified_share, None);
        let csv =
            aggregate(november(), &[], [(key("2026-11-02", "a", "x"), r)]).render(Format::Csv);
        assert!(csv.contains(",3,1,0.7500,0\n"), "{csv}");
    }

    #[test]
    fn legacy_runs_are_marked_and_explained_never_split() {
        let legacy = Rollup {
            runs: 4,
            succeeded: 2,
            failed: 2,
            legacy_runs: 3,
            ..Default::default()
        };
        let r = aggregate(
            november(),
            &[Dim::Runbook],
            [
                (key("2026-11-02", "a", "x"), legacy),
                (key("2026-11-02", "a", "y"), rollup(1, 1, 0)),
            ],
        );
        assert_eq!(r.total.legacy_runs, 3);
        let table = r.render(Format::Table);
        assert!(table.contains("4*"), "{table}");
        assert!(
            table.contains("* 3 runs counted before the store's schema 3 migration"),
            "{table}"
        );
        assert!(table.contains("their split is unknown"), "{table}");
        let md = r.render(Format::Markdown);
        assert!(md.contains("\\* 3 runs counted before"), "{md}");
        assert!(md.contains("| 4\\* |"), "{md}");
        let json: serde_json::Value =
            serde_json::from_str(&r.render(Format::Json)).unwrap_or_default();
        assert_eq!(json["total"]["legacy_runs"], 3, "{json}");
        assert_eq!(json["rows"][0]["legacy_runs"], 3, "{json}");
        assert!(
            json["notes"][0]
                .as_str()
                .is_some_and(|n| n.contains("unknown")),
            "{json}"
        );
        let plain = aggregate(
            november(),
            &[],
            [(key("2026-11-02", "a", "y"), rollup(1, 1, 0))],
        );
        assert!(plain.notes.is_empty());
        assert!(!plain.render(Format::Table).contains('*'));
    }

    #[test]
    fn compared_reports_show_previous_figures_and_changes() {
        let october = Period {
            from: NaiveDate::from_ymd_opt(2026, 10, 2).unwrap_or_default(),
            to: NaiveDate::from_ymd_opt(2026, 10, 31).unwrap_or_default(),
        };
        assert_eq!(november().previous(), Some(october));
        let now = aggregate(
            november(),
            &[Dim::Team],
            [
                (key("2026-11-02", "a", "x"), rollup(10, 9, 600_000)),
                (key("2026-11-02", "b", "x"), rollup(1, 1, 0)),
            ],
        );
        let before = aggregate(
            october,
            &[Dim::Team],
            [
                (key("2026-10-12", "a", "x"), rollup(8, 8, 480_000)),
                (key("2026-10-12", "c", "x"), rollup(2, 2, 0)),
            ],
        );
        let r = now.compared(&before);
        let a = &r.rows[0];
        assert_eq!(a.previous.as_ref().map(|p| p.runs), Some(8));
        let runs = a.change.as_ref().and_then(|c| c.get("runs")).copied();
        assert_eq!(
            runs,
            Some(Delta {
                delta: Some(2.0),
                percent: Some(25.0)
            })
        );
        let rate = a
            .change
            .as_ref()
            .and_then(|c| c.get("success_rate"))
            .copied();
        assert!(rate.is_some_and(
            |d| d.percent.is_none() && d.delta.is_some_and(|d| (d + 0.1).abs() < 1e-9)
        ));
        // A team new in this period had no runs before.
        assert_eq!(r.rows[1].previous.as_ref().map(|p| p.runs), Some(0));
        let total = r.previous.as_ref().map(|p| (p.total.runs, p.period));
        assert_eq!(total, Some((10, october)));
        let table = r.render(Format::Table);
        assert!(
            table.contains("compared with the previous 30 days 2026-10-02 .. 2026-10-31"),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("previous") && l.contains(" 8 ")),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("change") && l.contains("+2 (+25%)")),
            "{table}"
        );
        assert!(table.contains("-10.0 pp"), "{table}");
        let json: serde_json::Value =
            serde_json::from_str(&r.render(Format::Json)).unwrap_or_default();
        assert_eq!(json["previous"]["total"]["runs"], 10, "{json}");
        assert_eq!(json["previous"]["change"]["runs"]["delta"], 1.0, "{json}");
        assert_eq!(json["rows"][0]["previous"]["runs"], 8, "{json}");
        let csv = r.render(Format::Csv);
        let header = csv.lines().next().unwrap_or_default();
        assert!(
            header.contains(",previous_runs,") && header.contains(",change_toil_hours,"),
            "{csv}"
        );
        let md = r.render(Format::Markdown);
        assert!(md.contains("| change |"), "{md}");
        // Days and weeks have no namesake in another period: only the totals are compared.
        let by_day = aggregate(
            november(),
            &[Dim::Day],
            [(key("2026-11-02", "a", "x"), rollup(1, 1, 0))],
        )
        .compared(&aggregate(october, &[Dim::Day], []));
        assert!(by_day.rows[0].previous.is_none() && by_day.previous.is_some());
    }

    #[test]
    fn weeks_are_iso_weeks() {
        assert_eq!(Dim::Week.value(&key("2026-01-01", "a", "x")), "2026-W01");
        assert_eq!(Dim::Week.value(&key("2027-01-01", "a", "x")), "2026-W53");
    }
}
