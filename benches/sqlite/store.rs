//! Store benchmark: seeds N finished runs (default 1,000,000, spread over two years, 8 teams,
//! 40 runbooks) into a fresh sled store and into SQLite, then times the toil report by
//! team x month from the sled store's rollups against the same aggregation in SQLite over the
//! same rows with a covering index, and checks that both give the same answer. Then measures
//! record throughput with durable flushes (`finish`, group commit) at 1, 4 and 16 concurrent
//! writers.
//!
//! Run with `cargo bench -p untoil-bench-sqlite --bench store`. Environment:
//! - `UNTOIL_BENCH_RUNS`: runs to seed (default 1,000,000).
//! - `UNTOIL_BENCH_RECORD_RUNS`: runs recorded durably per thread count (default 20,000).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use untoil::ledger::rollup::milli_minutes;
use untoil::report::period::Period;
use untoil::report::query::Dim;
use untoil::report::toil as report;
use untoil::run::record::RunRecord;
use untoil::run::status::RunStatus;
use untoil::store::Store;
use untoil::store::sled::SledStore;

mod seed;
use seed::*;

const BATCH: usize = 10_000;
const ROUNDS: usize = 7;
const THREADS: [usize; 3] = [1, 4, 16];
/// The store is async: the benchmark waits on it from its own runtime.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
    .block_on(f)
}

/// The columns SQLite keeps of a run.
struct SqlRow {
    id: String,
    day: String,
    owner: String,
    service: String,
    runbook: String,
    cause: &'static str,
    status: &'static str,
    toil_milli: u64,
    duration_ms: u64,
}

fn sql_row(run: &RunRecord) -> SqlRow {
    SqlRow {
        id: run.id.0.clone(),
        day: run
            .started_at
            .unwrap_or(run.created_at)
            .format("%Y-%m-%d")
            .to_string(),
        owner: run.owner.clone(),
        service: run.service.clone().unwrap_or_default(),
        runbook: run.runbook.clone(),
        cause: run.cause.kind(),
        status: run.status.as_str(),
        toil_milli: milli_minutes(run.toil.as_ref().map_or(0.0, |t| t.minutes)),
        duration_ms: run.duration_ms().unwrap_or(0),
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

const SQL_REPORT: &str = "SELECT owner, substr(day, 1, 7) AS month, COUNT(*), \
     SUM(status = 'succeeded'), SUM(status IN ('failed', 'timed_out', 'interrupted')), \
     SUM(status = 'cancelled'), SUM(toil_milli) \
     FROM runs WHERE day BETWEEN ?1 AND ?2 GROUP BY owner, month ORDER BY owner, month";

fn sqlite_report(conn: &Connection, p: Period) -> Answer {
    let mut stmt = conn.prepare_cached(SQL_REPORT).expect("prepare report");
    let from = p.from.format("%Y-%m-%d").to_string();
    let to = p.to.format("%Y-%m-%d").to_string();
    stmt.query_map([from, to], |row| {
        let n = |i: usize| row.get::<_, i64>(i).map(|v| v as u64);
        Ok((
            (row.get::<_, String>(0)?, row.get::<_, String>(1)?),
            Totals {
                runs: n(2)?,
                succeeded: n(3)?,
                failed: n(4)?,
                cancelled: n(5)?,
                toil_milli: n(6)?,
            },
        ))
    })
    .expect("run report")
    .collect::<rusqlite::Result<Answer>>()
    .expect("read report")
}

fn open_sqlite(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open sqlite");
    // A 256 MiB page cache: the covering index (and the table) stay in memory, as sled's
    // default 1 GiB cache keeps its trees.
    conn.execute_batch("PRAGMA cache_size = -262144;")
        .expect("pragma");
    conn
}

fn main() {
    let n = env_usize("UNTOIL_BENCH_RUNS", 1_000_000);
    let m = env_usize("UNTOIL_BENCH_RECORD_RUNS", 20_000);
    assert!(n < u32::MAX as usize);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = period();
    println!(
        "store benchmark: {n} runs over {DAYS} days, {TEAMS} teams, {RUNBOOKS} runbooks, in {}",
        dir.path().display()
    );

    // Ground truth, tallied from the generated runs.
    let mut expected: Answer = BTreeMap::new();

    // Seed sled: finish_runs in batches, one flush each.
    let sled_path = dir.path().join("sled");
    let store = SledStore::open(&sled_path).expect("open sled store");
    let flushes0 = store.flushes();
    let mut sled_seed = Duration::ZERO;
    let mut batch = Vec::with_capacity(BATCH);
    for lo in (0..n).step_by(BATCH) {
        batch.clear();
        batch.extend((lo..(lo + BATCH).min(n)).map(|i| gen_run(i, n)));
        for run in &batch {
            let row = sql_row(run);
            let t = expected
                .entry((row.owner, row.day[..7].to_string()))
                .or_default();
            t.runs += 1;
            match run.status {
                RunStatus::Succeeded => t.succeeded += 1,
                RunStatus::Cancelled => t.cancelled += 1,
                _ => t.failed += 1,
            }
            t.toil_milli += row.toil_milli;
        }
        let t = Instant::now();
        block_on(store.finish_many(batch.clone())).expect("finish_many");
        sled_seed += t.elapsed();
        if lo % 200_000 == 0 && lo > 0 {
            eprintln!(
                "  sled: {lo} runs seeded, {:.1} s so far",
                sled_seed.as_secs_f64()
            );
        }
    }
    let sled_flushes = store.flushes() - flushes0;
    let groups = block_on(store.rollups(p.from, p.to, true))
        .expect("rollups")
        .len();
    println!(
        "seeded sled: {:.1} s ({:.0} runs/s, batches of {BATCH}, {sled_flushes} flushes), {groups} rollup groups, {:.0} MiB on disk",
        sled_seed.as_secs_f64(),
        n as f64 / sled_seed.as_secs_f64(),
        dir_size(&sled_path) as f64 / (1 << 20) as f64
    );

    // Seed SQLite with the same rows: one transaction, then the index.
    let sqlite_path = dir.path().join("runs.sqlite");
    let mut conn = open_sqlite(&sqlite_path);
    conn.execute_batch(
        "CREATE TABLE runs(id TEXT PRIMARY KEY, day TEXT NOT NULL, owner TEXT NOT NULL, \
         service TEXT NOT NULL, runbook TEXT NOT NULL, cause TEXT NOT NULL, status TEXT NOT NULL, \
         toil_milli INTEGER NOT NULL, duration_ms INTEGER NOT NULL);",
    )
    .expect("create table");
    let mut sqlite_insert = Duration::ZERO;
    let tx = conn.transaction().expect("begin");
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO runs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
            .expect("prepare insert");
        let mut rows = Vec::with_capacity(BATCH);
        for lo in (0..n).step_by(BATCH) {
            rows.clear();
            rows.extend((lo..(lo + BATCH).min(n)).map(|i| sql_row(&gen_run(i, n))));
            let t = Instant::now();
            for r in &rows {
                insert
                    .execute(rusqlite::params![
                        r.id,
                        r.day,
                        r.owner,
                        r.service,
                        r.runbook,
                        r.cause,
                        r.status,
                        r.toil_milli as i64,
                        r.duration_ms as i64
                    ])
                    .expect("insert");
            }
            sqlite_insert += t.elapsed();
        }
    }
    let t = Instant::now();
    tx.commit().expect("commit");
    sqlite_insert += t.elapsed();
    let t = Instant::now();
    conn.execute_batch(
        "CREATE INDEX runs_report ON runs(day, owner, status, toil_milli, duration_ms); ANALYZE;",
    )
    .expect("create index");
    let sqlite_index = t.elapsed();
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {SQL_REPORT}"))
        .expect("explain")
        .query_map(["", ""], |row| row.get::<_, String>(3))
        .expect("explain")
        .collect::<rusqlite::Result<_>>()
        .expect("explain");
    println!(
        "seeded sqlite: {:.1} s insert (one transaction) + {:.1} s index, {:.0} MiB on disk; plan: {}",
        sqlite_insert.as_secs_f64(),
        sqlite_index.as_secs_f64(),
        std::fs::metadata(&sqlite_path).map_or(0, |m| m.len()) as f64 / (1 << 20) as f64,
        plan.join("; ")
    );

    // The report, by team x month over the whole period: 1 warm-up, median of ROUNDS.
    let by = [Dim::Team, Dim::Month];
    let untoil_report = || block_on(report::toil_report(&store, p, &by)).expect("toil report");
    let warm = untoil_report();
    let mut untoil_times = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let r = untoil_report();
        untoil_times.push(t.elapsed());
        assert_eq!(r.rows.len(), warm.rows.len());
    }
    // Where untoil's time goes: reading and decoding the rollups, then grouping them.
    let mut read_times = Vec::new();
    let mut group_times = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let rollups = block_on(store.rollups(p.from, p.to, true)).expect("rollups");
        read_times.push(t.elapsed());
        let t = Instant::now();
        let r = report::aggregate(p, &by, rollups);
        group_times.push(t.elapsed());
        assert_eq!(r.rows.len(), warm.rows.len());
    }
    let read_median = median(read_times);
    let group_median = median(group_times);
    let sqlite_warm = sqlite_report(&conn, p);
    let mut sqlite_times = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let r = sqlite_report(&conn, p);
        sqlite_times.push(t.elapsed());
        assert_eq!(r.len(), sqlite_warm.len());
    }
    let untoil_median = median(untoil_times);
    let sqlite_median = median(sqlite_times);

    // Both must give the same answer, and the answer of the generated runs.
    let untoil_ans = untoil_answer(&warm);
    assert_eq!(
        untoil_ans, expected,
        "untoil report differs from the generated runs"
    );
    assert_eq!(
        sqlite_warm, expected,
        "SQLite report differs from the generated runs"
    );
    assert_eq!(warm.total_rollup.runs, n as u64);
    println!(
        "checked: untoil and SQLite agree on runs, succeeded, failed, cancelled and toil per (team, month) for all {} rows ({} runs)",
        expected.len(),
        warm.total_rollup.runs
    );

    // Informational: what `untoil report` does from a cold process (open, then report).
    drop(store);
    drop(conn);
    let t = Instant::now();
    let store = SledStore::open(&sled_path).expect("reopen sled store");
    let cold_open_untoil = t.elapsed();
    let t = Instant::now();
    let cold = block_on(report::toil_report(&store, p, &by)).expect("toil report");
    let cold_untoil = t.elapsed();
    assert_eq!(untoil_answer(&cold), expected);
    drop(store);
    let t = Instant::now();
    let conn = open_sqlite(&sqlite_path);
    let cold = sqlite_report(&conn, p);
    let cold_sqlite = t.elapsed();
    assert_eq!(cold, expected);
    drop(conn);

    // Record throughput: finish (durable, group commit) from K concurrent writers.
    let runs: Vec<RunRecord> = (0..m).map(|i| gen_run(i, m)).collect();
    let mut throughput = Vec::new();
    for k in THREADS {
        let d = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(d.path()).expect("open sled store");
        let f0 = store.flushes();
        let per = m.div_ceil(k);
        let t = Instant::now();
        block_on(async {
            let mut writers = Vec::new();
            for chunk in runs.chunks(per) {
                let (store, chunk) = (store.clone(), chunk.to_vec());
                writers.push(tokio::spawn(async move {
                    for run in chunk {
                        store.finish(run, None).await.expect("finish");
                    }
                }));
            }
            for w in writers {
                w.await.expect("writer");
            }
        });
        let elapsed = t.elapsed();
        let flushes = store.flushes() - f0;
        let all = untoil::store::RunFilter::default();
        assert_eq!(block_on(store.list_runs(&all)).expect("list").len(), m);
        eprintln!(
            "  record: {k} threads done in {:.1} s",
            elapsed.as_secs_f64()
        );
        throughput.push((k, elapsed, flushes));
    }

    let ratio = untoil_median.as_secs_f64() / sqlite_median.as_secs_f64();
    println!();
    println!("== store benchmark summary ==");
    println!(
        "data: {n} finished runs, {} .. {}, {TEAMS} teams, {RUNBOOKS} runbooks, {groups} rollup groups",
        p.from, p.to
    );
    println!(
        "seed (informational): sled finish_runs x{BATCH} {:.1} s ({:.0} runs/s); sqlite {:.1} s insert + {:.1} s index (9 columns, not whole records)",
        sled_seed.as_secs_f64(),
        n as f64 / sled_seed.as_secs_f64(),
        sqlite_insert.as_secs_f64(),
        sqlite_index.as_secs_f64()
    );
    println!(
        "report by team x month, whole period ({} rows), warm, median of {ROUNDS}:",
        warm.rows.len()
    );
    println!(
        "  untoil (sled rollups; counts, sums, median/p95 histograms, MTTR) {:>9.2} ms",
        ms(untoil_median)
    );
    println!(
        "    of which store.rollups() (range scan + JSON decode of {groups} groups) {:.2} ms, report::aggregate() {:.2} ms",
        ms(read_median),
        ms(group_median)
    );
    println!(
        "  sqlite (covering index; counts and sums only, no percentiles)    {:>9.2} ms",
        ms(sqlite_median)
    );
    println!(
        "  ratio untoil / sqlite: {ratio:.3}x (target <= 0.20x): {}",
        if ratio <= 0.20 { "MET" } else { "NOT MET" }
    );
    println!(
        "  cold (informational): untoil open {:.1} ms + report {:.1} ms; sqlite open + report {:.1} ms",
        ms(cold_open_untoil),
        ms(cold_untoil),
        ms(cold_sqlite)
    );
    println!("record throughput, finish_run durable (group commit), {m} runs each:");
    for (k, elapsed, flushes) in throughput {
        println!(
            "  {k:>2} thread(s): {:>8.0} runs/s, {flushes} flushes ({:.1} runs/flush), {:.2} ms/run/thread",
            m as f64 / elapsed.as_secs_f64(),
            m as f64 / flushes.max(1) as f64,
            ms(elapsed) * k as f64 / m as f64
        );
    }
}
