//! A run's toil credit as recorded: the minutes and the estimates they came from. How a credit
//! is computed is the ledger's ([`crate::ledger::toil`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The estimates a credit was computed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The runbook's `toil.manual_minutes` at the time.
    pub manual_minutes: f64,
    /// The runbook's `toil.approval_minutes` at the time.
    pub approval_minutes: f64,
    /// Per-step figures, by step name, when steps carry their own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub step_minutes: BTreeMap<String, f64>,
}

/// Minutes credited to one run, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Credit {
    /// Minutes saved.
    pub minutes: f64,
    /// The estimates used.
    pub baseline: Baseline,
    /// One line for humans: how the figure was reached.
    pub reason: String,
}
