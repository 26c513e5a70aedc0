//! The store's layout on disk: its trees, how their keys are built, and how values are encoded.
//!
//! Trees:
//! - `meta`: `schema_version`, `store_id`.
//! - `runs`: run id (ULID, so keys sort by time) -> run record (JSON). An alert run's record
//!   holds `alert.notification_ref` instead of its notification (schema 4; schema 3 held the
//!   notification inline, which still decodes).
//! - `notifications`: lowercase hex SHA-256 of a notification's stored JSON -> that JSON (without
//!   the other alerts), stored once for every run that refers to it, in the transaction of the
//!   first one; prune removes those no run refers to (see [`super::notes`]).
//! - `progress`: `run id \0 sequence` (u64 big-endian, process-wide, seeded from the clock) ->
//!   a step event (`{"started":{"step","pgid"}}` or `{"finished":StepResult}`), appended while
//!   a run runs and applied on reading it; removed once the run has ended (see
//!   [`super::progress`]).
//! - `by_runbook`: `runbook \0 run id` -> (), to list one runbook's runs by prefix scan.
//! - `active`: run id -> () for runs queued, pending approval or running (reconciliation), and
//!   for ended runs whose rollups are not yet tallied (see [`super::tally`]).
//! - `alerts`: `fingerprint @ startsAt` -> alert episode; `alerts_by_time`: received-at
//!   (big-endian nanoseconds) + episode -> episode key, for range scans.
//! - `guards`: `runbook \0 key` -> guard state (cooldown, window, failure streak, breaker).
//! - `dedupe`: dedupe key (see [`crate::trigger::key`]) -> run id, written in the same
//!   transaction as the run it admits; an alert key whose run a guard skipped points to the run
//!   a later re-send admitted, once the guards allowed it.
//! - `rollups`: `day \0 owner \0 service \0 runbook \0 cause` -> counters, updated in the same
//!   transaction as a run's finish, or as its tally when a worker's finish swapped its record; `rollups_monthly`: the same per calendar month
//!   (`YYYY-MM \0 ...`), so reports over long periods read ~30x fewer groups.
//! - `verifying`: run id -> () for finished alert runs awaiting their verification verdict
//!   (`RunRecord::verify_by` set, no verdict yet), so a restart re-arms their window's end.
//! - `deliveries`: `source \0 delivery id` -> the delivery (JSON, with when it expires), written
//!   in the same transaction as the runs the delivery admitted. Added without a schema version
//!   step: a new store and an old one alike start with it empty, and an untoil that predates it
//!   opens a store that has it and never reads it (it takes no signed deliveries).

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ledger::rollup::RollupKey;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::store::error::StoreError;

/// The trees of a store.
#[derive(Clone)]
pub struct Trees {
    /// Schema version and store id.
    pub meta: sled::Tree,
    /// Run records.
    pub runs: sled::Tree,
    /// Runs per runbook.
    pub by_runbook: sled::Tree,
    /// Runs not yet ended.
    pub active: sled::Tree,
    /// Alert episodes.
    pub alerts: sled::Tree,
    /// Alert episodes by first receipt.
    pub alerts_by_time: sled::Tree,
    /// Daily rollups.
    pub rollups: sled::Tree,
    /// Monthly rollups.
    pub monthly: sled::Tree,
    /// Dedupe keys.
    pub dedupe: sled::Tree,
    /// Guard states.
    pub guards: sled::Tree,
    /// Finished alert runs awaiting their verification verdict.
    pub verifying: sled::Tree,
    /// Signed webhook deliveries seen, until they expire.
    pub deliveries: sled::Tree,
    /// Alert notifications, each stored once, by hash.
    pub notifications: sled::Tree,
    /// Step progress of running runs, as appends.
    pub progress: sled::Tree,
}

impl Trees {
    /// Opens (or creates) every tree of the store at `path`.
    pub fn open(db: &sled::Db, path: &Path) -> Result<Trees, StoreError> {
        let tree = |name: &str| db.open_tree(name).map_err(|e| backend(path, e));
        Ok(Trees {
            meta: tree("meta")?,
            runs: tree("runs")?,
            by_runbook: tree("by_runbook")?,
            active: tree("active")?,
            alerts: tree("alerts")?,
            alerts_by_time: tree("alerts_by_time")?,
            rollups: tree("rollups")?,
            monthly: tree("rollups_monthly")?,
            dedupe: tree("dedupe")?,
            guards: tree("guards")?,
            verifying: tree("verifying")?,
            deliveries: tree("deliveries")?,
            notifications: tree("notifications")?,
            progress: tree("progress")?,
        })
    }
}

/// A backend failure at `path`.
pub fn backend(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// A value as stored (JSON).
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our record types always serialize; an empty value would be reported as corrupt on read.
    serde_json::to_vec(v).unwrap_or_default()
}

/// A stored value, or why it cannot be read.
pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).to_string(),
        reason: e.to_string(),
    })
}

/// The one field of a stored run that some writes check.
#[derive(serde::Deserialize)]
pub struct StatusOnly {
    /// The run's status.
    pub status: RunStatus,
}

/// `runbook \0 run id`.
pub fn runbook_index(run: &RunRecord) -> Vec<u8> {
    let mut index = run.runbook.clone().into_bytes();
    index.push(0);
    index.extend_from_slice(run.id.0.as_bytes());
    index
}

/// `runbook \0 key`.
pub fn guard_key(runbook: &str, key: &str) -> Vec<u8> {
    format!("{runbook}\0{key}").into_bytes()
}

/// (runbook, key) of a guard key.
pub fn parse_guard_key(bytes: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(bytes).to_string();
    match text.split_once('\0') {
        Some((rb, key)) => (rb.to_string(), key.to_string()),
        None => (text, String::new()),
    }
}

/// `source \0 delivery id`: source names have no NUL, so the first one ends the source.
pub fn delivery_key(source: &str, id: &str) -> Vec<u8> {
    format!("{source}\0{id}").into_bytes()
}

/// The daily rollup key of a group.
pub fn rollup_key(k: &RollupKey) -> Vec<u8> {
    group_key(&k.day.format("%Y-%m-%d").to_string(), k)
}

/// The monthly rollup key of a group.
pub fn monthly_key(k: &RollupKey) -> Vec<u8> {
    group_key(&k.day.format("%Y-%m").to_string(), k)
}

fn group_key(period: &str, k: &RollupKey) -> Vec<u8> {
    format!(
        "{period}\0{}\0{}\0{}\0{}",
        k.owner, k.service, k.runbook, k.cause
    )
    .into_bytes()
}

/// The group of a daily or monthly rollup key (a month is keyed by its first day).
pub fn parse_rollup_key(bytes: &[u8]) -> Option<RollupKey> {
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

/// An instant as big-endian nanoseconds, so keys sort by time. Instants outside what the
/// encoding holds (before 1970, after 2262) saturate at its ends, so that a range query reaching
/// past them still covers everything in between.
pub fn nanos(t: DateTime<Utc>) -> [u8; 8] {
    let n = t
        .timestamp_nanos_opt()
        .unwrap_or(if t.timestamp() > 0 { i64::MAX } else { 0 });
    (n.max(0) as u64).to_be_bytes()
}

/// The first key of day `d` in the daily rollups.
pub fn day_start(d: NaiveDate) -> Vec<u8> {
    d.format("%Y-%m-%d").to_string().into_bytes()
}

/// Just past every key of day `d` (keys continue with \0).
pub fn day_end(d: NaiveDate) -> Vec<u8> {
    let mut end = day_start(d);
    end.push(1);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_keys_parse_back_for_days_and_months() {
        let k = RollupKey {
            day: NaiveDate::from_ymd_opt(2026, 11, 28).expect("date"),
            owner: "team".into(),
            service: String::new(),
            runbook: "r".into(),
            cause: "alert".into(),
        };
        assert_eq!(parse_rollup_key(&rollup_key(&k)), Some(k.clone()));
        let month = parse_rollup_key(&monthly_key(&k)).expect("parses");
        assert_eq!(
            month.day,
            NaiveDate::from_ymd_opt(2026, 11, 1).expect("date")
        );
        assert_eq!(
            parse_guard_key(&guard_key("rb", "k\0x")),
            ("rb".into(), "k\0x".into())
        );
    }
}
