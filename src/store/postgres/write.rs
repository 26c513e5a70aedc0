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
use crate::store::postgres::rows::{decode, encode, status_name, status_of};
use crate::store::postgres::tx::{Fail, LOCK_TRIES};
use crate::store::postgres::{lease, rollups};
use crate::store::rules::with_verdict;
use crate::store::{Change, GuardChanged, Transition, Update};

/// What one transaction's writes share: the notifications encoded and secured so far.
pub struct Writer<'a> {
    /// Decoded notifications, to give records out whole.
    pub notes: &'a Notes,
    /// Notifications hashed in this call.
    pub hashing: Hashing,
    /// Notifications this transaction has locked or stored, or that a run row it locked refers
    /// to: a record written with one needs no lock of it ([`crate::store::postgres::notes`]).
    pub secured: HashSet<String>,
    /// The replica whose claims, queue and approvals [`Writer::put_run`] records as it writes
    /// a record (None: who holds a run unended is left as it is).
    holder: Option<&'a str>,
}

/// The `lease_owner` and `admitted_by` a record is written with ([`Writer::put_run`]); a
/// `keep_` flag keeps what an existing row says instead.
struct Hold<'a> {
    lease_owner: Option<&'a str>,
    admitted_by: Option<&'a str>,
    keep_lease: bool,
    keep_admitted: bool,
}

impl<'a> Writer<'a> {
    /// A writer for one attempt of a transaction.
    pub fn new(notes: &'a Notes) -> Writer<'a> {
        Writer::holding(notes, None)
    }

    /// A writer whose records say that `replica` holds the runs it leaves unended: a claim
    /// takes the run's lease (refused unless `replica`'s own lease is live), a run queued or
    /// waiting for approval is in `replica`'s queue ([`Writer::put_run`]).
    pub fn holding(notes: &'a Notes, replica: Option<&'a str>) -> Writer<'a> {
        Writer {
            notes,
            hashing: Hashing::default(),
            secured: HashSet::new(),
            holder: replica,
        }
    }

    /// Writes a run record (and its notification when the store lacks it). `active`: whether
    /// the run is unended (None keeps what the row says, or the status decides for a new row);
    /// `awaits`: whether it waits for a verification verdict (None keeps it).
    ///
    /// Who holds the run is written in the same statement (a second `UPDATE` of the row cost
    /// a row version, index entries and a round trip per write): an ended run is held by no one;
    /// with a holder ([`Writer::holding`]) a running run is its lease's, checked live first, and
    /// a queued or waiting one is in its queue; otherwise the row keeps what it said.
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
        let hold = self.hold(tx, run).await?;
        let st = tx
            .prepare_cached(
                "INSERT INTO runs (id, runbook, status, cause, active, awaits_verdict, note, record, \
                 lease_owner, admitted_by) \
                 VALUES ($1, $2, $3, $4, COALESCE($5::boolean, $9::boolean), COALESCE($6::boolean, false), $7, $8::text::json, \
                 $10, $11) \
                 ON CONFLICT (id) DO UPDATE SET runbook = excluded.runbook, \
                 status = excluded.status, cause = excluded.cause, \
                 active = COALESCE($5::boolean, runs.active), \
                 awaits_verdict = COALESCE($6::boolean, runs.awaits_verdict), \
                 note = excluded.note, record = excluded.record, \
                 lease_owner = CASE WHEN $12 THEN runs.lease_owner ELSE excluded.lease_owner END, \
                 admitted_by = CASE WHEN $13 THEN runs.admitted_by ELSE excluded.admitted_by END",
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
                &hold.lease_owner,
                &hold.admitted_by,
                &hold.keep_lease,
                &hold.keep_admitted,
            ],
        )
        .await?;
        Ok(())
    }

    /// Who holds `run` once this write is done ([`Writer::put_run`]); a claim by a replica
    /// whose own lease expired is refused ([`StoreError::LeaseLost`]).
    ///
    /// [`StoreError::LeaseLost`]: crate::store::error::StoreError::LeaseLost
    async fn hold(&self, tx: &impl GenericClient, run: &RunRecord) -> Result<Hold<'a>, Fail> {
        let nobody = Hold {
            lease_owner: None,
            admitted_by: None,
            keep_lease: false,
            keep_admitted: false,
        };
        Ok(match (run.status, self.holder) {
            (s, _) if s.is_final() => nobody,
            (RunStatus::Running, Some(me)) => {
                if !lease::live(tx, me).await? {
                    return Err(lease::lost(&run.id, me));
                }
                Hold {
                    lease_owner: Some(me),
                    ..nobody
                }
            }
            (RunStatus::Queued | RunStatus::PendingApproval, Some(me)) => Hold {
                admitted_by: Some(me),
                keep_lease: true,
                ..nobody
            },
            _ => Hold {
                keep_lease: true,
                keep_admitted: true,
                ..nobody
            },
        })
    }

    /// The run `id` locked, complete (its notification in): None when there is no such run.
    pub async fn lock_run(
        &mut self,
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
        let held = run.alert.as_ref().and_then(|a| a.notification_ref.clone());
        self.notes.rehydrate(tx, &id.0, &mut run).await?;
        self.held(held);
        Ok(Some(run))
    }

    /// A row this transaction locked refers to notification `hash`: it stays stored until the
    /// transaction ends (the foreign key), so a record written with it needs no lock of it (a
    /// row that starts referring to it gets PostgreSQL's foreign key check, which locks it).
    fn held(&mut self, hash: Option<String>) {
        if let Some(h) = hash {
            self.secured.insert(h);
        }
    }

    /// Records a finished run: its record, no longer active, awaiting its verdict or not, and
    /// its rollups unless an earlier finish counted it (it was final already, other than
    /// skipped: what the sled store counts once).
    pub async fn finish(&mut self, tx: &impl GenericClient, run: &RunRecord) -> Result<(), Fail> {
        self.finish_fenced(tx, run, None).await
    }

    /// [`Writer::finish`], by replica `fence` when given: refused ([`lease::fence`]) unless it
    /// holds the run's lease and that lease is live.
    pub async fn finish_fenced(
        &mut self,
        tx: &impl GenericClient,
        run: &RunRecord,
        fence: Option<&str>,
    ) -> Result<(), Fail> {
        let mut batch = rollups::Batch::default();
        self.finish_in(tx, run, &mut batch, fence).await?;
        batch.apply(tx).await
    }

    /// [`Writer::finish`] whose rollups go into `batch`, for the caller to apply once for many
    /// runs (in the order that keeps concurrent batches from deadlocking); fenced for replica
    /// `fence` as [`Writer::finish_fenced`] is.
    pub async fn finish_in(
        &mut self,
        tx: &impl GenericClient,
        run: &RunRecord,
        batch: &mut rollups::Batch,
        fence: Option<&str>,
    ) -> Result<(), Fail> {
        let st = tx
            .prepare_cached("SELECT status, note, lease_owner FROM runs WHERE id = $1 FOR UPDATE")
            .await?;
        let row = tx.query_opt(&st, &[&run.id.0]).await?;
        if let Some(me) = fence {
            let owner: Option<String> = match &row {
                Some(r) => r.try_get(2)?,
                None => None,
            };
            lease::fence(tx, me, &run.id, owner.as_deref()).await?;
        }
        let already_final = match row {
            Some(row) => {
                let name: String = row.try_get(0)?;
                let s = status_of(&format!("run {}", run.id.0), &name)?;
                self.held(row.try_get(1)?);
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
