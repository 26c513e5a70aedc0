//! The embedded store on sled: the only code that touches sled ([`layout`] says what is where).
//!
//! Durability: every change but step progress and a worker's unflushed finish
//! (`Store::finish_unflushed`: durable with the next flush) is flushed before the call returns.
//! Concurrent admissions, transitions that end a run, finishes and guard updates are written as
//! one batch by one leader at a time ([`batch`]) and concurrent writers share flushes
//! ([`commit`]); async callers queue and await both, no thread waits for them. A claim (or an
//! approval) is one record's swap and a shared flush; so is a worker's finish without a guard
//! update, its rollups tallied later ([`tally`]). Everything that flushes or scans runs on
//! blocking threads, off the async runtime. sled's flush uses
//! `sync_file_range`/`fdatasync`-class calls: it survives a killed process; see docs/store.md
//! for what it promises on power loss.

pub mod batch;
pub mod commit;
pub mod dir;
pub mod export;
pub mod layout;
pub mod migrate;
pub mod notes;
pub mod progress;
pub mod tally;
#[cfg(test)]
pub mod testing;
pub mod write;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::guard::KeyState;
use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::cause::CauseKind;
use crate::run::id::RunId;
use crate::run::record::{RunRecord, Verification};
use crate::run::status::RunStatus;
use crate::run::step::StepResult;
use crate::store::error::StoreError;
use crate::store::rules::{Span, spans};
use crate::store::sled::batch::Batcher;
use crate::store::sled::commit::{GroupCommit, Wait};
use crate::store::sled::layout::{
    StatusOnly, Trees, backend, day_end, day_start, decode, guard_key, nanos, parse_guard_key,
    parse_rollup_key, runbook_index,
};
use crate::store::sled::migrate::Migrated;
use crate::store::sled::notes::{Notes, StatusAndRef};
use crate::store::sled::progress::{EventOut, Sequence};
use crate::store::sled::tally::{TALLY_EVERY, Tally, Untallied};
use crate::store::sled::write::{Admit, Finishing, Outcome, Unflushed, Write};
use crate::store::{
    Admitted, AlertReceived, Candidate, Change, Delivery, GuardChanged, GuardOf, Mark, Reconciled,
    Result, RunFilter, Store, Transition, Update,
};
use crate::trigger::key::{Episode, Fire};

/// How long [`SledStore::open`] waits for a lock that is being released.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The sled-backed store.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    id: String,
    db: sled::Db,
    trees: Trees,
    commit: GroupCommit<StoreError>,
    batcher: Batcher<Write, Result<Outcome>>,
    /// Runs ended by unflushed finishes, each with the mark of its write: its progress goes once
    /// a flush reached that mark.
    ended_unflushed: std::sync::Mutex<Vec<(u64, Vec<u8>)>>,
    /// Ends written by a swap of their record, not yet counted ([`tally`]).
    untallied: Untallied,
    migrated: Migrated,
    notes: Notes,
    seq: Sequence,
    /// The store itself, for a batch leader started on another thread ([`Inner::hand_over`]).
    me: std::sync::Weak<Inner>,
    /// Makes the next batch panic, for tests of what a panic keeps: [`PANIC_BEFORE`] after it
    /// took the untallied ends, [`PANIC_AFTER`] once its transaction committed; 0 not.
    #[cfg(test)]
    panic_next_batch: std::sync::atomic::AtomicU8,
}

/// [`Inner`]'s `panic_next_batch`: panic after taking the untallied ends.
#[cfg(test)]
const PANIC_BEFORE: u8 = 1;
/// [`Inner`]'s `panic_next_batch`: panic once the batch's transaction committed.
#[cfg(test)]
const PANIC_AFTER: u8 = 2;

/// What a leader started on a blocking thread of its own leads.
#[derive(Clone, Copy)]
enum Leading {
    /// The batcher's waiting writes.
    Batches,
    /// The flushes async waiters wait for.
    Flushes,
}

/// A leader on a blocking thread of its own ([`Inner::hand_over`]).
struct Lead(Option<Arc<Inner>>, Leading);

impl Lead {
    /// Applies batches (or flushes) until none waits.
    fn run(mut self) {
        if let Some(inner) = self.0.take() {
            match self.1 {
                Leading::Batches => inner
                    .batcher
                    .lead(|batch| inner.apply_batch(batch), || inner.batch_failed()),
                Leading::Flushes => {
                    inner.commit.lead(|| inner.flush());
                    inner.remove_durable_progress();
                }
            }
        }
    }
}

impl Drop for Lead {
    /// A lead whose thread never ran (the runtime shutting down) is given up, not left held.
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            match self.1 {
                Leading::Batches => inner.batcher.abandon(),
                Leading::Flushes => inner.commit.abandon(),
            }
        }
    }
}

/// What a transition's swap did.
enum Swapped {
    /// Swapped, not flushed yet: the run as written.
    Done(Box<RunRecord>),
    /// Nothing to write (the run is missing or not in a `from` status).
    Decided(Transition),
    /// The batch's to write.
    Batch,
}

/// Opens the sled database, waiting up to [`LOCK_WAIT`] for its lock.
///
/// Dropping a `sled::Db` does not release its file lock at once: sled's background flusher
/// thread holds it until it exits (sled issue #1289), and a process that is exiting holds it
/// until the kernel reaps it. So a store closed a moment ago reads as "locked"; only a lock
/// still held after the wait is reported as [`StoreError::Locked`].
fn open_db(path: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // sled caches up to 1 GiB by default; the store's working set is far smaller. 32 MiB
        // keeps 30,000 queued runs under 150 MB of RSS (benches/queued.sh: 116-122 MiB with
        // glibc's malloc capped at two arenas, against 149 MiB at 64 MiB; 127 MiB with the
        // daemon's mimalloc) at the same post rate.
        match sled::Config::new()
            .path(path)
            .cache_capacity(32 * 1024 * 1024)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io))
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked {
                        path: path.display().to_string(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(backend(path, e)),
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in `path`, a private directory (see [`dir`]), and brings it
    /// to the current schema version.
    /// Blocks (it may wait for a lock and migrate): call it from a blocking thread.
    pub fn open(path: &Path) -> Result<SledStore> {
        dir::private(path).map_err(|e| backend(path, e))?;
        let db = open_db(path)?;
        let trees = Trees::open(&db, path)?;
        let migrated = migrate::migrate(&db, &trees, path)?;
        let id = migrate::store_id(&trees, path)?;
        let store = SledStore {
            inner: Arc::new_cyclic(|me| Inner {
                path: path.to_path_buf(),
                id,
                db,
                trees,
                commit: GroupCommit::default(),
                batcher: Batcher::default(),
                ended_unflushed: Default::default(),
                untallied: Untallied::default(),
                migrated,
                notes: Notes::default(),
                seq: Sequence::default(),
                me: me.clone(),
                #[cfg(test)]
                panic_next_batch: Default::default(),
            }),
        };
        store.inner.tally_leftovers()?;
        Ok(store)
    }

    /// What opening did to the store's schema version.
    pub fn migrated(&self) -> &Migrated {
        &self.inner.migrated
    }

    /// How many flushes were made (group commit shares them between writers).
    pub fn flushes(&self) -> u64 {
        self.inner.commit.flushes()
    }

    /// Runs `f` on a blocking thread with the store.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .unwrap_or_else(|e| Err(backend(&self.inner.path, format!("store task failed: {e}"))))
    }

    /// Queues a write for the batcher and awaits its result: no thread waits for it, one
    /// leader on a blocking thread applies the writes queued meanwhile together.
    async fn submit(&self, write: Write) -> Result<Outcome> {
        let (result, lead) = self.inner.batcher.enqueue(write);
        if lead && !self.inner.hand_over(Leading::Batches) {
            // No tokio runtime to start a leader on (polled by another executor): lead here.
            Lead(Some(self.inner.clone()), Leading::Batches).run();
        }
        result.await.unwrap_or_else(|_| self.inner.batch_failed())
    }

    /// Awaits what was written before `mark` was taken being on disk, sharing flushes with
    /// every other writer; no thread waits for it.
    async fn durable_to_mark(&self, mark: u64) -> Result<()> {
        let flushed = match self.inner.commit.wait(mark) {
            Wait::Reached => return Ok(()),
            Wait::Queued(flushed) => flushed,
            Wait::Lead(flushed) => {
                if !self.inner.hand_over(Leading::Flushes) {
                    Lead(Some(self.inner.clone()), Leading::Flushes).run();
                }
                flushed
            }
        };
        flushed
            .await
            .unwrap_or_else(|_| Err(self.inner.err("the store is closing: a flush was given up")))
    }

    /// A single finish, flushed or not; the mark of its write.
    async fn finish_one(
        &self,
        run: RunRecord,
        guard: Option<GuardOf<Update>>,
        unflushed: Unflushed,
    ) -> Result<(Option<GuardChanged>, Mark)> {
        let mut finishing = Finishing::of(&run, &self.inner.notes);
        // Inline, as a progress append is: a read and a swap of one key, in memory.
        if unflushed.0 && guard.is_none() && run.status.is_final() {
            match self.inner.finish_swapped(run.id.0.as_bytes(), finishing)? {
                Ok((mark, due)) => {
                    if due {
                        // Queued like any batched write: no blocking thread for it.
                        match self.submit(Write::tally()).await? {
                            Outcome::Finished(_) => {}
                            _ => return Err(unexpected(&self.inner.path)),
                        }
                    }
                    return Ok((None, Mark(mark)));
                }
                Err(declined) => finishing = declined,
            }
        }
        let write = Write::Finish(vec![finishing], guard, unflushed);
        match self.submit(write).await? {
            // Taken after the write was applied: a flush that reaches it covers the write.
            Outcome::Finished(g) => Ok((g, Mark(self.inner.commit.mark()))),
            _ => Err(unexpected(&self.inner.path)),
        }
    }
}

impl Inner {
    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        backend(&self.path, e)
    }

    /// Waits until everything written so far is on disk, sharing flushes between writers.
    fn durable(&self) -> Result<()> {
        self.durable_to(self.commit.mark())
    }

    /// Waits until what was written before `mark` was taken is on disk (at once if a flush
    /// since did it); then removes the progress of the runs unflushed finishes ended.
    fn durable_to(&self, mark: u64) -> Result<()> {
        self.commit
            .durable_to(mark, || self.flush(), || self.hand_over(Leading::Flushes))?;
        self.remove_durable_progress();
        Ok(())
    }

    /// Flushes sled's log.
    fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))
    }

    /// Removes the progress of the runs unflushed finishes ended, once a flush reached their
    /// ends: only those (one written since keeps its progress until it is durable too).
    fn remove_durable_progress(&self) {
        let durable: Vec<Vec<u8>> = {
            let mut pending = self
                .ended_unflushed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let (done, rest) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|(m, _)| self.commit.reached(*m));
            *pending = rest;
            done.into_iter().map(|(_, id)| id).collect()
        };
        self.remove_progress(&durable);
    }

    /// Removes the progress of runs whose final records are durable: garbage now (reads ignore
    /// it), removed without a flush of its own. A failure here fails no write (the records are
    /// on disk); prune removes what is left.
    fn remove_progress(&self, ended: &[Vec<u8>]) {
        for id in ended {
            if let Err(e) = progress::remove(&self.trees.progress, id) {
                tracing::warn!("cannot remove the progress of an ended run (prune will): {e}");
            }
        }
    }

    /// Hands `write` to the current batch (or leads one) and waits for its durable result.
    /// Blocks: for blocking threads (async callers queue theirs: [`SledStore::submit`]).
    fn submit(&self, write: Write) -> Result<Outcome> {
        self.batcher.submit(
            write,
            |batch| self.apply_batch(batch),
            || self.batch_failed(),
            || self.hand_over(Leading::Batches),
        )
    }

    /// Starts a leader of the batcher's waiting writes (or of the flushes async waiters wait
    /// for) on a blocking thread; false when there is no runtime to start it on (or the store
    /// is being dropped).
    fn hand_over(&self, leading: Leading) -> bool {
        let (Ok(runtime), Some(me)) = (tokio::runtime::Handle::try_current(), self.me.upgrade())
        else {
            return false;
        };
        let lead = Lead(Some(me), leading);
        runtime.spawn_blocking(move || lead.run());
        true
    }

    /// Applies one batch of writes: one transaction, then one flush unless every write in it is
    /// an unflushed finish.
    fn apply_batch(&self, batch: Vec<Write>) -> Vec<Result<Outcome>> {
        let n = batch.len();
        let flush = !batch.iter().all(Write::unflushed);
        let tallies = self.untallied.take();
        #[cfg(test)]
        let panic_at = self
            .panic_next_batch
            .swap(0, std::sync::atomic::Ordering::SeqCst);
        #[cfg(test)]
        if panic_at == PANIC_BEFORE {
            panic!("a batch panicking before its transaction, as a test asked");
        }
        let applied = write::apply(&self.trees, &self.notes, &self.path, batch, tallies.ends());
        #[cfg(test)]
        if panic_at == PANIC_AFTER && applied.is_ok() {
            panic!("a batch panicking after its transaction committed, as a test asked");
        }
        if applied.is_ok() {
            tallies.applied();
        }
        match applied.and_then(|(all, applied)| {
            if flush {
                self.durable()?;
                self.remove_progress(&applied.ended);
            } else {
                let mark = self.commit.mark();
                self.ended_unflushed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(applied.ended.into_iter().map(|id| (mark, id)));
            }
            Ok(all)
        }) {
            Ok(all) => all.into_iter().map(Ok).collect(),
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    /// The result of each write of a batch that panicked or was never applied.
    fn batch_failed(&self) -> Result<Outcome> {
        Err(self.err("writing a batch of admissions, transitions and finishes failed"))
    }

    fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>> {
        match self
            .trees
            .runs
            .get(id.0.as_bytes())
            .map_err(|e| self.err(e))?
        {
            Some(v) => Ok(Some(self.read_run(id.0.as_bytes(), &v)?.0)),
            None => Ok(None),
        }
    }

    /// A stored run, complete: its notification in (and the hash of the one its record refers
    /// to), and the progress of a running run applied.
    fn read_run(&self, key: &[u8], v: &[u8]) -> Result<(RunRecord, Option<notes::Hash>)> {
        let mut run: RunRecord = decode(key, v)?;
        let hash = self
            .notes
            .rehydrate(&self.trees.notifications, &self.path, key, &mut run)?;
        progress::merge(&self.trees.progress, &self.path, &mut run)?;
        Ok((run, hash))
    }

    /// Appends a progress event of run `id` (no read, no rewrite, no flush).
    fn progress(&self, id: &RunId, event: EventOut<'_>) -> Result<()> {
        self.trees
            .progress
            .insert(self.seq.key(id.0.as_bytes()), progress::value(&event))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A worker's finish with no guard update, as one swap of run `key`'s record from `running`
    /// to `finishing`'s final one, unflushed; its tally follows ([`tally`]). The mark of the
    /// write and whether enough ends wait for a tally of their own (the caller runs it, off the
    /// async runtime); `finishing` back when the run is not one this applies to (not running,
    /// not in `active`, or its record would refer to another notification than the stored one,
    /// which only the batch stores): the caller writes it through the batch then.
    fn finish_swapped(
        &self,
        key: &[u8],
        finishing: Finishing,
    ) -> Result<std::result::Result<(u64, bool), Finishing>> {
        let mut new: Option<sled::IVec> = None;
        loop {
            let Some(old) = self.trees.runs.get(key).map_err(|e| self.err(e))? else {
                return Ok(Err(finishing));
            };
            let stored: StatusAndRef = decode(key, &old)?;
            // The stored record's ref: a notification prune's sweep keeps while it is referred to.
            if stored.status != RunStatus::Running
                || stored.hash() != finishing.note_hash()
                || !self
                    .trees
                    .active
                    .contains_key(key)
                    .map_err(|e| self.err(e))?
            {
                return Ok(Err(finishing));
            }
            // Made once: a retry proposes the same buffer again (an `IVec` clone is a count).
            let proposed = new
                .get_or_insert_with(|| sled::IVec::from(finishing.record()))
                .clone();
            let swapped = self
                .trees
                .runs
                .compare_and_swap(key, Some(old), Some(proposed))
                .map_err(|e| self.err(e))?;
            if swapped.is_ok() {
                break;
            }
            // Another write changed the run meanwhile: decide again on what it is now.
        }
        // Taken after the write: a flush that reaches it covers the write.
        let mark = self.commit.mark();
        self.ended_unflushed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((mark, key.to_vec()));
        let due = self.untallied.push(finishing.into_tally()) >= TALLY_EVERY;
        Ok(Ok((mark, due)))
    }

    /// Counts every untallied end now, in a batch of its own (unflushed: a tally lost in a
    /// crash is made again from the records when the store is opened).
    fn tally(&self) -> Result<()> {
        match self.submit(Write::tally())? {
            Outcome::Finished(_) => Ok(()),
            _ => Err(unexpected(&self.path)),
        }
    }

    /// Tallies the ends a crash left untallied: runs in `active` whose record is final. Before
    /// anything reads the store. The records are read as stored: a tally needs none of their
    /// notification, and a record that cannot be read stays for its readers to report (the
    /// store still opens).
    fn tally_leftovers(&self) -> Result<()> {
        let mut found = 0;
        for k in self.trees.active.iter().keys() {
            let k = k.map_err(|e| self.err(e))?;
            let Some(v) = self.trees.runs.get(&k).map_err(|e| self.err(e))? else {
                continue;
            };
            if !decode::<StatusOnly>(&k, &v).is_ok_and(|r| r.status.is_final()) {
                continue;
            }
            match decode::<RunRecord>(&k, &v) {
                Ok(run) => {
                    self.untallied.push(Tally::of(&run));
                    found += 1;
                }
                Err(e) => tracing::warn!("an ended run cannot be counted in the rollups: {e}"),
            }
        }
        if found > 0 {
            self.tally()?;
        }
        Ok(())
    }

    /// A transition's swap. One that leaves the run unended (a claim, an approval) touches only
    /// the run's record: a compare-and-swap of that key is atomic with respect to every other
    /// write and costs no transaction; it is in memory until the next flush. One that ends the
    /// run (rollups, indexes) or changes its notification is the batch's ([`Swapped::Batch`]).
    fn swap(&self, id: &RunId, from: &[RunStatus], change: &Change) -> Result<Swapped> {
        let key = id.0.as_bytes();
        loop {
            let Some(old) = self.trees.runs.get(key).map_err(|e| self.err(e))? else {
                return Ok(Swapped::Decided(Transition::Missing));
            };
            // Progress merged first: the record written has every step recorded so far.
            let (mut run, had) = self.read_run(key, &old)?;
            if !from.contains(&run.status) {
                return Ok(Swapped::Decided(Transition::Refused(run.status)));
            }
            change(&mut run);
            if run.status.is_final() {
                return Ok(Swapped::Batch);
            }
            let encoded = self.notes.encode_run(&run);
            // A record that would refer to another notification than it did (or to one where
            // it held it inline) goes through the batch, which stores the notification with it.
            if encoded.note.as_ref().map(|n| n.hash) != had {
                return Ok(Swapped::Batch);
            }
            let swapped = self
                .trees
                .runs
                .compare_and_swap(key, Some(old), Some(encoded.value))
                .map_err(|e| self.err(e))?;
            if swapped.is_ok() {
                return Ok(Swapped::Done(Box::new(run)));
            }
            // Another write changed the run meanwhile: decide again on what it is now.
        }
    }

    fn scan_rollups(
        &self,
        tree: &sled::Tree,
        start: Vec<u8>,
        end: Vec<u8>,
        out: &mut Vec<(RollupKey, Rollup)>,
    ) -> Result<()> {
        for item in tree.range(start..end) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Some(key) = parse_rollup_key(&k) else {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).to_string(),
                    reason: "bad rollup key".into(),
                });
            };
            out.push((key, decode(&k, &v)?));
        }
        Ok(())
    }

    fn rollups(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        by_month: bool,
    ) -> Result<Vec<(RollupKey, Rollup)>> {
        let mut out = Vec::new();
        if !by_month {
            self.scan_rollups(&self.trees.rollups, day_start(from), day_end(to), &mut out)?;
            return Ok(out);
        }
        // Whole months from the monthly tree, partial ones at the edges from the daily tree.
        for span in spans(from, to) {
            match span {
                Span::Month(month) => {
                    let prefix = month.format("%Y-%m").to_string().into_bytes();
                    let mut end = prefix.clone();
                    end.push(1);
                    self.scan_rollups(&self.trees.monthly, prefix, end, &mut out)?;
                }
                Span::Days(start, stop) => self.scan_rollups(
                    &self.trees.rollups,
                    day_start(start),
                    day_end(stop),
                    &mut out,
                )?,
            }
        }
        Ok(out)
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        let mut out = Vec::new();
        // Filtered while scanning, so the limit counts only runs that pass.
        let keep = |r: &RunRecord| {
            filter.status.is_none_or(|s| r.status == s)
                && CauseKind::admits(&filter.causes, r.cause.which())
        };
        match &filter.runbook {
            Some(rb) => {
                let mut prefix = rb.clone().into_bytes();
                prefix.push(0);
                for k in self.trees.by_runbook.scan_prefix(&prefix).keys().rev() {
                    let k = k.map_err(|e| self.err(e))?;
                    let id = RunId(String::from_utf8_lossy(&k[prefix.len()..]).to_string());
                    if let Some(r) = self.get_run(&id)?
                        && keep(&r)
                    {
                        out.push(r);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
            // Runs not yet ended are all in `active` (the writes that admit and end runs keep
            // it exact; reconciliation relies on that too), beside at most a batch of ended runs
            // not yet tallied, which the status filter drops: a status filter of one of them
            // reads those few, not every run ever stored (the dashboard's and the benchmarks'
            // polls).
            None if filter.status.is_some_and(|s| !s.is_final()) => {
                for k in self.trees.active.iter().keys().rev() {
                    let k = k.map_err(|e| self.err(e))?;
                    let id = RunId(String::from_utf8_lossy(&k).to_string());
                    if let Some(r) = self.get_run(&id)?
                        && keep(&r)
                    {
                        out.push(r);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
            None => {
                for item in self.trees.runs.iter().rev() {
                    let (k, v) = item.map_err(|e| self.err(e))?;
                    let (r, _) = self.read_run(&k, &v)?;
                    if keep(&r) {
                        out.push(r);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn alerts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<AlertReceived>> {
        let mut out = Vec::new();
        // An episode may have two index entries (a first delivery that crashed before its
        // flush, then the re-send): list each episode once.
        let mut seen = HashSet::new();
        for item in self.trees.alerts_by_time.range(nanos(from)..nanos(to)) {
            let (_, key) = item.map_err(|e| self.err(e))?;
            if !seen.insert(key.clone()) {
                continue;
            }
            if let Some(v) = self.trees.alerts.get(&key).map_err(|e| self.err(e))? {
                out.push(decode(&key, &v)?);
            }
        }
        Ok(out)
    }

    fn guard_states(&self) -> Result<Vec<(String, String, KeyState)>> {
        let mut out = Vec::new();
        for item in self.trees.guards.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (rb, key) = parse_guard_key(&k);
            out.push((rb, key, decode(&k, &v)?));
        }
        Ok(out)
    }

    fn reconcile(&self, interrupt: &Change) -> Result<(Reconciled, Vec<RunRecord>)> {
        let mut out = Reconciled::default();
        let mut interrupted = Vec::new();
        let ids: Vec<RunId> = self
            .trees
            .active
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| RunId(String::from_utf8_lossy(&k).to_string()))
            .collect();
        for id in ids {
            let Some(mut run) = self.get_run(&id)? else {
                self.trees
                    .active
                    .remove(id.0.as_bytes())
                    .map_err(|e| self.err(e))?;
                continue;
            };
            match run.status {
                RunStatus::Queued => out.queued.push(run),
                RunStatus::PendingApproval => out.pending_approval.push(run),
                RunStatus::Running => {
                    interrupt(&mut run);
                    out.interrupted.push(id);
                    interrupted.push(run);
                }
                _ => {}
            }
        }
        for k in self.trees.verifying.iter().keys() {
            let id = RunId(String::from_utf8_lossy(&k.map_err(|e| self.err(e))?).to_string());
            match self.get_run(&id)? {
                Some(run) if run.awaits_verdict() => out.awaiting_verdict.push(run),
                // Pruned, or decided by a write this index missed: nothing to wait for.
                _ => {
                    self.trees
                        .verifying
                        .remove(id.0.as_bytes())
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        out.queued.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((out, interrupted))
    }

    fn episode_at_millis(
        &self,
        fingerprint: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<Option<Episode>> {
        let exact = Episode::new(fingerprint, starts_at);
        let known = |k: &str| self.trees.alerts.contains_key(k).map_err(|e| self.err(e));
        if known(&exact.to_string())? {
            return Ok(Some(exact));
        }
        if starts_at.timestamp_subsec_nanos() % 1_000_000 != 0 {
            return Ok(None);
        }
        // Stamps are fixed-width at nanoseconds (`...26.695089778Z`): every episode of this
        // fingerprint within that millisecond shares the key up to its last six digits.
        let key = exact.to_string();
        let prefix = &key[..key.len().saturating_sub(7)];
        let head = fingerprint.len() + 1;
        for k in self.trees.alerts.scan_prefix(prefix.as_bytes()).keys() {
            let k = k.map_err(|e| self.err(e))?;
            let text = String::from_utf8_lossy(&k);
            if let Some(at) = text
                .get(head..)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            {
                return Ok(Some(Episode::new(fingerprint, at.with_timezone(&Utc))));
            }
        }
        Ok(None)
    }

    fn prune(&self, before: DateTime<Utc>) -> Result<usize> {
        // ULIDs start with the time: every id below this bound was created before `before`.
        let bound = ulid::Ulid::from_parts(before.timestamp_millis().max(0) as u64, 0).to_string();
        let mut removed = 0;
        let old: Vec<sled::IVec> = self
            .trees
            .runs
            .range(..bound.as_bytes())
            .keys()
            .filter_map(|k| k.ok())
            .collect();
        for k in old {
            if self
                .trees
                .active
                .contains_key(&k)
                .map_err(|e| self.err(e))?
            {
                continue;
            }
            if let Some(v) = self.trees.runs.remove(&k).map_err(|e| self.err(e))? {
                let run: RunRecord = decode(&k, &v)?;
                self.trees
                    .by_runbook
                    .remove(runbook_index(&run))
                    .map_err(|e| self.err(e))?;
                removed += 1;
            }
        }
        let old_alerts: Vec<(sled::IVec, sled::IVec)> = self
            .trees
            .alerts_by_time
            .range(..nanos(before))
            .filter_map(|i| i.ok())
            .collect();
        for (idx, key) in old_alerts {
            self.trees
                .alerts_by_time
                .remove(idx)
                .map_err(|e| self.err(e))?;
            self.trees.alerts.remove(key).map_err(|e| self.err(e))?;
        }
        // Progress left over by a crash between a finish and its clean-up, or of pruned runs.
        let mut last: Option<Vec<u8>> = None;
        for k in self.trees.progress.iter().keys() {
            let k = k.map_err(|e| self.err(e))?;
            let id = progress::run_of(&k);
            if last.as_deref() == Some(id) {
                continue;
            }
            last = Some(id.to_vec());
            let running = match self.trees.runs.get(id).map_err(|e| self.err(e))? {
                Some(v) => decode::<StatusOnly>(id, &v)?.status == RunStatus::Running,
                None => false,
            };
            if !running {
                progress::remove(&self.trees.progress, id).map_err(|e| self.err(e))?;
            }
        }
        // Then the notifications no run refers to any more, under the batch (one flush for all).
        match self.submit(Write::Sweep)? {
            Outcome::Swept(_) => Ok(removed),
            _ => Err(unexpected(&self.path)),
        }
    }
}

impl Inner {
    /// Removes delivery records expired at `now`. Each goes by compare-and-swap of the value
    /// read, so a record the batch leader replaced meanwhile (a new delivery of that id) stays;
    /// outside the batch, as nothing here needs to be atomic with a run.
    fn prune_deliveries(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut removed = 0;
        for item in self.trees.deliveries.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let d: Delivery = decode(&k, &v)?;
            if d.refuses_at(now) {
                continue;
            }
            let swapped = self
                .trees
                .deliveries
                .compare_and_swap(&k, Some(v), None::<&[u8]>)
                .map_err(|e| self.err(e))?;
            if swapped.is_ok() {
                removed += 1;
            }
        }
        self.durable()?;
        Ok(removed)
    }
}

fn unexpected(path: &Path) -> StoreError {
    backend(path, "a write returned the result of another kind of write")
}

#[async_trait]
impl Store for SledStore {
    fn id(&self) -> &str {
        &self.inner.id
    }

    async fn admit(
        &self,
        candidates: Vec<Candidate>,
        alerts: Vec<AlertReceived>,
    ) -> Result<Vec<Admitted>> {
        // Encoding is the callers' work, in parallel; the batch leader only writes.
        let notes = &self.inner.notes;
        let write = Write::Admit(
            candidates
                .into_iter()
                .map(|c| Admit::of(c, notes))
                .collect(),
            alerts,
            None,
        );
        match self.submit(write).await? {
            Outcome::Admitted(a) => Ok(a),
            _ => Err(unexpected(&self.inner.path)),
        }
    }

    async fn admit_delivery(
        &self,
        delivery: Delivery,
        candidates: Vec<Candidate>,
        alerts: Vec<AlertReceived>,
    ) -> Result<Option<Vec<Admitted>>> {
        let notes = &self.inner.notes;
        let admits = candidates
            .into_iter()
            .map(|c| Admit::of(c, notes))
            .collect();
        match self
            .submit(Write::Admit(admits, alerts, Some(delivery)))
            .await?
        {
            Outcome::Admitted(a) => Ok(Some(a)),
            Outcome::DuplicateDelivery => Ok(None),
            Outcome::Failed(e) => Err(e),
            _ => Err(unexpected(&self.inner.path)),
        }
    }

    async fn transition(
        &self,
        id: &RunId,
        from: &[RunStatus],
        change: Change,
    ) -> Result<Transition> {
        // The swap inline (an in-memory read and swap of one key, as a progress append is),
        // then its flush shared with every other writer's: no blocking thread waits for it.
        let write = match self.inner.swap(id, from, &change)? {
            Swapped::Decided(t) => return Ok(t),
            Swapped::Done(run) => {
                self.durable_to_mark(self.inner.commit.mark()).await?;
                return Ok(Transition::Done(run));
            }
            Swapped::Batch => Write::Transition(id.clone(), from.to_vec(), change),
        };
        match self.submit(write).await? {
            Outcome::Transitioned(t) => Ok(t),
            _ => Err(unexpected(&self.inner.path)),
        }
    }

    async fn step_started(&self, id: &RunId, step: &str, pgid: Option<u32>) -> Result<()> {
        // One small in-memory insert (no flush), cheaper here than a hand-off to a blocking
        // thread. A restart finds a crashed run's processes by the run id in their environment,
        // not by this group id (see exec::process::kill_leftovers).
        self.inner.progress(id, EventOut::Started { step, pgid })
    }

    async fn record_step(&self, id: &RunId, step: &StepResult) -> Result<()> {
        self.inner.progress(id, EventOut::Finished(step))
    }

    async fn finish(
        &self,
        run: RunRecord,
        guard: Option<GuardOf<Update>>,
    ) -> Result<Option<GuardChanged>> {
        self.finish_one(run, guard, Unflushed(false))
            .await
            .map(|(g, _)| g)
    }

    async fn finish_unflushed(
        &self,
        run: RunRecord,
        guard: Option<GuardOf<Update>>,
    ) -> Result<(Option<GuardChanged>, Mark)> {
        self.finish_one(run, guard, Unflushed(true)).await
    }

    async fn durable_to(&self, mark: Mark) -> Result<()> {
        // Usually reached by the flush of the claim that followed.
        self.durable_to_mark(mark.0).await
    }

    async fn finish_many(&self, runs: Vec<RunRecord>) -> Result<()> {
        let encoded = runs
            .iter()
            .map(|r| Finishing::of(r, &self.inner.notes))
            .collect();
        self.submit(Write::Finish(encoded, None, Unflushed(false)))
            .await
            .map(|_| ())
    }

    async fn set_verified(&self, id: &RunId, verification: Verification) -> Result<bool> {
        match self
            .submit(Write::Verdict(id.clone(), verification))
            .await?
        {
            Outcome::Transitioned(Transition::Missing) => Err(StoreError::NoSuchRun(id.0.clone())),
            Outcome::Transitioned(Transition::Done(_)) => Ok(true),
            Outcome::Transitioned(_) => Ok(false),
            _ => Err(unexpected(&self.inner.path)),
        }
    }

    async fn update_guards(
        &self,
        runbook: &str,
        key: Option<&str>,
        update: Update,
    ) -> Result<Vec<(String, KeyState)>> {
        let runbook = runbook.to_string();
        let key = key.map(String::from);
        self.blocking(move |inner| {
            // The keys are found first (a transaction cannot scan); a key created meanwhile is
            // one no breaker of it was opened on yet.
            let mut prefix = guard_key(&runbook, "");
            prefix.truncate(runbook.len() + 1);
            let mut keys = Vec::new();
            for k in inner.trees.guards.scan_prefix(&prefix).keys() {
                let (_, k) = parse_guard_key(&k.map_err(|e| inner.err(e))?);
                if key.as_ref().is_none_or(|want| *want == k) {
                    keys.push(k);
                }
            }
            match inner.submit(Write::Guards(runbook, keys, update))? {
                Outcome::Guards(g) => Ok(g),
                _ => Err(unexpected(&inner.path)),
            }
        })
        .await
    }

    async fn reconcile(&self, interrupt: Change) -> Result<Reconciled> {
        let (reconciled, interrupted) = self
            .blocking(move |inner| inner.reconcile(&interrupt))
            .await?;
        // One batch and one flush, which also makes the index clean-up durable.
        self.finish_many(interrupted).await?;
        Ok(reconciled)
    }

    async fn runs_of_episode(&self, episode: &Episode) -> Result<Vec<RunId>> {
        self.inner
            .trees
            .dedupe
            .scan_prefix(episode.key_prefix().as_bytes())
            .values()
            .map(|v| {
                v.map(|v| RunId(String::from_utf8_lossy(&v).to_string()))
                    .map_err(|e| self.inner.err(e))
            })
            .collect()
    }

    async fn episode_at_millis(
        &self,
        fingerprint: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<Option<Episode>> {
        // Inline like get_run: a key lookup and a prefix scan of one fingerprint's episodes,
        // which every alert with a millisecond startsAt makes; a blocking-thread hand-off cost
        // more than the read (3.7% of the daemon's samples while accepting a storm).
        self.inner.episode_at_millis(fingerprint, starts_at)
    }

    async fn last_fire(&self, fire: &Fire) -> Result<Option<DateTime<Utc>>> {
        let last = self
            .inner
            .trees
            .dedupe
            .scan_prefix(fire.key_prefix().as_bytes())
            .keys()
            .next_back()
            .transpose()
            .map_err(|e| self.inner.err(e))?;
        Ok(last.and_then(|k| fire.time_of(&String::from_utf8_lossy(&k))))
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>> {
        self.inner.get_run(id)
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let filter = filter.clone();
        self.blocking(move |inner| inner.list_runs(&filter)).await
    }

    async fn rollups(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        by_month: bool,
    ) -> Result<Vec<(RollupKey, Rollup)>> {
        self.blocking(move |inner| {
            // Every end written before this read is counted in what it reads.
            if !inner.untallied.is_empty() {
                inner.tally()?;
            }
            inner.rollups(from, to, by_month)
        })
        .await
    }

    async fn alerts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<AlertReceived>> {
        self.blocking(move |inner| inner.alerts(from, to)).await
    }

    async fn guard_states(&self) -> Result<Vec<(String, String, KeyState)>> {
        self.blocking(|inner| inner.guard_states()).await
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<usize> {
        self.blocking(move |inner| inner.prune(before)).await
    }

    async fn prune_deliveries(&self, now: DateTime<Utc>) -> Result<usize> {
        self.blocking(move |inner| inner.prune_deliveries(now))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::status::RunStatus;
    use crate::store::Candidate;
    use crate::trigger::key::DedupeKey;

    /// Runs counted in every rollup from yesterday to tomorrow (a test crossing midnight too).
    async fn runs_counted(store: &SledStore) -> Result<u64> {
        let today = chrono::Utc::now().date_naive();
        let (from, to) = (today - chrono::Days::new(1), today + chrono::Days::new(2));
        let rows = store.rollups(from, to, false).await?;
        Ok(rows.iter().map(|(_, r)| r.runs).sum())
    }

    /// A run admitted `running` and finished by a worker's swap: its tally waits.
    async fn swapped_end(store: &SledStore, i: usize) {
        let mut run = RunRecord::synthetic(i);
        run.status = RunStatus::Running;
        let candidate = Candidate {
            key: DedupeKey::Manual {
                run: run.id.0.clone(),
            },
            run: run.clone(),
            gate: None,
        };
        store
            .admit(vec![candidate], Vec::new())
            .await
            .expect("admit");
        run.status = RunStatus::Succeeded;
        store.finish_unflushed(run, None).await.expect("finish");
        assert!(
            !store.inner.untallied.is_empty(),
            "the finish was a swap, its tally waits"
        );
    }

    fn panic_next_batch(store: &SledStore, at: u8) {
        store
            .inner
            .panic_next_batch
            .store(at, std::sync::atomic::Ordering::SeqCst);
    }

    /// A panic inside the batch that was to count swapped ends fails that batch only: the ends
    /// it took are counted by the next one, not dropped until the store is opened again; and
    /// ends put back after their transaction committed are not counted twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_that_panics_leaves_its_untallied_ends_to_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("store");

        // Before the transaction the ends were not counted; after it they were, and the tally
        // they get again must count nothing more.
        for (i, at, counted) in [(1, PANIC_BEFORE, 1), (2, PANIC_AFTER, 2)] {
            swapped_end(&store, i).await;
            panic_next_batch(&store, at);
            assert!(
                runs_counted(&store).await.is_err(),
                "panic {at}: the read's tally batch panicked and says so"
            );
            assert!(
                !store.inner.untallied.is_empty(),
                "panic {at}: the panicking batch put its ends back"
            );
            assert_eq!(
                runs_counted(&store).await.expect("rollups"),
                counted,
                "panic {at}: the ends put back are counted, once"
            );
        }
        assert!(store.inner.untallied.is_empty());
    }
}
