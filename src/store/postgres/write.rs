//! Writes of run records inside a transaction: a record with its notification, a finish with
//! its rollups (counted once), a conditional transition, a verdict, guard states. Every read
//! that decides a write locks its row first (`FOR UPDATE`), so the pure functions the caller
//! gives (`Change`, `Update`, `Decide`) are applied to the current row and nothing can change it
//! before the write commits; a retried transaction applies them again to fresh copies.

use std::collections::HashSet;

use deadpool_postgres::GenericClient;

use crate::guard::KeyState;
use crate::ledger::rollup::Rollup;
use crate::run::id::RunId;
use crate::run::record::{RunRecord, Verification};
use crate::run::status::RunStatus;
use crate::store::postgres::notes::{Hashing, Notes, secure};
use crate::store::postgres::rollups;
use crate::store::postgres::rows::{decode, encode, status_name, status_of};
use crate::store::postgres::tx::{Fail, LOCK_TRIES};
use crate::store::rules::with_verdict;
use crate::store::{Change, GuardChanged, Transition, Update};

/// What one transaction's writes share: the notifications encoded and secured so far.
pub struct Writer<'a> {
    /// Decoded notifications, to give records out whole.
    pub notes: &'a Notes,
    /// Notifications hashed in this call.
    pub hashing: Hashing,
    /// Notifications this transaction has locked or stored.
    pub secured: HashSet<String>,
}

impl<'a> Writer<'a> {
    /// A writer for one attempt of a transaction.
    pub fn new(notes: &'a Notes) -> Writer<'a> {
        Writer {
            notes,
            hashing: Hashing::default(),
            secured: HashSet::new(),
        }
    }

    /// Writes a run record (and its notification when the store lacks it). `active`: whether
    /// the run is unended (None keeps what the row says, or the status decides for a new row);
    /// `awaits`: whether it waits for a verification verdict (None keeps it).
    pub async fn put_run(
        &mut self,
        tx: &impl GenericClient,
        run: &RunRecord,
        active: Option<bool>,
        awaits: Option<bool>,
    ) -> Result<(), Fail> {
        let encoded = self.hashing.encode_run(run);
        let note = match &encoded.note {
            Some((hash, json)) => {
                secure(tx, hash, json, &mut self.secured).await?;
                Some(hash.as_str())
            }
            None => None,
        };
        let st = tx
            .prepare_cached(
                "INSERT INTO runs (id, runbook, status, cause, active, awaits_verdict, note, record) \
                 VALUES ($1, $2, $3, $4, COALESCE($5::boolean, $9::boolean), COALESCE($6::boolean, false), $7, $8::text::json) \
                 ON CONFLICT (id) DO UPDATE SET runbook = excluded.runbook, \
                 status = excluded.status, cause = excluded.cause, \
                 active = COALESCE($5::boolean, runs.active), \
                 awaits_verdict = COALESCE($6::boolean, runs.awaits_verdict), \
                 note = excluded.note, record = excluded.record",
            )
            .await?;
        let unended = !run.status.is_final();
        tx.execute(
            &st,
            &[
                &run.id.0,
                &run.runbook,
                &status_name(run.status),
                &run.cause.kind(),
                &active,
                &awaits,
                &note,
                &encoded.record,
                &unended,
            ],
        )
        .await?;
        Ok(())
    }

    /// The run `id` locked, complete (its notification in): None when there is no such run.
    pub async fn lock_run(
        &self,
        tx: &impl GenericClient,
        id: &RunId,
    ) -> Result<Option<RunRecord>, Fail> {
        let st = tx
            .prepare_cached("SELECT record::text FROM runs WHERE id = $1 FOR UPDATE")
            .await?;
        let Some(row) = tx.query_opt(&st, &[&id.0]).await? else {
            return Ok(None);
        };
        let text: String = row.try_get(0)?;
        let mut run: RunRecord = decode(&format!("run {}", id.0), &text)?;
        self.notes.rehydrate(tx, &id.0, &mut run).await?;
        Ok(Some(run))
    }

    /// Records a finished run: its record, no longer active, awaiting its verdict or not, and
    /// its rollups unless an earlier finish counted it (it was final already, other than
    /// skipped: what the sled store counts once).
    pub async fn finish(&mut self, tx: &impl GenericClient, run: &RunRecord) -> Result<(), Fail> {
        let mut batch = rollups::Batch::default();
        self.finish_in(tx, run, &mut batch).await?;
        batch.apply(tx).await
    }

    /// [`Writer::finish`] whose rollups go into `batch`, for the caller to apply once for many
    /// runs (in the order that keeps concurrent batches from deadlocking).
    pub async fn finish_in(
        &mut self,
        tx: &impl GenericClient,
        run: &RunRecord,
        batch: &mut rollups::Batch,
    ) -> Result<(), Fail> {
        let st = tx
            .prepare_cached("SELECT status FROM runs WHERE id = $1 FOR UPDATE")
            .await?;
        let already_final = match tx.query_opt(&st, &[&run.id.0]).await? {
            Some(row) => {
                let name: String = row.try_get(0)?;
                let s = status_of(&format!("run {}", run.id.0), &name)?;
                s.is_final() && s != RunStatus::Skipped
            }
            None => false,
        };
        let awaits = run.awaits_verdict();
        self.put_run(tx, run, Some(false), Some(awaits)).await?;
        if !already_final && let Some((key, part)) = Rollup::of_run(run) {
            batch.add(&run.id.0, &key, &part);
        }
        Ok(())
    }

    /// Applies `change` to run `id` if it is in one of the statuses `from`; a change that ends
    /// it is a finish.
    pub async fn transition(
        &mut self,
        tx: &impl GenericClient,
        id: &RunId,
        from: &[RunStatus],
        change: &Change,
    ) -> Result<Transition, Fail> {
        let Some(mut run) = self.lock_run(tx, id).await? else {
            return Ok(Transition::Missing);
        };
        if !from.contains(&run.status) {
            return Ok(Transition::Refused(run.status));
        }
        change(&mut run);
        if run.status.is_final() {
            self.finish(tx, &run).await?;
        } else {
            self.put_run(tx, &run, Some(true), None).await?;
        }
        Ok(Transition::Done(Box::new(run)))
    }

    /// Records a run's first verification verdict, its credit as the verdict makes it and, for
    /// a finished run, its rollups changed to match; a run with a verdict keeps it.
    pub async fn verdict(
        &mut self,
        tx: &impl GenericClient,
        id: &RunId,
        verification: &Verification,
    ) -> Result<Transition, Fail> {
        let Some(old) = self.lock_run(tx, id).await? else {
            return Ok(Transition::Missing);
        };
        if old.verification.is_some() {
            return Ok(Transition::Refused(old.status));
        }
        let run = with_verdict(&old, verification);
        self.put_run(tx, &run, None, Some(false)).await?;
        if old.status.is_final() {
            if let Some((k, part)) = Rollup::of_run(&old) {
                rollups::add(tx, &id.0, &k, &part, true).await?;
            }
            if let Some((k, part)) = Rollup::of_run(&run) {
                rollups::add(tx, &id.0, &k, &part, false).await?;
            }
        }
        Ok(Transition::Done(Box::new(run)))
    }
}

/// The guard state of (runbook, key), its row locked (created without a state when missing,
/// so that the lock exists for a key never written).
pub async fn lock_guard(
    tx: &impl GenericClient,
    runbook: &str,
    key: &str,
) -> Result<KeyState, Fail> {
    let select = tx
        .prepare_cached("SELECT state::text FROM guards WHERE runbook = $1 AND key = $2 FOR UPDATE")
        .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO guards (runbook, key, state) VALUES ($1, $2, NULL) \
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let kb = key.as_bytes();
    for _ in 0..LOCK_TRIES {
        if let Some(row) = tx.query_opt(&select, &[&runbook, &kb]).await? {
            let state: Option<String> = row.try_get(0)?;
            return match state {
                Some(s) => decode(&format!("guard {runbook} {key}"), &s),
                None => Ok(KeyState::default()),
            };
        }
        tx.execute(&insert, &[&runbook, &kb]).await?;
    }
    Err(Fail::Contended(format!("guard {runbook} {key}")))
}

/// Stores a guard state (its row locked by [`lock_guard`]).
pub async fn put_guard(
    tx: &impl GenericClient,
    runbook: &str,
    key: &str,
    state: &KeyState,
) -> Result<(), Fail> {
    let st = tx
        .prepare_cached("UPDATE guards SET state = $3::text::json WHERE runbook = $1 AND key = $2")
        .await?;
    tx.execute(&st, &[&runbook, &key.as_bytes(), &encode(state)])
        .await?;
    Ok(())
}

/// Applies `update` to the guard state of (runbook, key).
pub async fn update_guard(
    tx: &impl GenericClient,
    runbook: &str,
    key: &str,
    update: &Update,
) -> Result<GuardChanged, Fail> {
    let before = lock_guard(tx, runbook, key).await?;
    let after = update(&before);
    if after != before {
        put_guard(tx, runbook, key, &after).await?;
    }
    Ok(GuardChanged { before, after })
}
