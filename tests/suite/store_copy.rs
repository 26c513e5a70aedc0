//! `untoil store copy --to URL`, as an operator moves a sled store to PostgreSQL: everything the
//! store holds reads the same from the database afterwards (runs whole, active ones as they
//! were, rollups of pruned runs, guard state, alert episodes, dedupe keys), a second copy
//! changes nothing, and a daemon on the database does not run a re-sent alert again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};
use untoil::guard::{Breaker, KeyState};
use untoil::run::record::RunRecord;
use untoil::run::status::RunStatus;
use untoil::store::postgres::PgStore;
use untoil::store::sled::SledStore;
use untoil::store::{
    AlertReceived, Candidate, Decide, Delivery, GuardOf, RunFilter, Store, Update,
};
use untoil::trigger::key::DedupeKey;

use crate::common::{Dirs, Http, Served, fixture, until, untoil_command};
use crate::conformance::{Spec, alert_candidates, big_notification, build, pg_pool};
use crate::pgcluster::Cluster;

/// A finished run of `runbook` on day `day` after 2026-09-01 (status index 0 succeeded, 2
/// failed), worth `manual` tenths of a minute.
fn finished(i: usize, day: u32, runbook: u8, status: usize, manual: u16) -> RunRecord {
    build(
        i,
        &Spec {
            day,
            team: 0,
            runbook,
            cause: 0,
            status,
            manual,
            approval: 0,
            step_minutes: vec![],
            step_ok: vec![],
            approval_required: false,
            dry_run: false,
            duration_ms: 1000,
            finish_twice: false,
            verdict: 0,
        },
    )
}

/// Fills a sled store with one of everything it keeps; returns nothing, the store is compared
/// as a whole afterwards.
async fn fill(store: &SledStore) {
    // Finished runs over two months, some of them pruned below while their rollups stay.
    let runs: Vec<RunRecord> = (0..40)
        .map(|i| {
            finished(
                i,
                (i * 2) as u32,
                (i % 3) as u8,
                if i % 4 == 0 { 2 } else { 0 },
                50,
            )
        })
        .collect();
    store.finish_many(runs).await.expect("finish");
    let pruned = store
        .prune(
            Utc.with_ymd_and_hms(2026, 9, 20, 0, 0, 0)
                .single()
                .expect("date"),
        )
        .await
        .expect("prune");
    assert!(pruned > 0, "nothing was pruned");

    // Alert runs sharing one notification, with their episodes and dedupe keys: one stays
    // queued, one runs, one finished awaiting its verdict.
    let n = big_notification(2000, 3);
    let now = Utc::now();
    let episodes: Vec<AlertReceived> = n
        .alerts
        .iter()
        .map(|a| AlertReceived {
            source: untoil::trigger::source::ALERTMANAGER.into(),
            fingerprint: a.fingerprint.clone(),
            starts_at: a.starts_at,
            received_at: now,
            last_seen: now,
            times_received: 2,
            labels: a.labels.clone(),
            annotations: BTreeMap::new(),
            matched: vec!["alerting".into()],
            firing: true,
        })
        .collect();
    let admitted = store
        .admit(alert_candidates("alerting", &n), episodes)
        .await
        .expect("admit");
    let ids: Vec<_> = admitted
        .iter()
        .filter_map(|a| match a {
            untoil::store::Admitted::New { run, .. } => Some(run.id.clone()),
            untoil::store::Admitted::Duplicate => None,
        })
        .collect();
    assert_eq!(ids.len(), 3);
    let running = |r: &mut RunRecord| {
        r.status = RunStatus::Running;
        r.started_at = Some(Utc::now());
    };
    store
        .transition(&ids[1], &[RunStatus::Queued], Arc::new(running))
        .await
        .expect("claim");
    store
        .step_started(&ids[1], "mark", Some(4242))
        .await
        .expect("progress");
    store
        .transition(&ids[2], &[RunStatus::Queued], Arc::new(running))
        .await
        .expect("claim");
    let mut done = store.get_run(&ids[2]).await.expect("get").expect("run");
    done.status = RunStatus::Succeeded;
    done.finished_at = Some(Utc::now());
    done.verify_by = Some(Utc::now() + chrono::Duration::hours(1));
    done.toil = finished(99, 0, 0, 0, 70).toil;
    let trip: Update = Arc::new(|s: &KeyState| KeyState {
        consecutive_failures: 3,
        breaker: Some(Breaker {
            opened_at: Utc
                .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            reason: "3 failures in a row".into(),
        }),
        ..s.clone()
    });
    store
        .finish(
            done,
            Some(GuardOf {
                runbook: "alerting".into(),
                key: "db-2\0x".into(),
                apply: trip,
            }),
        )
        .await
        .expect("finish");

    // A run waiting for approval, decided by a guard; and a signed delivery's run.
    let mut pending = finished(200, 70, 1, 0, 10);
    pending.status = RunStatus::Queued;
    pending.finished_at = None;
    pending.started_at = None;
    pending.toil = None;
    let approve: Decide = Arc::new(|s: &KeyState, r: &mut RunRecord| {
        r.status = RunStatus::PendingApproval;
        s.clone()
    });
    store
        .admit(
            vec![Candidate {
                key: DedupeKey::Manual {
                    run: pending.id.0.clone(),
                },
                run: pending.clone(),
                gate: Some(GuardOf {
                    runbook: pending.runbook.clone(),
                    key: pending.runbook.clone(),
                    apply: approve,
                }),
            }],
            vec![],
        )
        .await
        .expect("admit pending");
    let mut hooked = finished(201, 71, 2, 0, 10);
    hooked.status = RunStatus::Queued;
    hooked.finished_at = None;
    hooked.toil = None;
    store
        .admit_delivery(
            Delivery {
                source: "hooks".into(),
                id: "delivery-1".into(),
                received_at: now,
                expires_at: now + chrono::Duration::days(3),
            },
            vec![Candidate {
                key: DedupeKey::Manual {
                    run: hooked.id.0.clone(),
                },
                run: hooked,
                gate: None,
            }],
            vec![],
        )
        .await
        .expect("admit delivery")
        .expect("a new delivery");
}

/// Everything `Store` reads, for comparing two stores.
#[derive(Debug, PartialEq)]
struct Seen {
    runs: Vec<RunRecord>,
    got: Vec<Option<RunRecord>>,
    active: Vec<RunRecord>,
    pending: Vec<RunRecord>,
    daily: Vec<(String, u64, u64, u64, u64)>,
    monthly: Vec<(String, u64, u64, u64, u64)>,
    guards: Vec<(String, String, KeyState)>,
    alerts: Vec<AlertReceived>,
}

/// What `store` gives through the contract.
async fn seen(store: &dyn Store) -> Seen {
    let runs = store.list_runs(&RunFilter::default()).await.expect("list");
    let mut got = Vec::new();
    for r in &runs {
        got.push(store.get_run(&r.id).await.expect("get"));
    }
    let by = |status| RunFilter {
        status: Some(status),
        ..RunFilter::default()
    };
    let from = NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
    let to = NaiveDate::from_ymd_opt(2027, 12, 31).expect("date");
    // Groups with their shards summed; compared by their counters (a histogram's encoding
    // may differ after merging while counting the same).
    let groups = |g: Vec<(
        untoil::ledger::rollup::RollupKey,
        untoil::ledger::rollup::Rollup,
    )>| {
        let mut out: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
        for (k, r) in g {
            let e = out
                .entry(format!("{} {} {} {}", k.day, k.owner, k.runbook, k.cause))
                .or_default();
            e.0 += r.runs;
            e.1 += r.succeeded;
            e.2 += r.failed;
            e.3 += r.toil_milli_minutes;
        }
        out.into_iter()
            .map(|(k, (a, b, c, d))| (k, a, b, c, d))
            .collect::<Vec<_>>()
    };
    let mut guards = store.guard_states().await.expect("guards");
    guards.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut alerts = store
        .alerts(
            Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
                .single()
                .expect("date"),
            Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0)
                .single()
                .expect("date"),
        )
        .await
        .expect("alerts");
    alerts.sort_by_key(|a| a.episode());
    Seen {
        got,
        active: store
            .list_runs(&by(RunStatus::Queued))
            .await
            .expect("queued"),
        pending: store
            .list_runs(&by(RunStatus::PendingApproval))
            .await
            .expect("pending"),
        daily: groups(store.rollups(from, to, false).await.expect("daily")),
        monthly: groups(store.rollups(from, to, true).await.expect("monthly")),
        guards,
        alerts,
        runs,
    }
}

/// `untoil store copy --to URL` on the store at `data`, the password in PGPASSWORD only.
fn copy(dirs: &Dirs, cluster: &Cluster, db: &str, data: &Path) -> (bool, String, String) {
    let out = untoil_command(dirs)
        .env("UNTOIL_DATA", data)
        .env("PGPASSWORD", &cluster.password)
        .args(["store", "copy", "--to", &cluster.url_without_password(db)])
        .output()
        .expect("run untoil");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn scalar(cluster: &Cluster, db: &str, sql: &str) -> String {
    let out = cluster.psql(db, sql);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_store_reads_the_same_from_postgres_and_a_second_copy_changes_nothing() {
    let dirs = Dirs::new();
    let data = dirs.path("source");
    let store = SledStore::open(&data).expect("open sled");
    fill(&store).await;
    let before = seen(&store).await;
    assert!(
        before.pending.len() == 1 && before.active.len() == 2,
        "{before:?}"
    );
    let id = store.id().to_string();
    drop(store);

    let cluster = Cluster::start();
    cluster.create_database("moved");
    let (ok, out, err) = copy(&dirs, &cluster, "moved", &data);
    assert!(ok, "{out}\n{err}\n{}", cluster.log());
    assert!(
        out.contains("check: the target holds as many items"),
        "{out}"
    );
    assert!(!err.contains(&cluster.password) && !out.contains(&cluster.password));

    let pg = PgStore::open(
        pg_pool(&cluster.url("moved")),
        cluster.url_without_password("moved"),
    )
    .await
    .expect("open postgres");
    assert_ne!(pg.id(), id, "the target keeps its own id");
    let after = seen(&pg).await;
    assert_eq!(before, after);
    // Pruned runs' rollups came along: more runs counted than records kept.
    let counted: u64 = after.daily.iter().map(|g| g.1).sum();
    let records = after.runs.iter().filter(|r| r.status.is_final()).count() as u64;
    assert!(counted > records, "{counted} counted, {records} records");
    // The notification is stored once for the three runs that share it.
    assert_eq!(
        scalar(&cluster, "moved", "SELECT count(*) FROM notifications"),
        "1"
    );
    assert_eq!(
        scalar(
            &cluster,
            "moved",
            "SELECT count(*) FROM runs WHERE awaits_verdict"
        ),
        "1"
    );

    let rows = "SELECT (SELECT count(*) FROM runs) || ' ' || (SELECT count(*) FROM dedupe) \
                || ' ' || (SELECT count(*) FROM alerts) || ' ' || (SELECT count(*) FROM rollups_daily) \
                || ' ' || (SELECT count(*) FROM rollups_monthly) || ' ' || (SELECT count(*) FROM deliveries)";
    let first = scalar(&cluster, "moved", rows);
    let (ok, out, err) = copy(&dirs, &cluster, "moved", &data);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("(0 new)") && !out.contains("(1 new)"), "{out}");
    assert_eq!(
        scalar(&cluster, "moved", rows),
        first,
        "a second copy wrote rows"
    );
    assert_eq!(
        seen(&pg).await,
        before,
        "a second copy changed what the store gives"
    );

    // A copy interrupted midway (some batches of runs, the alerts and the rollups never
    // committed) is finished by running it again.
    scalar(
        &cluster,
        "moved",
        "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE NOT awaits_verdict \
         ORDER BY id DESC LIMIT 5); DELETE FROM alerts; DELETE FROM rollups_daily WHERE shard = -1; \
         DELETE FROM rollups_monthly WHERE shard = -1; SELECT 1",
    );
    assert_ne!(scalar(&cluster, "moved", rows), first);
    let (ok, out, err) = copy(&dirs, &cluster, "moved", &data);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("(5 new)"), "{out}");
    assert_eq!(scalar(&cluster, "moved", rows), first);
    assert_eq!(seen(&pg).await, before, "a re-run did not finish the copy");

    // The copied run awaiting its verdict gets it on the target as it would have on the
    // source: its contribution moves once, never counted twice.
    let waiting = before
        .runs
        .iter()
        .find(|r| r.verify_by.is_some() && r.verification.is_none())
        .expect("a run awaiting its verdict")
        .id
        .clone();
    let verdict = untoil::run::record::Verification {
        verified: false,
        at: Utc::now(),
        resolved_at: None,
    };
    assert!(
        pg.set_verified(&waiting, verdict.clone())
            .await
            .expect("verdict")
    );
    let s = SledStore::open(&data).expect("reopen sled");
    assert!(s.set_verified(&waiting, verdict).await.expect("verdict"));
    let (x, y) = (seen(&s).await, seen(&pg).await);
    assert_eq!((x.daily, x.monthly), (y.daily, y.monthly));
    drop(s);

    // Another store into that database: refused, nothing mixes.
    let other = dirs.path("other");
    let s = SledStore::open(&other).expect("open other");
    s.finish_many(vec![finished(300, 3, 0, 0, 10)])
        .await
        .expect("finish");
    drop(s);
    let (ok, _, err) = copy(&dirs, &cluster, "moved", &other);
    assert!(!ok);
    assert!(err.contains("is a copy of another store"), "{err}");
    assert_eq!(scalar(&cluster, "moved", rows), first);

    // A database daemons already use: refused too, untouched.
    cluster.create_database("used");
    let used = PgStore::open(
        pg_pool(&cluster.url("used")),
        cluster.url_without_password("used"),
    )
    .await
    .expect("open used");
    used.finish_many(vec![finished(400, 4, 0, 0, 10)])
        .await
        .expect("finish");
    let (ok, _, err) = copy(&dirs, &cluster, "used", &data);
    assert!(!ok);
    assert!(err.contains("already holds runs"), "{err}");
    assert_eq!(scalar(&cluster, "used", "SELECT count(*) FROM runs"), "1");
}

const ALERTS: &str = "/api/v1/alerts/alertmanager";

fn alert(fingerprint: &str) -> Value {
    let mut v: Value = serde_json::from_slice(&fixture("firing.json")).expect("fixture json");
    v["alerts"][0]["fingerprint"] = json!(fingerprint);
    v
}

fn serve(mut c: std::process::Command) -> (Served, Http) {
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut served = Served::spawn(c);
    let http = Http::new(served.base());
    (served, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_on_the_copied_database_does_not_run_a_re_sent_alert_again() {
    let dirs = Dirs::new();
    dirs.runbook(
        "noting",
        "name: noting\nowner: t\ntoil: {manual_minutes: 5}\ntriggers:\n  - alert: {matchers: ['alertname=\"DiskFull\"']}\nsteps:\n  - name: note\n    run: 'true'\n",
    );
    let (served, d) = serve(untoil_command(&dirs));
    let (status, answer) = d.post(ALERTS, alert("move-1")).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["accepted"][0]
        .as_str()
        .expect("accepted")
        .to_string();
    until("the run to succeed", || async {
        let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
        (run["status"] == "succeeded").then_some(())
    })
    .await;
    let cluster = Cluster::start();
    cluster.create_database("moved");
    // While the daemon holds the store, the copy says to stop it (and copies nothing).
    let (ok, _, err) = copy(&dirs, &cluster, "moved", &dirs.path("data"));
    assert!(!ok);
    assert!(err.contains("stop it before copying"), "{err}");
    let (code, log) = served.terminate();
    assert_eq!(code, Some(0), "{log}");

    let (ok, out, err) = copy(&dirs, &cluster, "moved", &dirs.path("data"));
    assert!(ok, "{out}\n{err}");

    let mut on_db = untoil_command(&dirs);
    on_db
        .env("UNTOIL_DATABASE_URL", cluster.url_without_password("moved"))
        .env("PGPASSWORD", &cluster.password);
    let (served, d) = serve(on_db);
    let (status, again) = d.post(ALERTS, alert("move-1")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["accepted"],
        json!([]),
        "the re-sent alert ran again: {again}"
    );
    let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    drop(served);
}
