//! How values are kept in PostgreSQL: records as JSON text (`json` columns: unlike `jsonb` they
//! take the `\u0000` a step's output may hold), statuses and causes by their API names, instants
//! that must keep nanoseconds as big-endian-comparable nanosecond counts, and key ranges.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::run::step::StepResult;
use crate::store::postgres::tx::{Fail, corrupt};

/// A value as stored (JSON text).
pub fn encode<T: Serialize>(v: &T) -> String {
    // Our record types always serialize; an empty value is reported as corrupt when read.
    serde_json::to_string(v).unwrap_or_default()
}

/// A stored value, or why it cannot be read (`key` names it in the error).
pub fn decode<T: DeserializeOwned>(key: &str, text: &str) -> Result<T, Fail> {
    serde_json::from_str(text).map_err(|e| corrupt(key, e))
}

/// A status as the `status` column holds it.
pub fn status_name(s: RunStatus) -> &'static str {
    s.as_str()
}

/// The status a `status` column holds.
pub fn status_of(key: &str, name: &str) -> Result<RunStatus, Fail> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|e| corrupt(key, format!("bad status `{name}`: {e}")))
}

/// An instant as nanoseconds since 1970, saturating outside what an i64 holds (as the sled
/// store's keys do), so that range queries past either end still cover everything between.
/// PostgreSQL's timestamps keep microseconds only, which would move a delivery's expiry or an
/// episode's receipt across a query's bound.
pub fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt()
        .unwrap_or(if t.timestamp() > 0 { i64::MAX } else { 0 })
        .max(0)
}

/// Just past every key that starts with `prefix`, for `key >= prefix AND key < end` on a
/// `bytea` (or `COLLATE "C"`) column: the prefix with its last byte below 0xFF incremented and
/// what follows it dropped. None when no bound exists (empty, or only 0xFF bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A key read from a `bytea` column, which was written from a `String` (`what` names it).
pub fn text_of(what: &str, bytes: Vec<u8>) -> Result<String, Fail> {
    String::from_utf8(bytes).map_err(|e| corrupt(what, e))
}

/// One step event, applied to a running run's record as the sled store applies its progress
/// events: a start sets the current step (and its process group once known), a finish replaces
/// the step's earlier result or appends it.
pub enum Progress<'a> {
    /// A step started.
    Started(&'a str, Option<u32>),
    /// A step finished.
    Finished(&'a StepResult),
}

impl Progress<'_> {
    /// Applies the event to `run`.
    pub fn apply(&self, run: &mut RunRecord) {
        match self {
            Progress::Started(step, pgid) => {
                run.current_step = Some(step.to_string());
                if pgid.is_some() {
                    run.current_pgid = *pgid;
                }
            }
            Progress::Finished(step) => {
                run.current_step = None;
                run.current_pgid = None;
                match run.steps.iter_mut().find(|s| s.name == step.name) {
                    Some(s) => *s = (*step).clone(),
                    None => run.steps.push((*step).clone()),
                }
            }
        }
    }
}

/// The rollup shard of a run: stable across releases (FNV-1a of its id, not a std hasher whose
/// algorithm may change), because a late verdict takes the run's contribution out of the same
/// shard it was added to.
pub fn shard(id: &str, shards: u32) -> i16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % shards.max(1)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_bound_exactly_the_texts_with_the_prefix() {
        assert_eq!(
            prefix_end(b"alert:a@b:").as_deref(),
            Some(b"alert:a@b;".as_slice())
        );
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"a\xff\xff").as_deref(), Some(b"b".as_slice()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(shard("01J", 8), shard("01J", 8));
        assert!(shard("x", 8) < 8);
    }
}
