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
    /// The runbook's `toil.per_item` at the time, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_item: Option<PerItemRule>,
    /// `verify.credit: verified_only`: an alert run is credited only once verified.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verified_only: bool,
}

/// Credit by amount as a runbook declares it (`toil.per_item`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerItemRule {
    /// Minutes per item.
    pub minutes: f64,
    /// The count template's source, e.g. `{{steps.clean.json.removed}}`.
    pub count: String,
    /// Most items credited per run.
    pub max_items: u64,
}

/// The items a run was credited for, and how they were counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemCredit {
    /// What the count rendered to, when it rendered to a whole number.
    #[serde(default)]
    pub count: Option<u64>,
    /// Items credited: the count capped at `max_items`, 0 when the run credits nothing.
    #[serde(default)]
    pub counted: u64,
    /// The cap per run.
    #[serde(default)]
    pub max_items: u64,
    /// Minutes per item.
    #[serde(default)]
    pub minutes_each: f64,
    /// The count template it came from.
    #[serde(default)]
    pub from: String,
    /// Why the count gave no number (it did not render, or not to a whole number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl ItemCredit {
    /// What a run's count rendered to once its steps ended (a number of items, or why there is
    /// none), before it is credited.
    pub fn rendered(count: Result<u64, String>) -> ItemCredit {
        let (count, problem) = match count {
            Ok(n) => (Some(n), None),
            Err(e) => (None, Some(e)),
        };
        ItemCredit {
            count,
            problem,
            ..Default::default()
        }
    }
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
    /// The per-item part, for runbooks with `toil.per_item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<ItemCredit>,
    /// With `verify.credit: verified_only`: the minutes the run earns once verified (credited
    /// then; never while awaiting the verdict, nor when unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<f64>,
}
