//! Schema versions of the PostgreSQL store, applied at open under an advisory lock.
//!
//! `schema_migrations` holds one row per version applied, with `readable_by`: the oldest schema
//! version whose code still reads and writes the database correctly after that step. A step
//! that only adds (a nullable column, a table an older untoil never touches) says an older
//! version, so that replicas of the previous release keep running during a rolling upgrade; a
//! step that changes what existing rows mean says its own. An untoil refuses a database with a
//! step above its [`SCHEMA_VERSION`] that it cannot read ([`StoreError::NewerSchema`]).
//!
//! Replicas starting together do not race: the whole migration runs in one transaction that
//! first takes `pg_advisory_xact_lock` on [`LOCK_KEY`], so the others wait, then find the
//! schema current. DDL is transactional in PostgreSQL: a crash mid-migration leaves the
//! previous version whole.
//!
//! Keys that carry what senders wrote (dedupe keys, alert fingerprints, guard keys rendered from
//! labels, delivery ids) are `bytea`: PostgreSQL's `text` cannot hold the NUL character a label
//! or payload may carry, which the sled store keeps; `bytea` compares bytes, as sled's keys sort.
//! Other text columns (ids, runbook names, statuses) are `COLLATE "C"`, byte order too.
//!
//! Versions:
//! 1. Runs (with their notification refs, listing and reconciliation indexes), notifications,
//!    dedupe keys, alert episodes, guard states, signed webhook deliveries, and daily and
//!    monthly rollups kept in shards.
//! 2. Replicas (fleet mode): a `replicas` table of daemons with their lease's expiry, and on
//!    runs the replica running one (`lease_owner`) and the one whose queue holds one queued or
//!    waiting for approval (`admitted_by`). Readable by 2 only: a running run with no live
//!    owner is reaped by any replica, so a release before leases (which claims runs without an
//!    owner, and interrupts every running run at its start) must not serve beside them.
//! 3. A partial index of queued runs (`runs_queued`), which admission counts on every replica
//!    to bound the fleet's queue. Readable by 2: only an index, which the previous release
//!    keeps up to date without knowing it.
//! 4. Rollup counters packed (`super::packed`) in a `packed` column beside their JSON, which
//!    reports read thousands of rows of far faster; every existing row is packed by the step.
//!    Readable by 2: this release writes the JSON too, and a trigger empties `packed` when the
//!    previous release changes the JSON alone, so that row is read from its JSON meanwhile.

use deadpool_postgres::GenericClient;

use crate::ledger::rollup::{Rollup, RollupKey};
use crate::store::error::StoreError;
use crate::store::postgres::rollups::Table;
use crate::store::postgres::rows::decode;
use crate::store::postgres::tx::Fail;

/// The version this build writes.
pub const SCHEMA_VERSION: i32 = 4;

/// The advisory lock migrations hold ("untoil" in ASCII, then the lock's purpose, 1).
pub const LOCK_KEY: i64 = 0x756e_746f_696c_0001;

/// One step: to `version`, readable by code of `readable_by` and later.
struct Migration {
    version: i32,
    readable_by: i32,
    description: &'static str,
    sql: &'static str,
    /// What the step does beyond its SQL (rewriting rows in a new format), after it.
    then: Option<Then>,
}

/// Row rewrites a step makes in untoil, after its SQL (in the same transaction).
#[derive(Clone, Copy)]
enum Then {
    /// Packs every rollup row's JSON counters into its `packed` column.
    PackRollups,
}

impl Then {
    async fn run(self, tx: &impl GenericClient) -> Result<(), Fail> {
        match self {
            Then::PackRollups => {
                for table in [Table::Daily, Table::Monthly] {
                    pack_rollups(tx, table).await?;
                }
                Ok(())
            }
        }
    }
}

/// Rows packed per statement batch of [`pack_rollups`].
const PACK_PAGE: i64 = 1_000;

/// Packs the JSON counters of every row of `table` that has none packed, a page at a time in key
/// order (keyset pagination: a big daily table is read once, never held whole).
async fn pack_rollups(tx: &impl GenericClient, table: Table) -> Result<(), Fail> {
    let t = table.name();
    // The first page, then each page after the last row of the one before (no `OR` between
    // them in one statement, which would keep the planner from the primary key's index).
    let page = |after: &str| {
        format!(
            "SELECT period, owner, service, runbook, cause, shard, counters::text FROM {t} \
             WHERE packed IS NULL {after} \
             ORDER BY period, owner, service, runbook, cause, shard LIMIT $1"
        )
    };
    let first = tx.prepare_cached(&page("")).await?;
    let next = tx
        .prepare_cached(&page(
            "AND (period, owner, service, runbook, cause, shard) > ($2, $3, $4, $5, $6, $7)",
        ))
        .await?;
    let update = tx
        .prepare_cached(&format!(
            "UPDATE {t} SET packed = $7 WHERE period = $1 AND owner = $2 AND service = $3 \
             AND runbook = $4 AND cause = $5 AND shard = $6"
        ))
        .await?;
    let mut after: Option<(RollupKey, i16)> = None;
    loop {
        let rows = match &after {
            None => tx.query(&first, &[&PACK_PAGE]).await?,
            Some((k, s)) => {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
                    &PACK_PAGE, &k.day, &k.owner, &k.service, &k.runbook, &k.cause, s,
                ];
                tx.query(&next, &params).await?
            }
        };
        let mut packed = Vec::with_capacity(rows.len());
        for row in &rows {
            let key = RollupKey {
                day: row.try_get(0)?,
                owner: row.try_get(1)?,
                service: row.try_get(2)?,
                runbook: row.try_get(3)?,
                cause: row.try_get(4)?,
            };
            let shard: i16 = row.try_get(5)?;
            let text: String = row.try_get(6)?;
            let r: Rollup = decode(&format!("rollup {t} {key:?} shard {shard}"), &text)?;
            packed.push((key, shard, crate::store::postgres::packed::pack(&r)));
        }
        let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 7]> = packed
            .iter()
            .map(
                |(k, s, p)| -> [&(dyn tokio_postgres::types::ToSql + Sync); 7] {
                    [&k.day, &k.owner, &k.service, &k.runbook, &k.cause, s, p]
                },
            )
            .collect();
        // Sent together: the client pipelines them on its connection.
        futures_util::future::try_join_all(params.iter().map(|p| tx.execute(&update, p))).await?;
        match packed.pop() {
            Some((k, s, _)) if rows.len() as i64 == PACK_PAGE => after = Some((k, s)),
            _ => return Ok(()),
        }
    }
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        readable_by: 1,
        description: "runs, notifications, dedupe, alerts, guards, deliveries, sharded rollups",
        then: None,
        sql: r#"
CREATE TABLE notifications (
    hash text COLLATE "C" PRIMARY KEY,
    body json NOT NULL
);
CREATE TABLE runs (
    id text COLLATE "C" PRIMARY KEY,
    runbook text COLLATE "C" NOT NULL,
    status text NOT NULL,
    cause text NOT NULL,
    active boolean NOT NULL,
    awaits_verdict boolean NOT NULL DEFAULT false,
    note text COLLATE "C" REFERENCES notifications (hash),
    record json NOT NULL
);
CREATE INDEX runs_by_runbook ON runs (runbook, id);
CREATE INDEX runs_active ON runs (id) WHERE active;
CREATE INDEX runs_awaiting_verdict ON runs (id) WHERE awaits_verdict;
CREATE INDEX runs_by_note ON runs (note) WHERE note IS NOT NULL;
CREATE TABLE dedupe (
    key bytea PRIMARY KEY,
    run_id text COLLATE "C" NOT NULL
);
CREATE TABLE alerts (
    fingerprint bytea NOT NULL,
    stamp text COLLATE "C" NOT NULL,
    received_ns bigint NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (fingerprint, stamp)
);
CREATE INDEX alerts_by_receipt ON alerts (received_ns);
CREATE TABLE guards (
    runbook text COLLATE "C" NOT NULL,
    key bytea NOT NULL,
    state json,
    PRIMARY KEY (runbook, key)
);
CREATE TABLE deliveries (
    source text COLLATE "C" NOT NULL,
    id bytea NOT NULL,
    expires_ns bigint NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE INDEX deliveries_by_expiry ON deliveries (expires_ns);
CREATE TABLE rollups_daily (
    period date NOT NULL,
    owner text COLLATE "C" NOT NULL,
    service text COLLATE "C" NOT NULL,
    runbook text COLLATE "C" NOT NULL,
    cause text COLLATE "C" NOT NULL,
    shard smallint NOT NULL,
    counters json NOT NULL,
    PRIMARY KEY (period, owner, service, runbook, cause, shard)
);
CREATE TABLE rollups_monthly (LIKE rollups_daily INCLUDING ALL);
"#,
    },
    Migration {
        version: 2,
        readable_by: 2,
        description: "replicas with leases; runs' lease owner and admitting replica",
        then: None,
        sql: r#"
CREATE TABLE replicas (
    id text COLLATE "C" PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
ALTER TABLE runs ADD COLUMN lease_owner text COLLATE "C", ADD COLUMN admitted_by text COLLATE "C";
"#,
    },
    Migration {
        version: 3,
        readable_by: 2,
        description: "partial index of queued runs, counted to bound the fleet's queue",
        then: None,
        sql: r#"
CREATE INDEX runs_queued ON runs (id) WHERE status = 'queued';
"#,
    },
    Migration {
        version: 4,
        readable_by: 2,
        description: "rollup counters packed beside their JSON",
        then: Some(Then::PackRollups),
        sql: r#"
ALTER TABLE rollups_daily ADD COLUMN packed bytea;
ALTER TABLE rollups_monthly ADD COLUMN packed bytea;
-- An older untoil updates the JSON alone: its packed copy is then stale, and emptied.
CREATE FUNCTION untoil_rollup_packed_stale() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF NEW.packed IS NOT DISTINCT FROM OLD.packed
       AND NEW.counters::text IS DISTINCT FROM OLD.counters::text THEN
        NEW.packed := NULL;
    END IF;
    RETURN NEW;
END
$f$;
CREATE TRIGGER rollups_daily_packed_stale BEFORE UPDATE ON rollups_daily
    FOR EACH ROW EXECUTE FUNCTION untoil_rollup_packed_stale();
CREATE TRIGGER rollups_monthly_packed_stale BEFORE UPDATE ON rollups_monthly
    FOR EACH ROW EXECUTE FUNCTION untoil_rollup_packed_stale();
"#,
    },
];

/// What opening found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The version found (None for a new database).
    pub from: Option<u32>,
    /// The version now.
    pub to: u32,
    /// The store's id.
    pub store_id: String,
}

/// Brings the database to [`SCHEMA_VERSION`] (in the caller's transaction, which it locks
/// first) and returns the store's id, created at random the first time. `name` names the
/// database in a refusal.
pub async fn migrate(tx: &impl GenericClient, name: &str) -> Result<Migrated, Fail> {
    migrate_to(tx, name, SCHEMA_VERSION).await
}

/// [`migrate`], applying the steps up to `target` only: how tests make a database as an
/// earlier release left it.
#[doc(hidden)]
pub async fn migrate_to(
    tx: &impl GenericClient,
    name: &str,
    target: i32,
) -> Result<Migrated, Fail> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    // Created only when missing: a role without DDL rights (the tables made by an owner
    // beforehand) can still open the store, and `CREATE ... IF NOT EXISTS` checks the right first.
    let exists: bool = tx
        .query_one(
            "SELECT to_regclass('schema_migrations') IS NOT NULL \
             AND to_regclass('untoil_meta') IS NOT NULL",
            &[],
        )
        .await?
        .try_get(0)?;
    if !exists {
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             readable_by integer NOT NULL,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE TABLE IF NOT EXISTS untoil_meta (
             key text COLLATE \"C\" PRIMARY KEY,
             value text NOT NULL
         );",
        )
        .await?;
    }
    let row = tx
        .query_one(
            "SELECT max(version), COALESCE(max(readable_by) FILTER (WHERE version > $1), 0) \
             FROM schema_migrations",
            &[&SCHEMA_VERSION],
        )
        .await?;
    let found: Option<i32> = row.try_get(0)?;
    let needs: i32 = row.try_get(1)?;
    if needs > SCHEMA_VERSION {
        return Err(Fail::Store(StoreError::NewerSchema {
            path: name.to_string(),
            found: found.unwrap_or(needs).max(0) as u32,
            supported: SCHEMA_VERSION as u32,
        }));
    }
    for m in MIGRATIONS
        .iter()
        .filter(|m| Some(m.version) > found && m.version <= target)
    {
        tx.batch_execute(m.sql).await?;
        if let Some(then) = m.then {
            then.run(tx).await?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, readable_by, description) VALUES ($1, $2, $3)",
            &[&m.version, &m.readable_by, &m.description],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO untoil_meta (key, value) VALUES ('store_id', $1) ON CONFLICT DO NOTHING",
        &[&ulid::Ulid::new().to_string()],
    )
    .await?;
    let id: String = tx
        .query_one("SELECT value FROM untoil_meta WHERE key = 'store_id'", &[])
        .await?
        .try_get(0)?;
    Ok(Migrated {
        from: found.map(|v| v.max(0) as u32),
        to: found.unwrap_or(0).max(target.min(SCHEMA_VERSION)).max(0) as u32,
        store_id: id,
    })
}
