//! untoil on PostgreSQL as an operator runs it (`--database-url`): the daemon acknowledges alerts
//! only once they are in the database and runs them; CLI commands read the database; the
//! password never has to be on a command line; a database that goes away means 503s, and
//! nothing acknowledged is lost. Several daemons on one database: tests/suite/replicas.rs.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::common::{Dirs, Http, Served, fixture, until, untoil_command};
use crate::pgcluster::Cluster;

pub(crate) const ALERTS: &str = "/api/v1/alerts/alertmanager";

/// A DiskFull runbook whose step appends the run id to `marker`, first waiting for `gate` to
/// exist when one is given.
pub(crate) fn marking(marker: &Path, gate: Option<&Path>) -> String {
    let wait = gate
        .map(|g| {
            format!(
                "printf 'started\\n' >> {}.started; while [ ! -e {} ]; do sleep 0.05; done; ",
                marker.display(),
                g.display()
            )
        })
        .unwrap_or_default();
    format!(
        "name: marking\nowner: t\ntoil: {{manual_minutes: 5}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nsteps:\n  - name: mark\n    run: {wait}printf '%s\\n' {{{{run.id}}}} >> {}\n",
        marker.display()
    )
}

pub(crate) fn alert(fingerprint: &str) -> Value {
    let mut v: Value = serde_json::from_slice(&fixture("firing.json")).expect("fixture json");
    v["alerts"][0]["fingerprint"] = json!(fingerprint);
    v
}

pub(crate) fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// A database of its own on `cluster`, and `untoil` pointed at it by environment only: the URL
/// has no password; PGPASSWORD holds it.
pub(crate) fn on_database(dirs: &Dirs, cluster: &Cluster, db: &str) -> Command {
    let mut c = untoil_command(dirs);
    c.env("UNTOIL_DATABASE_URL", cluster.url_without_password(db))
        .env("PGPASSWORD", &cluster.password);
    c
}

pub(crate) fn serve(mut c: Command) -> (Served, Http) {
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut served = Served::spawn(c);
    let http = Http::new(served.base());
    (served, http)
}

pub(crate) async fn run_when(d: &Http, id: &str, want: &str) -> Value {
    until(&format!("run {id} to be {want}"), || async {
        let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
        (run["status"] == want).then_some(run)
    })
    .await
}

pub(crate) async fn post_alert(d: &Http, fingerprint: &str) -> String {
    let (status, answer) = d.post(ALERTS, alert(fingerprint)).await;
    assert_eq!(status, 200, "{answer}");
    answer["accepted"][0]
        .as_str()
        .unwrap_or_else(|| panic!("one run accepted: {answer}"))
        .to_string()
}

fn output(mut c: Command) -> (bool, String, String) {
    let out = c.output().expect("run untoil");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_on_postgres_runs_alerts_once_across_restarts_and_the_cli_reads_the_database() {
    let cluster = Cluster::start();
    cluster.create_database("fleet");
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    dirs.runbook("marking", &marking(&marker, None));

    let envfile = dirs.path("step-env");
    dirs.runbook(
        "dump",
        &format!(
            "name: dump\nowner: t\ntoil: {{manual_minutes: 1}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"EnvCheck\"']}}\nsteps:\n  - name: env\n    run: env > {}\n",
            envfile.display()
        ),
    );
    let (served, d) = serve(on_database(&dirs, &cluster, "fleet"));
    let id = post_alert(&d, "pg-1").await;
    run_when(&d, &id, "succeeded").await;
    // A step never sees how the daemon reaches its database.
    let mut check = alert("env-1");
    check["alerts"][0]["labels"]["alertname"] = json!("EnvCheck");
    let (status, answer) = d.post(ALERTS, check).await;
    assert_eq!(status, 200, "{answer}");
    let dump = answer["accepted"][0].as_str().expect("one run").to_string();
    run_when(&d, &dump, "succeeded").await;
    let env = std::fs::read_to_string(&envfile).expect("the step's environment");
    assert!(env.contains("UNTOIL_RUN_ID="), "{env}");
    assert!(
        !env.contains(&cluster.password)
            && !env.contains("DATABASE")
            && !env.contains("PGPASSWORD"),
        "{env}"
    );
    // Alertmanager's repeat of the same episode runs nothing more.
    let (status, again) = d.post(ALERTS, alert("pg-1")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["accepted"], json!([]), "{again}");
    let (code, log) = served.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("runs are kept in the database postgres://untoil@127.0.0.1:"));
    assert!(
        !log.contains(&cluster.password),
        "the log shows the password"
    );

    // The database keeps the episode: a new daemon does not run the repeat either.
    let (served, d) = serve(on_database(&dirs, &cluster, "fleet"));
    let (status, again) = d.post(ALERTS, alert("pg-1")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["accepted"], json!([]), "{again}");
    let id2 = post_alert(&d, "pg-2").await;
    run_when(&d, &id2, "succeeded").await;
    drop(served);
    assert_eq!(lines(&marker), vec![id.clone(), id2.clone()]);
    // Nothing was kept under --data: the runs are in the database.
    let kept: Vec<_> = std::fs::read_dir(dirs.path("data"))
        .expect("data dir")
        .collect();
    assert!(kept.is_empty(), "--data was used: {kept:?}");

    // CLI commands read the database, here with the password in a file.
    let pwfile = dirs.path("pgpass");
    std::fs::write(&pwfile, format!("{}\n", cluster.password)).expect("password file");
    let cli = || {
        let mut c = untoil_command(&dirs);
        c.env("UNTOIL_DATABASE_URL", cluster.url_without_password("fleet"))
            .env("UNTOIL_DATABASE_PASSWORD_FILE", &pwfile);
        c
    };
    let mut runs = cli();
    runs.args(["runs", "--json"]);
    let (ok, out, err) = output(runs);
    assert!(ok, "{err}");
    let listed: Vec<Value> = serde_json::from_str(&out).expect("runs --json");
    let ids: Vec<&str> = listed.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, vec![id2.as_str(), dump.as_str(), id.as_str()], "{out}");
    let mut show = cli();
    show.args(["runs", "show", &id, "--json"]);
    let (ok, out, err) = output(show);
    assert!(ok, "{err}");
    let run: Value = serde_json::from_str(&out).expect("runs show --json");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["cause"]["fingerprint"], "pg-1", "{run}");
    assert_eq!(run["alert"]["notification"]["receiver"], "runbook", "{run}");
    let mut report = cli();
    report.args(["report", "--by", "runbook", "--format", "json"]);
    let (ok, out, err) = output(report);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).expect("report json");
    let groups: Vec<&Value> = report["rows"].as_array().expect("rows").iter().collect();
    let marking = groups
        .iter()
        .find(|r| r["group"] == json!(["marking"]))
        .unwrap_or_else(|| panic!("a row for marking: {out}"));
    assert_eq!(marking["runs"], 2, "{out}");
    assert_eq!(marking["toil_minutes"], 10.0, "{out}");
    assert_eq!(report["total"]["runs"], 3, "{out}");

    // A wrong password is a clear error that never repeats a password.
    let mut wrong = untoil_command(&dirs);
    wrong
        .env("UNTOIL_DATABASE_URL", cluster.url_without_password("fleet"))
        .env("PGPASSWORD", "not-the-password")
        .args(["runs"]);
    let (ok, _, err) = output(wrong);
    assert!(!ok);
    assert!(err.contains("postgres://untoil@127.0.0.1"), "{err}");
    assert!(
        err.contains("check --database-url"),
        "says what to check: {err}"
    );
    assert!(
        !err.contains("not-the-password") && !err.contains(&cluster.password),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untoil_run_on_a_database_queues_through_a_daemon_and_never_executes_itself() {
    let cluster = Cluster::start();
    cluster.create_database("cli");
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    dirs.runbook(
        "manual",
        &format!(
            "name: manual\nowner: t\ntoil: {{manual_minutes: 2}}\nsteps:\n  - name: mark\n    run: printf '%s\\n' {{{{run.id}}}} >> {}\n",
            marker.display()
        ),
    );
    let mut alone = on_database(&dirs, &cluster, "cli");
    alone.args(["run", "manual"]);
    let (ok, _, err) = output(alone);
    assert!(!ok);
    assert!(err.contains("never executes a run itself"), "{err}");
    assert!(lines(&marker).is_empty(), "it ran without a daemon");

    let (served, d) = serve(on_database(&dirs, &cluster, "cli"));
    let mut queued = on_database(&dirs, &cluster, "cli");
    queued.args(["run", "manual", "--server", &d.base]);
    let (ok, _, err) = output(queued);
    assert!(ok, "{err}");
    assert!(err.contains("queued on the daemon at"), "{err}");
    let ran = lines(&marker);
    assert_eq!(ran.len(), 1, "{ran:?}");
    let run = run_when(&d, &ran[0], "succeeded").await;
    assert_eq!(run["runbook"], "manual");
    drop(served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_down_alerts_get_503_and_nothing_acknowledged_is_lost() {
    let cluster = Cluster::start();
    cluster.create_database("outage");
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    let gate = dirs.path("gate");
    dirs.runbook("marking", &marking(&marker, Some(&gate)));
    let (served, d) = serve(on_database(&dirs, &cluster, "outage"));
    // Acknowledged before the outage: one running (its step waits for the gate), more queued.
    let mut acknowledged = Vec::new();
    for i in 0..6 {
        acknowledged.push(post_alert(&d, &format!("before-{i}")).await);
    }
    let started = marker.with_extension("started");
    until("a step to start", || async {
        (!lines(&started).is_empty()).then_some(())
    })
    .await;

    cluster.stop();
    let (status, answer) = d.post(ALERTS, alert("during")).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("store unavailable")),
        "{answer}"
    );
    // Steps finish while the database is away: their finishes wait for it.
    std::fs::write(&gate, "").expect("open the gate");
    until("the running step to end", || async {
        (!lines(&marker).is_empty()).then_some(())
    })
    .await;
    cluster.restart();

    // Alertmanager retries the refused notification; it is acknowledged now.
    let during = until("the database to be back", || async {
        let (status, answer) = d.post(ALERTS, alert("during")).await;
        (status == 200).then(|| answer["accepted"][0].as_str().map(String::from))?
    })
    .await;
    acknowledged.push(during);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for id in &acknowledged {
        loop {
            let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
            if run["status"] == "succeeded" {
                break;
            }
            if std::time::Instant::now() > deadline {
                let (_, log) = served.terminate();
                panic!("run {id} is {run}; daemon log:\n{log}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    drop(served);
    let mut ran = lines(&marker);
    ran.sort();
    let mut want = acknowledged.clone();
    want.sort();
    assert_eq!(ran, want, "each acknowledged alert ran exactly once");
}

#[test]
fn tls_to_the_database_is_verified_against_the_ca_file_or_the_system_trust() {
    let cluster = Cluster::start_tls();
    cluster.create_database("tls");
    let dirs = Dirs::new();
    let runs = |query: &str, ca: Option<&Path>| {
        let mut c = on_database(&dirs, &cluster, "tls");
        c.env(
            "UNTOIL_DATABASE_URL",
            format!("{}?{query}", cluster.url_without_password("tls")),
        );
        if let Some(ca) = ca {
            c.env("UNTOIL_DATABASE_CA_FILE", ca);
        }
        c.args(["runs", "--json"]);
        output(c)
    };
    // The server takes TLS only: a command that works used it.
    let (ok, out, err) = runs("sslmode=require", Some(&cluster.ca()));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "[]");
    // Its CA is not in the system's trust store: the certificate is refused, not ignored.
    let (ok, _, err) = runs("sslmode=require", None);
    assert!(!ok, "an unverified certificate was accepted");
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    let (ok, _, err) = runs("sslmode=disable", Some(&cluster.ca()));
    assert!(!ok, "a plaintext connection was accepted: {err}");
}
