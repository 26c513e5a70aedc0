//! The store on PostgreSQL, shared by the daemons of a fleet: the sled store's semantics (see
//! [`crate::store::Store`]) kept in tables ([`schema`] says which).
//!
//! Every operation is one transaction from the pool, committed before it returns (durability is
//! the database's: a commit is on its WAL). Decisions are made in Rust between
//! `SELECT ... FOR UPDATE` and the write ([`write`]); deadlocks and serialization failures run
//! the transaction again ([`tx`]). Step progress rewrites the running run's record in a short
//! transaction of its own, so a read of a running run shows it.
//!
//! A daemon of a fleet uses the store as a replica ([`PgStore::join`]): its claims take a run's
//! lease and its writes of a running run are fenced by it ([`lease`]), and it takes over what
//! dead replicas left ([`reap`]). Replicas tell each other to cancel and forward runs by NOTIFY
//! ([`signal`]). CLI commands open the store without joining.

pub mod admit;
pub mod compact;
pub mod import;
pub mod lease;
pub mod maintain;
pub mod notes;
pub mod packed;
pub mod read;
pub mod reap;
pub mod rollups;
pub mod rows;
pub mod schema;
pub mod signal;
pub mod tx;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::guard::KeyState;
use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::id::RunId;
use crate::run::record::{RunRecord, Verification};
use crate::run::status::RunStatus;
use crate::run::step::StepResult;
use crate::store::error::StoreError;
use crate::store::postgres::notes::Notes;
use crate::store::postgres::rows::{Progress, decode, encode};
use crate::store::postgres::schema::Migrated;
use crate::store::postgres::tx::{Fail, backend, in_tx, no_connection};
use crate::store::postgres::write::{Writer, update_guard};
use crate::store::{
    Admitted, AlertReceived, Candidate, Change, Delivery, GuardChanged, GuardOf, Reconciled,
    Result, RunFilter, Store, Transition, Update,
};
use crate::trigger::key::{Episode, Fire};

/// The PostgreSQL-backed store.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
    /// This daemon's replica id once it joined the fleet (None: a CLI command's store).
    replica: Option<Arc<str>>,
}

struct Inner {
    pool: deadpool_postgres::Pool,
    /// The database's URL without its password, where the sled store names its directory.
    name: String,
    migrated: Migrated,
    notes: Notes,
}

impl Inner {
    /// A connection from the pool.
    async fn client(&self, what: &str) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| no_connection(&self.name, what, &e))
    }
}

impl PgStore {
    /// Opens the store in the database `pool` connects to, creating its tables the first time
    /// and migrating them to the current schema version under an advisory lock (replicas
    /// starting together migrate once). `name` is the database's URL without its password
    /// (`postgres://user@host:port/db`), used in errors.
    pub async fn open(pool: deadpool_postgres::Pool, name: String) -> Result<PgStore> {
        let mut client = pool
            .get()
            .await
            .map_err(|e| no_connection(&name, "opening the store", &e))?;
        let what = "migrating the store's schema";
        let tx = client
            .transaction()
            .await
            .map_err(|e| backend(&name, what, &e))?;
        let migrated = match schema::migrate(&tx, &name).await {
            Ok(m) => m,
            Err(e) => return Err(e.into_store(&name, what)),
        };
        tx.commit().await.map_err(|e| backend(&name, what, &e))?;
        drop(client);
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                name,
                migrated,
                notes: Notes::default(),
            }),
            replica: None,
        })
    }

    /// This store as a new replica of the fleet, on `host` as process `pid`, with a lease of
    /// `ttl` from now that [`PgStore::renew`] must extend before it expires.
    pub async fn join(&self, host: &str, pid: u32, ttl: Duration) -> Result<PgStore> {
        let id = ulid::Ulid::new().to_string();
        let pid = i32::try_from(pid).unwrap_or(i32::MAX);
        let s = &*self.inner;
        in_tx!(s, "registering this daemon as a replica", |tx| {
            lease::register(&tx, &id, host, pid, ttl).await
        })?;
        Ok(PgStore {
            inner: self.inner.clone(),
            replica: Some(id.into()),
        })
    }

    /// This replica's id (None: the store of a CLI command).
    pub fn replica(&self) -> Option<&str> {
        self.replica.as_deref()
    }

    /// The replica id, or an error saying that only a replica may do `what`.
    fn me(&self, what: &str) -> Result<&str> {
        self.replica.as_deref().ok_or_else(|| StoreError::Backend {
            path: self.inner.name.clone(),
            reason: format!("{what}: this store did not join the fleet as a replica (a bug)"),
        })
    }

    /// Extends this replica's lease to `ttl` from now (the database's clock). False when it had
    /// expired: it is not renewed, and the replica must stop its steps and stop. `conn` is the
    /// heartbeat's own connection, kept between renewals (taken from the pool when missing or
    /// closed): a pool that requests keep busy must never delay a renewal into a fence.
    pub async fn renew(
        &self,
        conn: &mut Option<deadpool_postgres::Object>,
        ttl: Duration,
    ) -> Result<bool> {
        let me = self.me("renewing the lease")?;
        let what = "renewing this replica's lease";
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            *conn = Some(self.inner.client(what).await?);
        }
        let Some(c) = conn.as_ref() else {
            return Ok(false);
        };
        let renewed = lease::renew(c, me, ttl).await;
        renewed.map_err(|e| {
            // A failed connection is not reused.
            *conn = None;
            e.into_store(&self.inner.name, what)
        })
    }

    /// Ends this replica's lease now (a clean stop, after its runs ended): the others adopt
    /// its queued and waiting runs at their next reaping.
    pub async fn leave(&self) -> Result<()> {
        let me = self.me("leaving the fleet")?;
        let s = &*self.inner;
        in_tx!(s, "ending this replica's lease", |tx| lease::leave(&tx, me)
            .await)
    }

    /// Lets go of the runs waiting in this replica's queue or for approval here, once it stops
    /// taking work (see [`lease::disown`]). Returns how many.
    pub async fn disown(&self) -> Result<u64> {
        let me = self.me("letting go of queued runs")?;
        let s = &*self.inner;
        in_tx!(s, "letting go of this replica's queued runs", |tx| {
            lease::disown(&tx, me).await
        })
    }

    /// Finished alert runs awaiting their verification verdict (a replica starting re-arms the
    /// end of their windows; the first verdict recorded stands, so replicas that arm the same
    /// window agree).
    pub async fn awaiting_verdict(&self) -> Result<Vec<RunRecord>> {
        let what = "reading runs awaiting a verdict";
        let c = self.inner.client(what).await?;
        let runs = read::list_awaiting_verdict(&c, &self.inner.notes)
            .await
            .map_err(|e| e.into_store(&self.inner.name, what))?;
        Ok(runs.into_iter().filter(|r| r.awaits_verdict()).collect())
    }

    /// Takes over what replicas whose lease expired left (see [`reap::reap`]): their running
    /// runs ended by `interrupt` (returned as `interrupted`), their queued and waiting runs
    /// adopted by this replica (returned to be queued and waited on).
    pub async fn reap(&self, interrupt: Change) -> Result<Reconciled> {
        let me = self.me("reaping")?;
        let s = &*self.inner;
        in_tx!(s, "taking over the runs of dead replicas", |tx| {
            let mut w = Writer::new(&s.notes);
            reap::reap(&tx, &mut w, me, &interrupt).await
        })
    }

    /// Sums the shard rows of rollup groups whose day or month is over into one row each (see
    /// [`compact`]), in rounds of one transaction; returns how many groups it compacted.
    pub async fn compact(&self, today: chrono::NaiveDate) -> Result<u64> {
        let s = &*self.inner;
        let mut total = 0;
        for table in [rollups::Table::Daily, rollups::Table::Monthly] {
            let mut after: compact::After = None;
            loop {
                let start = after.clone();
                let (n, next) = in_tx!(s, "compacting rollups", |tx| {
                    compact::round(&tx, table, today, &start).await
                })?;
                total += n;
                match next {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
        }
        Ok(total)
    }

    /// What opening found of the schema version, and the version now.
    pub fn migrated(&self) -> &Migrated {
        &self.inner.migrated
    }

    /// The database's name in messages (its URL without a password).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A step event applied to run `id`'s record if it is running (progress of a run that
    /// ended is ignored, as the sled store ignores it on read).
    async fn progress(&self, id: &RunId, event: Progress<'_>) -> Result<()> {
        let s = &*self.inner;
        in_tx!(s, "recording a step's progress", |tx| {
            // Progress need not be durable on its own (the contract): its commit does not wait
            // for the WAL flush, and the next durable commit flushes it with its own.
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .await?;
            let st = tx
                .prepare_cached(
                    "SELECT record::text, lease_owner FROM runs WHERE id = $1 FOR UPDATE",
                )
                .await?;
            let row = tx.query_opt(&st, &[&id.0]).await?;
            // A replica records only the progress of a run it holds the lease of.
            if let Some(me) = self.replica() {
                let owner: Option<String> = match &row {
                    Some(r) => r.try_get(1)?,
                    None => None,
                };
                lease::fence(&tx, me, id, owner.as_deref()).await?;
            }
            let Some(row) = row else {
                return Ok(());
            };
            let text: String = row.try_get(0)?;
            // Decoded with its notification ref, written back with it: no notification work.
            let mut run: RunRecord = decode(&format!("run {}", id.0), &text)?;
            if run.status != RunStatus::Running {
                return Ok(());
            }
            event.apply(&mut run);
            let up = tx
                .prepare_cached("UPDATE runs SET record = $2::text::json WHERE id = $1")
                .await?;
            tx.execute(&up, &[&id.0, &encode(&run)]).await?;
            Ok::<(), Fail>(())
        })
    }

    /// Admission, with a delivery to claim first when there is one (None: refused).
    async fn admit_with(
        &self,
        delivery: Option<&Delivery>,
        candidates: &[Candidate],
        alerts: &[AlertReceived],
    ) -> Result<Option<Vec<Admitted>>> {
        let s = &*self.inner;
        in_tx!(s, "admitting runs", |tx| {
            if let Some(d) = delivery
                && !admit::claim_delivery(&tx, d).await?
            {
                return Ok(None);
            }
            for a in alerts {
                admit::put_alert(&tx, a).await?;
            }
            // A replica's new runs wait in its own queue (or for approval here).
            let mut w = Writer::holding(&s.notes, self.replica());
            let admitted = admit::admit(&tx, &mut w, candidates).await?;
            Ok::<_, Fail>(Some(admitted))
        })
    }
}

#[async_trait]
impl Store for PgStore {
    fn id(&self) -> &str {
        &self.inner.migrated.store_id
    }

    async fn admit(
        &self,
        candidates: Vec<Candidate>,
        alerts: Vec<AlertReceived>,
    ) -> Result<Vec<Admitted>> {
        Ok(self
            .admit_with(None, &candidates, &alerts)
            .await?
            .unwrap_or_default())
    }

    async fn admit_delivery(
        &self,
        delivery: Delivery,
        candidates: Vec<Candidate>,
        alerts: Vec<AlertReceived>,
    ) -> Result<Option<Vec<Admitted>>> {
        self.admit_with(Some(&delivery), &candidates, &alerts).await
    }

    async fn transition(
        &self,
        id: &RunId,
        from: &[RunStatus],
        change: Change,
    ) -> Result<Transition> {
        let s = &*self.inner;
        in_tx!(s, "changing a run's status", |tx| {
            // A replica's claim takes the run's lease (refused when its own lease expired);
            // a run it queues or makes wait is held by it; an ended run by no one.
            let mut w = Writer::holding(&s.notes, self.replica());
            w.transition(&tx, id, from, &change).await
        })
    }

    async fn step_started(&self, id: &RunId, step: &str, pgid: Option<u32>) -> Result<()> {
        self.progress(id, Progress::Started(step, pgid)).await
    }

    async fn record_step(&self, id: &RunId, step: &StepResult) -> Result<()> {
        self.progress(id, Progress::Finished(step)).await
    }

    async fn finish(
        &self,
        run: RunRecord,
        guard: Option<GuardOf<Update>>,
    ) -> Result<Option<GuardChanged>> {
        let s = &*self.inner;
        in_tx!(s, "finishing a run", |tx| {
            // A replica finishes only a run it holds the lease of; the run is held by no one
            // then, as every ended run is.
            let mut w = Writer::new(&s.notes);
            w.finish_fenced(&tx, &run, self.replica()).await?;
            match &guard {
                Some(g) => Ok(Some(update_guard(&tx, &g.runbook, &g.key, &g.apply).await?)),
                None => Ok::<_, Fail>(None),
            }
        })
    }

    async fn finish_many(&self, runs: Vec<RunRecord>) -> Result<()> {
        let s = &*self.inner;
        in_tx!(s, "finishing runs", |tx| {
            let mut w = Writer::new(&s.notes);
            let mut batch = rollups::Batch::default();
            for run in &runs {
                w.finish_in(&tx, run, &mut batch, None).await?;
            }
            batch.apply(&tx).await
        })
    }

    async fn set_verified(&self, id: &RunId, verification: Verification) -> Result<bool> {
        let s = &*self.inner;
        let t = in_tx!(s, "recording a verification verdict", |tx| {
            let mut w = Writer::new(&s.notes);
            w.verdict(&tx, id, &verification).await
        })?;
        match t {
            Transition::Missing => Err(StoreError::NoSuchRun(id.0.clone())),
            Transition::Done(_) => Ok(true),
            Transition::Refused(_) => Ok(false),
        }
    }

    async fn update_guards(
        &self,
        runbook: &str,
        key: Option<&str>,
        update: Update,
    ) -> Result<Vec<(String, KeyState)>> {
        let s = &*self.inner;
        in_tx!(s, "updating guard states", |tx| {
            let st = tx
                .prepare_cached(
                    "SELECT key FROM guards WHERE runbook = $1 AND ($2::bytea IS NULL OR key = $2) \
                     AND state IS NOT NULL ORDER BY key",
                )
                .await?;
            let mut out = Vec::new();
            for row in tx.query(&st, &[&runbook, &key.map(str::as_bytes)]).await? {
                let k = rows::text_of("guard key", row.try_get(0)?)?;
                let changed = update_guard(&tx, runbook, &k, &update).await?;
                out.push((k, changed.after));
            }
            Ok::<_, Fail>(out)
        })
    }

    async fn reconcile(&self, interrupt: Change) -> Result<Reconciled> {
        let s = &*self.inner;
        in_tx!(s, "reconciling runs at start-up", |tx| {
            let mut w = Writer::new(&s.notes);
            maintain::reconcile(&tx, &mut w, &interrupt).await
        })
    }

    async fn runs_of_episode(&self, episode: &Episode) -> Result<Vec<RunId>> {
        let what = "reading an episode's runs";
        let c = self.inner.client(what).await?;
        read::runs_of_episode(&c, episode)
            .await
            .map_err(|e| e.into_store(&self.inner.name, what))
    }

    async fn episode_at_millis(
        &self,
        fingerprint: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<Option<Episode>> {
        let what = "finding an alert episode";
        let c = self.inner.client(what).await?;
        read::episode_at_millis(&c, fingerprint, starts_at)
            .await
            .map_err(|e| e.into_store(&self.inner.name, what))
    }

    async fn last_fire(&self, fire: &Fire) -> Result<Option<DateTime<Utc>>> {
        let what = "reading a schedule's last fire";
        let c = self.inner.client(what).await?;
        read::last_fire(&c, fire)
            .await
            .map_err(|e| e.into_store(&self.inner.name, what))
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>> {
        let what = "reading a run";
        let c = self.inner.client(what).await?;
        read::get_run(&c, &self.inner.notes, id)
            .await
            .map_err(|e| e.into_store(&self.inner.name, what))
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let what = "listing runs";
        let c = self.inner.client(what).await?;
        read::list_runs(&c, &self.inner.notes, filter)
            .await
            .map_err(|e| e.into_store(&self.inner.name, what))
    }

    async fn rollups(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        by_month: bool,
    ) -> Result<Vec<(RollupKey, Rollup)>> {
        let s = &*self.inner;
        // One snapshot for the daily and monthly reads of one report.
        in_tx!(s, "reading rollups", |tx| read::rollups(
            &tx, from, to, by_month
        )
        .await)
    }

    async fn alerts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<AlertReceived>> {
        let what = "reading alert episodes";
        let c = self.inner.client(what).await?;
        read::alerts(&c, from, to)
            .await
            .map_err(|e| e.into_store(&self.inner.name, what))
    }

    async fn guard_states(&self) -> Result<Vec<(String, String, KeyState)>> {
        let what = "reading guard states";
        let c = self.inner.client(what).await?;
        read::guard_states(&c)
            .await
            .map_err(|e| e.into_store(&self.inner.name, what))
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<usize> {
        let s = &*self.inner;
        in_tx!(s, "pruning old runs", |tx| maintain::prune(&tx, before)
            .await)
    }

    async fn prune_deliveries(&self, now: DateTime<Utc>) -> Result<usize> {
        let s = &*self.inner;
        in_tx!(s, "pruning delivery records", |tx| {
            maintain::prune_deliveries(&tx, now).await
        })
    }

    async fn fleet_queued(&self) -> Result<Option<u64>> {
        // A CLI command's store admits nothing through a queue of its own.
        if self.replica.is_none() {
            return Ok(None);
        }
        let what = "counting the fleet's queued runs";
        let c = self.inner.client(what).await?;
        read::queued(&c)
            .await
            .map(Some)
            .map_err(|e| e.into_store(&self.inner.name, what))
    }
}
