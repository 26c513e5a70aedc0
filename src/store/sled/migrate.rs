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

use std::path::Path;

use crate::store::error::StoreError;
use crate::store::sled::layout::{Trees, backend, decode, encode};

/// The version this build writes.
pub const SCHEMA_VERSION: u32 = 2;

const VERSION_KEY: &str = "schema_version";
const STORE_ID_KEY: &str = "store_id";

/// One migration: from version `from` to `from + 1`.
struct Migration {
    from: u32,
    apply: fn(&Trees, &Path) -> Result<(), StoreError>,
}

const MIGRATIONS: &[Migration] = &[Migration {
    from: 1,
    apply: add_store_id,
}];

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
                to: 2
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
