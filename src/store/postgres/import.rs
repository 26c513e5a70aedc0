//! Importing another store's contents as they are (`untoil store copy`): runs, dedupe keys,
//! alert episodes, guard states, delivery records and rollups, written raw, never through the
//! decisions admission and finishing make (those already happened in the source).
//!
//! Every write is idempotent, so a second copy changes nothing and an interrupted one can be
//! run again: rows are inserted with `ON CONFLICT DO NOTHING` (a row already in the target,
//! copied earlier or moved on since by a daemon on the target, wins), and rollups are written
//! to one dedicated shard, [`IMPORT_SHARD`], with an upsert that replaces its counters by the
//! source's, so copying twice never adds them twice. Reads sum every shard of a group, so the
//! copied counters and what daemons on the target add later (shards 0 to `SHARDS - 1`) simply
//! add up.
//!
//! One exception keeps verdicts right: a copied run still awaiting its verification verdict has
//! its contribution in the run's own shard (added once, in the transaction that inserts the run)
//! and held out of the import shard by the caller, because a later verdict takes the run's old
//! contribution out of that shard ([`crate::store::postgres::write::Writer::verdict`]).

use deadpool_postgres::GenericClient;

use crate::guard::KeyState;
use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::store::counts::Counts;
use crate::store::postgres::PgStore;
use crate::store::postgres::notes::{Hashing, secure};
use crate::store::postgres::rollups;
use crate::store::postgres::rows::{encode, nanos, status_name};
use crate::store::postgres::tx::{Fail, in_tx};
use crate::store::rules::first_of_month;
use crate::store::{AlertReceived, Delivery, Result};
use crate::trigger::key::stamp;

/// The rollup shard copied counters live in: outside the run shards (0 to `SHARDS - 1`), so no
/// finish on the target ever writes it and a copy can replace it whole.
pub const IMPORT_SHARD: i16 = -1;

/// The `untoil_meta` key naming the store a database was copied from.
const COPIED_FROM: &str = "copied_from";

/// The advisory lock a copy holds while it claims a database ("untoil", then 0x10: apart from
/// the migration lock, 1, and the one-daemon lock, 2, so a daemon serving the database does not
/// make a copy wait forever; the claim refuses a database in use by its data instead).
const COPY_LOCK: i64 = 0x756e_746f_696c_0010;

/// Whether a database may receive a copy of a source store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Empty, or a copy of this same source already (a re-run): go on.
    Granted,
    /// A copy of another store: copying a second store's rollups would replace the first's.
    OtherSource(String),
    /// It holds runs or rollups of its own (daemons use it): they would mix with the copy's
    /// and the totals could no longer be checked.
    InUse,
}

/// Which rollup table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// `rollups_daily`.
    Daily,
    /// `rollups_monthly` (groups keyed by the month's first day).
    Monthly,
}

impl Period {
    fn table(self) -> &'static str {
        match self {
            Period::Daily => "rollups_daily",
            Period::Monthly => "rollups_monthly",
        }
    }
}

/// What a finished run still awaiting its verdict contributes to the rollups, in the daily and
/// the monthly group: held out of the import shard (see the module documentation). None for any
/// other run.
pub fn awaiting_contribution(run: &RunRecord) -> Option<(RollupKey, RollupKey, Rollup)> {
    if !awaits_verdict(run) {
        return None;
    }
    let (day, part) = Rollup::of_run(run)?;
    let month = RollupKey {
        day: first_of_month(day.day),
        ..day.clone()
    };
    Some((day, month, part))
}

/// Whether a run waits for its verification verdict (as `Writer::finish` marks it).
fn awaits_verdict(run: &RunRecord) -> bool {
    run.status.is_final() && run.awaits_verdict()
}

impl PgStore {
    /// Claims the database for a copy of store `source` (its id), recording it in
    /// `untoil_meta` so that a re-run of the same copy is recognised; refuses a database that
    /// is a copy of another store or holds data of its own.
    pub async fn import_claim(&self, source: &str) -> Result<Claim> {
        let s = &*self.inner;
        in_tx!(s, "claiming the database for a copy", |tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&COPY_LOCK])
                .await?;
            let from: Option<String> = tx
                .query_opt(
                    "SELECT value FROM untoil_meta WHERE key = $1",
                    &[&COPIED_FROM],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            match from {
                Some(id) if id == source => return Ok(Claim::Granted),
                Some(id) => return Ok(Claim::OtherSource(id)),
                None => {}
            }
            let used: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM runs) OR EXISTS (SELECT 1 FROM rollups_daily) \
                     OR EXISTS (SELECT 1 FROM rollups_monthly) OR EXISTS (SELECT 1 FROM alerts) \
                     OR EXISTS (SELECT 1 FROM dedupe) OR EXISTS (SELECT 1 FROM deliveries) \
                     OR EXISTS (SELECT 1 FROM guards WHERE state IS NOT NULL)",
                    &[],
                )
                .await?
                .try_get(0)?;
            if used {
                return Ok(Claim::InUse);
            }
            tx.execute(
                "INSERT INTO untoil_meta (key, value) VALUES ($1, $2)",
                &[&COPIED_FROM, &source],
            )
            .await?;
            Ok::<_, Fail>(Claim::Granted)
        })
    }

    /// Inserts the runs the target lacks, as they are (status, progress, verdict state), each
    /// with its notification stored once; one transaction. A run awaiting its verdict adds its
    /// contribution to its own rollup shard when inserted. Returns how many were new.
    pub async fn import_runs(&self, runs: &[RunRecord]) -> Result<u64> {
        let s = &*self.inner;
        in_tx!(s, "copying runs", |tx| {
            let insert = tx
                .prepare_cached(
                    "INSERT INTO runs (id, runbook, status, cause, active, awaits_verdict, note, record) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::json) \
                     ON CONFLICT (id) DO NOTHING RETURNING 1",
                )
                .await?;
            let mut hashing = Hashing::default();
            let mut secured = std::collections::HashSet::new();
            let mut new = 0;
            for run in runs {
                let encoded = hashing.encode_run(run);
                let note = match &encoded.note {
                    Some((hash, json)) => {
                        secure(&tx, hash, json, &mut secured).await?;
                        Some(hash.as_str())
                    }
                    None => None,
                };
                let active = !run.status.is_final();
                let awaits = awaits_verdict(run);
                let inserted = tx
                    .query_opt(
                        &insert,
                        &[
                            &run.id.0,
                            &run.runbook,
                            &status_name(run.status),
                            &run.cause.kind(),
                            &active,
                            &awaits,
                            &note,
                            &encoded.record,
                        ],
                    )
                    .await?;
                if inserted.is_none() {
                    continue;
                }
                new += 1;
                if let Some((key, _, part)) = awaiting_contribution(run) {
                    rollups::add(&tx, &run.id.0, &key, &part, false).await?;
                }
            }
            Ok::<_, Fail>(new)
        })
    }

    /// Inserts the dedupe entries (encoded key, run id) the target lacks. Returns how many.
    pub async fn import_dedupe(&self, entries: &[(Vec<u8>, RunId)]) -> Result<u64> {
        let s = &*self.inner;
        in_tx!(s, "copying dedupe keys", |tx| {
            let st = tx
                .prepare_cached(
                    "INSERT INTO dedupe (key, run_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .await?;
            let mut new = 0;
            for (key, id) in entries {
                new += tx.execute(&st, &[key, &id.0]).await?;
            }
            Ok::<_, Fail>(new)
        })
    }

    /// Inserts the alert episodes the target lacks, with their first receipt (which `alerts`
    /// lists them by). Returns how many.
    pub async fn import_alerts(&self, alerts: &[AlertReceived]) -> Result<u64> {
        let s = &*self.inner;
        in_tx!(s, "copying alert episodes", |tx| {
            let st = tx
                .prepare_cached(
                    "INSERT INTO alerts (fingerprint, stamp, received_ns, record) \
                     VALUES ($1, $2, $3, $4::text::json) ON CONFLICT DO NOTHING",
                )
                .await?;
            let mut new = 0;
            for a in alerts {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
                    &a.fingerprint.as_bytes(),
                    &stamp(a.starts_at),
                    &nanos(a.received_at),
                    &encode(a),
                ];
                new += tx.execute(&st, &params).await?;
            }
            Ok::<_, Fail>(new)
        })
    }

    /// Stores the guard states of keys the target has none for (a row without a state is only
    /// a lock). Returns how many.
    pub async fn import_guards(&self, guards: &[(String, String, KeyState)]) -> Result<u64> {
        let s = &*self.inner;
        in_tx!(s, "copying guard states", |tx| {
            let st = tx
                .prepare_cached(
                    "INSERT INTO guards (runbook, key, state) VALUES ($1, $2, $3::text::json) \
                     ON CONFLICT (runbook, key) DO UPDATE SET state = excluded.state \
                     WHERE guards.state IS NULL",
                )
                .await?;
            let mut new = 0;
            for (runbook, key, state) in guards {
                new += tx
                    .execute(&st, &[runbook, &key.as_bytes(), &encode(state)])
                    .await?;
            }
            Ok::<_, Fail>(new)
        })
    }

    /// Inserts the signed-webhook delivery records the target lacks. Returns how many.
    pub async fn import_deliveries(&self, deliveries: &[Delivery]) -> Result<u64> {
        let s = &*self.inner;
        in_tx!(s, "copying delivery records", |tx| {
            let st = tx
                .prepare_cached(
                    "INSERT INTO deliveries (source, id, expires_ns, record) \
                     VALUES ($1, $2, $3, $4::text::json) ON CONFLICT DO NOTHING",
                )
                .await?;
            let mut new = 0;
            for d in deliveries {
                new += tx
                    .execute(
                        &st,
                        &[
                            &d.source,
                            &d.id.as_bytes(),
                            &nanos(d.expires_at),
                            &encode(d),
                        ],
                    )
                    .await?;
            }
            Ok::<_, Fail>(new)
        })
    }

    /// Sets the import shard of each group of `period` to the counters given, replacing what
    /// an earlier copy wrote there (never adding to it).
    pub async fn import_rollups(
        &self,
        period: Period,
        groups: &[(RollupKey, Rollup)],
    ) -> Result<()> {
        let s = &*self.inner;
        let t = period.table();
        in_tx!(s, "copying rollups", |tx| {
            let st = tx
                .prepare_cached(&format!(
                    "INSERT INTO {t} (period, owner, service, runbook, cause, shard, counters, \
                     packed) VALUES ($1, $2, $3, $4, $5, $6, $7::text::json, $8) \
                     ON CONFLICT (period, owner, service, runbook, cause, shard) \
                     DO UPDATE SET counters = excluded.counters, packed = excluded.packed"
                ))
                .await?;
            for (k, r) in groups {
                let counters = rollups::Stored::of(r);
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                    &k.day,
                    &k.owner,
                    &k.service,
                    &k.runbook,
                    &k.cause,
                    &IMPORT_SHARD,
                    &counters.json,
                    &counters.packed,
                ];
                tx.execute(&st, &params).await?;
            }
            Ok::<(), Fail>(())
        })
    }

    /// How many runs, dedupe keys, alert episodes, guard states and delivery records the
    /// database holds.
    pub async fn import_counts(&self) -> Result<Counts> {
        let what = "counting the store's rows";
        let c = self.inner.client(what).await?;
        counts(&c)
            .await
            .map_err(|e| e.into_store(&self.inner.name, what))
    }
}

async fn counts(c: &impl GenericClient) -> std::result::Result<Counts, Fail> {
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM dedupe), \
             (SELECT count(*) FROM alerts), (SELECT count(*) FROM guards WHERE state IS NOT NULL), \
             (SELECT count(*) FROM deliveries)",
            &[],
        )
        .await?;
    let n = |i: usize| -> std::result::Result<u64, Fail> {
        Ok(row.try_get::<_, i64>(i)?.max(0) as u64)
    };
    Ok(Counts {
        runs: n(0)?,
        dedupe: n(1)?,
        alerts: n(2)?,
        guards: n(3)?,
        deliveries: n(4)?,
    })
}
