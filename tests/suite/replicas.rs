//! Several `untoil serve` replicas on one PostgreSQL database (fleet mode): all active, each
//! alert run once whichever replicas it reaches, a SIGKILLed replica's running runs interrupted
//! (an idempotent runbook's started again) and its queued runs adopted by a survivor within its
//! lease, and each cron fire run once across the fleet.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Dirs, Http, Served, until};
use crate::fleet::{ALERTS, alert, lines, marking, on_database, post_alert, run_when, serve};
use crate::pgcluster::Cluster;

/// The lease the tests' replicas hold: short, so that a dead one is found in seconds.
const TTL: &str = "3s";
/// [`TTL`], plus a reaper's interval with its jitter (a third, and a quarter of that), plus
/// slack for two busy cores: how long a survivor may take to notice a replica died.
const NOTICED_WITHIN: Duration = Duration::from_millis(3000 + 1250 + 4000);

/// A replica serving `db` over `dirs`, with the tests' short lease and `workers` when given.
fn replica(dirs: &Dirs, cluster: &Cluster, db: &str, workers: Option<usize>) -> (Served, Http) {
    let mut c = on_database(dirs, cluster, db);
    c.env("UNTOIL_LEASE_TTL", TTL);
    if let Some(w) = workers {
        c.env("UNTOIL_WORKERS", w.to_string());
    }
    serve(c)
}

/// A replica serving `db` with the default lease: for tests where no replica dies, so that two
/// busy cores can never delay a renewal into a fence.
fn steady(dirs: &Dirs, cluster: &Cluster, db: &str) -> (Served, Http) {
    serve(on_database(dirs, cluster, db))
}

/// A runbook for alerts named `alertname` whose step appends the run id to `marker`, first
/// waiting for `gate` when one is given; `idempotent` when asked.
fn runbook(
    name: &str,
    alertname: &str,
    marker: &Path,
    gate: Option<&Path>,
    idempotent: bool,
) -> String {
    marking(marker, gate)
        .replacen("name: marking", &format!("name: {name}"), 1)
        .replacen(
            "alertname=\"DiskFull\"",
            &format!("alertname=\"{alertname}\""),
            1,
        )
        .replacen(
            "owner: t\n",
            if idempotent {
                "owner: t\nidempotent: true\n"
            } else {
                "owner: t\n"
            },
            1,
        )
}

/// An alert named `alertname` with `fingerprint`.
fn named(alertname: &str, fingerprint: &str) -> Value {
    let mut v = alert(fingerprint);
    v["alerts"][0]["labels"]["alertname"] = Value::from(alertname);
    v
}

/// Posts `body` and returns the one run it started.
async fn post_one(d: &Http, body: Value) -> String {
    let (status, answer) = d.post(ALERTS, body).await;
    assert_eq!(status, 200, "{answer}");
    answer["accepted"][0]
        .as_str()
        .unwrap_or_else(|| panic!("one run accepted: {answer}"))
        .to_string()
}

/// The runs of `runbook`, as the API lists them.
async fn runs_of(d: &Http, runbook: &str) -> Vec<Value> {
    d.get(&format!("/api/v1/runs?runbook={runbook}&limit=1000"))
        .await
        .1
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_given_each_alert_both_run_it_once() {
    let cluster = Cluster::start();
    cluster.create_database("pair");
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    dirs.runbook("marking", &marking(&marker, None));
    let (_r1, d1) = steady(&dirs, &cluster, "pair");
    let (_r2, d2) = steady(&dirs, &cluster, "pair");
    // Alertmanager's peers send every notification to both replicas at the same instant.
    let posts = (0..50).map(|i| {
        let (d1, d2) = (&d1, &d2);
        async move {
            let body = alert(&format!("both-{i}"));
            let (a, b) = tokio::join!(d1.post(ALERTS, body.clone()), d2.post(ALERTS, body));
            assert_eq!((a.0, b.0), (200, 200), "{} / {}", a.1, b.1);
            let ids: Vec<String> = [a.1, b.1]
                .iter()
                .flat_map(|x| x["accepted"].as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            assert_eq!(ids.len(), 1, "alert {i} started one run: {ids:?}");
            ids[0].clone()
        }
    });
    let ids: Vec<String> = futures_util::future::join_all(posts).await;
    for id in &ids {
        run_when(&d1, id, "succeeded").await;
    }
    let mut ran = lines(&marker);
    ran.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(ran, want, "each run executed exactly once, on one replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_running_runs_are_interrupted_and_idempotent_ones_run_again_on_a_survivor()
 {
    let cluster = Cluster::start();
    cluster.create_database("killed");
    let dirs = Dirs::new();
    let (marker, again_marker, gate) = (dirs.path("marker"), dirs.path("again"), dirs.path("gate"));
    dirs.runbook(
        "marking",
        &runbook("marking", "DiskFull", &marker, Some(&gate), false),
    );
    dirs.runbook(
        "again",
        &runbook("again", "Again", &again_marker, Some(&gate), true),
    );
    let (r1, d1) = replica(&dirs, &cluster, "killed", Some(2));
    let (_r2, d2) = replica(&dirs, &cluster, "killed", None);
    let plain = post_alert(&d1, "plain").await;
    let first = post_one(&d1, named("Again", "again")).await;
    for m in [&marker, &again_marker] {
        let started = m.with_extension("started");
        until("both steps to start on the first replica", || async {
            (!lines(&started).is_empty()).then_some(())
        })
        .await;
    }
    run_when(&d1, &plain, "running").await;
    r1.sigkill();
    let killed = Instant::now();
    let run = run_when(&d2, &plain, "interrupted").await;
    let noticed = killed.elapsed();
    assert!(noticed <= NOTICED_WITHIN, "noticed after {noticed:?}");
    assert!(
        run["error"]
            .as_str()
            .is_some_and(|e| e.contains("interrupted")),
        "{run}"
    );
    run_when(&d2, &first, "interrupted").await;
    // The idempotent runbook's run starts again on the survivor (after the dead replica's step
    // processes were killed there: its step started a second time).
    let retry = until("the retry to start", || async {
        let runs = runs_of(&d2, "again").await;
        let retry = runs.iter().find(|r| r["id"] != first.as_str())?;
        let started = lines(&again_marker.with_extension("started"));
        (started.len() == 2).then(|| retry["id"].as_str().map(String::from))?
    })
    .await;
    std::fs::write(&gate, "").expect("open the gate");
    let done = run_when(&d2, &retry, "succeeded").await;
    assert_eq!(done["retry_of"], first.as_str(), "{done}");
    assert_eq!(
        lines(&again_marker),
        vec![retry.clone()],
        "only the retry ran to its end"
    );
    assert!(
        lines(&marker).is_empty(),
        "the interrupted run's killed step never finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_queued_runs_are_adopted_and_run_by_a_survivor() {
    let cluster = Cluster::start();
    cluster.create_database("adopted");
    let dirs = Dirs::new();
    let (blocker, marker, gate) = (dirs.path("blocker"), dirs.path("marker"), dirs.path("gate"));
    dirs.runbook(
        "blocking",
        &runbook("blocking", "Blocker", &blocker, Some(&gate), false),
    );
    dirs.runbook("marking", &marking(&marker, None));
    let (r1, d1) = replica(&dirs, &cluster, "adopted", Some(1));
    let (_r2, d2) = replica(&dirs, &cluster, "adopted", None);
    let blocking = post_one(&d1, named("Blocker", "blocker")).await;
    run_when(&d1, &blocking, "running").await;
    let mut queued = Vec::new();
    for i in 0..3 {
        let id = post_alert(&d1, &format!("queued-{i}")).await;
        run_when(&d1, &id, "queued").await;
        queued.push(id);
    }
    r1.sigkill();
    run_when(&d2, &blocking, "interrupted").await;
    for id in &queued {
        run_when(&d2, id, "succeeded").await;
    }
    let ran: BTreeSet<String> = lines(&marker).into_iter().collect();
    assert_eq!(
        ran,
        queued.iter().cloned().collect(),
        "each adopted run ran once"
    );
    assert_eq!(lines(&marker).len(), queued.len());
    assert!(
        lines(&blocker).is_empty(),
        "the blocking run's step never finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_on_three_replicas_runs_once_per_fire() {
    let cluster = Cluster::start();
    cluster.create_database("cron");
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    dirs.runbook(
        "ticking",
        &format!(
            "name: ticking\nowner: t\ntoil: {{manual_minutes: 1}}\ntriggers:\n  - schedule: \"* * * * * *\"\nsteps:\n  - name: mark\n    run: printf '%s\\n' {{{{run.id}}}} >> {}\n",
            marker.display()
        ),
    );
    let replicas: Vec<(Served, Http)> = (0..3).map(|_| steady(&dirs, &cluster, "cron")).collect();
    let d = &replicas[0].1;
    // A few fire times once all three replicas are up (each fires every second).
    let fires = until("five fires", || async {
        let runs = runs_of(d, "ticking").await;
        let done: Vec<Value> = runs
            .into_iter()
            .filter(|r| r["status"] == "succeeded")
            .collect();
        (done.len() >= 5).then_some(done)
    })
    .await;
    drop(replicas);
    let mut ats: Vec<String> = fires
        .iter()
        .map(|r| {
            r["cause"]["at"]
                .as_str()
                .unwrap_or_else(|| panic!("a fire time: {r}"))
                .to_string()
        })
        .collect();
    let n = ats.len();
    ats.sort();
    ats.dedup();
    assert_eq!(ats.len(), n, "one run per fire time: {fires:?}");
    let mut ran = lines(&marker);
    let all = ran.len();
    ran.sort();
    ran.dedup();
    assert_eq!(ran.len(), all, "each run executed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replica_whose_run_was_taken_over_fences_itself_and_records_nothing() {
    let cluster = Cluster::start();
    cluster.create_database("paused");
    let dirs = Dirs::new();
    let (marker, gate) = (dirs.path("marker"), dirs.path("gate"));
    dirs.runbook("marking", &marking(&marker, Some(&gate)));
    let (r1, d1) = replica(&dirs, &cluster, "paused", None);
    let (_r2, d2) = replica(&dirs, &cluster, "paused", None);
    let id = post_alert(&d1, "paused").await;
    run_when(&d1, &id, "running").await;
    // Paused past its lease (a stopped VM, a long GC): the other replica takes the run over.
    let pid = nix::unistd::Pid::from_raw(r1.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let before = run_when(&d2, &id, "interrupted").await;
    // Resumed, it finds its lease expired: it stops its steps and exits non-zero, recording
    // nothing over the run the fleet ended.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let (code, log) = r1.exit();
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {log}");
    assert!(log.contains("fencing: this replica"), "{log}");
    let (_, after) = d2.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(after, before, "the fenced replica recorded over the run");
    assert!(lines(&marker).is_empty(), "the step ran to its end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_given_on_any_replica_and_a_dead_replicas_waiting_runs_are_adopted() {
    let cluster = Cluster::start();
    cluster.create_database("approvals");
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    let gated = runbook("gated", "Gated", &marker, None, false).replacen(
        "owner: t\n",
        "owner: t\nguards: {approval: required, approval_timeout: 5s}\n",
        1,
    );
    dirs.runbook("gated", &gated);
    let (r1, d1) = replica(&dirs, &cluster, "approvals", None);
    let (_r2, d2) = replica(&dirs, &cluster, "approvals", None);
    // Waiting on the first replica, approved on the second: it runs there.
    let approved = post_one(&d1, named("Gated", "approved")).await;
    run_when(&d1, &approved, "pending_approval").await;
    let (status, answer) = d2
        .post(
            &format!("/api/v1/runs/{approved}/approve"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    run_when(&d2, &approved, "succeeded").await;
    assert_eq!(lines(&marker), vec![approved.clone()]);
    // Waiting on a replica that dies: the survivor adopts it, and its approval expires there.
    let orphan = post_one(&d1, named("Gated", "orphan")).await;
    run_when(&d1, &orphan, "pending_approval").await;
    r1.sigkill();
    let run = run_when(&d2, &orphan, "skipped").await;
    assert!(
        run["error"]
            .as_str()
            .is_some_and(|e| e.contains("approval expired")),
        "{run}"
    );
    assert_eq!(lines(&marker), vec![approved], "the orphan never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_replica_leaves_its_queue_to_the_others_while_its_running_run_finishes() {
    let cluster = Cluster::start();
    cluster.create_database("stopping");
    let dirs = Dirs::new();
    let (blocker, marker, gate) = (dirs.path("blocker"), dirs.path("marker"), dirs.path("gate"));
    dirs.runbook(
        "blocking",
        &runbook("blocking", "Blocker", &blocker, Some(&gate), false),
    );
    dirs.runbook("marking", &marking(&marker, None));
    let (r1, d1) = replica(&dirs, &cluster, "stopping", Some(1));
    let (_r2, d2) = replica(&dirs, &cluster, "stopping", None);
    let blocking = post_one(&d1, named("Blocker", "blocker")).await;
    run_when(&d1, &blocking, "running").await;
    let queued = post_alert(&d1, "queued").await;
    run_when(&d1, &queued, "queued").await;
    // SIGTERM: the first replica waits (its shutdown grace) for its running run; the queued
    // one runs on the other replica meanwhile, not after.
    let pid = nix::unistd::Pid::from_raw(r1.child.id() as i32);
    let lease = || {
        let out = cluster.psql(
            "stopping",
            &format!(
                "SELECT extract(epoch FROM expires_at) FROM replicas WHERE pid = {}",
                r1.child.id()
            ),
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("the first replica's lease: {e}"))
    };
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let stopping_at = lease();
    run_when(&d2, &queued, "succeeded").await;
    // Its lease is still renewed while its run finishes within the grace: no one reaps it.
    until("a renewal during the shutdown grace", || async {
        (lease() > stopping_at + 0.5).then_some(())
    })
    .await;
    assert_eq!(
        d2.get(&format!("/api/v1/runs/{blocking}")).await.1["status"],
        "running",
        "the stopping replica's run goes on"
    );
    std::fs::write(&gate, "").expect("open the gate");
    let (code, log) = r1.exit();
    assert_eq!(code, Some(0), "{log}");
    run_when(&d2, &blocking, "succeeded").await;
    assert_eq!(lines(&marker), vec![queued]);
    assert_eq!(lines(&blocker), vec![blocking]);
}
