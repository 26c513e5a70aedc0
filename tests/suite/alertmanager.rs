//! End to end with a real Prometheus Alertmanager (Debian package `prometheus-alertmanager`,
//! installed by scripts/test-deps): an alert posted to Alertmanager's API reaches untoil, runs
//! the runbook once despite re-sends, resolves, verifies, and the toil report shows the credit.
//! Everything listens on 127.0.0.1. Fails loudly when Alertmanager is not installed.

use crate::common;

use std::process::{Child, Command, Stdio};

use common::{Dirs, Running};
use serde_json::json;
use untoil::server::auth::Auth;

const BINARY: &str = "prometheus-alertmanager";

struct Alertmanager {
    child: Child,
    base: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_alertmanager(dir: &std::path::Path, webhook: &str) -> Alertmanager {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: untoil\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: untoil\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n        http_config:\n          authorization: {{type: Bearer, credentials: e2e-token}}\n"
        ),
    )
    .expect("write config");
    let port = free_port();
    let child = Command::new(BINARY)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("`{BINARY}` must be installed for this test (run scripts/test-deps, Debian package prometheus-alertmanager): {e}")
        });
    Alertmanager {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_through_a_real_alertmanager_runs_once_resolves_and_credits_toil() {
    let dirs = Dirs::new();
    dirs.runbook(
        "disk",
        "name: disk\nowner: team-db\nservice: db\ntoil: {manual_minutes: 20}\ntriggers:\n  - alert: {matchers: ['alertname=\"E2EDiskFull\"']}\nverify: {alert_resolves_within: 10m}\nsteps:\n  - name: fix\n    run: echo fixing {{alert.labels.instance}}\n",
    );
    let mut settings = dirs.settings();
    settings.auth = Auth::new(vec!["e2e-token".into()], vec![]);
    let mut untoil = Running::start(settings).await;
    untoil.token = Some("e2e-token".into());
    let am = start_alertmanager(
        dirs.root.path(),
        &format!("{}/api/v1/alerts/alertmanager", untoil.base),
    );
    let client = reqwest::Client::new();
    untoil
        .wait_for(|| async {
            client
                .get(format!("{}/-/ready", am.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;

    let starts = chrono::Utc::now();
    let alert = |ends: Option<chrono::DateTime<chrono::Utc>>| {
        let mut a = json!([{
            "labels": {"alertname": "E2EDiskFull", "instance": "db-9", "severity": "critical"},
            "annotations": {"summary": "disk full on db-9"},
            "startsAt": starts.to_rfc3339(),
            "generatorURL": "http://127.0.0.1/e2e",
        }]);
        if let Some(e) = ends {
            a[0]["endsAt"] = json!(e.to_rfc3339());
        }
        a
    };
    let post = |body: serde_json::Value| {
        let client = client.clone();
        let url = format!("{}/api/v2/alerts", am.base);
        async move {
            let r = client
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("post to Alertmanager");
            assert!(
                r.status().is_success(),
                "Alertmanager refused the alert: {}",
                r.status()
            );
        }
    };
    post(alert(None)).await;
    untoil
        .wait_for(|| async {
            untoil
                .runs()
                .await
                .first()
                .is_some_and(|r| r["status"] == "succeeded")
        })
        .await;
    let runs = untoil.runs().await;
    assert_eq!(runs[0]["steps"][0]["stdout"], "fixing db-9\n");

    // Firing again (as Alertmanager does on repeat) never runs the fix twice.
    post(alert(None)).await;
    post(alert(Some(chrono::Utc::now()))).await;
    untoil
        .wait_for(|| async {
            untoil
                .runs()
                .await
                .first()
                .is_some_and(|r| r["verification"]["verified"] == true)
        })
        .await;
    assert_eq!(untoil.runs().await.len(), 1, "the runbook ran exactly once");

    let (_, report) = untoil.get("/api/v1/reports/toil?by=service").await;
    assert_eq!(report["total"]["runs"], 1);
    assert_eq!(report["total"]["toil_minutes"], 20.0);
    // The mean stays in JSON beside the median and p90, which one remediation makes equal.
    assert!(report["total"]["mttr_ms"].as_u64().is_some(), "{report}");
    assert!(
        report["total"]["ttr_median_ms"].as_u64().is_some(),
        "{report}"
    );
    assert_eq!(
        report["total"]["ttr_p90_ms"], report["total"]["ttr_median_ms"],
        "{report}"
    );
    assert_eq!(report["total"]["success_rate"], 1.0, "{report}");
    let (_, backlog) = untoil.get("/api/v1/reports/unautomated").await;
    assert_eq!(backlog["alerts_handled"], 1, "{backlog}");
    drop(am);
    untoil.stop().await;
}

#[test]
fn the_shipped_alertmanager_example_is_a_valid_configuration() {
    let out = Command::new("amtool")
        .args(["check-config", concat!(env!("CARGO_MANIFEST_DIR"), "/examples/alertmanager.yml")])
        .output()
        .expect("amtool (Debian package prometheus-alertmanager) must be installed: run scripts/test-deps");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The resolve as `amtool` and Alertmanager's API give the alert: its `startsAt` at
/// milliseconds, while the webhook sent the firing alert at Alertmanager's own nanoseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_posted_with_the_apis_millisecond_start_resolves_the_episode_it_came_from() {
    let dirs = Dirs::new();
    dirs.runbook(
        "disk",
        "name: disk\nowner: team-db\ntoil: {manual_minutes: 20}\ntriggers:\n  - alert: {matchers: ['alertname=\"E2EMsDiskFull\"']}\nverify: {alert_resolves_within: 10m}\nsteps:\n  - name: fix\n    run: echo fixing\n",
    );
    let mut settings = dirs.settings();
    settings.auth = Auth::new(vec!["e2e-token".into()], vec![]);
    let mut untoil = Running::start(settings).await;
    untoil.token = Some("e2e-token".into());
    let am = start_alertmanager(
        dirs.root.path(),
        &format!("{}/api/v1/alerts/alertmanager", untoil.base),
    );
    let client = reqwest::Client::new();
    untoil
        .wait_for(|| async {
            client
                .get(format!("{}/-/ready", am.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    let labels = json!({"alertname": "E2EMsDiskFull", "instance": "db-7"});
    // No startsAt: Alertmanager stamps it, at nanoseconds.
    let r = client
        .post(format!("{}/api/v2/alerts", am.base))
        .json(&json!([{"labels": labels}]))
        .send()
        .await
        .expect("post to Alertmanager");
    assert!(r.status().is_success(), "{}", r.status());
    untoil
        .wait_for(|| async {
            untoil
                .runs()
                .await
                .first()
                .is_some_and(|r| r["status"] == "succeeded")
        })
        .await;
    let fired = untoil.runs().await[0]["cause"]["starts_at"].clone();
    // What the API says about it, as amtool reads it: the start at milliseconds.
    let listed: serde_json::Value = client
        .get(format!("{}/api/v2/alerts", am.base))
        .send()
        .await
        .expect("list alerts")
        .json()
        .await
        .expect("alerts json");
    let starts = listed[0]["startsAt"]
        .as_str()
        .expect("startsAt")
        .to_string();
    let ends = chrono::Utc::now().to_rfc3339();
    let r = client
        .post(format!("{}/api/v2/alerts", am.base))
        .json(&json!([{"labels": labels, "startsAt": starts, "endsAt": ends}]))
        .send()
        .await
        .expect("resolve through Alertmanager");
    assert!(r.status().is_success(), "{}", r.status());
    untoil
        .wait_for(|| async {
            untoil
                .runs()
                .await
                .first()
                .is_some_and(|r| r["verification"]["verified"] == true)
        })
        .await;
    assert_eq!(untoil.runs().await.len(), 1);
    let (_, backlog) = untoil.get("/api/v1/reports/unautomated").await;
    assert_eq!(backlog["rows"], json!([]), "{backlog}");
    assert_eq!(
        (&backlog["alerts_received"], &backlog["alerts_handled"]),
        (&json!(1), &json!(1)),
        "one episode (fired at {fired}, listed at {starts}): {backlog}"
    );
    drop(am);
    untoil.stop().await;
}
