//! Report benchmark on PostgreSQL (issue 17): seeds N finished runs (default 1,000,000, the
//! same generated runs as the sled/SQLite benchmark) into untoil's PostgreSQL store through the
//! store itself (so its rollups are kept the way a daemon keeps them), and the same rows into a
//! plain table of the same database with a covering index; compacts the rollups of past days
//! and months as every replica does each hour; then times the toil report by team x
//! month from untoil's rollups against a plain `GROUP BY` over that table, checks that both give
//! the answer of the generated runs, and prints the ratio (goal: at most 0.2x). It also prints
//! where untoil's time goes: the store's rollup read against its query alone (rows fetched, not
//! decoded) and the server's execution time of that query.
//!
//! It starts a PostgreSQL cluster of its own (initdb/pg_ctl from Debian's `postgresql` package,
//! as the `postgres` account when run as root; temp dir, loopback port), as the tests do.
//!
//! Run with `cargo bench -p untoil-bench-sqlite --bench postgres`. Environment:
//! - `UNTOIL_BENCH_RUNS`: runs to seed (default 1,000,000).
//! - `UNTOIL_BENCH_WRITERS`: concurrent store writers while seeding (default 4).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use untoil::report::query::Dim;
use untoil::report::toil as report;
use untoil::store::Store;
use untoil::store::database::{Database, DatabaseOptions};
use untoil::store::postgres::PgStore;

mod seed;
use seed::*;

// The benchmark starts a cluster only; the tests use the rest.
#[allow(dead_code)]
#[path = "../../tests/suite/pgcluster.rs"]
mod pgcluster;

/// What the test harness takes from the test suite's helpers.
mod common {
    /// A loopback port nothing listens on (bound, then released).
    pub fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }
}

const ROUNDS: usize = 7;
const BATCH: usize = 1_000;

/// The same aggregation as untoil's report, over a plain table of the runs' columns.
const SQL_REPORT: &str = "SELECT owner, to_char(day, 'YYYY-MM') AS month, count(*), \
     count(*) FILTER (WHERE status = 'succeeded'), \
     count(*) FILTER (WHERE status IN ('failed', 'timed_out', 'interrupted')), \
     count(*) FILTER (WHERE status = 'cancelled'), sum(toil_milli)::bigint \
     FROM plain_runs WHERE day BETWEEN $1 AND $2 GROUP BY owner, month ORDER BY owner, month";

/// The same aggregation over untoil's own `runs` table, its values read out of each record (what
/// a report without rollups would have to do); runs and statuses only.
const SQL_RUNS_REPORT: &str = "SELECT record->>'owner' AS owner, \
     to_char((record->>'started_at')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM') AS month, \
     count(*), count(*) FILTER (WHERE status = 'succeeded'), \
     count(*) FILTER (WHERE status IN ('failed', 'timed_out', 'interrupted')), \
     count(*) FILTER (WHERE status = 'cancelled'), 0::bigint \
     FROM runs WHERE NOT active GROUP BY owner, month ORDER BY owner, month";

/// The store's read of monthly rollups, as `src/store/postgres/rollups.rs` sends it (for the
/// breakdown of untoil's time).
const ROLLUP_READ: &str = "SELECT period, owner, service, runbook, cause, packed, \
     CASE WHEN packed IS NULL THEN counters::text END \
     FROM rollups_monthly WHERE period >= $1 AND period <= $2 \
     ORDER BY period, owner, service, runbook, cause";

/// An answer from rows of (owner, month, runs, succeeded, failed, cancelled, toil).
fn answer(rows: &[tokio_postgres::Row]) -> Answer {
    rows.iter()
        .map(|r| {
            let n = |i: usize| r.get::<_, i64>(i) as u64;
            (
                (r.get::<_, String>(0), r.get::<_, String>(1)),
                Totals {
                    runs: n(2),
                    succeeded: n(3),
                    failed: n(4),
                    cancelled: n(5),
                    toil_milli: n(6),
                },
            )
        })
        .collect()
}

async fn runs_table_report(client: &tokio_postgres::Client) -> Answer {
    let rows = client
        .query(SQL_RUNS_REPORT, &[])
        .await
        .expect("report over the runs table");
    answer(&rows)
}

async fn plain_report(
    client: &tokio_postgres::Client,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Answer {
    let rows = client
        .query(SQL_REPORT, &[&from, &to])
        .await
        .expect("plain report");
    answer(&rows)
}

fn main() {
    let n = env_usize("UNTOIL_BENCH_RUNS", 1_000_000);
    let writers = env_usize("UNTOIL_BENCH_WRITERS", 4);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = pgcluster::Cluster::start();
    cluster.create_database("bench");
    let p = period();
    println!(
        "postgres report benchmark: {n} runs over {DAYS} days, {TEAMS} teams, {RUNBOOKS} runbooks"
    );
    runtime.block_on(async {
        let options = DatabaseOptions {
            url: cluster.url("bench"),
            password_file: None,
            ca_file: None,
            pool_size: writers + 2,
            idle_in_transaction: None,
        };
        let db = Database::new(&options, |_| None).expect("pool");
        let pg = PgStore::open(db.pool.clone(), db.name.clone())
            .await
            .expect("store");
        let store: Arc<dyn Store> = Arc::new(pg.clone());
        let (client, connection) = tokio_postgres::connect(&cluster.url("bench"), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);

        // Seed through the store: each run's finish keeps its rollups, as a daemon's does.
        let next = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..writers.max(1) {
            let (store, next) = (store.clone(), next.clone());
            tasks.spawn(async move {
                loop {
                    let lo = next.fetch_add(BATCH, Ordering::SeqCst);
                    if lo >= n {
                        return;
                    }
                    let runs = (lo..(lo + BATCH).min(n)).map(|i| gen_run(i, n)).collect();
                    store.finish_many(runs).await.expect("finish_many");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let seeded = t.elapsed();
        println!(
            "seeded untoil's store: {:.1} s ({:.0} runs/s, {writers} writers of {BATCH}-run batches)",
            seeded.as_secs_f64(),
            n as f64 / seeded.as_secs_f64()
        );

        // The same runs as plain rows, and the expected answer from the generator itself.
        let t = Instant::now();
        client
            .batch_execute(
                "CREATE TABLE plain_runs (owner text, day date, status text, toil_milli bigint)",
            )
            .await
            .expect("create plain_runs");
        let mut expected = Answer::new();
        for lo in (0..n).step_by(10_000) {
            let (mut owner, mut day, mut status, mut toil) = (vec![], vec![], vec![], vec![]);
            for i in lo..(lo + 10_000).min(n) {
                let run = gen_run(i, n);
                let milli = untoil::ledger::rollup::milli_minutes(
                    run.toil.as_ref().map_or(0.0, |c| c.minutes),
                ) as i64;
                // Rollups group a run by the day it started, as the SQLite benchmark does.
                let d = run.started_at.unwrap_or(run.created_at).date_naive();
                let e = expected
                    .entry((run.owner.clone(), d.format("%Y-%m").to_string()))
                    .or_default();
                e.runs += 1;
                match run.status.as_str() {
                    "succeeded" => e.succeeded += 1,
                    "failed" | "timed_out" | "interrupted" => e.failed += 1,
                    "cancelled" => e.cancelled += 1,
                    _ => {}
                }
                e.toil_milli += milli as u64;
                owner.push(run.owner);
                day.push(d);
                status.push(run.status.as_str().to_string());
                toil.push(milli);
            }
            client
                .execute(
                    "INSERT INTO plain_runs SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::bigint[])",
                    &[&owner, &day, &status, &toil],
                )
                .await
                .expect("insert plain rows");
        }
        client
            .batch_execute("CREATE INDEX plain_report ON plain_runs (day, owner, status, toil_milli)")
            .await
            .expect("index plain_runs");
        println!(
            "seeded the plain table with a covering index in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // What every replica does hourly: the shards of days and months that are over become
        // one row per group.
        let t = Instant::now();
        let groups = pg
            .compact(chrono::Utc::now().date_naive())
            .await
            .expect("compact");
        println!(
            "compacted {groups} rollup groups in {:.1} s (as every replica does each hour)",
            t.elapsed().as_secs_f64()
        );
        // Both sides with fresh statistics and visibility maps (VACUUM runs on its own, outside
        // a transaction block).
        client.batch_execute("VACUUM ANALYZE").await.expect("vacuum");

        let by = [Dim::Team, Dim::Month];
        let warm = report::toil_report(&*store, p, &by).await.expect("report");
        let mut untoil_times = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let r = report::toil_report(&*store, p, &by).await.expect("report");
            untoil_times.push(t.elapsed());
            assert_eq!(r.rows.len(), warm.rows.len());
        }
        // Where untoil's time goes: the store's rollup read (query, decoding, shards summed)
        // apart from the report's aggregation, and the server's part of the read.
        let mut read_times = Vec::new();
        let mut rows_read = 0;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            rows_read = store.rollups(p.from, p.to, true).await.expect("rollups").len();
            read_times.push(t.elapsed());
        }
        let plan = client
            .query(
                &format!("EXPLAIN (ANALYZE, BUFFERS) {ROLLUP_READ}"),
                &[&p.from, &p.to],
            )
            .await
            .expect("explain the rollup read");
        let mut fetch_times = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            client.query(ROLLUP_READ, &[&p.from, &p.to]).await.expect("rollup read");
            fetch_times.push(t.elapsed());
        }
        let plan_end: Vec<String> = plan.iter().map(|r| r.get::<_, String>(0)).collect();
        println!(
            "untoil's rollup read, median of {ROUNDS}: {:.2} ms for {rows_read} groups (its query alone, rows fetched undecoded: {:.2} ms; server: {})",
            ms(median(read_times)),
            ms(median(fetch_times)),
            plan_end.last().map_or("", |s| s.trim())
        );
        let plain_warm = plain_report(&client, p.from, p.to).await;
        let mut plain_times = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let r = plain_report(&client, p.from, p.to).await;
            plain_times.push(t.elapsed());
            assert_eq!(r.len(), plain_warm.len());
        }
        let answers = [
            ("untoil's report", untoil_answer(&warm)),
            ("the plain GROUP BY", plain_warm),
        ];
        for (who, answer) in answers {
            let wrong: Vec<_> = expected
                .iter()
                .filter(|(k, v)| answer.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k:?}: expected {v:?}, got {:?}", answer.get(k)))
                .collect();
            assert!(
                wrong.is_empty() && answer.len() == expected.len(),
                "{who} differs from the generated runs in {} of {} groups: {}",
                wrong.len(),
                expected.len(),
                wrong.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            );
        }
        assert_eq!(warm.total_rollup.runs, n as u64);
        let runs_warm = runs_table_report(&client).await;
        let mut runs_times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let r = runs_table_report(&client).await;
            runs_times.push(t.elapsed());
            assert_eq!(r.len(), runs_warm.len());
        }
        let counts = |a: &Answer| -> Vec<((String, String), [u64; 4])> {
            a.iter()
                .map(|(k, v)| (k.clone(), [v.runs, v.succeeded, v.failed, v.cancelled]))
                .collect()
        };
        assert_eq!(
            counts(&runs_warm),
            counts(&expected),
            "the GROUP BY over untoil's runs table counts other runs"
        );
        let (u, q): (Duration, Duration) = (median(untoil_times), median(plain_times));
        let r = median(runs_times);
        println!(
            "checked: untoil and the plain GROUP BY agree per (team, month) for all {} rows ({} runs)",
            expected.len(),
            warm.total_rollup.runs
        );
        println!(
            "toil report by team x month, median of {ROUNDS}: untoil (rollups) {:.2} ms, plain GROUP BY {:.2} ms: {:.3}x (goal <= 0.2x)",
            ms(u),
            ms(q),
            u.as_secs_f64() / q.as_secs_f64()
        );
        println!(
            "against a GROUP BY over untoil's runs table (values read from each record), median of 3: {:.2} ms: {:.3}x",
            ms(r),
            u.as_secs_f64() / r.as_secs_f64()
        );
    });
}
