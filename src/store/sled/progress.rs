//! Step progress as small appends (tree `progress`): `run id \0 sequence` (u64 big-endian) ->
//! one event. Recording a step inserts one small value instead of reading, changing and
//! rewriting the whole run record; reads of a `running` run apply its events in order. The
//! events of a run that has ended are ignored on read (its final record has every step) and
//! removed after its finish and by prune.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::run::step::StepResult;
use crate::store::error::StoreError;
use crate::store::sled::layout::{backend, decode, encode};

/// One progress event as read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A step started (with its process group, once known).
    Started {
        /// The step.
        step: String,
        /// Its process group.
        #[serde(default)]
        pgid: Option<u32>,
    },
    /// A step finished (boxed: a result is far bigger than a start).
    Finished(Box<StepResult>),
}

/// One progress event as written (borrowed: a step's result is not copied to be written).
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOut<'a> {
    /// A step started.
    Started {
        /// The step.
        step: &'a str,
        /// Its process group.
        pgid: Option<u32>,
    },
    /// A step finished.
    Finished(&'a StepResult),
}

/// Sequence numbers of progress events, process-wide.
pub struct Sequence(AtomicU64);

impl Default for Sequence {
    /// Seeded from the clock (nanoseconds), so that events written after a restart sort after
    /// those of the process before it.
    fn default() -> Self {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0).max(0) as u64;
        Sequence(AtomicU64::new(now))
    }
}

impl Sequence {
    /// The key of a new event of run `id`.
    pub fn key(&self, id: &[u8]) -> Vec<u8> {
        let mut k = prefix(id);
        k.extend_from_slice(&self.0.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        k
    }
}

/// `run id \0`: the prefix of a run's events (ids have no NUL).
pub fn prefix(id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 9);
    k.extend_from_slice(id);
    k.push(0);
    k
}

/// The run id of an event key.
pub fn run_of(key: &[u8]) -> &[u8] {
    let end = key.iter().position(|b| *b == 0).unwrap_or(key.len());
    &key[..end]
}

/// The stored value of an event.
pub fn value(event: &EventOut<'_>) -> Vec<u8> {
    encode(event)
}

/// Applies one event, exactly as the whole-record progress writes of schema 3 did.
pub fn apply(run: &mut RunRecord, event: Event) {
    match event {
        Event::Started { step, pgid } => {
            run.current_step = Some(step);
            if pgid.is_some() {
                run.current_pgid = pgid;
            }
        }
        Event::Finished(step) => {
            run.current_step = None;
            run.current_pgid = None;
            match run.steps.iter_mut().find(|s| s.name == step.name) {
                Some(s) => *s = *step,
                None => run.steps.push(*step),
            }
        }
    }
}

/// Applies the events of a `running` run in order; other runs are left as they are. Applying
/// events again to a record they were merged into changes nothing, so a record rewritten with
/// its progress merged keeps its events until the run ends.
pub fn merge(tree: &sled::Tree, path: &Path, run: &mut RunRecord) -> Result<(), StoreError> {
    if run.status != RunStatus::Running {
        return Ok(());
    }
    for e in events(tree, path, run.id.0.as_bytes())? {
        apply(run, e);
    }
    Ok(())
}

/// The events of run `id`, in order.
pub fn events(tree: &sled::Tree, path: &Path, id: &[u8]) -> Result<Vec<Event>, StoreError> {
    let mut out = Vec::new();
    for item in tree.scan_prefix(prefix(id)) {
        let (k, v) = item.map_err(|e| backend(path, e))?;
        out.push(decode(&k, &v)?);
    }
    Ok(out)
}

/// Removes the events of run `id` (no flush: leftovers are ignored and pruned).
pub fn remove(tree: &sled::Tree, id: &[u8]) -> sled::Result<()> {
    let keys: Vec<sled::IVec> = tree
        .scan_prefix(prefix(id))
        .keys()
        .collect::<sled::Result<_>>()?;
    for k in keys {
        tree.remove(k)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::status::StepStatus;

    fn step(name: &str, out: &str) -> StepResult {
        StepResult {
            name: name.into(),
            kind: "shell".into(),
            status: Some(StepStatus::Succeeded),
            stdout: out.into(),
            ..Default::default()
        }
    }

    #[test]
    fn events_apply_in_order_as_record_rewrites_did_and_again_change_nothing() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let tree = db.open_tree("progress").expect("tree");
        let seq = Sequence::default();
        let mut run = RunRecord {
            status: RunStatus::Running,
            finished_at: None,
            ..RunRecord::synthetic(1)
        };
        let id = run.id.0.as_bytes().to_vec();
        let put = |e: EventOut<'_>| {
            tree.insert(seq.key(&id), value(&e)).expect("insert");
        };
        put(EventOut::Started {
            step: "a",
            pgid: None,
        });
        put(EventOut::Started {
            step: "a",
            pgid: Some(42),
        });
        put(EventOut::Finished(&step("a", "one")));
        put(EventOut::Started {
            step: "b",
            pgid: Some(43),
        });
        put(EventOut::Finished(&step("b", "two")));
        put(EventOut::Finished(&step("a", "retried")));
        put(EventOut::Started {
            step: "c",
            pgid: Some(44),
        });
        put(EventOut::Started {
            step: "c",
            pgid: None,
        });
        // Another run's events sort elsewhere.
        tree.insert(
            seq.key(b"other"),
            value(&EventOut::Finished(&step("x", ""))),
        )
        .expect("insert");
        merge(&tree, Path::new("test"), &mut run).expect("merges");
        let names: Vec<(&str, &str)> = run
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.stdout.as_str()))
            .collect();
        assert_eq!(names, [("a", "retried"), ("b", "two")]);
        assert_eq!(run.current_step.as_deref(), Some("c"));
        assert_eq!(run.current_pgid, Some(44));
        let merged = run.clone();
        merge(&tree, Path::new("test"), &mut run).expect("merges again");
        assert_eq!(run, merged);

        // A finished run's events are ignored, then removed.
        let mut done = RunRecord {
            id: run.id.clone(),
            ..RunRecord::synthetic(1)
        };
        merge(&tree, Path::new("test"), &mut done).expect("merges");
        assert!(done.steps.is_empty());
        remove(&tree, &id).expect("removes");
        assert_eq!(tree.len(), 1);
        assert_eq!(
            run_of(&tree.first().expect("reads").expect("one").0),
            b"other"
        );
    }
}
