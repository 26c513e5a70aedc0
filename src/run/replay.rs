//! A finished run's events rebuilt from its record, for a follower that arrives after they
//! happened (or that could not see them live).

use crate::run::event::RunEvent;
use crate::run::record::RunRecord;
use crate::run::status::StepStatus;

/// The events of a finished run, rebuilt from its record (steps, their output, their results).
pub fn replay(record: &RunRecord) -> Vec<RunEvent> {
    let mut events = vec![RunEvent::RunStarted {
        id: record.id.clone(),
        runbook: record.runbook.clone(),
        steps: record.steps.len(),
    }];
    for (index, step) in record.steps.iter().enumerate() {
        let ran = step.status != Some(StepStatus::Skipped);
        if ran {
            events.push(RunEvent::StepStarted {
                index,
                name: step.name.clone(),
                attempt: step.attempts.max(1),
                // Runs recorded before steps kept their command show the kind.
                detail: if step.command.is_empty() {
                    step.kind.clone()
                } else {
                    step.command.clone()
                },
            });
            for (stream, text) in [("stdout", &step.stdout), ("stderr", &step.stderr)] {
                for l in text.lines() {
                    events.push(RunEvent::Output {
                        index,
                        stream: stream.into(),
                        line: l.to_string(),
                    });
                }
            }
        }
        events.push(RunEvent::StepFinished {
            index,
            result: Box::new(step.clone()),
        });
    }
    events
}
