//! The embedded store on sled: the only module that touches sled.
//!
//! Layout (trees):
//! - `meta`: `schema_version`.
//! - `runs`: run id (ULID, so keys sort by time) -> run record (JSON).
//! - `by_runbook`: `runbook \0 run id` -> (), to list one runbook's runs by prefix scan.
//! - `active`: run id -> () for runs queued, pending approval or running (reconciliation).
//! - `alerts`: `fingerprint @ startsAt` -> alert episode; `alerts_by_time`: received-at
//!   (big-endian nanoseconds) + episode -> () for range scans.
//! - `guards`: `runbook \0 key` -> guard state (cooldown, window, failure streak, breaker).
//! - `rollups_monthly`: the same per calendar month (`YYYY-MM \0 ...`), so reports over long
//!   periods read ~30x fewer groups.
//! - `dedupe`: dedupe key (alert episode or schedule fire per runbook) -> run id, written in
//!   the same transaction as the run it admits.
//! - `rollups`: `day \0 owner \0 service \0 runbook \0 cause` -> counters, updated in the same
//!   transaction as a run's finish.
//!
//! Durability: every change is flushed before the call returns. Concurrent writers share one
//! flush (group commit); concurrent admissions (`enqueue_unique`, the webhook's path) and run
//! finishes are also written as one batch by one thread at a time (see `Batcher`). sled's
//! flush uses `sync_file_range`/`fdatasync`-class calls: it survives a killed process; see
//! docs/store.md for what it promises on power loss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::{AlertReceived, Reconciled, Result, RunFilter, SCHEMA_VERSION, Store, StoreError};
use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::run::step::StepResult;

/// Shares one flush between concurrent writers.
struct GroupCommit {
    state: Mutex<CommitState>,
    done: Condvar,
    flushes: AtomicU64,
}

#[derive(Default)]
struct CommitState {
    requested: u64,
    completed: u64,
    flushing: bool,
}

/// One caller's write for the batch leader, encoded by the caller.
enum Write {
    /// Runs to queue unless their dedupe key is taken, and alert episodes to merge.
    Admit {
        runs: Vec<EncodedRun>,
        alerts: Vec<AlertReceived>,
    },
    /// Runs' final records and what they add to the rollups.
    Finish(Vec<Finishing>),
}

/// A finished run ready to write: id, record, `by_runbook` index key, rollup increment.
struct Finishing {
    id: Vec<u8>,
    value: Vec<u8>,
    index: Vec<u8>,
    rollup: Option<(RollupKey, Rollup)>,
}

impl Finishing {
    fn of(run: &RunRecord) -> Finishing {
        Finishing {
            id: run.id.0.as_bytes().to_vec(),
            value: encode(run),
            index: runbook_index(run),
            rollup: Rollup::of_run(run),
        }
    }
}

fn runbook_index(run: &RunRecord) -> Vec<u8> {
    let mut index = run.runbook.clone().into_bytes();
    index.push(0);
    index.extend_from_slice(run.id.0.as_bytes());
    index
}

/// Writes a finished run inside a transaction: record, active index, and its rollups, counted
/// once even if the run is finished again.
fn finish_in(
    (runs, active, by_runbook, rollups, monthly): (
        &TransactionalTree,
        &TransactionalTree,
        &TransactionalTree,
        &TransactionalTree,
        &TransactionalTree,
    ),
    f: &Finishing,
) -> std::result::Result<(), ConflictableTransactionError<StoreError>> {
    let already_final = match runs.get(&f.id)? {
        // Only the status matters here: skip building the rest of the record.
        Some(old) => decode::<StatusOnly>(&f.id, &old)
            .map(|r| r.status.is_final() && r.status != RunStatus::Skipped)
            .map_err(ConflictableTransactionError::Abort)?,
        None => false,
    };
    runs.insert(f.id.as_slice(), f.value.as_slice())?;
    active.remove(f.id.as_slice())?;
    by_runbook.insert(f.index.as_slice(), &[])?;
    if let (Some((key, add)), false) = (&f.rollup, already_final) {
        for (tree, k) in [(rollups, rollup_key(key)), (monthly, monthly_key(key))] {
            let mut current: Rollup = match tree.get(&k)? {
                Some(v) => decode(&k, &v).map_err(ConflictableTransactionError::Abort)?,
                None => Rollup::default(),
            };
            current.merge(add);
            tree.insert(k, encode(&current))?;
        }
    }
    Ok(())
}

/// A run ready to write: dedupe key, id, record, `by_runbook` index key.
struct EncodedRun {
    key: Vec<u8>,
    id: Vec<u8>,
    value: Vec<u8>,
    index: Vec<u8>,
}

/// Applies concurrent admissions and run finishes in batches, one batch at a time.
///
/// sled serialises every transaction on one process-wide lock, which all other operations
/// then wait on too; a transaction per webhook request and per finished run, from many
/// threads, spent the CPU on that lock's hand-offs. Whoever finds no batch in progress leads:
/// it takes every write waiting, applies them in one transaction, flushes once and hands each
/// caller its result.
#[derive(Default)]
struct Batcher {
    state: Mutex<BatchState>,
    done: Condvar,
}

#[derive(Default)]
struct BatchState {
    next_ticket: u64,
    pending: Vec<(u64, Write)>,
    finished: HashMap<u64, Result<Vec<bool>>>,
    leading: bool,
}

/// The sled-backed store.
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    runs: sled::Tree,
    by_runbook: sled::Tree,
    active: sled::Tree,
    alerts: sled::Tree,
    alerts_by_time: sled::Tree,
    rollups: sled::Tree,
    monthly: sled::Tree,
    dedupe: sled::Tree,
    guards: sled::Tree,
    commit: GroupCommit,
    batcher: Batcher,
}

/// How long [`SledStore::open`] waits for a lock that is being released.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens the sled database, waiting up to [`LOCK_WAIT`] for its lock.
///
/// Dropping a `sled::Db` does not release its file lock at once: sled's background flusher
/// thread holds it until it exits (sled issue #1289), and a process that is exiting holds it
/// until the kernel reaps it. So a store closed a moment ago reads as "locked"; only a lock
/// still held after the wait is reported as [`StoreError::Locked`].
fn open_db(path: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // sled caches up to 1 GiB by default; the store's working set is far smaller.
        match sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
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

fn backend(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our record types always serialize; an empty value would be reported as corrupt on read.
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).to_string(),
        reason: e.to_string(),
    })
}

/// The one field of a stored run that finishing checks.
#[derive(serde::Deserialize)]
struct StatusOnly {
    status: RunStatus,
}

fn rollup_key(k: &RollupKey) -> Vec<u8> {
    format!(
        "{}\0{}\0{}\0{}\0{}",
        k.day.format("%Y-%m-%d"),
        k.owner,
        k.service,
        k.runbook,
        k.cause
    )
    .into_bytes()
}

fn monthly_key(k: &RollupKey) -> Vec<u8> {
    format!(
        "{}\0{}\0{}\0{}\0{}",
        k.day.format("%Y-%m"),
        k.owner,
        k.service,
        k.runbook,
        k.cause
    )
    .into_bytes()
}

fn parse_rollup_key(bytes: &[u8]) -> Option<RollupKey> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.split('\0');
    let first = parts.next()?;
    let day = NaiveDate::parse_from_str(first, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(&format!("{first}-01"), "%Y-%m-%d"))
        .ok()?;
    Some(RollupKey {
        day,
        owner: parts.next()?.to_string(),
        service: parts.next()?.to_string(),
        runbook: parts.next()?.to_string(),
        cause: parts.next()?.to_string(),
    })
}

fn episode_key(fingerprint: &str, starts_at: DateTime<Utc>) -> String {
    format!(
        "{fingerprint}@{}",
        starts_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    )
}

fn nanos(t: DateTime<Utc>) -> [u8; 8] {
    (t.timestamp_nanos_opt().unwrap_or(0).max(0) as u64).to_be_bytes()
}

fn day_bytes(d: NaiveDate) -> Vec<u8> {
    d.format("%Y-%m-%d").to_string().into_bytes()
}

/// Just past every key of day `d` (keys continue with \0).
fn day_end(d: NaiveDate) -> Vec<u8> {
    let mut end = day_bytes(d);
    end.push(1);
    end
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn next_month(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MAX)
}

impl SledStore {
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

    /// Opens (or creates) the store in `path`.
    pub fn open(path: &Path) -> Result<SledStore> {
        let db = open_db(path)?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| backend(path, e));
        let meta = tree("meta")?;
        match meta.get("schema_version").map_err(|e| backend(path, e))? {
            Some(v) => {
                let found: u32 = decode(b"schema_version", &v)?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: path.display().to_string(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
            None => {
                meta.insert("schema_version", encode(&SCHEMA_VERSION))
                    .map_err(|e| backend(path, e))?;
            }
        }
        let store = SledStore {
            path: path.to_path_buf(),
            runs: tree("runs")?,
            by_runbook: tree("by_runbook")?,
            active: tree("active")?,
            alerts: tree("alerts")?,
            alerts_by_time: tree("alerts_by_time")?,
            rollups: tree("rollups")?,
            monthly: tree("rollups_monthly")?,
            dedupe: tree("dedupe")?,
            guards: tree("guards")?,
            db,
            commit: GroupCommit {
                state: Mutex::new(CommitState::default()),
                done: Condvar::new(),
                flushes: AtomicU64::new(0),
            },
            batcher: Batcher::default(),
        };
        store.durable()?;
        Ok(store)
    }

    /// How many flushes were made (group commit shares them between writers).
    pub fn flushes(&self) -> u64 {
        self.commit.flushes.load(Ordering::Relaxed)
    }

    /// Waits until everything written so far is on disk, sharing flushes between writers.
    fn durable(&self) -> Result<()> {
        let c = &self.commit;
        let mut st = c.state.lock().unwrap_or_else(|p| p.into_inner());
        st.requested += 1;
        let ticket = st.requested;
        loop {
            if st.completed >= ticket {
                return Ok(());
            }
            if !st.flushing {
                st.flushing = true;
                let target = st.requested;
                drop(st);
                let result = self.db.flush();
                c.flushes.fetch_add(1, Ordering::Relaxed);
                st = c.state.lock().unwrap_or_else(|p| p.into_inner());
                st.flushing = false;
                if result.is_ok() {
                    st.completed = st.completed.max(target);
                }
                c.done.notify_all();
                if let Err(e) = result {
                    return Err(backend(&self.path, e));
                }
                continue;
            }
            st = c.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        backend(&self.path, e)
    }

    fn put_run(&self, run: &RunRecord) -> Result<()> {
        let id = run.id.0.as_bytes();
        self.runs.insert(id, encode(run)).map_err(|e| self.err(e))?;
        self.by_runbook
            .insert(runbook_index(run), &[])
            .map_err(|e| self.err(e))?;
        if run.status.is_final() {
            self.active.remove(id).map_err(|e| self.err(e))?;
        } else {
            self.active.insert(id, &[]).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn update_run<F: FnOnce(&mut RunRecord)>(&self, id: &RunId, f: F) -> Result<()> {
        let mut run = self
            .get_run(id)?
            .ok_or_else(|| StoreError::NoSuchRun(id.0.clone()))?;
        f(&mut run);
        self.put_run(&run)
    }

    /// Merges an alert episode into the store (no flush).
    fn put_alert(&self, alert: &AlertReceived) -> Result<()> {
        let key = episode_key(&alert.fingerprint, alert.starts_at);
        let merged = match self.alerts.get(&key).map_err(|e| self.err(e))? {
            Some(old) => {
                let mut old: AlertReceived = decode(key.as_bytes(), &old)?;
                old.last_seen = old.last_seen.max(alert.last_seen);
                old.times_received += alert.times_received.max(1);
                for m in &alert.matched {
                    if !old.matched.contains(m) {
                        old.matched.push(m.clone());
                    }
                }
                old
            }
            None => {
                let mut idx = nanos(alert.received_at).to_vec();
                idx.extend_from_slice(key.as_bytes());
                self.alerts_by_time
                    .insert(idx, key.as_bytes())
                    .map_err(|e| self.err(e))?;
                alert.clone()
            }
        };
        self.alerts
            .insert(key.as_bytes(), encode(&merged))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Hands `write` to the current batch (or leads one) and waits for its result: for an
    /// admission, whether each run was queued; for a finish, nothing.
    fn submit(&self, write: Write) -> Result<Vec<bool>> {
        let b = &self.batcher;
        let mut st = b.state.lock().unwrap_or_else(|p| p.into_inner());
        st.next_ticket += 1;
        let ticket = st.next_ticket;
        st.pending.push((ticket, write));
        loop {
            if let Some(result) = st.finished.remove(&ticket) {
                return result;
            }
            if !st.leading {
                st.leading = true;
                let batch = std::mem::take(&mut st.pending);
                drop(st);
                // A panic must not leave `leading` set: every later caller would wait forever.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.write_batch(&batch)
                        .and_then(|r| self.durable().map(|()| r))
                }))
                .unwrap_or_else(|_| {
                    Err(self.err("writing a batch of admissions and finishes panicked"))
                });
                st = b.state.lock().unwrap_or_else(|p| p.into_inner());
                st.leading = false;
                match outcome {
                    Ok(all) => {
                        for ((t, _), admitted) in batch.iter().zip(all) {
                            st.finished.insert(*t, Ok(admitted));
                        }
                    }
                    Err(e) => {
                        for (t, _) in &batch {
                            st.finished.insert(*t, Err(e.clone()));
                        }
                    }
                }
                b.done.notify_all();
                continue;
            }
            st = b.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Applies a batch of writes (no flush): alert episodes merged; then, in one transaction,
    /// every admitted run whose dedupe key is free queued and every finished run recorded.
    /// One result per write.
    fn write_batch(&self, batch: &[(u64, Write)]) -> Result<Vec<Vec<bool>>> {
        for (_, write) in batch {
            if let Write::Admit { alerts, .. } = write {
                for a in alerts {
                    self.put_alert(a)?;
                }
            }
        }
        let trees = (
            &self.dedupe,
            &self.runs,
            &self.active,
            &self.by_runbook,
            &self.rollups,
            &self.monthly,
        );
        let result: std::result::Result<Vec<Vec<bool>>, TransactionError<StoreError>> = trees
            .transaction(|(dedupe, r, active, by_runbook, rollups, monthly)| {
                let mut all = Vec::with_capacity(batch.len());
                for (_, write) in batch {
                    let runs = match write {
                        Write::Admit { runs, .. } => runs,
                        Write::Finish(runs) => {
                            for f in runs {
                                finish_in((r, active, by_runbook, rollups, monthly), f)?;
                            }
                            all.push(Vec::new());
                            continue;
                        }
                    };
                    let mut admitted = Vec::with_capacity(runs.len());
                    for run in runs {
                        // Sees the batch's own earlier inserts: duplicates within a batch
                        // (HA peers posting at once) admit one run.
                        if dedupe.get(&run.key)?.is_some() {
                            admitted.push(false);
                            continue;
                        }
                        dedupe.insert(run.key.as_slice(), run.id.as_slice())?;
                        r.insert(run.id.as_slice(), run.value.as_slice())?;
                        active.insert(run.id.as_slice(), &[])?;
                        by_runbook.insert(run.index.as_slice(), &[])?;
                        admitted.push(true);
                    }
                    all.push(admitted);
                }
                Ok(all)
            });
        match result {
            Ok(all) => Ok(all),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(self.err(e)),
        }
    }
}

impl Store for SledStore {
    fn enqueue_run(&self, run: &RunRecord) -> Result<()> {
        self.put_run(run)?;
        self.durable()
    }

    fn enqueue_unique(
        &self,
        runs: &[(String, RunRecord)],
        alerts: &[AlertReceived],
    ) -> Result<Vec<bool>> {
        // Encoding is the callers' work, in parallel; the batch leader only writes.
        self.submit(Write::Admit {
            runs: runs
                .iter()
                .map(|(key, run)| EncodedRun {
                    key: key.as_bytes().to_vec(),
                    id: run.id.0.as_bytes().to_vec(),
                    value: encode(run),
                    index: runbook_index(run),
                })
                .collect(),
            alerts: alerts.to_vec(),
        })
    }

    fn last_key(&self, prefix: &str) -> Result<Option<String>> {
        match self
            .dedupe
            .scan_prefix(prefix.as_bytes())
            .keys()
            .next_back()
        {
            Some(k) => Ok(Some(
                String::from_utf8_lossy(&k.map_err(|e| self.err(e))?).to_string(),
            )),
            None => Ok(None),
        }
    }

    fn runs_with_key_prefix(&self, prefix: &str) -> Result<Vec<RunId>> {
        self.dedupe
            .scan_prefix(prefix.as_bytes())
            .values()
            .map(|v| {
                v.map(|v| RunId(String::from_utf8_lossy(&v).to_string()))
                    .map_err(|e| self.err(e))
            })
            .collect()
    }

    fn set_verified(&self, id: &RunId, verified: bool, at: DateTime<Utc>) -> Result<()> {
        self.update_run(id, |r| {
            r.verification = Some(crate::run::record::Verification { verified, at });
        })?;
        self.durable()
    }

    fn set_status(
        &self,
        id: &RunId,
        status: RunStatus,
        approval: Option<crate::run::record::ApprovalDecision>,
    ) -> Result<RunRecord> {
        let mut out = None;
        self.update_run(id, |r| {
            r.status = status;
            if approval.is_some() {
                r.approval = approval;
            }
            out = Some(r.clone());
        })?;
        self.durable()?;
        out.ok_or_else(|| StoreError::NoSuchRun(id.0.clone()))
    }

    fn guard_state(&self, runbook: &str, key: &str) -> Result<crate::guard::KeyState> {
        let k = format!("{runbook}\0{key}");
        match self.guards.get(k.as_bytes()).map_err(|e| self.err(e))? {
            Some(v) => decode(k.as_bytes(), &v),
            None => Ok(Default::default()),
        }
    }

    fn set_guard_state(
        &self,
        runbook: &str,
        key: &str,
        state: &crate::guard::KeyState,
    ) -> Result<()> {
        let k = format!("{runbook}\0{key}");
        self.guards
            .insert(k.as_bytes(), encode(state))
            .map_err(|e| self.err(e))?;
        self.durable()
    }

    fn guard_states(&self) -> Result<Vec<(String, String, crate::guard::KeyState)>> {
        let mut out = Vec::new();
        for item in self.guards.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let text = String::from_utf8_lossy(&k).to_string();
            let (rb, key) = text.split_once('\0').unwrap_or((&text, ""));
            out.push((rb.to_string(), key.to_string(), decode(&k, &v)?));
        }
        Ok(out)
    }

    fn record_alert(&self, alert: &AlertReceived) -> Result<()> {
        // Through the batch: one writer at a time keeps the episode's counts exact.
        self.submit(Write::Admit {
            runs: Vec::new(),
            alerts: vec![alert.clone()],
        })
        .map(|_| ())
    }

    fn start_run(&self, id: &RunId, started_at: DateTime<Utc>) -> Result<()> {
        self.update_run(id, |r| {
            r.status = RunStatus::Running;
            r.started_at = Some(started_at);
        })?;
        self.durable()
    }

    fn step_started(&self, id: &RunId, step: &str, pgid: Option<u32>) -> Result<()> {
        self.update_run(id, |r| {
            r.current_step = Some(step.to_string());
            if pgid.is_some() {
                r.current_pgid = pgid;
            }
        })
        // No flush of its own: a restart finds a crashed run's processes by the run id in
        // their environment, not by this group id (see process::kill_leftovers).
    }

    fn record_step(&self, id: &RunId, step: &StepResult) -> Result<()> {
        self.update_run(id, |r| {
            r.current_step = None;
            r.current_pgid = None;
            match r.steps.iter_mut().find(|s| s.name == step.name) {
                Some(s) => *s = step.clone(),
                None => r.steps.push(step.clone()),
            }
        })
    }

    fn finish_run(&self, run: &RunRecord) -> Result<()> {
        self.finish_runs(std::slice::from_ref(run))
    }

    fn finish_runs(&self, runs: &[RunRecord]) -> Result<()> {
        self.submit(Write::Finish(runs.iter().map(Finishing::of).collect()))
            .map(|_| ())
    }

    fn reconcile(&self) -> Result<Reconciled> {
        let mut out = Reconciled::default();
        let mut interrupted = Vec::new();
        let ids: Vec<RunId> = self
            .active
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| RunId(String::from_utf8_lossy(&k).to_string()))
            .collect();
        for id in ids {
            let Some(mut run) = self.get_run(&id)? else {
                self.active
                    .remove(id.0.as_bytes())
                    .map_err(|e| self.err(e))?;
                continue;
            };
            match run.status {
                RunStatus::Queued => out.queued.push(run),
                RunStatus::PendingApproval => out.pending_approval.push(run),
                RunStatus::Running => {
                    let step = run.current_step.clone();
                    run.status = RunStatus::Interrupted;
                    run.finished_at = Some(Utc::now());
                    run.error = Some(match &step {
                        Some(s) => {
                            format!("interrupted: untoil stopped while step `{s}` was running")
                        }
                        None => "interrupted: untoil stopped during the run".into(),
                    });
                    if let Some(credit) = &run.toil {
                        run.toil = Some(crate::ledger::toil::credit(
                            &credit.baseline,
                            run.status,
                            &run.steps,
                            run.dry_run,
                            run.approval_required,
                        ));
                    }
                    out.interrupted.push(id);
                    interrupted.push(run);
                }
                _ => {}
            }
        }
        out.queued.sort_by(|a, b| a.id.cmp(&b.id));
        // One batch and one flush, which also makes the index clean-up above durable.
        self.finish_runs(&interrupted)?;
        Ok(out)
    }

    fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>> {
        match self.runs.get(id.0.as_bytes()).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(decode(id.0.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        let mut out = Vec::new();
        let keep = |r: &RunRecord| filter.status.is_none_or(|s| r.status == s);
        match &filter.runbook {
            Some(rb) => {
                let mut prefix = rb.clone().into_bytes();
                prefix.push(0);
                for k in self.by_runbook.scan_prefix(&prefix).keys().rev() {
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
            None => {
                for item in self.runs.iter().rev() {
                    let (k, v) = item.map_err(|e| self.err(e))?;
                    let r: RunRecord = decode(&k, &v)?;
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

    fn rollups(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        by_month: bool,
    ) -> Result<Vec<(RollupKey, Rollup)>> {
        let mut out = Vec::new();
        if !by_month {
            self.scan_rollups(&self.rollups, day_bytes(from), day_end(to), &mut out)?;
            return Ok(out);
        }
        // Whole months from the monthly tree, partial ones at the edges from the daily tree.
        let mut month = first_of_month(from);
        while month <= to {
            let next = next_month(month);
            let last = next.pred_opt().unwrap_or(month);
            if month >= from && last <= to {
                let prefix = month.format("%Y-%m").to_string().into_bytes();
                let mut end = prefix.clone();
                end.push(1);
                self.scan_rollups(&self.monthly, prefix, end, &mut out)?;
            } else {
                let start = from.max(month);
                let stop = to.min(last);
                self.scan_rollups(&self.rollups, day_bytes(start), day_end(stop), &mut out)?;
            }
            month = next;
        }
        Ok(out)
    }

    fn alerts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<AlertReceived>> {
        let mut out = Vec::new();
        // An episode may have two index entries (a first delivery that crashed before its
        // flush, then the re-send): list each episode once.
        let mut seen = std::collections::HashSet::new();
        for item in self.alerts_by_time.range(nanos(from)..nanos(to)) {
            let (_, key) = item.map_err(|e| self.err(e))?;
            if !seen.insert(key.clone()) {
                continue;
            }
            if let Some(v) = self.alerts.get(&key).map_err(|e| self.err(e))? {
                out.push(decode(&key, &v)?);
            }
        }
        Ok(out)
    }

    fn prune(&self, before: DateTime<Utc>) -> Result<usize> {
        // ULIDs start with the time: every id below this bound was created before `before`.
        let bound = ulid::Ulid::from_parts(before.timestamp_millis().max(0) as u64, 0).to_string();
        let mut removed = 0;
        let old: Vec<sled::IVec> = self
            .runs
            .range(..bound.as_bytes())
            .keys()
            .filter_map(|k| k.ok())
            .collect();
        for k in old {
            if self.active.contains_key(&k).map_err(|e| self.err(e))? {
                continue;
            }
            if let Some(v) = self.runs.remove(&k).map_err(|e| self.err(e))? {
                let run: RunRecord = decode(&k, &v)?;
                self.by_runbook
                    .remove(runbook_index(&run))
                    .map_err(|e| self.err(e))?;
                removed += 1;
            }
        }
        let old_alerts: Vec<(sled::IVec, sled::IVec)> = self
            .alerts_by_time
            .range(..nanos(before))
            .filter_map(|i| i.ok())
            .collect();
        for (idx, key) in old_alerts {
            self.alerts_by_time.remove(idx).map_err(|e| self.err(e))?;
            self.alerts.remove(key).map_err(|e| self.err(e))?;
        }
        self.durable()?;
        Ok(removed)
    }
}
