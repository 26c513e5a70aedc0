//! `report:` steps: a report of untoil's own store (the digest of a period), rendered inside
//! untoil. The step starts no process and needs no credential: it reads the store the executor
//! was given (the daemon's, or a foreground run's), so a runbook can post the week's figures
//! without untoil's API token ever reaching a step.

use chrono::{DateTime, Utc};

use crate::exec::process::Stream;
use crate::report::digest::digest_report;
use crate::report::period::Period;
use crate::run::status::StepStatus;
use crate::run::step::StepResult;
use crate::runbook::model::{ReportFormat, ReportPeriod, ReportRequest, Step, format_duration};

use crate::exec::step::attempt::{Attempt, failed_before_start};
use crate::exec::step::env::StepEnv;

/// The days a report step covers when it runs at `now`.
pub fn period(p: &ReportPeriod, now: DateTime<Utc>) -> Result<Period, String> {
    match p {
        ReportPeriod::LastWeek => Period::last_week(now),
        ReportPeriod::Since { length, .. } => Period::since(*length, now),
    }
}

/// What the step will render, e.g. `report of last_week (2026-11-23 .. 2026-11-29) as markdown`.
pub fn describe(req: &ReportRequest, now: DateTime<Utc>) -> String {
    let days = match period(&req.period, now) {
        Ok(p) => format!("{} .. {}", p.from, p.to),
        Err(e) => format!("cannot be read: {e}"),
    };
    format!(
        "report of {} ({days}) as {}",
        req.period.written(),
        req.format.name()
    )
}

/// Renders the report once.
pub async fn run(step: &Step, req: &ReportRequest, env: &StepEnv<'_>) -> Attempt {
    let Some(store) = env.store else {
        return failed_before_start(
            "a report step reads untoil's store, and this run has none (run it with the daemon or with `untoil run`, which open the store)".into(),
        );
    };
    let started_at = Utc::now();
    let period = match period(&req.period, started_at) {
        Ok(p) => p,
        Err(e) => {
            return failed_before_start(format!("report period `{}`: {e}", req.period.written()));
        }
    };
    let top = usize::try_from(req.top).unwrap_or(usize::MAX);
    let read = digest_report(store, period, top, req.assume_minutes);
    let outcome = tokio::select! {
        biased;
        _ = env.cancel.cancelled() => None,
        r = tokio::time::timeout(step.timeout, read) => Some(r),
    };
    let mut result = StepResult {
        started_at: Some(started_at),
        ..Default::default()
    };
    let retryable = match outcome {
        None => {
            result.status = Some(StepStatus::Cancelled);
            result.error = Some("cancelled while reading the store".into());
            false
        }
        Some(Err(_)) => {
            result.status = Some(StepStatus::TimedOut);
            result.error = Some(format!(
                "timed out after {} reading the store",
                format_duration(step.timeout)
            ));
            true
        }
        // A store that cannot be read now (busy, I/O) may be read on a retry.
        Some(Ok(Err(e))) => {
            result.status = Some(StepStatus::Failed);
            result.error = Some(format!("cannot read the store: {e}"));
            true
        }
        Some(Ok(Ok(digest))) => {
            let json = serde_json::to_value(&digest).unwrap_or_default();
            result.stdout = match req.format {
                ReportFormat::Markdown => digest.markdown(),
                ReportFormat::Json => {
                    serde_json::to_string_pretty(&json).unwrap_or_default() + "\n"
                }
            };
            // Shown as it is in the run's output, as a command's stdout would be (the channel
            // holds far more lines than a report has; a line that does not fit is only left
            // out of the stream, never out of the result).
            if let Some(lines) = &env.lines {
                for line in result.stdout.lines() {
                    let _ = lines.try_send((Stream::Stdout, line.to_string()));
                }
            }
            result.json = Some(json);
            result.status = Some(StepStatus::Succeeded);
            false
        }
    };
    Attempt { result, retryable }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn monday_morning() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T09:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn request(period: ReportPeriod) -> ReportRequest {
        ReportRequest {
            period,
            format: ReportFormat::Markdown,
            top: 5,
            assume_minutes: 15.0,
        }
    }

    #[test]
    fn a_plan_says_which_days_it_will_report_and_how() {
        assert_eq!(
            describe(&request(ReportPeriod::LastWeek), monday_morning()),
            "report of last_week (2026-11-23 .. 2026-11-29) as markdown"
        );
        let week = ReportPeriod::Since {
            text: "7d".into(),
            length: Duration::from_secs(7 * 86_400),
        };
        assert_eq!(
            describe(&request(week), monday_morning()),
            "report of since 7d (2026-11-23 .. 2026-11-30) as markdown"
        );
        // A length no calendar holds is said, not a panic.
        let forever = ReportPeriod::Since {
            text: "300000y".into(),
            length: Duration::from_secs(u64::MAX),
        };
        assert!(
            describe(&request(forever), monday_morning())
                .starts_with("report of since 300000y (cannot be read: "),
        );
    }
}
