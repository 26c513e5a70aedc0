//! Reads: runs (whole, notification in), listings most recent first (ULID ids sort by time),
//! alert episodes, dedupe-key lookups, guard states and rollups.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use crate::guard::KeyState;
use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::store::postgres::notes::Notes;
use crate::store::postgres::rollups::{self, Table};
use crate::store::postgres::rows::{decode, nanos, prefix_end, status_name, text_of};
use crate::store::postgres::tx::Fail;
use crate::store::rules::{Span, spans};
use crate::store::{AlertReceived, RunFilter};
use crate::trigger::key::{Episode, Fire, stamp};

/// Records from rows of (id, record), complete.
async fn runs_of_rows(
    c: &impl GenericClient,
    notes: &Notes,
    rows: Vec<tokio_postgres::Row>,
) -> Result<Vec<RunRecord>, Fail> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get(0)?;
        let text: String = row.try_get(1)?;
        let mut run: RunRecord = decode(&format!("run {id}"), &text)?;
        notes.rehydrate(c, &id, &mut run).await?;
        out.push(run);
    }
    Ok(out)
}

/// One run.
pub async fn get_run(
    c: &impl GenericClient,
    notes: &Notes,
    id: &RunId,
) -> Result<Option<RunRecord>, Fail> {
    let st = c
        .prepare_cached("SELECT id, record::text FROM runs WHERE id = $1")
        .await?;
    let rows = c.query(&st, &[&id.0]).await?;
    Ok(runs_of_rows(c, notes, rows).await?.pop())
}

/// How many runs are queued, fleet-wide: an index-only scan of `runs_queued` (schema 3), whose
/// predicate the query repeats word for word so the planner can use it (a bound parameter
/// could not match a partial index's predicate).
pub async fn queued(c: &impl GenericClient) -> Result<u64, Fail> {
    let st = c
        .prepare_cached("SELECT count(*) FROM runs WHERE status = 'queued'")
        .await?;
    let n: i64 = c.query_one(&st, &[]).await?.try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Runs marked as awaiting a verification verdict, oldest first.
pub async fn list_awaiting_verdict(
    c: &impl GenericClient,
    notes: &Notes,
) -> Result<Vec<RunRecord>, Fail> {
    let st = c
        .prepare_cached("SELECT id, record::text FROM runs WHERE awaits_verdict ORDER BY id")
        .await?;
    let rows = c.query(&st, &[]).await?;
    runs_of_rows(c, notes, rows).await
}

/// Runs that pass `filter`, most recent first; the limit counts only runs that pass. A status
/// of runs not yet ended reads the `active` index (as the sled store reads its `active` tree),
/// not every run ever stored.
pub async fn list_runs(
    c: &impl GenericClient,
    notes: &Notes,
    filter: &RunFilter,
) -> Result<Vec<RunRecord>, Fail> {
    let mut sql = String::from("SELECT id, record::text FROM runs WHERE true");
    let status = filter.status.map(status_name);
    let causes: Vec<&str> = filter.causes.iter().map(|c| c.name()).collect();
    let limit = (filter.limit > 0).then(|| i64::try_from(filter.limit).unwrap_or(i64::MAX));
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(rb) = &filter.runbook {
        params.push(rb);
        sql.push_str(&format!(" AND runbook = ${}", params.len()));
    } else if filter.status.is_some_and(|s| !s.is_final()) {
        sql.push_str(" AND active");
    }
    if let Some(s) = &status {
        params.push(s);
        sql.push_str(&format!(" AND status = ${}", params.len()));
    }
    if !causes.is_empty() {
        params.push(&causes);
        sql.push_str(&format!(" AND cause = ANY(${})", params.len()));
    }
    sql.push_str(" ORDER BY id DESC");
    if let Some(l) = &limit {
        params.push(l);
        sql.push_str(&format!(" LIMIT ${}", params.len()));
    }
    let st = c.prepare_cached(&sql).await?;
    let rows = c.query(&st, &params).await?;
    runs_of_rows(c, notes, rows).await
}

/// Alert episodes first received in [from, to), by first receipt.
pub async fn alerts(
    c: &impl GenericClient,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<AlertReceived>, Fail> {
    let st = c
        .prepare_cached(
            "SELECT fingerprint, stamp, record::text FROM alerts \
             WHERE received_ns >= $1 AND received_ns < $2 \
             ORDER BY received_ns, fingerprint, stamp",
        )
        .await?;
    let mut out = Vec::new();
    for row in c.query(&st, &[&nanos(from), &nanos(to)]).await? {
        let (fp, at, text): (Vec<u8>, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let key = format!("alert {}@{at}", String::from_utf8_lossy(&fp));
        out.push(decode(&key, &text)?);
    }
    Ok(out)
}

/// Dedupe keys that start with `prefix`, in key order, with their runs.
async fn keys_with_prefix(
    c: &impl GenericClient,
    prefix: &str,
    last_only: bool,
) -> Result<Vec<(String, String)>, Fail> {
    let end = prefix_end(prefix.as_bytes());
    let sql = if last_only {
        "SELECT key, run_id FROM dedupe WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) \
         ORDER BY key DESC LIMIT 1"
    } else {
        "SELECT key, run_id FROM dedupe WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) \
         ORDER BY key"
    };
    let st = c.prepare_cached(sql).await?;
    let mut out = Vec::new();
    for row in c.query(&st, &[&prefix.as_bytes(), &end]).await? {
        out.push((text_of("dedupe key", row.try_get(0)?)?, row.try_get(1)?));
    }
    Ok(out)
}

/// The runs started for an episode.
pub async fn runs_of_episode(
    c: &impl GenericClient,
    episode: &Episode,
) -> Result<Vec<RunId>, Fail> {
    Ok(keys_with_prefix(c, &episode.key_prefix(), false)
        .await?
        .into_iter()
        .map(|(_, id)| RunId(id))
        .collect())
}

/// The latest admitted fire of a schedule.
pub async fn last_fire(c: &impl GenericClient, fire: &Fire) -> Result<Option<DateTime<Utc>>, Fail> {
    Ok(keys_with_prefix(c, &fire.key_prefix(), true)
        .await?
        .first()
        .and_then(|(k, _)| fire.time_of(k)))
}

/// The known episode `starts_at` names (see `Store::episode_at_millis`).
pub async fn episode_at_millis(
    c: &impl GenericClient,
    fingerprint: &str,
    starts_at: DateTime<Utc>,
) -> Result<Option<Episode>, Fail> {
    let at = stamp(starts_at);
    let fp = fingerprint.as_bytes();
    let exact = c
        .prepare_cached("SELECT 1 FROM alerts WHERE fingerprint = $1 AND stamp = $2")
        .await?;
    if c.query_opt(&exact, &[&fp, &at]).await?.is_some() {
        return Ok(Some(Episode::new(fingerprint, starts_at)));
    }
    if starts_at.timestamp_subsec_nanos() % 1_000_000 != 0 {
        return Ok(None);
    }
    // Stamps are fixed-width at nanoseconds (`...26.695089778Z`): every episode within that
    // millisecond shares the stamp up to its last six digits.
    let prefix = &at[..at.len().saturating_sub(7)];
    // The prefix is ASCII (digits and separators): so is its end.
    let end =
        String::from_utf8_lossy(&prefix_end(prefix.as_bytes()).unwrap_or_default()).into_owned();
    let within = c
        .prepare_cached(
            "SELECT stamp FROM alerts WHERE fingerprint = $1 AND stamp >= $2 AND stamp < $3 \
             ORDER BY stamp",
        )
        .await?;
    for row in c.query(&within, &[&fp, &prefix, &end]).await? {
        let s: String = row.try_get(0)?;
        if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
            return Ok(Some(Episode::new(fingerprint, t.with_timezone(&Utc))));
        }
    }
    Ok(None)
}

/// Every stored guard state (keys only locked, never written, have none).
pub async fn guard_states(c: &impl GenericClient) -> Result<Vec<(String, String, KeyState)>, Fail> {
    let st = c
        .prepare_cached(
            "SELECT runbook, key, state::text FROM guards WHERE state IS NOT NULL \
             ORDER BY runbook, key",
        )
        .await?;
    let mut out = Vec::new();
    for row in c.query(&st, &[]).await? {
        let (rb, key, text): (String, Vec<u8>, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let key = text_of("guard key", key)?;
        let state = decode(&format!("guard {rb} {key}"), &text)?;
        out.push((rb, key, state));
    }
    Ok(out)
}

/// Rollup groups of the days in [from, to]; with `by_month`, months wholly inside come from the
/// monthly table, the partial ones at the edges from the daily one.
pub async fn rollups(
    c: &impl GenericClient,
    from: NaiveDate,
    to: NaiveDate,
    by_month: bool,
) -> Result<Vec<(RollupKey, Rollup)>, Fail> {
    let mut out = Vec::new();
    if !by_month {
        rollups::read(c, Table::Daily, from, to, &mut out).await?;
        return Ok(out);
    }
    // Whole months in a row are one query of the monthly table (its periods are months' first
    // days), not one each: a two-year report is three queries, not 24.
    let mut months: Option<(NaiveDate, NaiveDate)> = None;
    for span in spans(from, to) {
        match span {
            Span::Month(m) => months = Some(months.map_or((m, m), |(first, _)| (first, m))),
            Span::Days(a, b) => {
                if let Some((first, last)) = months.take() {
                    rollups::read(c, Table::Monthly, first, last, &mut out).await?;
                }
                rollups::read(c, Table::Daily, a, b, &mut out).await?;
            }
        }
    }
    if let Some((first, last)) = months {
        rollups::read(c, Table::Monthly, first, last, &mut out).await?;
    }
    Ok(out)
}
