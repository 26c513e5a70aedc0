//! The digest: one period's toil report and automation backlog in a few lines of Markdown (hours
//! saved, top runbooks, failures, top of the backlog), for a chat message. It reads the same
//! reports as `untoil report` and writes their figures at the same precision, so the two agree.
//!
//! Every name in it (runbooks, alert labels) is escaped with [`cell::markdown`]: an alert
//! label such as `<!channel>` or `a|b` is shown as text, never as a mention, link or markup.
//! Lists are plain lines (not tables), which Slack's mrkdwn and Markdown both read.

use serde::Serialize;

use crate::report::backlog::{Backlog, BacklogRow, backlog_report};
use crate::report::cell;
use crate::report::period::Period;
use crate::report::query::Dim;
use crate::report::table::percent;
use crate::report::toil::{Figures, ToilReport, toil_report};
use crate::store::Store;
use crate::store::error::StoreError;

/// One runbook's line in the digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunbookLine {
    /// The runbook.
    pub runbook: String,
    /// Its figures over the period.
    #[serde(flatten)]
    pub figures: Figures,
}

/// A digest of one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    /// The period.
    pub period: Period,
    /// Figures over every runbook.
    pub total: Figures,
    /// Runbooks that saved toil, most first (at most `top`).
    pub top_runbooks: Vec<RunbookLine>,
    /// Runbooks with failed or timed-out runs, most failures first (at most `top`).
    pub failures: Vec<RunbookLine>,
    /// Runbooks with failures beyond those listed.
    pub more_failures: usize,
    /// The top of the automation backlog (at most `top`).
    pub backlog: Vec<BacklogRow>,
    /// Backlog lines beyond those listed.
    pub more_backlog: usize,
    /// Alert episodes received in the period.
    pub alerts_received: u64,
    /// Those a runbook handled.
    pub alerts_handled: u64,
    /// handled / received.
    pub coverage: Option<f64>,
}

/// Composes a digest from a toil report grouped by runbook and a backlog (pure).
pub fn compose(toil: &ToilReport, backlog: &Backlog, top: usize) -> Digest {
    let runbook_at = toil.by.iter().position(|d| *d == Dim::Runbook);
    let lines: Vec<RunbookLine> = toil
        .rows
        .iter()
        .map(|r| RunbookLine {
            runbook: runbook_at
                .and_then(|i| r.group.get(i))
                .cloned()
                .unwrap_or_default(),
            figures: r.figures.clone(),
        })
        .collect();
    let mut saved: Vec<RunbookLine> = lines
        .iter()
        .filter(|l| l.figures.toil_minutes > 0.0)
        .cloned()
        .collect();
    saved.sort_by(|a, b| {
        b.figures
            .toil_minutes
            .total_cmp(&a.figures.toil_minutes)
            .then(b.figures.runs.cmp(&a.figures.runs))
            .then(a.runbook.cmp(&b.runbook))
    });
    saved.truncate(top);
    let mut failures: Vec<RunbookLine> =
        lines.into_iter().filter(|l| l.figures.failed > 0).collect();
    failures.sort_by(|a, b| {
        b.figures
            .failed
            .cmp(&a.figures.failed)
            .then(a.runbook.cmp(&b.runbook))
    });
    let more_failures = failures.len().saturating_sub(top);
    failures.truncate(top);
    Digest {
        period: toil.period,
        total: toil.total.clone(),
        top_runbooks: saved,
        failures,
        more_failures,
        backlog: backlog.rows.iter().take(top).cloned().collect(),
        more_backlog: backlog.rows.len().saturating_sub(top),
        alerts_received: backlog.alerts_received,
        alerts_handled: backlog.alerts_handled,
        coverage: backlog.coverage,
    }
}

/// Builds the digest of a period from the store.
pub async fn digest_report(
    store: &dyn Store,
    period: Period,
    top: usize,
    assume_minutes: f64,
) -> Result<Digest, StoreError> {
    let toil = toil_report(store, period, &[Dim::Runbook]).await?;
    let backlog = backlog_report(store, period, &[], assume_minutes).await?;
    Ok(compose(&toil, &backlog, top))
}

/// Hours as `untoil report` writes them.
fn hours(h: f64) -> String {
    format!("{h:.2} h")
}

impl Digest {
    /// The digest as Markdown (also read by Slack's mrkdwn: `*x*` is emphasis in both).
    pub fn markdown(&self) -> String {
        let t = &self.total;
        let mut out = format!(
            "*untoil digest {} .. {} (UTC days)*\n\n",
            self.period.from, self.period.to
        );
        out.push_str(&format!(
            "*Toil saved:* {} in {}{} (success rate {})\n\n",
            hours(t.toil_hours),
            runs(t.runs),
            outcomes(t),
            percent(t.success_rate),
        ));

        out.push_str("*Top runbooks by toil saved*\n");
        if self.top_runbooks.is_empty() {
            out.push_str("No runbook saved toil in this period.\n");
        }
        for (i, l) in self.top_runbooks.iter().enumerate() {
            out.push_str(&format!(
                "{}. {}: {}, {}\n",
                i + 1,
                cell::markdown(&l.runbook),
                hours(l.figures.toil_hours),
                runs(l.figures.runs),
            ));
        }

        out.push_str("\n*Failures* (failed or timed out)\n");
        if self.failures.is_empty() {
            out.push_str("No run failed in this period.\n");
        }
        for l in &self.failures {
            out.push_str(&format!(
                "- {}: {} of {} failed\n",
                cell::markdown(&l.runbook),
                l.figures.failed,
                runs(l.figures.runs),
            ));
        }
        if self.more_failures > 0 {
            out.push_str(&format!(
                "- … and {} more (`untoil report --by runbook`)\n",
                self.more_failures
            ));
        }

        out.push_str("\n*Top of the automation backlog* (alerts no runbook handles)\n");
        if self.backlog.is_empty() {
            out.push_str("No alert went unhandled in this period.\n");
        }
        for (i, r) in self.backlog.iter().enumerate() {
            let name = r.group.get("alertname").map(String::as_str).unwrap_or("");
            out.push_str(&format!(
                "{}. {}: {}, est. {}\n",
                i + 1,
                cell::markdown(name),
                crate::report::human::count(
                    usize::try_from(r.count).unwrap_or(usize::MAX),
                    "alert"
                ),
                hours(r.estimated_minutes / 60.0),
            ));
        }
        if self.more_backlog > 0 {
            out.push_str(&format!(
                "… and {} more (`untoil report unautomated`)\n",
                self.more_backlog
            ));
        }
        out.push_str(&format!(
            "Coverage: {} of {} alerts handled by a runbook ({})\n",
            self.alerts_handled,
            self.alerts_received,
            percent(self.coverage)
        ));
        out
    }
}

/// How the runs ended, every run in one part (zero parts left out), so the parts add up to the
/// run count: `: 22 succeeded, 10 found nothing to do, 4 failed or timed out, 2 interrupted`.
fn outcomes(t: &Figures) -> String {
    let parts: Vec<String> = [
        (t.succeeded, "succeeded"),
        (t.noop, "found nothing to do"),
        (t.failed, "failed or timed out"),
        (t.interrupted, "interrupted"),
        (t.cancelled, "cancelled"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join(", "))
    }
}

fn runs(n: u64) -> String {
    crate::report::human::count(usize::try_from(n).unwrap_or(usize::MAX), "run")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use chrono::{NaiveDate, TimeZone, Utc};

    use crate::ledger::rollup::{Rollup, RollupKey};
    use crate::report::backlog::backlog;
    use crate::report::toil::aggregate;
    use crate::store::AlertReceived;

    fn period() -> Period {
        Period::between("2026-11-23", "2026-11-29").unwrap_or(Period {
            from: NaiveDate::MIN,
            to: NaiveDate::MIN,
        })
    }

    fn key(day: u32, runbook: &str) -> RollupKey {
        RollupKey {
            day: NaiveDate::from_ymd_opt(2026, 11, day).unwrap_or_default(),
            owner: "team-a".into(),
            service: String::new(),
            runbook: runbook.into(),
            cause: "schedule".into(),
        }
    }

    fn rollup(succeeded: u64, failed: u64, minutes: u64) -> Rollup {
        Rollup {
            runs: succeeded + failed,
            succeeded,
            failed,
            toil_milli_minutes: minutes * 1000,
            ..Default::default()
        }
    }

    fn alert(name: &str, matched: bool) -> AlertReceived {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
            .single()
            .unwrap_or_default();
        AlertReceived {
            source: crate::trigger::source::ALERTMANAGER.into(),
            fingerprint: name.into(),
            starts_at: at,
            received_at: at,
            last_seen: at,
            times_received: 1,
            labels: BTreeMap::from([("alertname".to_string(), name.to_string())]),
            annotations: BTreeMap::new(),
            matched: if matched { vec!["x".into()] } else { vec![] },
            firing: true,
        }
    }

    fn digest(top: usize) -> Digest {
        let toil = aggregate(
            period(),
            &[Dim::Runbook],
            vec![
                (key(23, "log-cleanup"), rollup(3, 0, 30)),
                (key(24, "disk-usage"), rollup(2, 2, 10)),
                (key(25, "cert-check"), rollup(0, 1, 0)),
                (key(26, "restart"), rollup(4, 0, 60)),
                // Runs that are neither successes nor failures still count among the runs.
                (
                    key(27, "stale-tmp"),
                    Rollup {
                        runs: 4,
                        noop: 2,
                        interrupted: 1,
                        cancelled: 1,
                        ..Default::default()
                    },
                ),
                // Outside the week: counted nowhere.
                (key(30, "log-cleanup"), rollup(9, 9, 900)),
            ],
        );
        let alerts = vec![
            alert("HostOutOfMemory", false),
            alert("HostOutOfMemory", false),
            alert("<!channel> *x*|y", false),
            alert("DiskFull", true),
        ];
        let b = backlog(period(), &alerts, &BTreeMap::new(), &[], 15.0);
        compose(&toil, &b, top)
    }

    #[test]
    fn the_digest_lists_toil_failures_and_backlog_in_order() {
        let d = digest(5);
        assert_eq!(d.total.runs, 16);
        let top: Vec<&str> = d.top_runbooks.iter().map(|l| l.runbook.as_str()).collect();
        // cert-check saved nothing: not among the top runbooks.
        assert_eq!(top, ["restart", "log-cleanup", "disk-usage"]);
        let failed: Vec<&str> = d.failures.iter().map(|l| l.runbook.as_str()).collect();
        assert_eq!(failed, ["disk-usage", "cert-check"]);
        let md = d.markdown();
        for line in [
            "*untoil digest 2026-11-23 .. 2026-11-29 (UTC days)*",
            "*Toil saved:* 1.67 h in 16 runs: 9 succeeded, 2 found nothing to do, 3 failed or timed out, 1 interrupted, 1 cancelled (success rate 78.6%)",
            "1. restart: 1.00 h, 4 runs",
            "2. log-cleanup: 0.50 h, 3 runs",
            "3. disk-usage: 0.17 h, 4 runs",
            "- disk-usage: 2 of 4 runs failed",
            "- cert-check: 1 of 1 run failed",
            "1. HostOutOfMemory: 2 alerts, est. 0.50 h",
            "Coverage: 1 of 4 alerts handled by a runbook (25.0%)",
        ] {
            assert!(md.lines().any(|l| l == line), "no line {line:?} in:\n{md}");
        }
    }

    #[test]
    fn hostile_names_are_text_not_mentions_or_markup() {
        let md = digest(5).markdown();
        assert!(
            md.contains("2. &lt;!channel&gt; *x*\\|y: 1 alert, est. 0.25 h"),
            "{md}"
        );
        assert!(!md.contains("<!channel>"), "{md}");
    }

    #[test]
    fn lists_are_cut_at_top_and_say_how_many_more() {
        let md = digest(1).markdown();
        assert!(md.contains("1. restart: 1.00 h, 4 runs\n\n"), "{md}");
        assert!(
            md.contains(
                "- disk-usage: 2 of 4 runs failed\n- … and 1 more (`untoil report --by runbook`)\n"
            ),
            "{md}"
        );
        assert!(
            md.contains("… and 1 more (`untoil report unautomated`)\n"),
            "{md}"
        );
    }

    #[test]
    fn an_empty_period_says_so() {
        let toil = aggregate(period(), &[Dim::Runbook], Vec::new());
        let b = backlog(period(), &[], &BTreeMap::new(), &[], 15.0);
        let md = compose(&toil, &b, 5).markdown();
        for line in [
            "*Toil saved:* 0.00 h in 0 runs (success rate -)",
            "No runbook saved toil in this period.",
            "No run failed in this period.",
            "No alert went unhandled in this period.",
            "Coverage: 0 of 0 alerts handled by a runbook (-)",
        ] {
            assert!(md.lines().any(|l| l == line), "no line {line:?} in:\n{md}");
        }
    }
}
