//! One attempt of a step: its result, and whether trying again may help.

use chrono::Utc;

use crate::run::status::StepStatus;
use crate::run::step::StepResult;

/// One attempt's result, and whether trying again may help.
pub struct Attempt {
    /// The result.
    pub result: StepResult,
    /// Connection errors, 5xx, timeouts and non-zero exits may pass on retry; 4xx do not.
    pub retryable: bool,
}

/// A failed attempt that never started (render error, bad input): not worth retrying.
pub fn failed_before_start(message: String) -> Attempt {
    Attempt {
        result: StepResult {
            status: Some(StepStatus::Failed),
            error: Some(message),
            started_at: Some(Utc::now()),
            ..Default::default()
        },
        retryable: false,
    }
}

/// Parses text as JSON when it is a JSON document (objects, arrays, numbers, ...).
pub fn parse_json(text: &str) -> Option<serde_json::Value> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    serde_json::from_str(t).ok()
}
