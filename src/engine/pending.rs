//! Runs waiting for a person's approval, with the runbook version each was admitted with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;

use crate::run::id::RunId;
use crate::runbook::model::Runbook;

/// The runs waiting for approval here, counted in a gauge however they stop waiting
/// (decided, expired, cancelled).
pub struct Pending {
    runs: Mutex<HashMap<RunId, Option<Arc<Runbook>>>>,
    gauge: Gauge,
}

impl Pending {
    /// None waits yet; `gauge` counts those that will.
    pub fn counted(gauge: Gauge) -> Pending {
        Pending {
            runs: Mutex::default(),
            gauge,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RunId, Option<Arc<Runbook>>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A run now waits (with its runbook, when it is loaded). Returns false when it already
    /// did.
    pub fn add(&self, id: RunId, runbook: Option<Arc<Runbook>>) -> bool {
        let added = self.lock().insert(id, runbook).is_none();
        if added {
            self.gauge.inc();
        }
        added
    }

    /// The run no longer waits; returns whether it did.
    pub fn remove(&self, id: &RunId) -> bool {
        let removed = self.lock().remove(id).is_some();
        if removed {
            self.gauge.dec();
        }
        removed
    }

    /// The runbook version a waiting run was admitted with.
    pub fn runbook(&self, id: &RunId) -> Option<Arc<Runbook>> {
        self.lock().get(id).cloned().flatten()
    }

    /// Whether a run waits here.
    pub fn contains(&self, id: &RunId) -> bool {
        self.lock().contains_key(id)
    }

    /// How many runs wait.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_counts_runs_waiting_however_they_stop() {
        let gauge = Gauge::default();
        let pending = Pending::counted(gauge.clone());
        let (a, b) = (RunId::new(), RunId::new());
        assert!(pending.add(a.clone(), None));
        assert!(!pending.add(a.clone(), None), "a run waits once");
        assert!(pending.add(b, None));
        assert_eq!(gauge.get(), 2);
        assert!(pending.remove(&a));
        assert!(!pending.remove(&a));
        assert_eq!(gauge.get(), 1);
    }
}
