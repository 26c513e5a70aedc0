//! Ends not yet tallied: a worker's finish written as one record, its indexes and rollups
//! applied later, many runs per transaction.
//!
//! A sled transaction writes its log twice before its data (`PageCache::pin_log`: the current
//! buffer rolled, then a buffer holding only the batch manifest), each a `pwrite` and a
//! `sync_file_range` that waits. A transaction per finish made that the dearest part of a run
//! (measured under `benches/load.sh`: 82-86 KB written per run with it, 43-50 KB without). So a
//! worker's finish with no guard update swaps the run's record from `running` to its final one
//! (a compare-and-swap of one key, atomic on its own) and leaves the run in `active`; its tally
//! (removed from `active`, `by_runbook`, `verifying`, the rollups added) follows in the next
//! batch's transaction, or one of its own once [`TALLY_EVERY`] ends wait.
//!
//! What makes it exact: a run whose record is final and which is still in `active` has not been
//! counted; the tally removes it from `active` and adds its rollups in one transaction, so it is
//! counted once. Every batch tallies first, before its own writes (a verdict then replaces the
//! contribution the tally just added). A finish through the batch of a run still in `active`
//! with a final record (swapped after the batch took the waiting ends) counts it itself and
//! takes it out of `active`, so its late tally counts nothing. A rollup read tallies first;
//! opening a store tallies what a crash left ([`super::SledStore::open`]), from the records,
//! before anything reads it. sled's log is replayed in order, so a tally is never on disk
//! without the ends it counts.

use std::sync::Mutex;

use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::record::RunRecord;
use crate::store::sled::layout::runbook_index;

/// Untallied ends that start a transaction of their own (bounds the list and `active`).
pub const TALLY_EVERY: usize = 64;

/// What a tally applies for one ended run.
pub struct Tally {
    /// The run id.
    pub id: Vec<u8>,
    /// Its `by_runbook` key.
    pub index: Vec<u8>,
    /// Its contribution to the rollups, if it makes one.
    pub rollup: Option<(RollupKey, Rollup)>,
    /// Whether it waits for a verification verdict.
    pub awaits_verdict: bool,
}

impl Tally {
    /// The tally of an ended run.
    pub fn of(run: &RunRecord) -> Tally {
        Tally {
            id: run.id.0.as_bytes().to_vec(),
            index: runbook_index(run),
            rollup: Rollup::of_run(run),
            awaits_verdict: run.awaits_verdict(),
        }
    }
}

/// Ends written and not yet tallied, in the order they were written.
#[derive(Default)]
pub struct Untallied(Mutex<Vec<Tally>>);

impl Untallied {
    /// Adds an end; returns how many wait now.
    pub fn push(&self, t: Tally) -> usize {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.push(t);
        list.len()
    }

    /// Takes every waiting end (the batch leader, before its transaction). They go back to the
    /// list unless [`Taken::applied`] is called, so a transaction that fails or panics leaves them
    /// for the next one instead of dropping them until the store is opened again.
    pub fn take(&self) -> Taken<'_> {
        let list = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        Taken {
            from: self,
            list: Some(list),
        }
    }

    /// Puts back the ends of a batch that failed or panicked, ahead of any added meanwhile.
    fn restore(&self, mut taken: Vec<Tally>) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        taken.append(&mut list);
        *list = taken;
    }

    /// Whether no end waits.
    pub fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

/// Ends taken for one transaction ([`Untallied::take`]). Putting back ends a transaction did
/// commit is harmless: a tally counts a run only as it leaves `active`, so a second one counts
/// nothing and touches no index (it cannot bring back a pruned run's entry). That rests on a run
/// whose record is final never entering `active` again (transitions start only from queued,
/// pending approval or running; admissions take new ids).
#[must_use = "dropped without `applied()`, the ends go back to the list"]
pub struct Taken<'a> {
    from: &'a Untallied,
    list: Option<Vec<Tally>>,
}

impl Taken<'_> {
    /// The ends, for the transaction.
    pub fn ends(&self) -> &[Tally] {
        self.list.as_deref().unwrap_or_default()
    }

    /// The transaction committed: the ends are counted and not put back.
    pub fn applied(mut self) {
        self.list = None;
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(list) = self.list.take() {
            self.from.restore(list);
        }
    }
}
