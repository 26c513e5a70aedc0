//! Several `untoil serve` replicas on one PostgreSQL database (fleet mode): all active, each
//! alert run once whichever replicas it reaches, a SIGKILLed replica's running runs interrupted
//! (an idempotent runbook's started again) and its queued runs adopted by a survivor within its
//! lease, and each cron fire run once across the fleet. The fleet storm: thousands of alerts
//! each posted to two of three replicas while one of them is SIGKILLed and started again ten
//! times; every acknowledged alert ran once and the toil report adds up.

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
    // The survivor on the default lease: two busy cores cannot delay its renewals into a fence
    // of its own (it reaps every 10 s, within the wait below).
    let (_r2, d2) = steady(&dirs, &cluster, "paused");
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
async fn a_replica_that_fences_itself_sigkills_its_steps_without_a_sigterm_and_grace() {
    let cluster = Cluster::start();
    cluster.create_database("hurried");
    let dirs = Dirs::new();
    let (marker, gate, termed) = (dirs.path("marker"), dirs.path("gate"), dirs.path("termed"));
    // A step that notes a SIGTERM and goes on, as steps that ignore it do.
    let noting = marking(&marker, Some(&gate)).replacen(
        "run: ",
        &format!("run: trap 'printf term >> {}' TERM; ", termed.display()),
        1,
    );
    dirs.runbook("marking", &noting);
    // Alone: no other replica reaps the run (which kills its steps on this host first).
    let (r, d) = replica(&dirs, &cluster, "hurried", None);
    let id = post_alert(&d, "hurried").await;
    run_when(&d, &id, "running").await;
    // Paused past its lease: resumed, it finds the lease expired and fences itself.
    let pid = nix::unistd::Pid::from_raw(r.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    until("the lease to expire", || async {
        let out = cluster.psql(
            "hurried",
            "SELECT count(*) FROM replicas WHERE expires_at > now()",
        );
        (String::from_utf8_lossy(&out.stdout).trim() == "0").then_some(())
    })
    .await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let (code, log) = r.exit();
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {log}");
    assert!(log.contains("fencing: this replica"), "{log}");
    // Killed at once: no SIGTERM, and no kill grace that could outlast the others' takeover.
    assert!(
        lines(&termed).is_empty(),
        "the step was sent SIGTERM: {log}"
    );
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

/// Posts the alert `fingerprint` until the replica accepts it, as Alertmanager retries a 503;
/// its run.
async fn accepted(d: &Http, fingerprint: &str) -> String {
    until(&format!("alert {fingerprint} accepted"), || async {
        let (status, answer) = d.post(ALERTS, alert(fingerprint)).await;
        (status == 200)
            .then(|| answer["accepted"][0].as_str().map(String::from))
            .flatten()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleets_queue_is_full_on_every_replica_once_the_database_holds_its_capacity() {
    let cluster = Cluster::start();
    cluster.create_database("capacity");
    let dirs = Dirs::new();
    let (marker, gate) = (dirs.path("marker"), dirs.path("gate"));
    dirs.runbook("marking", &marking(&marker, Some(&gate)));
    let small = || {
        let mut c = on_database(&dirs, &cluster, "capacity");
        c.env("UNTOIL_QUEUE_CAPACITY", "3")
            .env("UNTOIL_WORKERS", "1");
        serve(c)
    };
    let (_a, a) = small();
    let (_b, b) = small();
    // One run holds the first replica's only worker at the gate; three wait behind it. (A
    // replica counts its own admissions on top of its last count of the database, so one of
    // them may wait for the next count, as Alertmanager's retry would.)
    let held = accepted(&a, "held").await;
    run_when(&a, &held, "running").await;
    let mut queued = Vec::new();
    for i in 0..3 {
        queued.push(accepted(&a, &format!("queued-{i}")).await);
    }
    // The second replica's own queue is empty, but the fleet's is full.
    let (status, answer) = b.post(ALERTS, alert("refused")).await;
    assert_eq!(status, 503, "{answer}");
    let message = answer["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("fleet's queue is full: 3 runs queued")
            && message.contains("capacity 3")
            && message.contains("Alertmanager retries"),
        "{message}"
    );
    // Once the runs go, it accepts again.
    std::fs::write(&gate, "").expect("open the gate");
    let later = accepted(&b, "refused").await;
    run_when(&b, &later, "succeeded").await;
    for id in queued.iter().chain([&held]) {
        run_when(&a, id, "succeeded").await;
    }
    assert_eq!(lines(&marker).len(), 5, "every accepted run ran once");
}

/// A runbook for alerts named `alertname` whose step runs `script` (one line of shell).
fn scripted(name: &str, alertname: &str, script: &str) -> String {
    format!(
        "name: {name}\nowner: t\ntoil: {{manual_minutes: 1}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"{alertname}\"']}}\nsteps:\n  - name: step\n    run: {script}\n"
    )
}

/// The NDJSON events a stream gave so far (complete lines).
fn events_in(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Starts following run `id` through the replica at `d` (its event stream, answered 200).
async fn follow_on(d: &Http, id: &str) -> reqwest::Response {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{id}/events", d.base))
        .send()
        .await
        .expect("follow the run");
    assert_eq!(response.status().as_u16(), 200);
    response
}

/// Reads `response` until `done` holds for what it gave, failing after `within`.
async fn read_until(
    response: &mut reqwest::Response,
    text: &mut String,
    within: Duration,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !done(text) {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Ok(None)) => panic!("the stream ended before {what}: {text}"),
            Ok(Err(e)) => panic!("the stream failed before {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}: {text}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_followed_live_from_another_replica_to_its_end() {
    let cluster = Cluster::start();
    cluster.create_database("follow");
    let dirs = Dirs::new();
    let gate = dirs.path("gate");
    dirs.runbook(
        "talking",
        &scripted(
            "talking",
            "Talking",
            &format!(
                "printf 'hello from the step\\n'; while [ ! -e {} ]; do sleep 0.05; done; printf 'released\\n'",
                gate.display()
            ),
        ),
    );
    let (_a, da) = steady(&dirs, &cluster, "follow");
    let (_b, db) = steady(&dirs, &cluster, "follow");
    // Posted to the first replica: it runs there.
    let id = post_one(&da, named("Talking", "talk")).await;
    run_when(&da, &id, "running").await;
    let asked = Instant::now();
    let mut response = follow_on(&db, &id).await;
    let mut text = String::new();
    read_until(
        &mut response,
        &mut text,
        Duration::from_secs(10),
        "the step's first line",
        |t| t.contains("hello from the step"),
    )
    .await;
    let first_line = asked.elapsed();
    eprintln!("a live line of a run on another replica reached its follower in {first_line:?}");
    assert_eq!(
        db.get(&format!("/api/v1/runs/{id}")).await.1["status"],
        "running",
        "the line arrived while the run still ran"
    );
    std::fs::write(&gate, "").expect("open the gate");
    read_until(
        &mut response,
        &mut text,
        Duration::from_secs(20),
        "the run's end",
        |t| t.contains("\"run_finished\""),
    )
    .await;
    assert!(
        response.chunk().await.expect("the stream's end").is_none(),
        "the stream ends with the run"
    );
    let events = events_in(&text);
    let last = events.last().expect("events");
    assert_eq!(last["event"], "run_finished", "{text}");
    assert_eq!(last["record"]["id"], id.as_str());
    assert_eq!(last["record"]["status"], "succeeded", "{text}");
    let lines: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "output")
        .filter_map(|e| e["line"].as_str())
        .collect();
    assert_eq!(lines, vec!["hello from the step", "released"], "{text}");
    // The same shape as following on the replica that runs it: one start, steps, one end.
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "run_started").count(),
        1,
        "{text}"
    );
    assert_eq!(kinds.first(), Some(&"run_started"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_one_replica_are_cancelled_through_another() {
    let cluster = Cluster::start();
    cluster.create_database("cancel");
    let dirs = Dirs::new();
    let (pids, marker) = (dirs.path("pids"), dirs.path("marker"));
    dirs.runbook(
        "looping",
        &scripted(
            "looping",
            "Looping",
            &format!(
                "echo $$ >> {}; while true; do sleep 0.05; done",
                pids.display()
            ),
        ),
    );
    dirs.runbook(
        "gated",
        &scripted("gated", "Gated", "echo approved").replacen(
            "owner: t\n",
            "owner: t\nguards: {approval: required}\n",
            1,
        ),
    );
    dirs.runbook("marking", &marking(&marker, None));
    // One worker: a second run waits in the first replica's queue behind the first.
    let mut one = on_database(&dirs, &cluster, "cancel");
    one.env("UNTOIL_WORKERS", "1");
    let (_a, da) = serve(one);
    let (_b, db) = steady(&dirs, &cluster, "cancel");
    let running = post_one(&da, named("Looping", "running")).await;
    run_when(&da, &running, "running").await;
    let queued = post_one(&da, named("Looping", "queued")).await;
    run_when(&da, &queued, "queued").await;
    let waiting = post_one(&da, named("Gated", "waiting")).await;
    run_when(&da, &waiting, "pending_approval").await;
    let cancel = |id: &str| {
        let path = format!("/api/v1/runs/{id}/cancel");
        let db = &db;
        async move { db.post(&path, serde_json::json!({})).await }
    };
    // Not started: ended through the store at once, and followers on the replica holding the
    // run get its end then (not when that replica's queue reaches it: it never would here,
    // behind a run that loops until cancelled).
    for id in [&queued, &waiting] {
        let mut follower = follow_on(&da, id).await;
        let (status, answer) = cancel(id).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["cancelling"], true);
        assert_eq!(
            db.get(&format!("/api/v1/runs/{id}")).await.1["status"],
            "cancelled",
            "{id} ended at once"
        );
        let mut text = String::new();
        read_until(
            &mut follower,
            &mut text,
            Duration::from_secs(20),
            "the cancelled run's end on the replica holding it",
            |t| t.contains("\"run_finished\""),
        )
        .await;
        let last = events_in(&text).pop().expect("events");
        assert_eq!(last["record"]["status"], "cancelled", "{text}");
    }
    // Running on the first replica: its process group is killed there.
    let pid: i32 = until("the looping step's pid", || async {
        lines(&pids).first().and_then(|p| p.parse().ok())
    })
    .await;
    let (status, answer) = cancel(&running).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["cancelling"], true);
    run_when(&db, &running, "cancelled").await;
    until("the step's process to be gone", || async {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await;
    // Ended runs cannot be cancelled, from any replica.
    let (status, answer) = cancel(&running).await;
    assert_eq!(status, 409, "{answer}");
    // The first replica's queue still held the cancelled run: its claim was refused, and the
    // next run there runs.
    let after = post_alert(&da, "after").await;
    run_when(&da, &after, "succeeded").await;
    assert_eq!(
        lines(&pids).len(),
        1,
        "the cancelled queued run never started"
    );
    assert_eq!(lines(&marker), vec![after]);
}

/// Concurrent posters in the fleet storm.
const POSTERS: usize = 16;
/// Alerts per notification in the fleet storm, as Alertmanager groups them (the time goes into
/// running the runs, so this spares requests more than it speeds the storm).
const GROUP: usize = 5;

/// A count from the environment (to size the fleet storm down for a quick local run).
fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// splitmix64: the kill moments, replayable from the seed the test prints.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// A notification of the fleet storm's alerts `ids` (one each: its own fingerprint and instance),
/// as Alertmanager groups alerts.
fn storm_alerts(ids: std::ops::Range<usize>) -> Vec<u8> {
    let mut v = alert("");
    let one = v["alerts"][0].clone();
    v["alerts"] = ids
        .map(|i| {
            let mut a = one.clone();
            a["fingerprint"] = Value::from(storm_fingerprint(i));
            a["labels"]["instance"] = Value::from(format!("host-{i}"));
            a
        })
        .collect();
    serde_json::to_vec(&v).expect("json")
}

fn storm_fingerprint(i: usize) -> String {
    format!("storm-{i:05}")
}

/// What the posters saw.
#[derive(Default)]
struct Posted {
    /// Alerts acknowledged (a 200 from at least one replica): the posters' progress.
    acknowledged: std::sync::atomic::AtomicUsize,
    /// Alerts that neither of their two replicas acknowledged, so were posted again.
    retried: std::sync::atomic::AtomicUsize,
    /// Run ids announced by 200 answers.
    accepted: std::sync::Mutex<Vec<String>>,
}

/// One POST of `body` to the replica at `base`: its answer when it is a 200 with a JSON body (a
/// refused connection, a 503, or an answer cut by SIGKILL is no acknowledgement).
async fn post_once(client: &reqwest::Client, base: &str, body: &[u8]) -> Option<Value> {
    let r = client
        .post(format!("{base}{ALERTS}"))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .ok()?;
    match r.status().as_u16() {
        200 => r.json().await.ok(),
        503 => None,
        s => panic!(
            "a webhook answered {s}: {}",
            r.text().await.unwrap_or_default()
        ),
    }
}

/// Delivers notification `n` (alerts `ids`) as Alertmanager's HA pair would: to two replicas at
/// once (the victim's pair always holds a survivor, so a kill rarely leaves both failing), and,
/// when neither acknowledges, again to the next replica in turn until one does.
async fn deliver(
    client: &reqwest::Client,
    bases: &[std::sync::RwLock<String>; 3],
    n: usize,
    ids: std::ops::Range<usize>,
    posted: &Posted,
    deadline: Instant,
) {
    let base = |r: usize| bases[r % 3].read().map(|b| b.clone()).unwrap_or_default();
    let body = storm_alerts(ids.clone());
    let (first, second) = (base(n), base(n + 1));
    let (a, b) = tokio::join!(
        post_once(client, &first, &body),
        post_once(client, &second, &body)
    );
    let mut answers: Vec<Value> = [a, b].into_iter().flatten().collect();
    let mut next = n + 2;
    let mut backoff = Duration::from_millis(5);
    while answers.is_empty() {
        if next == n + 2 {
            posted
                .retried
                .fetch_add(ids.len(), std::sync::atomic::Ordering::Relaxed);
        }
        assert!(
            Instant::now() < deadline,
            "alerts {ids:?} were never acknowledged"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
        answers.extend(post_once(client, &base(next), &body).await);
        next += 1;
    }
    let announced = answers
        .iter()
        .flat_map(|a| a["accepted"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(String::from));
    if let Ok(mut accepted) = posted.accepted.lock() {
        accepted.extend(announced);
    }
    posted
        .acknowledged
        .fetch_add(ids.len(), std::sync::atomic::Ordering::Relaxed);
}

/// How many runs the reaper reported adopting in `log` (its "adopted runs queued queued=N").
fn adopted_in(log: &[String]) -> usize {
    log.iter()
        .filter(|l| l.contains("adopted runs queued"))
        .filter_map(|l| {
            let n = &l[l.find("queued=")? + "queued=".len()..];
            n.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

/// `untoil` with `args` against database `db`, its stdout as JSON.
fn cli_json(dirs: &Dirs, cluster: &Cluster, db: &str, args: &[&str]) -> Value {
    let out = on_database(dirs, cluster, db)
        .args(args)
        .output()
        .expect("run untoil");
    assert!(
        out.status.success(),
        "untoil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

/// The fleet storm (issue: "three replicas on one database"): UNTOIL_FLEET_ALERTS alerts (default
/// 5000), each posted to two of three replicas by concurrent posters, while one replica is
/// SIGKILLed and started again UNTOIL_FLEET_KILLS times (default 10) at pseudo-random moments
/// (UNTOIL_FLEET_SEED replays them). Every acknowledged alert has exactly one run, none doubled,
/// none lost; its step ran at most once (exactly once when the run succeeded); the killed
/// replica's queued runs were adopted and run elsewhere; the toil report adds up to the runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_storm_runs_every_acknowledged_alert_once_while_a_replica_is_sigkilled_again_and_again()
 {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, RwLock};
    let alerts = env_usize("UNTOIL_FLEET_ALERTS", 5000);
    let kills = env_usize("UNTOIL_FLEET_KILLS", 10);
    let seed = std::env::var("UNTOIL_FLEET_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("fleet storm: {alerts} alerts, {kills} kills, UNTOIL_FLEET_SEED={seed}");
    let began = Instant::now();
    let cluster = Cluster::start();
    cluster.create_database("storm");
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    // One short step, not idempotent: a run its replica was running when killed is interrupted,
    // never run again. It appends "<run id> <fingerprint>" (one short `>>` write: atomic).
    dirs.runbook(
        "marking",
        &format!(
            "name: marking\nowner: t\ntoil: {{manual_minutes: 5}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nsteps:\n  - name: mark\n    run: printf '%s %s\\n' {{{{run.id}}}} {{{{alert.fingerprint}}}} >> {}\n",
            marker.display()
        ),
    );
    // The victim holds the short lease, so that its runs are taken over within seconds; the
    // survivors keep the default lease, so that two busy cores never delay one of their renewals
    // into a fence. Every replica (the victim's next life too) reaps the dead one's runs.
    let workers = env_usize("UNTOIL_FLEET_WORKERS", 8);
    let (victim, d0) = replica(&dirs, &cluster, "storm", Some(workers));
    let survivor = || {
        let mut c = on_database(&dirs, &cluster, "storm");
        c.env("UNTOIL_WORKERS", workers.to_string());
        serve(c)
    };
    let (mut s1, d1) = survivor();
    let (mut s2, d2) = survivor();
    let bases = Arc::new([
        RwLock::new(d0.base.clone()),
        RwLock::new(d1.base.clone()),
        RwLock::new(d2.base.clone()),
    ]);
    let posted = Arc::new(Posted::default());
    // A bound for failing, not a budget: 5,000 alerts take about a minute on two busy cores.
    let deadline =
        Instant::now() + Duration::from_secs(120) + Duration::from_millis(20) * alerts as u32;

    // The killer: for kill k, a random point within the k-th slice of the posters' progress plus
    // up to 300 ms, so that kills land while runs are queued, running and being acknowledged.
    let killer = {
        let (bases, posted) = (bases.clone(), posted.clone());
        // The victim's command, rebuilt on the blocking thread for each restart.
        let envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> =
            on_database(&dirs, &cluster, "storm")
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
                .collect();
        tokio::task::spawn_blocking(move || {
            let mut rng = Rng(seed);
            let mut victim = victim;
            let mut logs: Vec<String> = Vec::new();
            let slice = alerts / kills.max(1);
            for k in 0..kills {
                let at = k * slice + rng.below(slice as u64) as usize;
                while posted.acknowledged.load(Ordering::Relaxed) < at.min(alerts) {
                    assert!(Instant::now() < deadline, "the posters stalled");
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(rng.below(300)));
                logs.extend(victim.sigkill_log());
                let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_untoil"));
                for (k, v) in &envs {
                    match v {
                        Some(v) => c.env(k, v),
                        None => c.env_remove(k),
                    };
                }
                c.env("UNTOIL_LEASE_TTL", TTL)
                    .env("UNTOIL_WORKERS", workers.to_string())
                    .args(["serve", "--listen", "127.0.0.1:0"]);
                victim = Served::spawn(c);
                let base = victim.base();
                if let Ok(mut b) = bases[0].write() {
                    *b = base;
                }
            }
            (victim, logs)
        })
    };

    // Posters: as many as keep three replicas busy on two cores, each taking the next alert.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let posters: Vec<_> = (0..POSTERS)
        .map(|_| {
            let (client, bases, posted, next) =
                (client.clone(), bases.clone(), posted.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n * GROUP >= alerts {
                        return;
                    }
                    let ids = n * GROUP..((n + 1) * GROUP).min(alerts);
                    deliver(&client, &bases, n, ids, &posted, deadline).await;
                }
            })
        })
        .collect();
    for p in posters {
        p.await.expect("a poster");
    }
    let posting = began.elapsed();
    let (mut victim, mut logs) = killer.await.expect("the killer");

    // The end: nothing queued or running anywhere. The last killed life's running runs end
    // interrupted once its lease expires, and its queued runs are adopted and run: none may be
    // left queued.
    let idle = |status: &'static str| {
        let d1 = &d1;
        async move {
            let (code, runs) = d1
                .get(&format!("/api/v1/runs?status={status}&limit=1"))
                .await;
            code == 200 && runs.as_array().is_some_and(Vec::is_empty)
        }
    };
    loop {
        if idle("queued").await && idle("running").await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs still queued or running at the deadline"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled = began.elapsed();

    let runs = cli_json(
        &dirs,
        &cluster,
        "storm",
        &["runs", "--json", "--limit", "0"],
    );
    let runs = runs.as_array().cloned().unwrap_or_default();
    let mut problems: Vec<String> = Vec::new();
    let mut by_alert: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut status_of: std::collections::HashMap<String, String> = Default::default();
    let mut alert_of: std::collections::HashMap<String, String> = Default::default();
    for r in &runs {
        let (id, fp) = (
            r["id"].as_str().unwrap_or_default().to_string(),
            r["cause"]["fingerprint"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        by_alert.entry(fp.clone()).or_default().push(id.clone());
        status_of.insert(id.clone(), r["status"].as_str().unwrap_or_default().into());
        alert_of.insert(id, fp);
    }
    // None lost, none doubled: every alert (all were acknowledged) has exactly one run.
    for i in 0..alerts {
        let fp = storm_fingerprint(i);
        match by_alert.get(&fp).map(Vec::len) {
            Some(1) => {}
            n => problems.push(format!("alert {fp} has {} runs", n.unwrap_or(0))),
        }
    }
    if runs.len() != alerts {
        problems.push(format!("{} runs for {alerts} alerts", runs.len()));
    }
    // Every run announced by an acknowledgement is in the store, announced once.
    let accepted = posted
        .accepted
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    let mut announced = BTreeSet::new();
    for id in &accepted {
        if !announced.insert(id.clone()) {
            problems.push(format!("run {id} announced twice"));
        }
        if !alert_of.contains_key(id) {
            problems.push(format!("run {id} was announced but is not in the store"));
        }
    }
    // Each step ran at most once: a succeeded run's line is there exactly once. An interrupted
    // run's line is there at most once: its replica was killed while it ran, before or after the
    // step's append (a step process outlives a SIGKILLed replica until the next life or the
    // reaper kills its group), or even after the step ended but before the finish was recorded.
    // Such a run is reported interrupted although its step did its work: allowed, since the
    // replica died before it could record the end, and the fleet does not re-run a runbook that
    // is not idempotent. No line names a run the store does not have.
    let mut lines_of: std::collections::HashMap<String, usize> = Default::default();
    for line in lines(&marker) {
        let (id, fp) = line.split_once(' ').unwrap_or((&line, ""));
        if alert_of.get(id).map(String::as_str) != Some(fp) {
            problems.push(format!("a marker line for no run of the store: {line}"));
        }
        *lines_of.entry(id.to_string()).or_default() += 1;
    }
    let (mut succeeded, mut interrupted, mut interrupted_after_step) = (0, 0, 0);
    for (id, status) in &status_of {
        let n = lines_of.get(id).copied().unwrap_or(0);
        match status.as_str() {
            "succeeded" => {
                succeeded += 1;
                if n != 1 {
                    problems.push(format!("succeeded run {id} has {n} marker lines"));
                }
            }
            "interrupted" => {
                interrupted += 1;
                interrupted_after_step += usize::from(n == 1);
                if n > 1 {
                    problems.push(format!("interrupted run {id} has {n} marker lines"));
                }
            }
            other => problems.push(format!("run {id} ended {other}")),
        }
    }
    // The toil report reads the rollups the replicas kept as they recorded: they add up to the
    // runs.
    let report = cli_json(&dirs, &cluster, "storm", &["report", "--format", "json"]);
    let total = &report["total"];
    for (name, want) in [
        ("runs", runs.len()),
        ("succeeded", succeeded),
        ("interrupted", interrupted),
    ] {
        if total[name] != want {
            problems.push(format!("the report's {name} is {} not {want}", total[name]));
        }
    }
    logs.extend(victim.log_so_far().iter().cloned());
    logs.extend(s1.log_so_far().iter().cloned());
    logs.extend(s2.log_so_far().iter().cloned());
    let adopted = adopted_in(&logs);
    eprintln!(
        "fleet storm: {} acknowledged ({} posted again after both replicas failed), {} runs, {succeeded} succeeded, {interrupted} interrupted ({interrupted_after_step} after their step appended), {adopted} adopted; all acknowledged after {posting:?}, idle after {settled:?}, checked after {:?}",
        posted.acknowledged.load(Ordering::Relaxed),
        posted.retried.load(Ordering::Relaxed),
        runs.len(),
        began.elapsed()
    );
    assert!(
        problems.is_empty(),
        "UNTOIL_FLEET_SEED={seed}: {} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(posted.acknowledged.load(Ordering::Relaxed), alerts);
}
