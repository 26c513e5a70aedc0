//! The shipped weekly digest (runbooks/weekly-digest.yaml) run by hand against a store with last
//! week's runs and alerts, posting through the shipped slack-notify plugin to a webhook sink on
//! 127.0.0.1: what it posts are `untoil report`'s figures, and neither untoil's token nor the
//! webhook's secret nor a hostile alert label's markup gets through.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use chrono::{DateTime, NaiveTime, Utc};
use serde_json::Value;
use untoil::report::period::Period;
use untoil::run::credit::Credit;
use untoil::run::id::RunId;
use untoil::run::record::RunRecord;
use untoil::run::status::RunStatus;
use untoil::store::sled::SledStore;
use untoil::store::{AlertReceived, RunFilter, Store};

use crate::common::{Dirs, Served, until, untoil_command};

/// The webhook's secret part, as Slack puts it in the URL's path.
const WEBHOOK_SECRET: &str = "T0DIGEST/B0DIGEST/webhook-secret-7f3a9c";
/// untoil's API token in the attack test.
const TOKEN: &str = "tok-digest-api-token-5b1e";
/// An alert name written to become a Slack mention, a link and a table break.
const HOSTILE: &str = "<!channel> *Pay* <http://evil.example|here>|x";

/// What the webhook sink received: (path, body).
type Posts = Arc<Mutex<Vec<(String, Bytes)>>>;

async fn record(State(posts): State<Posts>, uri: Uri, body: Bytes) -> &'static str {
    posts
        .lock()
        .expect("lock")
        .push((uri.path().to_string(), body));
    "ok"
}

/// A webhook sink on an ephemeral port of 127.0.0.1, answering 200 to everything.
async fn sink() -> (String, Posts) {
    let posts = Posts::default();
    let app = Router::new().fallback(record).with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/services/{WEBHOOK_SECRET}"), posts)
}

/// The shipped runbook and plugin, as a fresh clone has them.
fn ship(dirs: &Dirs) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        root.join("runbooks/weekly-digest.yaml"),
        dirs.path("runbooks").join("weekly-digest.yaml"),
    )
    .expect("copy the runbook");
    for f in [
        "slack-notify.py",
        "slack-notify.manifest.json",
        "untoil_plugin.py",
    ] {
        std::fs::copy(root.join("plugins").join(f), dirs.path("plugins").join(f))
            .expect("copy the plugin");
    }
}

fn last_week() -> Period {
    Period::last_week(Utc::now()).expect("last week")
}

/// `day` days after last week's Monday, at 10:00 UTC.
fn at(day: i64) -> DateTime<Utc> {
    last_week().from.and_time(NaiveTime::MIN).and_utc()
        + chrono::Duration::days(day)
        + chrono::Duration::hours(10)
}

fn finished(
    n: usize,
    runbook: &str,
    status: RunStatus,
    minutes: f64,
    when: DateTime<Utc>,
) -> RunRecord {
    let mut run = RunRecord::synthetic(n);
    run.id = RunId(ulid::Ulid::from_parts(when.timestamp_millis() as u64, n as u128).to_string());
    run.runbook = runbook.into();
    run.owner = "team-ops".into();
    run.status = status;
    run.created_at = when;
    run.started_at = Some(when);
    run.finished_at = Some(when + chrono::Duration::seconds(30));
    run.toil = Some(Credit {
        minutes,
        ..Default::default()
    });
    run
}

fn alert(fingerprint: &str, name: &str, matched: bool, when: DateTime<Utc>) -> AlertReceived {
    AlertReceived {
        source: untoil::trigger::source::ALERTMANAGER.into(),
        fingerprint: fingerprint.into(),
        starts_at: when,
        received_at: when,
        last_seen: when,
        times_received: 1,
        labels: BTreeMap::from([("alertname".to_string(), name.to_string())]),
        annotations: BTreeMap::new(),
        matched: if matched {
            vec!["disk-usage".into()]
        } else {
            Vec::new()
        },
        firing: true,
    }
}

/// Last week: 15 runs (9 succeeded, 2 noop, 3 failed or timed out, 1 interrupted) saving 100
/// minutes, and 4 alerts of
/// which 1 was handled; this week and the week before, runs the digest must leave out.
async fn seed(dirs: &Dirs) {
    use RunStatus::{Failed, Succeeded, TimedOut};
    let store = SledStore::open(&dirs.path("data")).expect("store");
    let mut runs = Vec::new();
    let mut add = |runbook: &str, status: RunStatus, minutes: f64, when: DateTime<Utc>| {
        let n = runs.len();
        runs.push(finished(n, runbook, status, minutes, when));
    };
    for d in 0..4 {
        add("restart-web", Succeeded, 15.0, at(d));
    }
    for d in 0..3 {
        add("log-cleanup", Succeeded, 10.0, at(d + 2));
    }
    add("disk-usage", Succeeded, 5.0, at(0));
    add("disk-usage", Succeeded, 5.0, at(6));
    add("disk-usage", Failed, 0.0, at(3));
    add("disk-usage", TimedOut, 0.0, at(4));
    add("cert-expiry-check", Failed, 0.0, at(5));
    add("stale-tmp", RunStatus::Noop, 0.0, at(1));
    add("stale-tmp", RunStatus::Noop, 0.0, at(2));
    add("stale-tmp", RunStatus::Interrupted, 0.0, at(3));
    add("log-cleanup", Succeeded, 600.0, at(7));
    add("log-cleanup", Failed, 0.0, at(8));
    add("restart-web", Succeeded, 600.0, at(-1));
    store.finish_many(runs).await.expect("seed runs");
    store
        .admit(
            Vec::new(),
            vec![
                alert("a1", "HostOutOfMemory", false, at(1)),
                alert("a2", "HostOutOfMemory", false, at(2)),
                alert("a3", HOSTILE, false, at(3)),
                alert("a4", "DiskFull", true, at(3)),
                alert("a5", "NextWeek", false, at(8)),
            ],
        )
        .await
        .expect("seed alerts");
}

/// The one text posted to the sink.
fn posted(posts: &Posts) -> String {
    let posts = posts.lock().expect("lock").clone();
    assert_eq!(posts.len(), 1, "expected one post: {posts:?}");
    let (path, body) = &posts[0];
    assert_eq!(path, &format!("/services/{WEBHOOK_SECRET}"));
    let json: Value = serde_json::from_slice(body).expect("the post is JSON");
    assert_eq!(json["username"], "untoil");
    json["text"].as_str().expect("a text").to_string()
}

fn output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `untoil report ... --format json` over last week, from the store of `dirs`.
fn report(dirs: &Dirs, token: Option<&str>, args: &[&str]) -> Value {
    let p = last_week();
    let (from, to) = (p.from.to_string(), p.to.to_string());
    let mut c = untoil_command(dirs);
    if let Some(t) = token {
        c.env("UNTOIL_TOKEN", t);
    }
    c.arg("report")
        .args(args)
        .args(["--from", &from, "--to", &to, "--format", "json"]);
    let out = tokio::task::block_in_place(|| c.output().expect("untoil report"));
    assert!(out.status.success(), "{}", output(&out));
    serde_json::from_slice(&out.stdout).expect("report JSON")
}

fn has_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in:\n{text}"
    );
}

/// The digest's lines, checked against `untoil report` and `untoil report unautomated`.
fn check_figures(text: &str, dirs: &Dirs, token: Option<&str>) {
    let p = last_week();
    has_line(
        text,
        &format!("*untoil digest {} .. {} (UTC days)*", p.from, p.to),
    );
    let toil = report(dirs, token, &["--by", "runbook"]);
    let total = &toil["total"];
    assert_eq!(total["runs"], 15, "{toil}");
    assert_eq!(total["toil_minutes"], 100.0, "{toil}");
    has_line(
        text,
        &format!(
            "*Toil saved:* {:.2} h in {} runs: {} succeeded, {} found nothing to do, {} failed or timed out, {} interrupted (success rate 78.6%)",
            total["toil_hours"].as_f64().unwrap_or(-1.0),
            total["runs"],
            total["succeeded"],
            total["noop"],
            total["failed"],
            total["interrupted"],
        ),
    );
    // Every run is in one part: the parts add up to the run count.
    has_line(
        text,
        "*Toil saved:* 1.67 h in 15 runs: 9 succeeded, 2 found nothing to do, 3 failed or timed out, 1 interrupted (success rate 78.6%)",
    );
    let row = |name: &str| {
        toil["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["group"][0] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no row of {name} in {toil}"))
    };
    for (rank, name) in ["restart-web", "log-cleanup", "disk-usage"]
        .iter()
        .enumerate()
    {
        let r = row(name);
        has_line(
            text,
            &format!(
                "{}. {name}: {:.2} h, {} runs",
                rank + 1,
                r["toil_hours"].as_f64().unwrap_or(-1.0),
                r["runs"]
            ),
        );
    }
    assert!(
        !text.contains("4. "),
        "cert-expiry-check saved nothing:\n{text}"
    );
    has_line(text, "- disk-usage: 2 of 4 runs failed");
    has_line(text, "- cert-expiry-check: 1 of 1 run failed");
    assert_eq!(row("disk-usage")["failed"], 2);

    let backlog = report(dirs, token, &["unautomated"]);
    assert_eq!(backlog["rows"][0]["group"]["alertname"], "HostOutOfMemory");
    assert_eq!(backlog["rows"][0]["estimated_minutes"], 30.0);
    has_line(text, "1. HostOutOfMemory: 2 alerts, est. 0.50 h");
    has_line(
        text,
        "2. &lt;!channel&gt; *Pay* &lt;http://evil.example\\|here&gt;\\|x: 1 alert, est. 0.25 h",
    );
    assert_eq!(backlog["alerts_received"], 4, "{backlog}");
    has_line(text, "Coverage: 1 of 4 alerts handled by a runbook (25.0%)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_digest_run_by_hand_posts_last_weeks_report_to_the_webhook() {
    let dirs = Dirs::new();
    ship(&dirs);
    seed(&dirs).await;
    let (url, posts) = sink().await;

    let out = tokio::task::block_in_place(|| {
        untoil_command(&dirs)
            .env("SLACK_WEBHOOK_URL", &url)
            .args(["run", "weekly-digest"])
            .output()
            .expect("untoil run")
    });
    let shown = output(&out);
    assert!(out.status.success(), "{shown}");
    let text = posted(&posts);
    check_figures(&text, &dirs, None);
    // The run shows what it posted, and not where.
    assert!(shown.contains("*Top runbooks by toil saved*"), "{shown}");
    assert!(!shown.contains(WEBHOOK_SECRET), "{shown}");

    // Credited: the post a person would otherwise write, and only because it was posted.
    let store = SledStore::open(&dirs.path("data")).expect("store");
    let runs = store
        .list_runs(&RunFilter {
            runbook: Some("weekly-digest".into()),
            ..Default::default()
        })
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    assert_eq!(runs[0].toil.as_ref().map(|c| c.minutes), Some(15.0));
    let digest = &runs[0].steps[0];
    assert_eq!(digest.kind, "report");
    // `{{steps.digest.stdout}}` is the step's stdout without its last line break.
    assert_eq!(digest.stdout.trim_end(), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webhook_the_digest_is_rendered_the_post_skipped_and_nothing_credited() {
    let dirs = Dirs::new();
    ship(&dirs);
    seed(&dirs).await;
    let out = tokio::task::block_in_place(|| {
        untoil_command(&dirs)
            .env_remove("SLACK_WEBHOOK_URL")
            .args(["run", "weekly-digest"])
            .output()
            .expect("untoil run")
    });
    let shown = output(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("post skipped") && shown.contains("toil credited: 0 min"),
        "{shown}"
    );
    // Nothing was delivered: the run found nothing to do, it is no success to count.
    assert!(shown.contains(" noop in "), "{shown}");
    has_line(
        &shown
            .lines()
            .map(|l| l.trim_start_matches("    | "))
            .collect::<Vec<_>>()
            .join("\n"),
        "1. restart-web: 1.00 h, 4 runs",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_daemon_with_a_token_the_digest_carries_no_credential_and_no_markup() {
    let dirs = Dirs::new();
    ship(&dirs);
    seed(&dirs).await;
    let (url, posts) = sink().await;
    let mut serve = untoil_command(&dirs);
    serve
        .env("UNTOIL_TOKEN", TOKEN)
        .env("SLACK_WEBHOOK_URL", &url)
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let mut daemon = Served::spawn(serve);
    let base = daemon.base();

    // The CLI finds the daemon of this store and has it run the digest.
    let out = tokio::task::block_in_place(|| {
        untoil_command(&dirs)
            .env("UNTOIL_TOKEN", TOKEN)
            .args(["run", "weekly-digest"])
            .output()
            .expect("untoil run")
    });
    assert!(out.status.success(), "{}", output(&out));
    until("the digest to be posted", || async {
        (!posts.lock().expect("lock").is_empty()).then_some(())
    })
    .await;
    let text = posted(&posts);
    check_figures(&text, &dirs, Some(TOKEN));

    // A hostile alert name is text: no mention, no link, no extra table cell.
    for markup in ["<!channel>", "<http://", "|here>", " |x"] {
        assert!(!text.contains(markup), "{markup} in:\n{text}");
    }
    // Neither untoil's token nor the webhook's secret is in what was posted or recorded.
    untoil::exec::step::http::install_crypto_provider();
    let client = reqwest::Client::new();
    let runs: Value = client
        .get(format!("{base}/api/v1/runs?runbook=weekly-digest"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("runs")
        .json()
        .await
        .expect("runs JSON");
    let id = runs[0]["id"].as_str().expect("a run id").to_string();
    let run = client
        .get(format!("{base}/api/v1/runs/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("run")
        .text()
        .await
        .expect("run text");
    assert!(run.contains("*Top runbooks by toil saved*"), "{run}");
    for secret in [TOKEN, WEBHOOK_SECRET] {
        assert!(!text.contains(secret), "{secret} posted:\n{text}");
        assert!(!run.contains(secret), "{secret} recorded:\n{run}");
    }
    let (_, stderr) = daemon.terminate();
    assert!(!stderr.contains(TOKEN), "{stderr}");
}
