//! Rollups: daily and monthly counters of finished runs, kept in [`SHARDS`] rows per group
//! (shard picked from the run id) so that concurrent finishes of one runbook's runs lock
//! different rows instead of queueing on one; reads sum a group's shards with `Rollup::merge`.
//!
//! A row keeps its counters twice (schema 4): `packed` (`super::packed`), which this release
//! reads, and `counters` (JSON), which the previous release reads and writes, so both can serve
//! one database during a rolling upgrade. A trigger empties `packed` when an older untoil
//! changes `counters` alone; such a row is read from its JSON until it is written again.

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;

use crate::ledger::rollup::{Rollup, RollupKey};
use crate::store::postgres::packed;
use crate::store::postgres::rows::{decode, encode, shard};
use crate::store::postgres::tx::{Fail, LOCK_TRIES, corrupt};
use crate::store::rules::first_of_month;

/// Rows per rollup group. Fixed for the life of a store: a late verdict subtracts a run's
/// contribution from the shard it was added to, picked again from its id.
pub const SHARDS: u32 = 8;

/// The daily and monthly tables.
#[derive(Clone, Copy)]
pub enum Table {
    /// `rollups_daily`, by UTC day.
    Daily,
    /// `rollups_monthly`, by calendar month (its first day).
    Monthly,
}

impl Table {
    /// The table's name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Table::Daily => "rollups_daily",
            Table::Monthly => "rollups_monthly",
        }
    }

    /// The period a run's day falls in.
    fn period(self, day: NaiveDate) -> NaiveDate {
        match self {
            Table::Daily => day,
            Table::Monthly => first_of_month(day),
        }
    }
}

/// The columns a row's counters are read from, at the place of two in a `SELECT`: `packed`,
/// and the JSON only where `packed` is empty (a row an older untoil wrote last).
pub const COUNTERS: &str = "packed, CASE WHEN packed IS NULL THEN counters::text END";

/// A rollup as a row stores it: JSON for the previous release, packed for this one.
pub struct Stored {
    /// The `counters` column (bound as text, cast to `json` in SQL).
    pub json: String,
    /// The `packed` column.
    pub packed: Vec<u8>,
}

impl Stored {
    /// `r` in both forms.
    pub fn of(r: &Rollup) -> Stored {
        Stored {
            json: encode(r),
            packed: packed::pack(r),
        }
    }
}

/// The counters of a row read with [`COUNTERS`] at column `at` (and `at + 1`); `key` names the
/// row in an error, built only for a row that cannot be read.
pub fn of_row(
    row: &tokio_postgres::Row,
    at: usize,
    key: impl FnOnce() -> String,
) -> Result<Rollup, Fail> {
    if let Some(bytes) = row.try_get::<_, Option<&[u8]>>(at)? {
        return packed::unpack(bytes).map_err(|e| corrupt(key(), e));
    }
    match row.try_get::<_, Option<String>>(at + 1)? {
        Some(text) => decode(&key(), &text),
        None => Err(corrupt(key(), "no counters")),
    }
}

/// Adds run `id`'s contribution `part` to its daily and monthly groups, or takes it out
/// (`remove`, before a verdict's new contribution goes in).
pub async fn add(
    tx: &impl GenericClient,
    id: &str,
    key: &RollupKey,
    part: &Rollup,
    remove: bool,
) -> Result<(), Fail> {
    let s = shard(id, SHARDS);
    for table in [Table::Daily, Table::Monthly] {
        add_row(tx, table, key, s, part, remove).await?;
    }
    Ok(())
}

/// Contributions of many runs, summed per row, to be added at the end of their transaction.
///
/// Every writer locks rollup rows in one global order (all daily rows before all monthly ones,
/// each table's rows in key order; a single finish's one daily then one monthly row fits it),
/// so concurrent batches can wait for each other but never deadlock; and a batch of 1,000 runs
/// of a few runbooks updates a few rows instead of 2,000.
#[derive(Default)]
pub struct Batch {
    rows: std::collections::BTreeMap<(RollupKey, i16), Rollup>,
}

impl Batch {
    /// Adds run `id`'s contribution to the batch.
    pub fn add(&mut self, id: &str, key: &RollupKey, part: &Rollup) {
        self.rows
            .entry((key.clone(), shard(id, SHARDS)))
            .or_default()
            .merge(part);
    }

    /// Adds the batch to the tables, daily rows then monthly rows, each in key order.
    pub async fn apply(self, tx: &impl GenericClient) -> Result<(), Fail> {
        for (key, s) in self.rows.keys() {
            let part = &self.rows[&(key.clone(), *s)];
            add_row(tx, Table::Daily, key, *s, part, false).await?;
        }
        let mut monthly: std::collections::BTreeMap<(RollupKey, i16), Rollup> =
            std::collections::BTreeMap::new();
        for ((key, s), part) in self.rows {
            let month = RollupKey {
                day: first_of_month(key.day),
                ..key
            };
            monthly.entry((month, s)).or_default().merge(&part);
        }
        for ((key, s), part) in &monthly {
            add_row(tx, Table::Monthly, key, *s, part, false).await?;
        }
        Ok(())
    }
}

/// Adds `part` to (or takes it out of) one row of `table`: the group of `key` (its day, or
/// the month of its day), shard `s`.
async fn add_row(
    tx: &impl GenericClient,
    table: Table,
    key: &RollupKey,
    s: i16,
    part: &Rollup,
    remove: bool,
) -> Result<(), Fail> {
    {
        let t = table.name();
        let period = table.period(key.day);
        let select = tx
            .prepare_cached(&format!(
                "SELECT {COUNTERS} FROM {t} WHERE period = $1 AND owner = $2 AND service = $3 \
                 AND runbook = $4 AND cause = $5 AND shard = $6 FOR UPDATE"
            ))
            .await?;
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO {t} (period, owner, service, runbook, cause, shard, counters, packed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7::text::json, $8) ON CONFLICT DO NOTHING \
                 RETURNING 1"
            ))
            .await?;
        let update = tx
            .prepare_cached(&format!(
                "UPDATE {t} SET counters = $7::text::json, packed = $8 WHERE period = $1 \
                 AND owner = $2 AND service = $3 AND runbook = $4 AND cause = $5 AND shard = $6"
            ))
            .await?;
        let apply = |mut current: Rollup| {
            if remove {
                current.subtract(part);
            } else {
                current.merge(part);
            }
            Stored::of(&current)
        };
        // A missing row is inserted; one inserted meanwhile by another writer is then locked.
        let mut done = false;
        for _ in 0..LOCK_TRIES {
            let params_key: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
                &period,
                &key.owner,
                &key.service,
                &key.runbook,
                &key.cause,
                &s,
            ];
            if let Some(row) = tx.query_opt(&select, &params_key).await? {
                let counters = apply(of_row(&row, 0, || format!("rollup {t} {key:?}"))?);
                let mut params = params_key.to_vec();
                params.push(&counters.json);
                params.push(&counters.packed);
                tx.execute(&update, &params).await?;
                done = true;
                break;
            }
            let counters = apply(Rollup::default());
            let mut params = params_key.to_vec();
            params.push(&counters.json);
            params.push(&counters.packed);
            if tx.query_opt(&insert, &params).await?.is_some() {
                done = true;
                break;
            }
        }
        if !done {
            return Err(Fail::Contended(format!("rollup {t} {key:?}")));
        }
    }
    Ok(())
}

/// The groups of `table` whose period is in [from, to], in key order, their shards summed.
pub async fn read(
    c: &impl GenericClient,
    table: Table,
    from: NaiveDate,
    to: NaiveDate,
    out: &mut Vec<(RollupKey, Rollup)>,
) -> Result<(), Fail> {
    let t = table.name();
    let st = c
        .prepare_cached(&format!(
            "SELECT period, owner, service, runbook, cause, {COUNTERS} FROM {t} \
             WHERE period >= $1 AND period <= $2 \
             ORDER BY period, owner, service, runbook, cause"
        ))
        .await?;
    for row in c.query(&st, &[&from, &to]).await? {
        let key = RollupKey {
            day: row.try_get(0)?,
            owner: row.try_get(1)?,
            service: row.try_get(2)?,
            runbook: row.try_get(3)?,
            cause: row.try_get(4)?,
        };
        let part = of_row(&row, 5, || format!("rollup {t} {key:?}"))?;
        match out.last_mut() {
            Some((k, r)) if *k == key => r.merge(&part),
            _ => out.push((key, part)),
        }
    }
    Ok(())
}
