//! Compaction of rollups: a group's shard rows of a period that is over (a day before today, a
//! month before this one, UTC) are summed into its shard 0, so that reports read one row per
//! group instead of [`super::rollups::SHARDS`]. Sharding keeps concurrent finishes of today's runs
//! from queueing on one row; once a period is over, finishes rarely touch it and reads dominate.
//!
//! Exactness: a late verification verdict takes a run's old contribution out of the shard it
//! was added to, so a group with a run still awaiting its verdict is left as it is (until the
//! verdict lands). A late finish or a verdict's new contribution only adds, to a shard row
//! created again if compaction removed it; the next round folds it in. Copied rollups (shard
//! -1, replaced by each `store copy`) are never touched. Every replica may compact at any time,
//! concurrently: rows are locked in the order every writer locks them (key, then shard), and
//! each round is one transaction.
//!
//! A group whose row an older untoil wrote last (its `packed` column emptied, during a rolling
//! upgrade) is rewritten too, even alone, so that reads find it packed again.

use std::collections::HashSet;

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;

use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::record::RunRecord;
use crate::store::postgres::rollups::{COUNTERS, Stored, Table, of_row};
use crate::store::postgres::rows::decode;
use crate::store::postgres::tx::Fail;
use crate::store::rules::first_of_month;

/// Groups compacted per round (one transaction).
pub const ROUND: i64 = 200;

/// Where a round starts: after this group (keyset pagination), or at the first.
pub type After = Option<RollupKey>;

/// One round over `table`: up to [`ROUND`] groups of periods before `today`'s (day or month)
/// with more than one shard row (or a row not packed), after `after`. Returns how many groups it
/// compacted and the last group it looked at (None: there are no more).
pub async fn round(
    tx: &impl GenericClient,
    table: Table,
    today: NaiveDate,
    after: &After,
) -> Result<(u64, After), Fail> {
    let t = table.name();
    let cutoff = match table {
        Table::Daily => today,
        Table::Monthly => first_of_month(today),
    };
    // The first round starts at the first group (no date is before all: PostgreSQL's dates
    // start later than chrono's).
    let first = after.is_none();
    let start = after.clone().unwrap_or(RollupKey {
        day: cutoff,
        owner: String::new(),
        service: String::new(),
        runbook: String::new(),
        cause: String::new(),
    });
    let groups = tx
        .query(
            &format!(
                "SELECT period, owner, service, runbook, cause FROM {t} \
                 WHERE period < $1 AND shard >= 0 \
                 AND ($8 OR (period, owner, service, runbook, cause) > ($2, $3, $4, $5, $6)) \
                 GROUP BY period, owner, service, runbook, cause \
                 HAVING count(*) > 1 OR bool_or(packed IS NULL) \
                 ORDER BY period, owner, service, runbook, cause LIMIT $7"
            ),
            &[
                &cutoff,
                &start.day,
                &start.owner,
                &start.service,
                &start.runbook,
                &start.cause,
                &ROUND,
                &first,
            ],
        )
        .await?;
    let mut keys = Vec::with_capacity(groups.len());
    for row in &groups {
        keys.push(RollupKey {
            day: row.try_get(0)?,
            owner: row.try_get(1)?,
            service: row.try_get(2)?,
            runbook: row.try_get(3)?,
            cause: row.try_get(4)?,
        });
    }
    let Some(last) = keys.last().cloned() else {
        return Ok((0, None));
    };
    // Lock every group's rows first (in key and shard order, as finishes lock them): a finish
    // in flight commits before, and is then seen by the check of awaited verdicts below.
    let lock = tx
        .prepare_cached(&format!(
            "SELECT shard, {COUNTERS} FROM {t} WHERE period = $1 AND owner = $2 \
             AND service = $3 AND runbook = $4 AND cause = $5 AND shard >= 0 \
             ORDER BY shard FOR UPDATE"
        ))
        .await?;
    let mut locked = Vec::with_capacity(keys.len());
    for k in &keys {
        let rows = tx
            .query(&lock, &[&k.day, &k.owner, &k.service, &k.runbook, &k.cause])
            .await?;
        let mut sum = Rollup::default();
        let mut stale = false;
        for row in &rows {
            stale |= row.try_get::<_, Option<&[u8]>>(1)?.is_none();
            sum.merge(&of_row(row, 1, || {
                format!("rollup {t} {k:?} being compacted")
            })?);
        }
        locked.push((k, rows.len() > 1 || stale, sum));
    }
    let waiting = awaiting_groups(tx, table).await?;
    let delete = tx
        .prepare_cached(&format!(
            "DELETE FROM {t} WHERE period = $1 AND owner = $2 AND service = $3 \
             AND runbook = $4 AND cause = $5 AND shard > 0"
        ))
        .await?;
    let upsert = tx
        .prepare_cached(&format!(
            "INSERT INTO {t} (period, owner, service, runbook, cause, shard, counters, packed) \
             VALUES ($1, $2, $3, $4, $5, 0, $6::text::json, $7) \
             ON CONFLICT (period, owner, service, runbook, cause, shard) \
             DO UPDATE SET counters = EXCLUDED.counters, packed = EXCLUDED.packed"
        ))
        .await?;
    let mut compacted = 0;
    for (k, due, sum) in locked {
        if !due || waiting.contains(k) {
            continue;
        }
        let counters = Stored::of(&sum);
        tx.execute(
            &delete,
            &[&k.day, &k.owner, &k.service, &k.runbook, &k.cause],
        )
        .await?;
        tx.execute(
            &upsert,
            &[
                &k.day,
                &k.owner,
                &k.service,
                &k.runbook,
                &k.cause,
                &counters.json,
                &counters.packed,
            ],
        )
        .await?;
        compacted += 1;
    }
    Ok((compacted, Some(last)))
}

/// The groups of `table` that hold the contribution of a run still awaiting its verdict.
async fn awaiting_groups(
    tx: &impl GenericClient,
    table: Table,
) -> Result<HashSet<RollupKey>, Fail> {
    let mut out = HashSet::new();
    for row in tx
        .query("SELECT record::text FROM runs WHERE awaits_verdict", &[])
        .await?
    {
        let text: String = row.try_get(0)?;
        let run: RunRecord = decode("a run awaiting its verdict", &text)?;
        if let Some((mut key, _)) = Rollup::of_run(&run) {
            if matches!(table, Table::Monthly) {
                key.day = first_of_month(key.day);
            }
            out.insert(key);
        }
    }
    Ok(out)
}
