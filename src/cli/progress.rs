//! Shows a run's progress in the terminal: a spinner line per step on a TTY, plain lines
//! otherwise (logs, CI, pipes).

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::report::{cell, human};
use crate::run::event::RunEvent;
use crate::run::record::RunRecord;
use crate::run::status::StepStatus;
use crate::run::step::StepResult;

/// Prints run events as they come.
pub struct Progress {
    tty: bool,
    total: usize,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A printer; `tty` selects spinners.
    pub fn new(tty: bool) -> Progress {
        Progress {
            tty,
            total: 0,
            bar: None,
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
        }
    }

    /// Shows one event.
    pub fn show(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { id, runbook, steps } => {
                // A follower may see RunStarted twice (snapshot, then the real one).
                if self.total == *steps && self.total > 0 {
                    return;
                }
                self.total = *steps;
                self.line(&format!(
                    "run {id} of {runbook} ({})",
                    human::count(*steps, "step")
                ));
            }
            RunEvent::StepStarted {
                index,
                name,
                attempt,
                detail,
            } => {
                let retry = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                let head = format!("[{}/{}] {name}{retry}", index + 1, self.total);
                let first = detail.lines().next().unwrap_or("");
                if self.tty {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_message(format!("{head}: {}", truncate(first, 80)));
                    bar.enable_steady_tick(Duration::from_millis(100));
                    self.bar = Some(bar);
                } else {
                    self.line(&format!("==> {head}: {first}"));
                }
            }
            RunEvent::ProcessStarted { .. } => {}
            RunEvent::Output { line, stream, .. } => {
                let mark = if stream == "stderr" { "!" } else { "|" };
                self.line(&format!("    {mark} {}", cell::terminal_line(line)));
            }
            RunEvent::StepFinished { index, result } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                self.line(&step_line(*index, self.total, result));
            }
            RunEvent::RunFinished { record } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                self.line(&summary(record));
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn step_line(index: usize, total: usize, r: &StepResult) -> String {
    let status = r.status.map(StepStatus::as_str).unwrap_or("unknown");
    let mark = match r.status {
        Some(StepStatus::Succeeded) => "ok",
        Some(StepStatus::Skipped) => "--",
        _ => "XX",
    };
    let mut line = format!(
        "<{mark} [{}/{total}] {} {status} in {}",
        index + 1,
        r.name,
        human::duration_ms(r.duration_ms)
    );
    if r.attempts > 1 {
        line.push_str(&format!(
            " ({})",
            human::count(r.attempts as usize, "attempt")
        ));
    }
    if let Some(code) = r.exit_code {
        line.push_str(&format!(", exit {code}"));
    }
    if let Some(code) = r.http_status {
        line.push_str(&format!(", HTTP {code}"));
    }
    if let Some(e) = &r.error {
        line.push_str(&format!(": {}", cell::terminal(e)));
    } else if let Some(n) = &r.noop {
        line.push_str(&format!(": nothing to do, {}", cell::terminal(n)));
    } else if r.status == Some(StepStatus::Skipped) && !r.message.is_empty() {
        line.push_str(&format!("\n{}", r.message));
    }
    line
}

/// One line about a finished run.
pub fn summary(record: &RunRecord) -> String {
    let took = record
        .duration_ms()
        .map(|ms| format!(" in {}", human::duration_ms(ms)))
        .unwrap_or_default();
    let toil = record
        .toil
        .as_ref()
        .map(|t| {
            format!(
                "; toil credited: {} ({})",
                crate::report::human::toil_minutes(t.minutes),
                t.reason
            )
        })
        .unwrap_or_default();
    let why = record
        .error
        .as_ref()
        .map(|e| format!(": {}", cell::terminal(e)))
        .unwrap_or_default();
    format!("run {} {}{took}{why}{toil}", record.id, record.status)
}
