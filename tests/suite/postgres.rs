//! The PostgreSQL store beyond the shared contract (tests/suite/conformance.rs): its schema
//! versions (a newer one refused, replicas starting together migrating once) and how its
//! failures name the database.

use untoil::store::Store;
use untoil::store::error::StoreError;
use untoil::store::postgres::PgStore;

use crate::conformance::{Postgres, pg_pool};

/// Opens the store of database `db` of `pg`'s cluster.
async fn open(pg: &Postgres, db: &str) -> Result<PgStore, StoreError> {
    let cluster = pg.cluster();
    PgStore::open(pg_pool(&cluster.url(db)), cluster.url_without_password(db)).await
}

/// The single value `sql` selects in `db`.
fn scalar(pg: &Postgres, db: &str, sql: &str) -> String {
    let out = pg.cluster().psql(db, sql);
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_schema_newer_than_it_reads_and_names_the_database() {
    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("newer"));
    let store = open(&pg, &db).await.expect("opens");
    let id = store.id().to_string();
    drop(store);
    // A later release's step that older code can still use (an added column): opened.
    scalar(
        &pg,
        &db,
        "INSERT INTO schema_migrations (version, readable_by, description) \
         VALUES (5, 4, 'a nullable column'); ALTER TABLE runs ADD COLUMN later text",
    );
    let store = open(&pg, &db)
        .await
        .expect("a compatible newer schema opens");
    assert_eq!(store.id(), id, "the store keeps its id");
    drop(store);
    // A step that changes what rows mean: refused, with the database named (no password).
    scalar(
        &pg,
        &db,
        "INSERT INTO schema_migrations (version, readable_by, description) \
         VALUES (6, 6, 'a new meaning')",
    );
    let err = match open(&pg, &db).await {
        Err(e) => e,
        Ok(_) => panic!("a newer schema was opened"),
    };
    let name = pg.cluster().url_without_password(&db);
    match &err {
        StoreError::NewerSchema {
            path,
            found,
            supported,
        } => {
            assert_eq!(path, &name);
            assert_eq!((*found, *supported), (6, 4));
        }
        other => panic!("not a newer-schema refusal: {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&name) && message.contains("upgrade untoil"),
        "{message}"
    );
    assert!(!message.contains(&pg.cluster().password), "{message}");
    // Refused without a change: still version 6 at most, nothing applied again.
    assert_eq!(
        scalar(&pg, &db, "SELECT count(*) FROM schema_migrations"),
        "6"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_opening_a_fresh_database_together_migrate_once_and_all_work() {
    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("fresh"));
    let opens = (0..8).map(|_| open(&pg, &db));
    let stores: Vec<PgStore> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.expect("every replica opens"))
        .collect();
    let ids: std::collections::BTreeSet<&str> = stores.iter().map(|s| s.id()).collect();
    assert_eq!(ids.len(), 1, "one store id: {ids:?}");
    let created = stores
        .iter()
        .filter(|s| s.migrated().from.is_none())
        .count();
    assert_eq!(created, 1, "exactly one replica created the schema");
    assert_eq!(
        scalar(&pg, &db, "SELECT count(*) FROM schema_migrations"),
        untoil::store::postgres::schema::SCHEMA_VERSION.to_string()
    );
    // Every replica writes and reads the same store.
    for (i, s) in stores.iter().enumerate() {
        let run = untoil::run::record::RunRecord::synthetic(i);
        s.finish_many(vec![run]).await.expect("finish");
    }
    for s in &stores {
        let all = s
            .list_runs(&untoil::store::RunFilter::default())
            .await
            .expect("list");
        assert_eq!(all.len(), stores.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failures_name_the_database_without_its_password() {
    let port = crate::common::closed_port();
    let url = format!("postgres://untoil:secret-pw@127.0.0.1:{port}/nothing");
    let name = format!("postgres://untoil@127.0.0.1:{port}/nothing");
    let err = match PgStore::open(pg_pool(&url), name.clone()).await {
        Err(e) => e,
        Ok(_) => panic!("opened a database that does not exist"),
    };
    let message = err.to_string();
    assert!(
        matches!(&err, StoreError::Backend { path, .. } if *path == name),
        "{err:?}"
    );
    assert!(!message.contains("secret-pw"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_fails_operations_naming_the_database_and_the_store_recovers_with_it() {
    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("restart"));
    let store = open(&pg, &db).await.expect("opens");
    let run = untoil::run::record::RunRecord::synthetic(1);
    store.finish_many(vec![run.clone()]).await.expect("finish");
    pg.cluster().stop();
    let err = store
        .get_run(&run.id)
        .await
        .expect_err("no database, no read");
    let name = pg.cluster().url_without_password(&db);
    assert!(
        matches!(&err, StoreError::Backend { path, .. } if *path == name),
        "{err:?}"
    );
    pg.cluster().restart();
    // The pool replaces the connections the restart broke (one failure per stale connection at
    // most, then none).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match store.get_run(&run.id).await {
            Ok(got) => {
                assert_eq!(got.map(|r| r.id), Some(run.id.clone()));
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the store did not recover: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_a_step_output_with_nul_characters() {
    // Records are `json`, not `jsonb`: jsonb refuses the `\u0000` a binary output escapes to.
    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("nul"));
    let store = open(&pg, &db).await.expect("opens");
    let mut run = untoil::run::record::RunRecord::synthetic(1);
    run.steps.push(untoil::run::step::StepResult {
        name: "binary".into(),
        stdout: "before\0after".into(),
        ..Default::default()
    });
    store.finish_many(vec![run.clone()]).await.expect("finish");
    assert_eq!(store.get_run(&run.id).await.expect("get"), Some(run));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_opens_with_a_role_that_may_only_read_and_write_rows_once_migrated() {
    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("roles"));
    drop(open(&pg, &db).await.expect("the owner migrates"));
    scalar(
        &pg,
        &db,
        "CREATE ROLE app LOGIN PASSWORD 'app-pw'; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app",
    );
    let cluster = pg.cluster();
    let url = format!("postgres://app:app-pw@127.0.0.1:{}/{db}", cluster.port);
    let name = format!("postgres://app@127.0.0.1:{}/{db}", cluster.port);
    let store = PgStore::open(pg_pool(&url), name)
        .await
        .expect("a role without DDL rights opens a migrated store");
    let run = untoil::run::record::RunRecord::synthetic(1);
    store.finish_many(vec![run.clone()]).await.expect("finish");
    assert!(store.get_run(&run.id).await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_a_notification_once_for_its_runs_and_prune_removes_it_with_the_last() {
    // What the conformance suite checks of sled's layout (`Backend::stored`), by this one's.
    use crate::conformance::{alert_candidates, big_notification};
    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("notes"));
    let store = open(&pg, &db).await.expect("opens");
    let n = big_notification(900 * 1024, 50);
    store
        .admit(alert_candidates("rb", &n), vec![])
        .await
        .expect("admit");
    assert_eq!(scalar(&pg, &db, "SELECT count(*) FROM notifications"), "1");
    let stored: usize = scalar(
        &pg,
        &db,
        "SELECT sum(octet_length(record::text)) + \
         (SELECT sum(octet_length(body::text)) FROM notifications) FROM runs",
    )
    .parse()
    .expect("a number");
    let body = serde_json::to_vec(&n).expect("json").len();
    assert!(stored < 2 * body, "{stored} bytes for a {body}-byte body");
    // Unended runs stay; once they end and are pruned, the notification goes with them.
    let runs = store
        .list_runs(&untoil::store::RunFilter::default())
        .await
        .expect("list");
    let ended: Vec<_> = runs
        .into_iter()
        .map(|mut r| {
            r.status = untoil::run::status::RunStatus::Cancelled;
            r.finished_at = Some(chrono::Utc::now());
            r
        })
        .collect();
    store.finish_many(ended).await.expect("finish");
    store
        .prune(chrono::Utc::now() + chrono::Duration::days(1))
        .await
        .expect("prune");
    assert_eq!(scalar(&pg, &db, "SELECT count(*) FROM notifications"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_batches_of_finishes_never_deadlock_and_count_every_run() {
    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("batches"));
    let store = std::sync::Arc::new(open(&pg, &db).await.expect("opens"));
    // Six writers, each finishing 300 runs of the same 140 rollup groups in an order of its
    // own: rows locked in batch order deadlocked (the benchmark's 4 x 1,000 did every time).
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..6usize {
        let store = store.clone();
        tasks.spawn(async move {
            let mut runs: Vec<_> = (0..300)
                .map(|i| untoil::run::record::RunRecord::synthetic(w * 300 + i))
                .collect();
            runs.sort_by_key(|r| (r.runbook.clone(), r.service.clone()));
            if w % 2 == 1 {
                runs.reverse();
            }
            store.finish_many(runs).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer").expect("a batch of finishes");
    }
    let today = chrono::Utc::now().date_naive();
    let counted: u64 = store
        .rollups(today, today, false)
        .await
        .expect("rollups")
        .iter()
        .map(|(_, r)| r.runs)
        .sum();
    assert_eq!(counted, 1800);
}

/// Admits one queued run through replica `a`; its id.
async fn admit_queued(a: &PgStore) -> untoil::run::id::RunId {
    use untoil::run::record::RunRecord;
    use untoil::run::status::RunStatus;
    use untoil::store::{Admitted, Candidate};
    use untoil::trigger::key::DedupeKey;
    let run = RunRecord {
        status: RunStatus::Queued,
        started_at: None,
        finished_at: None,
        ..RunRecord::synthetic(0)
    };
    let id = run.id.clone();
    let admitted = a
        .admit(
            vec![Candidate {
                key: DedupeKey::Manual { run: id.0.clone() },
                run,
                gate: None,
            }],
            Vec::new(),
        )
        .await
        .expect("admits");
    assert!(matches!(admitted.as_slice(), [Admitted::New { .. }]));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fences_a_replica_whose_lease_expired_once_another_reaps_its_run() {
    use std::sync::Arc;
    use std::time::Duration;
    use untoil::run::record::RunRecord;
    use untoil::run::status::RunStatus;
    use untoil::run::step::StepResult;
    use untoil::store::{Change, Transition};

    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("fenced"));
    let store = open(&pg, &db).await.expect("opens");
    let a = store
        .join("a", 1, Duration::from_millis(1500))
        .await
        .expect("a joins");
    let b = store
        .join("b", 2, Duration::from_secs(60))
        .await
        .expect("b joins");
    let id = admit_queued(&a).await;
    // While a's lease is live, b finds nothing to take over.
    let none: Change = Arc::new(|_: &mut RunRecord| panic!("nothing is interrupted"));
    let reaped = b.reap(none.clone()).await.expect("reaps");
    assert!(
        reaped.interrupted.is_empty() && reaped.queued.is_empty(),
        "{reaped:?}"
    );
    // a claims the run and records a step.
    let now = chrono::Utc::now();
    let claim: Change = Arc::new(move |r: &mut RunRecord| untoil::engine::lifecycle::start(r, now));
    let claimed = a
        .transition(&id, &[RunStatus::Queued], claim)
        .await
        .expect("claims");
    assert!(matches!(claimed, Transition::Done(_)), "{claimed:?}");
    let step = |name: &str| StepResult {
        name: name.into(),
        ..Default::default()
    };
    a.record_step(&id, &step("first"))
        .await
        .expect("records while its lease is live");
    // b cannot record a run it does not own, even with a live lease.
    let err = b
        .record_step(&id, &step("intruder"))
        .await
        .expect_err("b is fenced");
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    // a stops renewing; once its lease expired, it is fenced before anyone reaps.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match a.record_step(&id, &step("first")).await {
            Err(StoreError::LeaseLost { .. }) => break,
            Ok(()) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a's lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !a.renew(&mut None, Duration::from_secs(60))
            .await
            .expect("renew asks"),
        "an expired lease is not renewed"
    );
    // b reaps it: interrupted, held by no one.
    let interrupt: Change =
        Arc::new(move |r: &mut RunRecord| untoil::engine::lifecycle::interrupt(r, now, false));
    let reaped = b.reap(interrupt.clone()).await.expect("reaps");
    assert_eq!(reaped.interrupted, vec![id.clone()]);
    assert!(
        b.reap(interrupt)
            .await
            .expect("reaps again")
            .interrupted
            .is_empty(),
        "reaped once"
    );
    let before = store.get_run(&id).await.expect("reads").expect("the run");
    assert_eq!(before.status, RunStatus::Interrupted);
    assert_eq!(before.steps, vec![step("first")]);
    // a's late writes are refused and change nothing.
    let err = a.record_step(&id, &step("late")).await.expect_err("fenced");
    assert!(
        matches!(&err, StoreError::LeaseLost { run, .. } if run == &id.0),
        "{err:?}"
    );
    assert!(err.to_string().contains("taken over"), "{err}");
    let err = a
        .step_started(&id, "late", Some(7))
        .await
        .expect_err("fenced");
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    let mut done = before.clone();
    done.status = RunStatus::Succeeded;
    done.steps.push(step("late"));
    let err = a.finish(done, None).await.expect_err("fenced");
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    let after = store.get_run(&id).await.expect("reads").expect("the run");
    assert_eq!(after, before, "nothing changed");
    assert_eq!(
        scalar(
            &pg,
            &db,
            &format!(
                "SELECT coalesce(lease_owner, '-') FROM runs WHERE id = '{}'",
                id.0
            )
        ),
        "-"
    );
}

/// A claim writes the run's record and its lease in one statement: it is refused, and nothing
/// is written, once the claiming replica's own lease expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_claim_by_a_replica_whose_lease_expired_and_writes_nothing() {
    use std::sync::Arc;
    use std::time::Duration;
    use untoil::run::record::RunRecord;
    use untoil::run::status::RunStatus;
    use untoil::store::Change;

    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("late-claim"));
    let store = open(&pg, &db).await.expect("opens");
    let a = store
        .join("a", 1, Duration::from_millis(1500))
        .await
        .expect("a joins");
    let me = a.replica().expect("a replica").to_string();
    let id = admit_queued(&a).await;
    let holders = format!(
        "SELECT coalesce(lease_owner, '-') || ' ' || coalesce(admitted_by, '-') FROM runs WHERE id = '{}'",
        id.0
    );
    assert_eq!(
        scalar(&pg, &db, &holders),
        format!("- {me}"),
        "a queued run is in its admitting replica's queue"
    );
    // a stops renewing: wait, by the database's clock, until its lease has expired.
    let expired = format!("SELECT expires_at < clock_timestamp() FROM replicas WHERE id = '{me}'");
    crate::common::until("a's lease to expire", || async {
        (scalar(&pg, &db, &expired) == "t").then_some(())
    })
    .await;
    let now = chrono::Utc::now();
    let claim: Change = Arc::new(move |r: &mut RunRecord| untoil::engine::lifecycle::start(r, now));
    let err = a
        .transition(&id, &[RunStatus::Queued], claim)
        .await
        .expect_err("a claim with an expired lease is refused");
    assert!(
        matches!(&err, StoreError::LeaseLost { run, .. } if run == &id.0),
        "{err:?}"
    );
    let after = store.get_run(&id).await.expect("reads").expect("the run");
    assert_eq!(after.status, RunStatus::Queued, "nothing written");
    assert_eq!(after.started_at, None, "nothing written");
    assert_eq!(
        scalar(&pg, &db, &holders),
        format!("- {me}"),
        "held as before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_compaction_folds_past_shards_into_one_row_and_changes_nothing_a_report_reads() {
    use untoil::run::record::{RunRecord, Verification};

    let pg = Postgres::default();
    let (a, b) = (
        pg.database(std::path::Path::new("compacted")),
        pg.database(std::path::Path::new("plain")),
    );
    let (compacted, plain) = (
        open(&pg, &a).await.expect("opens"),
        open(&pg, &b).await.expect("opens"),
    );
    let today = chrono::Utc::now().date_naive();
    let on = |days: i64, i: usize| {
        let at = (today - chrono::Duration::days(days))
            .and_hms_opt(12, 0, 0)
            .expect("noon")
            .and_utc();
        RunRecord {
            runbook: format!("rb-{}", i % 4),
            owner: "t".into(),
            service: None,
            created_at: at,
            started_at: Some(at),
            finished_at: Some(at + chrono::Duration::seconds(3)),
            ..RunRecord::synthetic(i)
        }
    };
    // Today and two past days, 4 groups a day of ~33 runs over the 8 shards; one run still
    // awaits its verdict.
    let mut runs: Vec<RunRecord> = (0..400).map(|i| on([0, 1, 5][i % 3], i)).collect();
    let mut waiting = on(1, 20);
    waiting.verify_by = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    let waiting_id = waiting.id.clone();
    runs.push(waiting);
    for store in [&compacted, &plain] {
        store.finish_many(runs.clone()).await.expect("finish");
    }
    let from = today - chrono::Duration::days(60);
    let same = |what: &str| {
        let (compacted, plain) = (&compacted, &plain);
        let what = what.to_string();
        async move {
            for by_month in [false, true] {
                let x = compacted
                    .rollups(from, today, by_month)
                    .await
                    .expect("rollups");
                let y = plain.rollups(from, today, by_month).await.expect("rollups");
                assert_eq!(x, y, "{what} (by_month {by_month})");
            }
        }
    };
    let rows = |db: &str| scalar(&pg, db, "SELECT count(*) FROM rollups_daily").parse::<u64>();
    let before = rows(&a).expect("count");

    let n = compacted.compact(today).await.expect("compact");
    assert!(n > 0, "nothing compacted");
    same("after compacting").await;
    let after = rows(&a).expect("count");
    assert!(after < before, "{after} rows, {before} before");
    // Only today's groups and the group of the run awaiting its verdict keep their shards.
    let past_shards = scalar(
        &pg,
        &a,
        &format!(
            "SELECT count(*) FROM (SELECT 1 FROM rollups_daily WHERE period < '{today}' \
             GROUP BY period, owner, service, runbook, cause HAVING count(*) > 1) g"
        ),
    );
    assert_eq!(
        past_shards, "1",
        "the awaited verdict's group is left as it is"
    );

    // The verdict lands on a compacted store exactly as on the other.
    for store in [&compacted, &plain] {
        let verdict = Verification {
            verified: false,
            at: chrono::Utc::now(),
            resolved_at: None,
        };
        assert!(
            store
                .set_verified(&waiting_id, verdict)
                .await
                .expect("verdict")
        );
    }
    same("after a verdict").await;
    // A late finish into a compacted group adds to it; compacting again folds it in.
    let late = on(5, 0);
    for store in [&compacted, &plain] {
        store.finish_many(vec![late.clone()]).await.expect("finish");
    }
    same("after a late finish").await;
    compacted.compact(today).await.expect("compact again");
    same("after compacting again").await;
    assert_eq!(
        scalar(
            &pg,
            &a,
            &format!(
                "SELECT count(*) FROM (SELECT 1 FROM rollups_daily WHERE period < '{today}' \
                 GROUP BY period, owner, service, runbook, cause HAVING count(*) > 1) g"
            ),
        ),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reaping_skips_a_dead_replicas_undecodable_run_and_takes_over_the_others() {
    use std::sync::Arc;
    use std::time::Duration;
    use untoil::run::record::RunRecord;
    use untoil::run::status::RunStatus;
    use untoil::store::{Candidate, Change};
    use untoil::trigger::key::DedupeKey;

    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("corrupt-orphan"));
    let store = open(&pg, &db).await.expect("opens");
    let dead = store
        .join("dead", 1, Duration::from_millis(500))
        .await
        .expect("joins");
    let survivor = store
        .join("survivor", 2, Duration::from_secs(60))
        .await
        .expect("joins");
    let queued = || RunRecord {
        status: RunStatus::Queued,
        started_at: None,
        finished_at: None,
        ..RunRecord::synthetic(0)
    };
    let (corrupt, good) = (queued(), queued());
    let (corrupt_id, good_id) = (corrupt.id.clone(), good.id.clone());
    let candidates = [corrupt, good]
        .into_iter()
        .map(|run| Candidate {
            key: DedupeKey::Manual {
                run: run.id.0.clone(),
            },
            run,
            gate: None,
        })
        .collect();
    dead.admit(candidates, Vec::new()).await.expect("admits");
    // A record no untoil can read (written by hand, or by a bug).
    scalar(
        &pg,
        &db,
        &format!(
            "UPDATE runs SET record = '{{\"not\": \"a run\"}}' WHERE id = '{}'",
            corrupt_id.0
        ),
    );
    // Once the dead replica's lease ends, the survivor adopts the run it can read.
    let none: Change = Arc::new(|_: &mut RunRecord| panic!("nothing is interrupted"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let adopted = loop {
        let reaped = survivor
            .reap(none.clone())
            .await
            .expect("a reaping round succeeds despite the corrupt run");
        if !reaped.queued.is_empty() {
            break reaped.queued;
        }
        assert!(std::time::Instant::now() < deadline, "nothing adopted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ids: Vec<_> = adopted.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, vec![good_id], "only the readable run is adopted");
    let me = survivor.replica().expect("a replica");
    let holder = format!(
        "SELECT coalesce(admitted_by, '') FROM runs WHERE id = '{}'",
        corrupt_id.0
    );
    assert_ne!(
        scalar(&pg, &db, &holder),
        me,
        "the corrupt run is left where it is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_4_packs_rollups_the_previous_release_wrote_and_reads_its_later_writes() {
    use std::collections::BTreeMap;
    use untoil::ledger::rollup::{Rollup, RollupKey};

    let pg = Postgres::default();
    let db = pg.database(std::path::Path::new("packed"));
    let pool = pg_pool(&pg.cluster().url(&db));
    // The database as the previous release (schema 3) leaves it.
    {
        let mut c = pool.get().await.expect("a connection");
        let tx = c.transaction().await.expect("a transaction");
        untoil::store::postgres::schema::migrate_to(&tx, &db, 3)
            .await
            .expect("schema 3");
        tx.commit().await.expect("commit");
    }
    // Rollups that release wrote (JSON counters only): two days of one month, two shards.
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2024, 3, d).expect("a day");
    let mut daily: BTreeMap<(RollupKey, i16), Rollup> = BTreeMap::new();
    for i in 0..60 {
        let at = day([5, 20][i % 2])
            .and_hms_opt(9, 0, 0)
            .expect("9am")
            .and_utc();
        let run = untoil::run::record::RunRecord {
            created_at: at,
            started_at: Some(at),
            finished_at: Some(at + chrono::Duration::milliseconds(i as i64 * 997)),
            ..untoil::run::record::RunRecord::synthetic(i)
        };
        let (key, part) = Rollup::of_run(&run).expect("counts");
        daily
            .entry((key, (i % 3 % 2) as i16))
            .or_default()
            .merge(&part);
    }
    let mut monthly: BTreeMap<(RollupKey, i16), Rollup> = BTreeMap::new();
    for ((k, s), r) in &daily {
        let key = RollupKey {
            day: day(1),
            ..k.clone()
        };
        monthly.entry((key, *s)).or_default().merge(r);
    }
    let c = pool.get().await.expect("a connection");
    for (table, rows) in [("rollups_daily", &daily), ("rollups_monthly", &monthly)] {
        for ((k, s), r) in rows {
            let json = serde_json::to_string(r).expect("json");
            c.execute(
                &format!(
                    "INSERT INTO {table} (period, owner, service, runbook, cause, shard, \
                     counters) VALUES ($1, $2, $3, $4, $5, $6, $7::text::json)"
                ),
                &[&k.day, &k.owner, &k.service, &k.runbook, &k.cause, s, &json],
            )
            .await
            .expect("an old rollup row");
        }
    }
    // More rows than the step packs in one page, on a day of their own.
    let one = Rollup {
        runs: 1,
        succeeded: 1,
        toil_milli_minutes: 1_500,
        ..Rollup::default()
    };
    c.execute(
        "INSERT INTO rollups_daily (period, owner, service, runbook, cause, shard, counters) \
         SELECT '2023-01-15', 'filler', '', 'filler-' || g, 'manual', 0, $1::text::json \
         FROM generate_series(1, 2500) g",
        &[&serde_json::to_string(&one).expect("json")],
    )
    .await
    .expect("filler rows");
    // Shards summed per group, as reads give them.
    let summed = |rows: &BTreeMap<(RollupKey, i16), Rollup>| {
        let mut out: Vec<(RollupKey, Rollup)> = Vec::new();
        for ((k, _), r) in rows {
            match out.last_mut() {
                Some((last, sum)) if last == k => sum.merge(r),
                _ => out.push((k.clone(), r.clone())),
            }
        }
        out
    };
    let unpacked = |table: &str| {
        scalar(
            &pg,
            &db,
            &format!("SELECT count(*) FROM {table} WHERE packed IS NULL"),
        )
    };

    let store = open(&pg, &db).await.expect("opens, migrating");
    assert_eq!((store.migrated().from, store.migrated().to), (Some(3), 4));
    for table in ["rollups_daily", "rollups_monthly"] {
        assert_eq!(unpacked(table), "0", "{table} has rows left unpacked");
    }
    let filler = chrono::NaiveDate::from_ymd_opt(2023, 1, 15).expect("a day");
    let fillers = store.rollups(filler, filler, false).await.expect("fillers");
    assert_eq!(fillers.len(), 2500);
    assert!(fillers.iter().all(|(_, r)| *r == one));
    let (from, to) = (day(1), day(31));
    let read = store.rollups(from, to, false).await.expect("daily");
    assert_eq!(read, summed(&daily), "daily rollups read back exactly");
    let read = store.rollups(from, to, true).await.expect("monthly");
    assert_eq!(read, summed(&monthly), "monthly rollups read back exactly");

    // The previous release, still serving during a rolling upgrade, adds to a row's JSON only:
    // its packed copy is emptied, and the row is read from the JSON.
    let ((k, s), r) = daily.iter().next().expect("a row");
    let mut more = r.clone();
    more.merge(r);
    c.execute(
        "UPDATE rollups_daily SET counters = $7::text::json WHERE period = $1 AND owner = $2 \
         AND service = $3 AND runbook = $4 AND cause = $5 AND shard = $6",
        &[
            &k.day,
            &k.owner,
            &k.service,
            &k.runbook,
            &k.cause,
            s,
            &serde_json::to_string(&more).expect("json"),
        ],
    )
    .await
    .expect("an old release's update");
    assert_eq!(unpacked("rollups_daily"), "1");
    daily.insert((k.clone(), *s), more);
    let read = store.rollups(from, to, false).await.expect("daily");
    assert_eq!(read, summed(&daily), "the old release's update is read");
    // Compaction packs it again (and folds the past shards), changing no total.
    store
        .compact(chrono::Utc::now().date_naive())
        .await
        .expect("compact");
    assert_eq!(unpacked("rollups_daily"), "0");
    assert_eq!(
        store.rollups(from, to, false).await.expect("daily"),
        summed(&daily)
    );
    assert_eq!(
        store.rollups(from, to, true).await.expect("monthly"),
        summed(&monthly)
    );
}
