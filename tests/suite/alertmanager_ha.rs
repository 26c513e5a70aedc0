//! A real Alertmanager HA pair (Debian package `prometheus-alertmanager`, installed by
//! scripts/test-deps): two instances clustered with each other over gossip on loopback, each
//! with the same alerts posted to it (as Prometheus posts to every Alertmanager of a pair) and
//! each sending to a different `untoil serve` replica of one PostgreSQL database. Every alert
//! episode runs its runbook once across the fleet, its resolve verifies that one run whichever
//! replica it reaches, and a new episode of the same alert runs again, once.
//! Everything listens on 127.0.0.1. Fails loudly when Alertmanager is not installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Dirs, Http, closed_port, parse_metrics, sample, until};
use crate::fleet::{lines, on_database, serve};
use crate::pgcluster::Cluster;

const BINARY: &str = "prometheus-alertmanager";

/// How many distinct alerts (fingerprints) each episode fires.
const ALERTS: usize = 5;

/// One Alertmanager of a pair, killed when dropped.
struct Peer {
    child: Child,
    base: String,
    /// Its stderr (log), for failure messages.
    log: PathBuf,
}

impl Peer {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts peer `name` of a pair: web API on `web`, gossip on `gossip`, joining `other`.
fn start_peer(dir: &Path, name: &str, webhook: &str, web: u16, gossip: u16, other: u16) -> Peer {
    let config = dir.join(format!("{name}.yml"));
    // Each alert its own group (`...`), so each peer sends one notification per alert: five
    // chances per episode for the two replicas to race on one alert.
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: untoil\n  group_by: ['...']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: untoil\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n"
        ),
    )
    .expect("write config");
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(BINARY)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join(name).display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        // Its own address, never the host name Alertmanager would put in notifications.
        .arg(format!("--web.external-url=http://127.0.0.1:{web}"))
        .arg(format!("--cluster.listen-address=127.0.0.1:{gossip}"))
        .arg(format!("--cluster.advertise-address=127.0.0.1:{gossip}"))
        .arg(format!("--cluster.peer=127.0.0.1:{other}"))
        // Gossip often, so the pair settles in about two seconds rather than a minute (the
        // settle polls at ten gossip intervals).
        .arg("--cluster.gossip-interval=50ms")
        .arg("--cluster.pushpull-interval=1s")
        .arg("--cluster.settle-timeout=10s")
        // The wait between peers is what lets the second see the first's notification log
        // and hold back. None: both send each notification, as they do when gossip is slow or
        // the pair is split, the duplicate delivery that untoil's replicas must run once. (At
        // the default 15s the second peer does hold back and only one replica hears of each
        // alert: the two really are one cluster.)
        .arg("--cluster.peer-timeout=0s")
        .arg("--log.level=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("`{BINARY}` must be installed for this test (run scripts/test-deps, Debian package prometheus-alertmanager): {e}")
        });
    Peer {
        child,
        base: format!("http://127.0.0.1:{web}"),
        log,
    }
}

/// Whether `peer` reports its cluster settled with both peers in it.
async fn clustered(client: &reqwest::Client, peer: &Peer) -> bool {
    let Ok(r) = client
        .get(format!("{}/api/v2/status", peer.base))
        .send()
        .await
    else {
        return false;
    };
    let status: Value = r.json().await.unwrap_or(Value::Null);
    status["cluster"]["status"] == "ready"
        && status["cluster"]["peers"]
            .as_array()
            .is_some_and(|p| p.len() == 2)
}

/// Two Alertmanagers clustered with each other, the first sending to `webhooks[0]`, the second
/// to `webhooks[1]`; returned once both report the cluster settled with two peers.
async fn start_pair(dir: &Path, webhooks: [&str; 2]) -> [Peer; 2] {
    let client = reqwest::Client::new();
    // Ports taken and released just before Alertmanager binds them: another test may take one
    // in between, which shows as a peer exiting at once (retried).
    for _ in 0..3 {
        let (web, gossip) = (
            [closed_port(), closed_port()],
            [closed_port(), closed_port()],
        );
        let mut pair = [0, 1].map(|i| {
            start_peer(
                dir,
                &format!("am{i}"),
                webhooks[i],
                web[i],
                gossip[i],
                gossip[1 - i],
            )
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut exited = false;
        loop {
            for p in &mut pair {
                exited |= p.child.try_wait().expect("try_wait").is_some();
            }
            if exited {
                break;
            }
            if clustered(&client, &pair[0]).await && clustered(&client, &pair[1]).await {
                return pair;
            }
            assert!(
                Instant::now() < deadline,
                "the Alertmanager pair did not settle as a cluster of two:\n{}\n---\n{}",
                pair[0].log(),
                pair[1].log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let logs = format!("{}\n---\n{}", pair[0].log(), pair[1].log());
        assert!(
            logs.contains("address already in use"),
            "an Alertmanager exited:\n{logs}"
        );
    }
    panic!("the Alertmanager pair could not get free ports in three tries");
}

/// The sum of `name`'s samples (with `label`) on the `/metrics` of `base`.
async fn metric(client: &reqwest::Client, base: &str, name: &str, label: (&str, &str)) -> f64 {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0.0,
    };
    sample(&parse_metrics(&text), name, Some(label))
}

/// The `ALERTS` alerts of an episode that started at `starts`, ended at `ends` when given.
fn episode(starts: &str, ends: Option<&str>) -> Value {
    (0..ALERTS)
        .map(|i| {
            let mut a = json!({
                "labels": {"alertname": "HaPairDown", "instance": format!("node-{i}")},
                "startsAt": starts,
                "generatorURL": "http://127.0.0.1/ha-pair",
            });
            if let Some(e) = ends {
                a["endsAt"] = json!(e);
            }
            a
        })
        .collect()
}

/// Posts `alerts` to both peers at once, as Prometheus sends to every Alertmanager it knows.
async fn post_to_both(client: &reqwest::Client, pair: &[Peer; 2], alerts: &Value) {
    let post = |p: &Peer| {
        client
            .post(format!("{}/api/v2/alerts", p.base))
            .json(alerts)
            .send()
    };
    let (a, b) = tokio::join!(post(&pair[0]), post(&pair[1]));
    for r in [a, b] {
        let r = r.expect("post to Alertmanager");
        assert!(
            r.status().is_success(),
            "Alertmanager refused the alerts: {}",
            r.status()
        );
    }
}

/// The runs of runbook `marking`, as the API lists them.
async fn runs(d: &Http) -> Vec<Value> {
    d.get("/api/v1/runs?runbook=marking&limit=1000")
        .await
        .1
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (with a deadline) until each peer has sent, and each replica has received, `alerts`
/// alerts in all (one notification per alert: each is its own group), so that every delivery
/// has been admitted or refused before anything is counted. A peer holding back (the pair's
/// own deduplication winning the race) fails here, with the counts and both peers' logs.
async fn both_delivered(
    client: &reqwest::Client,
    pair: &[Peer; 2],
    replicas: [&Http; 2],
    alerts: usize,
) {
    let want = alerts as f64;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut counts = [0.0; 4];
        for (i, p) in pair.iter().enumerate() {
            let name = "alertmanager_notifications_total";
            counts[i] = metric(client, &p.base, name, ("integration", "webhook")).await;
        }
        for (i, d) in replicas.iter().enumerate() {
            let name = "untoil_alerts_total";
            counts[2 + i] = metric(client, &d.base, name, ("outcome", "received")).await;
        }
        if counts.iter().all(|&c| c >= want) {
            // And no peer sent an alert twice.
            assert_eq!(
                counts, [want; 4],
                "sent by each peer, received by each replica"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{alerts} alerts sent by each peer and received by each replica; counts {counts:?}:\n{}\n---\n{}",
            pair[0].log(),
            pair[1].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_ha_pair_sending_to_two_replicas_runs_each_alert_episode_once() {
    let cluster = Cluster::start();
    cluster.create_database("hapair");
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    // The step marks its run and alert: each line one execution.
    dirs.runbook(
        "marking",
        &format!(
            "name: marking\nowner: t\ntoil: {{manual_minutes: 5}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"HaPairDown\"']}}\nverify: {{alert_resolves_within: 10m}}\nsteps:\n  - name: mark\n    run: printf '%s %s\\n' {{{{run.id}}}} {{{{alert.labels.instance}}}} >> {}\n",
            marker.display()
        ),
    );
    // Default leases: no replica dies here, so two busy cores never fence one.
    let (_r0, d0) = serve(on_database(&dirs, &cluster, "hapair"));
    let (_r1, d1) = serve(on_database(&dirs, &cluster, "hapair"));
    let webhook = |d: &Http| format!("{}/api/v1/alerts/alertmanager", d.base);
    let pair = start_pair(dirs.root.path(), [&webhook(&d0), &webhook(&d1)]).await;
    let client = reqwest::Client::new();
    let stamp = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);

    // First episode: each alert, sent by both peers to both replicas, runs once.
    let first = stamp();
    post_to_both(&client, &pair, &episode(&first, None)).await;
    both_delivered(&client, &pair, [&d0, &d1], ALERTS).await;
    let ran = until("the first episode's runs to succeed", || async {
        let runs = runs(&d0).await;
        (runs.len() == ALERTS && runs.iter().all(|r| r["status"] == "succeeded")).then_some(runs)
    })
    .await;
    assert_eq!(
        lines(&marker).len(),
        ALERTS,
        "each alert ran once: {:?}",
        lines(&marker)
    );

    // Its resolve, sent by both peers too, verifies each run, whichever replica gets it.
    post_to_both(&client, &pair, &episode(&first, Some(&stamp()))).await;
    both_delivered(&client, &pair, [&d0, &d1], 2 * ALERTS).await;
    until("each run to be verified", || async {
        let mut all = true;
        for r in &ran {
            let id = r["id"].as_str().expect("run id");
            let (_, run) = d1.get(&format!("/api/v1/runs/{id}")).await;
            all &= run["verification"]["verified"] == true;
        }
        all.then_some(())
    })
    .await;

    // The same alerts firing again are a new episode: each runs once more.
    let second = stamp();
    post_to_both(&client, &pair, &episode(&second, None)).await;
    both_delivered(&client, &pair, [&d0, &d1], 3 * ALERTS).await;
    let all = until("the second episode's runs to succeed", || async {
        let runs = runs(&d1).await;
        (runs.len() == 2 * ALERTS && runs.iter().all(|r| r["status"] == "succeeded"))
            .then_some(runs)
    })
    .await;

    // Each delivery reached both replicas (counted above); one of the two ran it, the other
    // answered it was a duplicate.
    let mut duplicates = 0.0;
    for d in [&d0, &d1] {
        duplicates += metric(
            &client,
            &d.base,
            "untoil_alerts_total",
            ("outcome", "deduplicated"),
        )
        .await;
    }
    assert_eq!(duplicates, (2 * ALERTS) as f64, "one duplicate per firing");

    // One execution per run, and per alert per episode.
    let mut executed = lines(&marker);
    executed.sort();
    let mut records = Vec::new();
    for r in &all {
        let id = r["id"].as_str().expect("run id");
        let (_, run) = d0.get(&format!("/api/v1/runs/{id}")).await;
        records.push(run);
    }
    let mut want: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["id"].as_str().unwrap_or_default(),
                r["cause"]["labels"]["instance"]
                    .as_str()
                    .unwrap_or_default()
            )
        })
        .collect();
    want.sort();
    assert_eq!(executed, want, "each run executed exactly once");
    for episode in [&first, &second] {
        let mut instances: Vec<String> = records
            .iter()
            .filter(|r| same_instant(&r["cause"]["starts_at"], episode))
            .map(|r| r["cause"]["labels"]["instance"].to_string())
            .collect();
        instances.sort();
        instances.dedup();
        assert_eq!(
            instances.len(),
            ALERTS,
            "one run per alert of the episode at {episode}: {records:#?}"
        );
    }
    // The records are whole: the alert that caused each run, its step's output, its verdict
    // (only the first episode has resolved).
    // The records are whole: the alert that caused each run and the notification that carried
    // it (from one peer or the other), its step, its toil, and its verdict once its episode
    // resolved (only the first has).
    let peers = [pair[0].base.as_str(), pair[1].base.as_str()];
    for r in &records {
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["cause"]["kind"], "alert", "{r}");
        assert_eq!(r["cause"]["source"], "alertmanager", "{r}");
        assert_eq!(r["alert"]["alert"]["labels"], r["cause"]["labels"], "{r}");
        assert_eq!(
            r["alert"]["alert"]["fingerprint"], r["cause"]["fingerprint"],
            "{r}"
        );
        let from = r["alert"]["notification"]["externalURL"].as_str();
        assert!(from.is_some_and(|u| peers.contains(&u)), "{r}");
        assert!(
            r["started_at"].is_string() && r["finished_at"].is_string(),
            "{r}"
        );
        assert_eq!(r["steps"][0]["status"], "succeeded", "{r}");
        assert_eq!(r["steps"][0]["exit_code"], 0, "{r}");
        assert_eq!(r["toil"]["minutes"], 5.0, "{r}");
        if same_instant(&r["cause"]["starts_at"], &first) {
            assert_eq!(r["verification"]["verified"], true, "{r}");
        } else {
            assert_eq!(r["verification"], Value::Null, "{r}");
        }
    }
}

/// Whether `at` (a run's `cause.starts_at`) is the instant `stamp` names.
fn same_instant(at: &Value, stamp: &str) -> bool {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    at.as_str()
        .and_then(parse)
        .is_some_and(|a| Some(a) == parse(stamp))
}
