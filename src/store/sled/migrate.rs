//! Schema versions of the sled store, and the migrations from each to the next.
//!
//! Opening a store brings it to [`SCHEMA_VERSION`] one step at a time. Each step is idempotent
//! and the version is written only after the step is durable, so a crash during a migration
//! repeats the step at the next start. A store of a newer version than this build knows is
//! refused, never modified.
//!
//! Versions:
//! 1. The first release's layout (see [`super::layout`]).
//! 2. `meta/store_id`: a random id that names the store, so that a client can tell whether the
//!    daemon it reaches serves the store it means.
//! 3. Rollups that keep interrupted runs apart from failed ones and count noop, verified and
//!    unverified runs and a time-to-remediate histogram: every daily and monthly rollup is
//!    rebuilt from the runs still in the store; what pruned runs had added stays as it was,
//!    counted in `legacy_runs` (see [`rebuilt`]).
//! 4. Alert notifications stored once (tree `notifications`) and referred to by hash from run
//!    records (`alert.notification_ref`); step progress as appends (tree `progress`). Every run
//!    record with its notification inline is rewritten with a ref (see [`refer_notifications`]);
//!    the progress of runs left running stays in their records, where reads find it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::ledger::rollup::Rollup;
use crate::run::record::RunRecord;
use crate::store::error::StoreError;
use crate::store::sled::layout::{Trees, backend, decode, encode, monthly_key, rollup_key};
use crate::store::sled::notes::{Notes, hex};

/// The version this build writes.
///
/// The `deliveries` tree (signed webhook delivery ids) came without a step: it starts empty in
/// every store, nothing in the other trees changes, and an untoil of version 3 that predates it
/// reads a store that has it correctly (it never opens the tree), so refusing that untoil would
/// protect nothing.
pub const SCHEMA_VERSION: u32 = 4;

/// How many run records one transaction of the version-4 step rewrites.
const CHUNK: usize = 256;

const VERSION_KEY: &str = "schema_version";
const STORE_ID_KEY: &str = "store_id";

/// One migration: from version `from` to `from + 1`.
struct Migration {
    from: u32,
    apply: fn(&Trees, &Path) -> Result<(), StoreError>,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        from: 1,
        apply: add_store_id,
    },
    Migration {
        from: 2,
        apply: rebuild_rollups,
    },
    Migration {
        from: 3,
        apply: refer_notifications,
    },
];

/// What opening did to the store's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The version found (None for a new store).
    pub from: Option<u32>,
    /// The version now.
    pub to: u32,
}

fn version(trees: &Trees, path: &Path) -> Result<Option<u32>, StoreError> {
    match trees.meta.get(VERSION_KEY).map_err(|e| backend(path, e))? {
        Some(v) => Ok(Some(decode(VERSION_KEY.as_bytes(), &v)?)),
        None => Ok(None),
    }
}

fn set_version(db: &sled::Db, trees: &Trees, path: &Path, v: u32) -> Result<(), StoreError> {
    trees
        .meta
        .insert(VERSION_KEY, encode(&v))
        .map_err(|e| backend(path, e))?;
    db.flush().map_err(|e| backend(path, e))?;
    Ok(())
}

/// Brings the store to [`SCHEMA_VERSION`].
pub fn migrate(db: &sled::Db, trees: &Trees, path: &Path) -> Result<Migrated, StoreError> {
    let found = version(trees, path)?;
    let Some(mut at) = found else {
        // A new store: written in the current layout from the start.
        add_store_id(trees, path)?;
        db.flush().map_err(|e| backend(path, e))?;
        set_version(db, trees, path, SCHEMA_VERSION)?;
        return Ok(Migrated {
            from: None,
            to: SCHEMA_VERSION,
        });
    };
    if at > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.display().to_string(),
            found: at,
            supported: SCHEMA_VERSION,
        });
    }
    let due: Vec<&Migration> = MIGRATIONS.iter().filter(|m| m.from >= at).collect();
    for m in due {
        (m.apply)(trees, path)?;
        db.flush().map_err(|e| backend(path, e))?;
        at = m.from + 1;
        set_version(db, trees, path, at)?;
    }
    Ok(Migrated {
        from: found,
        to: at,
    })
}

/// The store's id.
pub fn store_id(trees: &Trees, path: &Path) -> Result<String, StoreError> {
    match trees.meta.get(STORE_ID_KEY).map_err(|e| backend(path, e))? {
        Some(v) => decode(STORE_ID_KEY.as_bytes(), &v),
        None => Err(StoreError::Corrupt {
            key: STORE_ID_KEY.into(),
            reason: "missing".into(),
        }),
    }
}

/// Version 2: a store id, unless one is there (a step repeated after a crash keeps it).
fn add_store_id(trees: &Trees, path: &Path) -> Result<(), StoreError> {
    if trees
        .meta
        .get(STORE_ID_KEY)
        .map_err(|e| backend(path, e))?
        .is_none()
    {
        let id = ulid::Ulid::new().to_string();
        trees
            .meta
            .insert(STORE_ID_KEY, encode(&id))
            .map_err(|e| backend(path, e))?;
    }
    Ok(())
}

/// Version 3: every rollup rebuilt from the runs still in the store. A group whose old rollup
/// counted runs that are gone (pruned) keeps their counters as they were, so totals of runs and
/// toil do not move. Idempotent: a rebuilt rollup rebuilt again from the same runs is unchanged.
fn rebuild_rollups(trees: &Trees, path: &Path) -> Result<(), StoreError> {
    let mut daily: BTreeMap<Vec<u8>, Rollup> = BTreeMap::new();
    let mut monthly: BTreeMap<Vec<u8>, Rollup> = BTreeMap::new();
    for item in trees.runs.iter() {
        let (k, v) = item.map_err(|e| backend(path, e))?;
        let run: RunRecord = decode(&k, &v)?;
        if let Some((key, r)) = Rollup::of_run(&run) {
            daily.entry(rollup_key(&key)).or_default().merge(&r);
            monthly.entry(monthly_key(&key)).or_default().merge(&r);
        }
    }
    for (tree, fresh) in [(&trees.rollups, daily), (&trees.monthly, monthly)] {
        let mut keys: BTreeSet<Vec<u8>> = fresh.keys().cloned().collect();
        for k in tree.iter().keys() {
            keys.insert(k.map_err(|e| backend(path, e))?.to_vec());
        }
        for k in keys {
            let old: Rollup = match tree.get(&k).map_err(|e| backend(path, e))? {
                Some(v) => decode(&k, &v)?,
                None => Rollup::default(),
            };
            let new = rebuilt(&old, fresh.get(&k).unwrap_or(&Rollup::default()));
            if new != old {
                tree.insert(k, encode(&new)).map_err(|e| backend(path, e))?;
            }
        }
    }
    Ok(())
}

/// Version 4: every run record that holds its notification inline is rewritten with a ref to
/// it, and the notification stored once under its hash (identical notifications, as the runs of
/// one delivery have, become one). In chunks of [`CHUNK`] records, each one transaction with the
/// notifications it refers to, so a big store needs no huge transaction and a ref never lands
/// without its target. Idempotent: records with a ref are left as they are.
fn refer_notifications(trees: &Trees, path: &Path) -> Result<(), StoreError> {
    use sled::Transactional;
    use sled::transaction::{ConflictableTransactionError, TransactionError};
    let notes = Notes::default();
    let mut after: Option<sled::IVec> = None;
    loop {
        let range = match &after {
            Some(k) => trees.runs.range::<&[u8], _>((
                std::ops::Bound::Excluded(k.as_ref()),
                std::ops::Bound::Unbounded,
            )),
            None => trees.runs.iter(),
        };
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut last = None;
        for item in range.take(CHUNK) {
            let (k, v) = item.map_err(|e| backend(path, e))?;
            last = Some(k.clone());
            let run: RunRecord = decode(&k, &v)?;
            let inline = run
                .alert
                .as_ref()
                .is_some_and(|a| a.notification_ref.is_none());
            if inline {
                chunk.push((k, notes.encode_run(&run)));
            }
        }
        let Some(last) = last else {
            return Ok(());
        };
        after = Some(last);
        let result: Result<(), TransactionError<StoreError>> = (&trees.runs, &trees.notifications)
            .transaction(|(runs, notifications)| {
                for (k, e) in &chunk {
                    if let Some(note) = &e.note {
                        let key = hex(&note.hash);
                        if notifications.get(key.as_bytes())?.is_none() {
                            notifications.insert(key.as_bytes(), note.json())?;
                        }
                    }
                    runs.insert(k, e.value.as_slice())?;
                }
                Ok::<(), ConflictableTransactionError<StoreError>>(())
            });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(backend(path, e)),
        }
    }
}

/// A group's rollup rebuilt: `fresh` (counted from the runs still in the store) plus what the
/// `old` rollup counted beyond them (runs pruned before the migration). Of those, schema 2 knew
/// successes and failures (interrupted runs among the failures) but no noop/interrupted split,
/// no verdicts kept in rollups and no time-to-remediate histogram; they are counted as legacy
/// runs, which reports name instead of guessing their split.
pub fn rebuilt(old: &Rollup, fresh: &Rollup) -> Rollup {
    let less = |a: u64, b: u64| a.saturating_sub(b);
    let mut durations = old.durations.clone();
    durations.subtract(&fresh.durations);
    let mut remediate_ms = old.remediate_ms.clone();
    remediate_ms.subtract(&fresh.remediate_ms);
    // Compared like with like: schema 2's `failed` held the interrupted runs too.
    let runs = less(old.runs, fresh.runs);
    let gone = Rollup {
        runs,
        succeeded: less(old.succeeded + old.noop, fresh.succeeded + fresh.noop),
        noop: 0,
        failed: less(
            old.failed + old.interrupted,
            fresh.failed + fresh.interrupted,
        ),
        interrupted: 0,
        cancelled: less(old.cancelled, fresh.cancelled),
        toil_milli_minutes: less(old.toil_milli_minutes, fresh.toil_milli_minutes),
        durations,
        remediations: less(old.remediations, fresh.remediations),
        remediate_ms_sum: less(old.remediate_ms_sum, fresh.remediate_ms_sum),
        remediate_ms,
        verified: less(old.verified, fresh.verified),
        unverified: less(old.unverified, fresh.unverified),
        legacy_runs: runs,
    };
    let mut new = fresh.clone();
    new.merge(&gone);
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (sled::Db, Trees) {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .expect("opens a temp sled");
        let trees = Trees::open(&db, dir).expect("trees");
        (db, trees)
    }

    #[test]
    fn a_new_store_is_written_at_the_current_version_with_an_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, trees) = open(dir.path());
        let m = migrate(&db, &trees, dir.path()).expect("migrates");
        assert_eq!(
            m,
            Migrated {
                from: None,
                to: SCHEMA_VERSION
            }
        );
        assert_eq!(store_id(&trees, dir.path()).expect("id").len(), 26);
    }

    #[test]
    fn a_version_1_store_gains_an_id_and_keeps_it_when_migrated_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, trees) = open(dir.path());
        trees
            .meta
            .insert(VERSION_KEY, encode(&1u32))
            .expect("write");
        assert_eq!(
            migrate(&db, &trees, dir.path()).expect("migrates"),
            Migrated {
                from: Some(1),
                to: SCHEMA_VERSION
            }
        );
        let id = store_id(&trees, dir.path()).expect("id");
        // A crash after the step but before the version was written repeats the step.
        trees
            .meta
            .insert(VERSION_KEY, encode(&1u32))
            .expect("write");
        migrate(&db, &trees, dir.path()).expect("migrates again");
        assert_eq!(store_id(&trees, dir.path()).expect("id"), id);
    }

    #[test]
    fn version_3_rebuilds_rollups_from_the_runs_and_keeps_pruned_counts_as_legacy() {
        use crate::ledger::rollup::RollupKey;
        use crate::run::status::RunStatus;
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, trees) = open(dir.path());
        trees
            .meta
            .insert(VERSION_KEY, encode(&2u32))
            .expect("write");
        // Two runs still recorded (one interrupted); the old rollup also counted a failed run
        // whose record was pruned, and the interrupted one as failed, as schema 2 did.
        let ok = RunRecord::synthetic(1);
        let interrupted = RunRecord {
            status: RunStatus::Interrupted,
            ..RunRecord::synthetic(1)
        };
        let contribution =
            |r: &RunRecord| -> (RollupKey, Rollup) { Rollup::of_run(r).expect("counts") };
        let (key, a) = contribution(&ok);
        let (same, b) = contribution(&interrupted);
        assert_eq!(key, same, "both runs are in one group");
        let mut old = a;
        old.merge(&Rollup {
            failed: 1,
            interrupted: 0,
            ..b
        });
        old.interrupted = 0;
        let mut pruned = Rollup {
            runs: 1,
            failed: 1,
            toil_milli_minutes: 7_000,
            remediations: 1,
            remediate_ms_sum: 60_000,
            ..Default::default()
        };
        pruned.durations.record(1_234);
        old.merge(&pruned);
        for r in [&ok, &interrupted] {
            trees
                .runs
                .insert(r.id.0.as_bytes(), encode(r))
                .expect("write");
        }
        trees
            .rollups
            .insert(rollup_key(&key), encode(&old))
            .expect("write");
        trees
            .monthly
            .insert(monthly_key(&key), encode(&old))
            .expect("write");
        // A group whose every run was pruned.
        let gone_key = RollupKey {
            runbook: "gone".into(),
            ..key.clone()
        };
        trees
            .rollups
            .insert(rollup_key(&gone_key), encode(&pruned))
            .expect("write");

        assert_eq!(
            migrate(&db, &trees, dir.path()).expect("migrates"),
            Migrated {
                from: Some(2),
                to: SCHEMA_VERSION
            }
        );
        let read = |tree: &sled::Tree, k: Vec<u8>| -> Rollup {
            let v = tree.get(&k).expect("reads").expect("present");
            decode(&k, &v).expect("decodes")
        };
        let new = read(&trees.rollups, rollup_key(&key));
        assert_eq!((new.runs, new.succeeded), (3, 1));
        assert_eq!((new.failed, new.interrupted, new.legacy_runs), (1, 1, 1));
        assert_eq!(new.toil_milli_minutes, old.toil_milli_minutes);
        assert_eq!(new.durations, old.durations);
        assert_eq!(
            (new.remediations, new.remediate_ms_sum),
            (old.remediations, old.remediate_ms_sum)
        );
        assert_eq!(read(&trees.monthly, monthly_key(&key)), new);
        let gone = read(&trees.rollups, rollup_key(&gone_key));
        assert_eq!(
            gone,
            Rollup {
                legacy_runs: 1,
                ..pruned.clone()
            }
        );

        // A crash before the version moved on repeats the step: nothing changes.
        trees
            .meta
            .insert(VERSION_KEY, encode(&2u32))
            .expect("write");
        migrate(&db, &trees, dir.path()).expect("migrates again");
        assert_eq!(read(&trees.rollups, rollup_key(&key)), new);
        assert_eq!(read(&trees.rollups, rollup_key(&gone_key)), gone);
        assert_eq!(read(&trees.monthly, monthly_key(&key)), new);
    }

    #[test]
    fn rebuilding_a_rebuilt_rollup_changes_nothing() {
        let mut fresh = Rollup {
            runs: 4,
            succeeded: 1,
            noop: 1,
            failed: 1,
            interrupted: 1,
            verified: 1,
            remediations: 1,
            remediate_ms_sum: 5_000,
            ..Default::default()
        };
        fresh.remediate_ms.record(5_000);
        fresh.durations.record(10);
        let mut old = Rollup {
            runs: 9,
            succeeded: 4,
            failed: 5,
            toil_milli_minutes: 3_000,
            ..Default::default()
        };
        old.durations.record(10);
        old.durations.record(99);
        let once = rebuilt(&old, &fresh);
        assert_eq!(once.runs, 9);
        assert_eq!(once.legacy_runs, 5);
        assert_eq!(
            (once.succeeded + once.noop, once.failed + once.interrupted),
            (4, 5)
        );
        assert_eq!(rebuilt(&once, &fresh), once);
        // Nothing pruned: the rollup is the runs' own.
        assert_eq!(rebuilt(&fresh, &fresh), fresh);
    }

    #[test]
    fn version_4_stores_each_inline_notification_once_in_chunks_and_again_changes_nothing() {
        use crate::run::cause::AlertContext;
        use crate::trigger::alert::Notification;
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, trees) = open(dir.path());
        trees
            .meta
            .insert(VERSION_KEY, encode(&3u32))
            .expect("write");
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/alertmanager/firing.json"
        ))
        .expect("fixture");
        let n = Notification::from_json(&body).expect("decodes");
        let mut other = n.without_alerts();
        other.receiver = "other".into();
        // More records than one chunk, of two notifications, and runs without any: written
        // as schema 3 did, each with its notification inline.
        let mut runs = Vec::new();
        for i in 0..(CHUNK + 50) {
            let shared = if i % 3 == 0 {
                other.clone()
            } else {
                n.without_alerts()
            };
            let alert =
                (i % 5 != 0).then(|| AlertContext::new(n.alerts[0].clone(), Arc::new(shared)));
            let run = RunRecord {
                alert,
                ..RunRecord::synthetic(i)
            };
            trees
                .runs
                .insert(run.id.0.as_bytes(), encode(&run))
                .expect("write");
            runs.push(run);
        }
        let inline = String::from_utf8(encode(&runs[1])).expect("utf-8");
        assert!(inline.contains("\"notification\":{"), "{inline}");

        assert_eq!(
            migrate(&db, &trees, dir.path()).expect("migrates"),
            Migrated {
                from: Some(3),
                to: SCHEMA_VERSION
            }
        );
        assert_eq!(trees.notifications.len(), 2);
        let notes = Notes::default();
        let read_back = || -> Vec<RunRecord> {
            trees
                .runs
                .iter()
                .map(|item| {
                    let (k, v) = item.expect("reads");
                    let text = String::from_utf8(v.to_vec()).expect("utf-8");
                    assert!(!text.contains("\"notification\":"), "{text}");
                    let mut run: RunRecord = decode(&k, &v).expect("decodes");
                    notes
                        .rehydrate(&trees.notifications, dir.path(), &k, &mut run)
                        .expect("its notification is stored");
                    run
                })
                .collect()
        };
        assert_eq!(read_back(), runs);
        let stored: Vec<(sled::IVec, sled::IVec)> =
            trees.runs.iter().map(|i| i.expect("reads")).collect();

        // A crash before the version moved on repeats the step: nothing changes.
        trees
            .meta
            .insert(VERSION_KEY, encode(&3u32))
            .expect("write");
        migrate(&db, &trees, dir.path()).expect("migrates again");
        let again: Vec<(sled::IVec, sled::IVec)> =
            trees.runs.iter().map(|i| i.expect("reads")).collect();
        assert_eq!(again, stored);
        assert_eq!(trees.notifications.len(), 2);
    }

    #[test]
    fn a_newer_store_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, trees) = open(dir.path());
        trees
            .meta
            .insert(VERSION_KEY, encode(&99u32))
            .expect("write");
        let e = migrate(&db, &trees, dir.path()).expect_err("refused");
        assert!(
            matches!(e, StoreError::NewerSchema { found: 99, .. }),
            "{e}"
        );
        assert_eq!(version(&trees, dir.path()).expect("reads"), Some(99));
        assert!(trees.meta.get(STORE_ID_KEY).expect("reads").is_none());
    }
}
