//! Runs waiting for a person's approval, with the runbook version each was admitted with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::run::id::RunId;
use crate::runbook::model::Runbook;

/// The runs waiting for approval here.
#[derive(Default)]
pub struct Pending {
    runs: Mutex<HashMap<RunId, Option<Arc<Runbook>>>>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<RunId, Option<Arc<Runbook>>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A run now waits (with its runbook, when it is loaded). Returns false when it already
    /// did.
    pub fn add(&self, id: RunId, runbook: Option<Arc<Runbook>>) -> bool {
        self.lock().insert(id, runbook).is_none()
    }

    /// The run no longer waits; returns whether it did.
    pub fn remove(&self, id: &RunId) -> bool {
        self.lock().remove(id).is_some()
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
