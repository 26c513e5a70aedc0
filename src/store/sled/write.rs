//! The store's write path: a batch of admissions, transitions, finishes and guard updates
//! applied in one sled transaction (the caller flushes once after it). Run records are written
//! with a ref to their alert notification, which the same transaction stores when it is new
//! ([`super::notes`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::guard::KeyState;
use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::store::error::StoreError;
use crate::store::rules::{Earlier, received_again, with_verdict};
use crate::store::sled::layout::{
    StatusOnly, Trees, backend, decode, delivery_key, encode, guard_key, monthly_key, nanos,
    rollup_key, runbook_index,
};
use crate::store::sled::notes::{self, Encoded, Hash, Notes, RefOnly, hex, parse_hex};
use crate::store::sled::progress;
use crate::store::sled::tally::Tally;
use crate::store::{
    Admitted, AlertReceived, Candidate, Change, Decide, Delivery, GuardChanged, GuardOf,
    Transition, Update,
};

/// A candidate run ready to write; its record is encoded by the caller (in parallel) unless a
/// guard decision changes it inside the write.
pub struct Admit {
    key: Vec<u8>,
    id: Vec<u8>,
    index: Vec<u8>,
    value: Option<Encoded>,
    run: RunRecord,
    gate: Option<GuardOf<Decide>>,
}

impl Admit {
    /// Encodes a candidate.
    pub fn of(c: Candidate, notes: &Notes) -> Admit {
        Admit {
            key: c.key.encode().into_bytes(),
            id: c.run.id.0.as_bytes().to_vec(),
            index: runbook_index(&c.run),
            value: c.gate.is_none().then(|| notes.encode_run(&c.run)),
            run: c.run,
            gate: c.gate,
        }
    }
}

/// A finished run ready to write.
pub struct Finishing {
    value: Encoded,
    /// Whether the record is final: only then is its progress garbage.
    ended: bool,
    /// Its indexes and rollups, applied with the record or by a later tally.
    tally: Tally,
}

impl Finishing {
    /// Encodes a finished run.
    pub fn of(run: &RunRecord, notes: &Notes) -> Finishing {
        Finishing {
            value: notes.encode_run(run),
            ended: run.status.is_final(),
            tally: Tally::of(run),
        }
    }

    /// The notification the record refers to, if any.
    pub fn note_hash(&self) -> Option<Hash> {
        self.value.note.as_ref().map(|n| n.hash)
    }

    /// The encoded record.
    pub fn record(&self) -> &[u8] {
        &self.value.value
    }

    /// Its tally, for a finish written as a swap ([`super::tally`]).
    pub fn into_tally(self) -> Tally {
        self.tally
    }
}

/// One caller's write.
pub enum Write {
    /// Runs to admit unless their key is taken, and alert episodes to merge; with a signed
    /// webhook's delivery, only if that delivery is not recorded yet (then recorded with them).
    Admit(Vec<Admit>, Vec<AlertReceived>, Option<Delivery>),
    /// A conditional change of one run.
    Transition(crate::run::id::RunId, Vec<RunStatus>, Change),
    /// Finished runs, and the guard update of the first (a single finish); unflushed when the
    /// flag says so (a batch of only such writes is not flushed: see `Store::finish_unflushed`).
    Finish(Vec<Finishing>, Option<GuardOf<Update>>, Unflushed),
    /// A guard update of a runbook's keys (the keys found before the write).
    Guards(String, Vec<String>, Update),
    /// A run's verification verdict (verified or not, when).
    Verdict(crate::run::id::RunId, crate::run::record::Verification),
    /// Prune's sweep: removes the notifications no run refers to. Done by the batch leader after
    /// the batch's transaction, so no admission refers to one while it goes.
    Sweep,
}

/// Whether a finish may stay unflushed until a later durable write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Unflushed(pub bool);

impl Write {
    /// A tally of the untallied ends alone: a finish of no run, unflushed (a tally lost in a
    /// crash is made again from the records when the store is opened).
    pub fn tally() -> Write {
        Write::Finish(Vec::new(), None, Unflushed(true))
    }

    /// Whether this write may stay off the disk until a later flush.
    pub fn unflushed(&self) -> bool {
        matches!(self, Write::Finish(_, _, Unflushed(true)))
    }
}

/// One caller's result.
pub enum Outcome {
    /// Per candidate.
    Admitted(Vec<Admitted>),
    /// The write's delivery was recorded before and has not expired: nothing was written.
    DuplicateDelivery,
    /// The write failed alone (its delivery's record cannot be read); nothing was written.
    Failed(StoreError),
    /// The transition.
    Transitioned(Transition),
    /// The guard change of a finish.
    Finished(Option<GuardChanged>),
    /// Keys updated and their new states.
    Guards(Vec<(String, KeyState)>),
    /// Notifications removed.
    Swept(usize),
}

/// A candidate's fate in the transaction: None for a duplicate, else its status, the run as the
/// write changed it (a guard decision, a come-back) and the guard state a decision left (the
/// caller's record is used as it is otherwise).
type Decision = Option<(RunStatus, Option<RunRecord>, Option<KeyState>)>;

/// What the transaction decides per write, before records move out of the batch.
enum Decided {
    Admitted(Vec<Decision>),
    DuplicateDelivery,
    Failed(StoreError),
    Transitioned(Transition),
    Finished(Option<GuardChanged>),
    Guards(Vec<(String, KeyState)>),
    Sweep,
}

type Abort = ConflictableTransactionError<StoreError>;

struct Tx<'a> {
    dedupe: &'a TransactionalTree,
    runs: &'a TransactionalTree,
    active: &'a TransactionalTree,
    by_runbook: &'a TransactionalTree,
    rollups: &'a TransactionalTree,
    monthly: &'a TransactionalTree,
    guards: &'a TransactionalTree,
    verifying: &'a TransactionalTree,
    deliveries: &'a TransactionalTree,
    notifications: &'a TransactionalTree,
    /// Progress events of the runs the batch transitions, read before the transaction (sled
    /// cannot scan inside one, nor read outside it while one runs).
    progress: &'a HashMap<Vec<u8>, Vec<progress::Event>>,
    notes: &'a Notes,
    /// Notifications this attempt refers to (stored now or before).
    referred: RefCell<HashSet<Hash>>,
    /// Runs this attempt ended, whose progress goes once the batch is durable.
    ended: RefCell<Vec<Vec<u8>>>,
}

impl Tx<'_> {
    /// Writes a run record, and its notification when the store does not have it yet: a ref
    /// never reaches the disk without its target.
    fn put_run(&self, id: &[u8], e: &Encoded) -> Result<(), Abort> {
        if let Some(note) = &e.note
            && self.referred.borrow_mut().insert(note.hash)
            && !self.notes.is_known(&note.hash)
        {
            let key = hex(&note.hash);
            if self.notifications.get(key.as_bytes())?.is_none() {
                self.notifications.insert(key.as_bytes(), note.json())?;
            }
        }
        self.runs.insert(id, e.value.as_slice())?;
        Ok(())
    }

    /// A stored run, complete: its notification in, and the progress of a running run merged.
    fn read_run(&self, key: &[u8], v: &[u8]) -> Result<RunRecord, Abort> {
        let mut run: RunRecord = decode(key, v).map_err(Abort::Abort)?;
        if let Some(h) = notes::take_ref(key, &mut run).map_err(Abort::Abort)? {
            let n = match self.notes.cached(&h) {
                Some(n) => n,
                None => match self.notifications.get(hex(&h).as_bytes())? {
                    Some(bytes) => self.notes.decoded(&h, &bytes).map_err(Abort::Abort)?,
                    None => return Err(Abort::Abort(notes::dangling(key, &h))),
                },
            };
            notes::fill(&mut run, n);
        }
        if run.status == RunStatus::Running {
            for e in self.progress.get(key).into_iter().flatten() {
                progress::apply(&mut run, e.clone());
            }
        }
        Ok(run)
    }

    fn guard_state(&self, key: &[u8]) -> Result<KeyState, Abort> {
        match self.guards.get(key)? {
            Some(v) => decode(key, &v).map_err(Abort::Abort),
            None => Ok(KeyState::default()),
        }
    }

    /// A finished run: record, indexes, and its rollups, counted once even if it is finished
    /// again. Counted before: a final record (but `skipped`) no longer in `active`; one still
    /// there is a swapped end whose tally this finish takes over ([`super::tally`]).
    fn finish(&self, f: &Finishing) -> Result<(), Abort> {
        let id = f.tally.id.as_slice();
        let was_final = match self.runs.get(id)? {
            // Only the status matters here: skip building the rest of the record.
            Some(old) => decode::<StatusOnly>(id, &old)
                .map(|r| r.status.is_final() && r.status != RunStatus::Skipped)
                .map_err(Abort::Abort)?,
            None => false,
        };
        self.put_run(id, &f.value)?;
        if f.ended {
            self.ended.borrow_mut().push(id.to_vec());
        }
        let was_active = self.active.remove(id)?.is_some();
        self.count(&f.tally, was_final && !was_active)
    }

    /// Counts an end written without a transaction ([`super::tally`]): once, as the run leaves
    /// `active` with it; a run no longer there was counted before.
    fn tally(&self, t: &Tally) -> Result<(), Abort> {
        if self.active.remove(t.id.as_slice())?.is_none() {
            return Ok(());
        }
        self.count(t, false)
    }

    /// An ended run's indexes (its runbook's, `verifying` as it awaits a verdict or not) and,
    /// unless `counted` before, its rollups. It has left `active` already.
    fn count(&self, t: &Tally, counted: bool) -> Result<(), Abort> {
        self.by_runbook.insert(t.index.as_slice(), &[])?;
        if t.awaits_verdict {
            self.verifying.insert(t.id.as_slice(), &[])?;
        } else {
            self.verifying.remove(t.id.as_slice())?;
        }
        if let (Some((key, add)), false) = (&t.rollup, counted) {
            self.add_rollup(key, add, false)?;
        }
        Ok(())
    }

    /// Adds a run's contribution to its daily and monthly groups, or takes it out (`remove`).
    fn add_rollup(&self, key: &RollupKey, part: &Rollup, remove: bool) -> Result<(), Abort> {
        for (tree, k) in [
            (self.rollups, rollup_key(key)),
            (self.monthly, monthly_key(key)),
        ] {
            let mut current: Rollup = match tree.get(&k)? {
                Some(v) => decode(&k, &v).map_err(Abort::Abort)?,
                None => Rollup::default(),
            };
            if remove {
                current.subtract(part);
            } else {
                current.merge(part);
            }
            tree.insert(k, encode(&current))?;
        }
        Ok(())
    }

    /// Records a run's first verification verdict, its credit as the verdict makes it, and its
    /// rollups changed to match (its old contribution out, the new one in), all at once. A
    /// run that has a verdict already keeps it: a late resolve does not flip it.
    fn verdict(
        &self,
        id: &crate::run::id::RunId,
        verification: &crate::run::record::Verification,
    ) -> Result<Transition, Abort> {
        let key = id.0.as_bytes();
        let Some(v) = self.runs.get(key)? else {
            return Ok(Transition::Missing);
        };
        let old = self.read_run(key, &v)?;
        if old.verification.is_some() {
            return Ok(Transition::Refused(old.status));
        }
        let run = with_verdict(&old, verification);
        self.put_run(key, &self.notes.encode_run(&run))?;
        self.verifying.remove(key)?;
        // Only a run the rollups counted (finished) has a contribution to replace.
        if old.status.is_final() {
            if let Some((k, part)) = Rollup::of_run(&old) {
                self.add_rollup(&k, &part, true)?;
            }
            if let Some((k, part)) = Rollup::of_run(&run) {
                self.add_rollup(&k, &part, false)?;
            }
        }
        Ok(Transition::Done(Box::new(run)))
    }

    /// A run that has not ended: record and indexes.
    fn put_active(&self, id: &[u8], value: &Encoded, index: &[u8]) -> Result<(), Abort> {
        self.put_run(id, value)?;
        self.active.insert(id, &[])?;
        self.by_runbook.insert(index, &[])?;
        Ok(())
    }

    /// The run an alert episode's dedupe entry points to, when a guard skipped it (cooldown,
    /// run limits, overlap, an open breaker): the episode may run on a re-send. A run that was
    /// admitted to run, or skipped by a person's denial or an expired approval, keeps the key
    /// taken; so do entries of other triggers, whose keys are never sent again.
    fn guard_skipped(&self, key: &[u8], id: &[u8]) -> Result<Option<RunId>, Abort> {
        if !key.starts_with(b"alert:") {
            return Ok(None);
        }
        // A pruned run is one from long ago: its episode is over.
        let Some(v) = self.runs.get(id)? else {
            return Ok(None);
        };
        let earlier: Earlier = decode(id, &v).map_err(Abort::Abort)?;
        Ok(earlier
            .guard_skipped()
            .then(|| RunId(String::from_utf8_lossy(id).to_string())))
    }

    fn admit(&self, batch: &[Admit]) -> Result<Vec<Decision>, Abort> {
        let mut out = Vec::with_capacity(batch.len());
        for c in batch {
            // Sees the batch's own earlier inserts: duplicates within a batch (HA peers posting
            // at once) admit one run.
            let retry_of = match self.dedupe.get(&c.key)? {
                None => None,
                Some(id) => match self.guard_skipped(&c.key, &id)? {
                    Some(earlier) => Some(earlier),
                    None => {
                        out.push(None);
                        continue;
                    }
                },
            };
            let Some(gate) = &c.gate else {
                self.dedupe.insert(c.key.as_slice(), c.id.as_slice())?;
                match retry_of {
                    None => {
                        let encoded;
                        let value = match &c.value {
                            Some(v) => v,
                            None => {
                                encoded = self.notes.encode_run(&c.run);
                                &encoded
                            }
                        };
                        self.put_active(&c.id, value, &c.index)?;
                        out.push(Some((c.run.status, None, None)));
                    }
                    Some(earlier) => {
                        let mut run = c.run.clone();
                        run.retry_of = Some(earlier);
                        self.put_active(&c.id, &self.notes.encode_run(&run), &c.index)?;
                        out.push(Some((run.status, Some(run), None)));
                    }
                }
                continue;
            };
            let gk = guard_key(&gate.runbook, &gate.key);
            let state = self.guard_state(&gk)?;
            let mut run = c.run.clone();
            let again = retry_of.is_some();
            run.retry_of = retry_of;
            let next = (gate.apply)(&state, &mut run);
            // A re-send the guards still refuse is a duplicate: one skipped record per episode,
            // not one per re-send, and the guard state stays as it was.
            if again && run.status == RunStatus::Skipped {
                out.push(None);
                continue;
            }
            self.dedupe.insert(c.key.as_slice(), c.id.as_slice())?;
            if next != state {
                self.guards.insert(gk, encode(&next))?;
            }
            if run.status.is_final() {
                self.finish(&Finishing::of(&run, self.notes))?;
            } else {
                self.put_active(&c.id, &self.notes.encode_run(&run), &c.index)?;
            }
            out.push(Some((run.status, Some(run), Some(next))));
        }
        Ok(out)
    }

    fn transition(
        &self,
        id: &crate::run::id::RunId,
        from: &[RunStatus],
        change: &Change,
    ) -> Result<Transition, Abort> {
        let key = id.0.as_bytes();
        let Some(old) = self.runs.get(key)? else {
            return Ok(Transition::Missing);
        };
        // Progress merged first: the record written has every step recorded so far.
        let mut run = self.read_run(key, &old)?;
        if !from.contains(&run.status) {
            return Ok(Transition::Refused(run.status));
        }
        change(&mut run);
        if run.status.is_final() {
            self.finish(&Finishing::of(&run, self.notes))?;
        } else {
            self.put_active(key, &self.notes.encode_run(&run), &runbook_index(&run))?;
        }
        Ok(Transition::Done(Box::new(run)))
    }

    fn update_guard(
        &self,
        runbook: &str,
        key: &str,
        update: &Update,
    ) -> Result<GuardChanged, Abort> {
        let gk = guard_key(runbook, key);
        let before = self.guard_state(&gk)?;
        let after = update(&before);
        if after != before {
            self.guards.insert(gk, encode(&after))?;
        }
        Ok(GuardChanged { before, after })
    }
}

/// Merges an alert episode into the store (before the batch's transaction, no flush).
fn put_alert(trees: &Trees, path: &Path, alert: &AlertReceived) -> Result<(), StoreError> {
    let key = alert.episode().to_string();
    let merged = match trees.alerts.get(&key).map_err(|e| backend(path, e))? {
        Some(old) => {
            let mut old: AlertReceived = decode(key.as_bytes(), &old)?;
            received_again(&mut old, alert);
            old
        }
        None => {
            let mut idx = nanos(alert.received_at).to_vec();
            idx.extend_from_slice(key.as_bytes());
            trees
                .alerts_by_time
                .insert(idx, key.as_bytes())
                .map_err(|e| backend(path, e))?;
            alert.clone()
        }
    };
    trees
        .alerts
        .insert(key.as_bytes(), encode(&merged))
        .map_err(|e| backend(path, e))?;
    Ok(())
}

/// What a write does with its delivery, decided before the batch's transaction.
#[derive(Debug)]
enum Plan {
    /// No delivery: an ordinary write.
    Plain,
    /// A delivery recorded before and not expired: the write is dropped whole.
    Seen,
    /// The delivery's stored record cannot be read: this write fails, the batch's others not.
    Unreadable(StoreError),
    /// A new (or expired) delivery: its record (key, value) is written with the runs.
    Record(Vec<u8>, Vec<u8>),
}

/// Decides each write's delivery, in batch order: a delivery refused by the record stored or by
/// an earlier write of this batch is [`Plan::Seen`]. Deciding before the transaction is exact
/// because only the batch leader (one thread at a time) records deliveries; pruning removes only
/// expired records, which refuse nothing.
fn plan_deliveries(trees: &Trees, path: &Path, batch: &[Write]) -> Result<Vec<Plan>, StoreError> {
    let mut claimed: HashMap<Vec<u8>, Delivery> = HashMap::new();
    let mut plans = Vec::with_capacity(batch.len());
    for write in batch {
        let Write::Admit(_, _, Some(d)) = write else {
            plans.push(Plan::Plain);
            continue;
        };
        let key = delivery_key(&d.source, &d.id);
        let earlier = match claimed.get(&key) {
            Some(e) => Some(e.clone()),
            None => match trees.deliveries.get(&key).map_err(|e| backend(path, e))? {
                Some(v) => match decode::<Delivery>(&key, &v) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        plans.push(Plan::Unreadable(e));
                        continue;
                    }
                },
                None => None,
            },
        };
        if earlier.is_some_and(|e| e.refuses_at(d.received_at)) {
            plans.push(Plan::Seen);
            continue;
        }
        claimed.insert(key.clone(), d.clone());
        plans.push(Plan::Record(key, encode(d)));
    }
    Ok(plans)
}

/// What a batch did beyond its outcomes.
#[derive(Default)]
pub struct Applied {
    /// Runs the batch ended: their progress events go once the batch is durable.
    pub ended: Vec<Vec<u8>>,
}

/// Applies a batch of writes (no flush): deliveries decided, alert episodes merged; then, in one
/// transaction, the untallied ends `tallies` and every write in order; then prune's sweep, if
/// the batch has one. One outcome per write.
pub fn apply(
    trees: &Trees,
    notes: &Notes,
    path: &Path,
    batch: Vec<Write>,
    tallies: &[Tally],
) -> Result<(Vec<Outcome>, Applied), StoreError> {
    let plans = plan_deliveries(trees, path, &batch)?;
    for (write, plan) in batch.iter().zip(&plans) {
        if let (Write::Admit(_, alerts, _), Plan::Plain | Plan::Record(..)) = (write, plan) {
            for a in alerts {
                put_alert(trees, path, a)?;
            }
        }
    }
    // Events appended after this read and before the commit stay in the tree: a run still
    // running applies them on read; one this batch ends had them arrive after its end.
    let mut events = HashMap::new();
    for write in &batch {
        if let Write::Transition(id, ..) | Write::Verdict(id, _) = write {
            let key = id.0.as_bytes();
            events.insert(key.to_vec(), progress::events(&trees.progress, path, key)?);
        }
    }
    let all = (
        &trees.dedupe,
        &trees.runs,
        &trees.active,
        &trees.by_runbook,
        &trees.rollups,
        &trees.monthly,
        &trees.guards,
        &trees.verifying,
        &trees.deliveries,
        &trees.notifications,
    );
    type Done = (Vec<Decided>, HashSet<Hash>, Vec<Vec<u8>>);
    let result: Result<Done, TransactionError<StoreError>> = all.transaction(
        |(
            dedupe,
            runs,
            active,
            by_runbook,
            rollups,
            monthly,
            guards,
            verifying,
            deliveries,
            notifications,
        )| {
            // Fresh per attempt: a transaction that conflicts runs again from the start.
            let tx = Tx {
                dedupe,
                runs,
                active,
                by_runbook,
                rollups,
                monthly,
                guards,
                verifying,
                deliveries,
                notifications,
                progress: &events,
                notes,
                referred: RefCell::new(HashSet::new()),
                ended: RefCell::new(Vec::new()),
            };
            // First: a verdict or a finish of this batch sees the ends before it counted.
            for t in tallies {
                tx.tally(t)?;
            }
            let mut decided = Vec::with_capacity(batch.len());
            for (write, plan) in batch.iter().zip(&plans) {
                decided.push(match write {
                    Write::Admit(candidates, _, _) => match plan {
                        Plan::Seen => Decided::DuplicateDelivery,
                        Plan::Unreadable(e) => Decided::Failed(e.clone()),
                        Plan::Record(key, value) => {
                            tx.deliveries.insert(key.as_slice(), value.as_slice())?;
                            Decided::Admitted(tx.admit(candidates)?)
                        }
                        Plan::Plain => Decided::Admitted(tx.admit(candidates)?),
                    },
                    Write::Transition(id, from, change) => {
                        Decided::Transitioned(tx.transition(id, from, change)?)
                    }
                    Write::Verdict(id, verification) => {
                        Decided::Transitioned(tx.verdict(id, verification)?)
                    }
                    Write::Finish(runs, guard, _) => {
                        for f in runs {
                            tx.finish(f)?;
                        }
                        let changed = match guard {
                            Some(g) => Some(tx.update_guard(&g.runbook, &g.key, &g.apply)?),
                            None => None,
                        };
                        Decided::Finished(changed)
                    }
                    Write::Guards(runbook, keys, update) => {
                        let mut out = Vec::new();
                        for k in keys {
                            out.push((k.clone(), tx.update_guard(runbook, k, update)?.after));
                        }
                        Decided::Guards(out)
                    }
                    Write::Sweep => Decided::Sweep,
                });
            }
            Ok((decided, tx.referred.take(), tx.ended.take()))
        },
    );
    let (decided, referred, ended) = match result {
        Ok(d) => d,
        Err(TransactionError::Abort(e)) => return Err(e),
        Err(TransactionError::Storage(e)) => return Err(backend(path, e)),
    };
    // Committed: every notification the batch referred to is in the tree now.
    notes.mark_known(referred);
    let swept = if batch.iter().any(|w| matches!(w, Write::Sweep)) {
        sweep(trees, notes, path)?
    } else {
        0
    };
    let outcomes = batch
        .into_iter()
        .zip(decided)
        .map(|(write, decided)| match (write, decided) {
            (Write::Admit(candidates, _, _), Decided::Admitted(d)) => Outcome::Admitted(
                candidates
                    .into_iter()
                    .zip(d)
                    .map(|(c, d)| match d {
                        None => Admitted::Duplicate,
                        Some((_, Some(run), guard)) => Admitted::New {
                            run: Box::new(run),
                            guard,
                        },
                        Some((status, None, _)) => {
                            let mut run = c.run;
                            run.status = status;
                            Admitted::New {
                                run: Box::new(run),
                                guard: None,
                            }
                        }
                    })
                    .collect(),
            ),
            (_, Decided::Admitted(d)) => Outcome::Admitted(vec![Admitted::Duplicate; d.len()]),
            (_, Decided::DuplicateDelivery) => Outcome::DuplicateDelivery,
            (_, Decided::Failed(e)) => Outcome::Failed(e),
            (_, Decided::Transitioned(t)) => Outcome::Transitioned(t),
            (_, Decided::Finished(g)) => Outcome::Finished(g),
            (_, Decided::Guards(g)) => Outcome::Guards(g),
            (_, Decided::Sweep) => Outcome::Swept(swept),
        })
        .collect();
    Ok((outcomes, Applied { ended }))
}

/// Removes every notification no stored run refers to; returns how many. Run by the batch
/// leader: no admission or finish writes a ref meanwhile, and the writes outside the batch
/// (claims and approvals by compare-and-swap) only rewrite a record with the ref it had.
fn sweep(trees: &Trees, notes: &Notes, path: &Path) -> Result<usize, StoreError> {
    let mut referenced = HashSet::new();
    for item in trees.runs.iter() {
        let (k, v) = item.map_err(|e| backend(path, e))?;
        if let Some(h) = decode::<RefOnly>(&k, &v)?.hash() {
            referenced.insert(h);
        }
    }
    let mut removed = 0;
    for k in trees.notifications.iter().keys() {
        let k = k.map_err(|e| backend(path, e))?;
        let Some(h) = std::str::from_utf8(&k).ok().and_then(parse_hex) else {
            continue;
        };
        if !referenced.contains(&h) {
            trees
                .notifications
                .remove(&k)
                .map_err(|e| backend(path, e))?;
            notes.forget(&h);
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::key::DedupeKey;
    use chrono::{Duration, Utc};

    fn trees() -> (sled::Db, Trees) {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("temporary db");
        let trees = Trees::open(&db, Path::new("test")).expect("trees");
        (db, trees)
    }

    /// A write admitting one new manual run with `delivery`.
    fn delivered(i: usize, delivery: Option<&Delivery>) -> Write {
        let run = RunRecord {
            status: RunStatus::Queued,
            ..RunRecord::synthetic(i)
        };
        let c = Candidate {
            key: DedupeKey::Manual {
                run: run.id.0.clone(),
            },
            run,
            gate: None,
        };
        Write::Admit(
            vec![Admit::of(c, &Notes::default())],
            vec![],
            delivery.cloned(),
        )
    }

    fn delivery(id: &str, minutes_later: i64) -> Delivery {
        let at = Utc::now() + Duration::minutes(minutes_later);
        Delivery {
            source: "github-ci".into(),
            id: id.into(),
            received_at: at,
            expires_at: at + Duration::minutes(10),
        }
    }

    fn kinds(outcomes: &[Outcome]) -> Vec<&'static str> {
        outcomes
            .iter()
            .map(|o| match o {
                Outcome::Admitted(_) => "admitted",
                Outcome::DuplicateDelivery => "duplicate",
                Outcome::Failed(_) => "failed",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn one_batch_decides_its_deliveries_in_order() {
        let (_db, trees) = trees();
        let (a, b) = (delivery("a", 0), delivery("b", 0));
        let a_later = Delivery {
            received_at: a.expires_at,
            expires_at: a.expires_at + Duration::minutes(10),
            ..a.clone()
        };
        // The same delivery twice, another one, a plain admission, then `a` again after its
        // record (from this very batch) expired.
        let batch = vec![
            delivered(1, Some(&a)),
            delivered(2, Some(&a)),
            delivered(3, Some(&b)),
            delivered(4, None),
            delivered(5, Some(&a_later)),
        ];
        let (out, _) =
            apply(&trees, &Notes::default(), Path::new("test"), batch, &[]).expect("applied");
        assert_eq!(
            kinds(&out),
            ["admitted", "duplicate", "admitted", "admitted", "admitted"]
        );
        assert_eq!(trees.runs.len(), 4);
        let stored: Delivery = decode(
            b"a",
            &trees
                .deliveries
                .get(delivery_key("github-ci", "a"))
                .expect("read")
                .expect("recorded"),
        )
        .expect("decodes");
        assert_eq!(stored, a_later);
    }

    #[test]
    fn an_unreadable_delivery_record_fails_its_write_alone() {
        let (_db, trees) = trees();
        trees
            .deliveries
            .insert(delivery_key("github-ci", "bad"), b"not json".as_slice())
            .expect("insert");
        let batch = vec![
            delivered(1, Some(&delivery("bad", 0))),
            delivered(2, Some(&delivery("good", 0))),
        ];
        let (out, _) =
            apply(&trees, &Notes::default(), Path::new("test"), batch, &[]).expect("applied");
        assert_eq!(kinds(&out), ["failed", "admitted"]);
        assert_eq!(trees.runs.len(), 1);
    }

    /// The runs counted in every daily rollup group.
    fn counted(trees: &Trees) -> u64 {
        trees
            .rollups
            .iter()
            .map(|e| {
                let (k, v) = e.expect("rollup");
                decode::<Rollup>(&k, &v).expect("decodes").runs
            })
            .sum()
    }

    /// A swapped end whose tally the batch did not take (the swap came after the leader took
    /// the waiting ones) is finished again through the batch: counted once, by that finish,
    /// and its late tally counts nothing more.
    #[test]
    fn a_batch_finish_of_a_swapped_end_counts_it_once_before_its_tally() {
        let (_db, trees) = trees();
        let notes = Notes::default();
        let run = RunRecord::synthetic(1);
        assert!(run.status.is_final() && Rollup::of_run(&run).is_some());
        let key = run.id.0.as_bytes();
        // What a swap leaves: the final record, still in `active`, not counted.
        trees
            .runs
            .insert(key, notes.encode_run(&run).value)
            .expect("record");
        trees.active.insert(key, &[]).expect("active");
        let finish = || Write::Finish(vec![Finishing::of(&run, &notes)], None, Unflushed(false));
        apply(&trees, &notes, Path::new("test"), vec![finish()], &[]).expect("finish");
        assert_eq!(counted(&trees), 1);
        assert!(!trees.active.contains_key(key).expect("active"));
        let late = [Tally::of(&run)];
        apply(&trees, &notes, Path::new("test"), vec![], &late).expect("tally");
        assert_eq!(counted(&trees), 1, "the late tally counts nothing");
        apply(&trees, &notes, Path::new("test"), vec![finish()], &[]).expect("again");
        assert_eq!(
            counted(&trees),
            1,
            "a finish of a counted run counts nothing"
        );
    }
}
