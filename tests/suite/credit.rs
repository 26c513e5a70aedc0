//! Toil credit as a user sees it: runs that found nothing to do (`noop`), credit by amount
//! (`toil.per_item`), and the shipped runbooks crediting only real work. Each runs the `untoil`
//! binary in the foreground on a fresh store and reads the runs back as `untoil runs` shows them.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::common::{Dirs, untoil_command};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// `untoil ARGS` over `dirs`.
fn untoil(dirs: &Dirs, args: &[&str]) -> Output {
    untoil_command(dirs)
        .args(args)
        .output()
        .expect("run untoil")
}

/// The most recent run, as `untoil runs show --json` gives it.
fn last_run(dirs: &Dirs) -> Value {
    let out = untoil(dirs, &["runs", "--json", "--limit", "1"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let id = list[0]["id"].as_str().unwrap_or_default().to_string();
    assert!(!id.is_empty(), "no run: {}", text(&out.stderr));
    let out = untoil(dirs, &["runs", "show", &id, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A shipped runbook (runbooks/NAME.yaml) installed in `dirs`.
fn shipped(dirs: &Dirs, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("runbooks/{name}.yaml"));
    let body = std::fs::read_to_string(&path).expect("the shipped runbook");
    dirs.runbook(name, &body);
}

/// Runs `name` in the foreground with `args`; returns the run as stored.
fn run_ok(dirs: &Dirs, name: &str, args: &[&str]) -> Value {
    let mut all = vec!["run", name];
    all.extend_from_slice(args);
    let out = untoil(dirs, &all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    last_run(dirs)
}

fn statuses(run: &Value) -> Vec<String> {
    run["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["status"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_step_exiting_with_a_declared_noop_status_ends_the_run_noop_credited_nothing() {
    let dirs = Dirs::new();
    let marker = dirs.path("acted");
    dirs.runbook(
        "sweep",
        &format!(
            "name: sweep\nowner: t\ntoil: {{manual_minutes: 5}}\nsteps:\n  - name: find\n    run: echo none; exit 3\n    noop_exit_codes: [3]\n  - name: act\n    run: touch {}\n",
            marker.display()
        ),
    );
    let out = untoil(&dirs, &["run", "sweep"]);
    // A noop run is a success: the foreground run exits 0.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run = last_run(&dirs);
    assert_eq!(run["status"], "noop", "{run}");
    assert_eq!(run["toil"]["minutes"], 0.0, "{run}");
    assert_eq!(statuses(&run), ["succeeded", "skipped"]);
    assert!(
        run["steps"][1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("nothing to do")),
        "{run}"
    );
    assert!(!marker.exists(), "a step after the noop ran");
    // Listed and shown as noop.
    let list = text(&untoil(&dirs, &["runs"]).stdout);
    assert!(list.contains("noop"), "{list}");
    let id = run["id"].as_str().unwrap_or_default();
    let shown = text(&untoil(&dirs, &["runs", "show", id]).stdout);
    assert!(shown.contains("status    noop"), "{shown}");
    assert!(
        shown.contains("nothing to do: exit status 3 (noop_exit_codes)"),
        "{shown}"
    );
}

#[test]
fn shipped_stuck_process_cleanup_that_finds_no_process_is_noop() {
    let dirs = Dirs::new();
    shipped(&dirs, "stuck-process-cleanup");
    // A pattern nothing on this box runs as.
    let run = run_ok(
        &dirs,
        "stuck-process-cleanup",
        &["--param", "pattern=^untoil-test-never-[0-9]{9}$"],
    );
    assert_eq!(run["status"], "noop", "{run}");
    assert_eq!(run["toil"]["minutes"], 0.0);
    assert_eq!(statuses(&run), ["succeeded", "skipped"]);
}

#[test]
fn shipped_log_cleanup_is_noop_on_an_empty_directory_and_credits_real_work() {
    let dirs = Dirs::new();
    shipped(&dirs, "log-cleanup");
    let logs = dirs.path("logs");
    let dir = format!("dir={}", logs.display());
    let empty = run_ok(&dirs, "log-cleanup", &["--param", &dir]);
    assert_eq!(empty["status"], "noop", "{empty}");
    assert_eq!(empty["toil"]["minutes"], 0.0);
    // A day-old log: compressed, a real cleanup, credited.
    let old = logs.join("app.log");
    std::fs::write(&old, "line\n".repeat(100)).expect("log");
    let touched = std::process::Command::new("touch")
        .args(["-d", "3 days ago"])
        .arg(&old)
        .status()
        .expect("touch");
    assert!(touched.success());
    let worked = run_ok(&dirs, "log-cleanup", &["--param", &dir]);
    assert_eq!(worked["status"], "succeeded", "{worked}");
    assert_eq!(worked["toil"]["minutes"], 10.0);
    assert!(logs.join("app.log.gz").exists());
}

#[test]
fn shipped_disk_usage_below_its_threshold_is_noop() {
    let dirs = Dirs::new();
    shipped(&dirs, "disk-usage");
    // No filesystem is ever above 100% used.
    let run = run_ok(&dirs, "disk-usage", &["--param", "threshold=101"]);
    assert_eq!(run["status"], "noop", "{run}");
    assert_eq!(run["toil"]["minutes"], 0.0);
    assert_eq!(statuses(&run), ["succeeded", "skipped"]);
}

#[test]
fn shipped_cert_expiry_check_of_a_valid_certificate_is_noop_and_of_an_expiring_one_fails() {
    let dirs = Dirs::new();
    shipped(&dirs, "cert-expiry-check");
    let cert = dirs.path("cert.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "60",
        ])
        .args(["-subj", "/CN=untoil-test", "-keyout"])
        .arg(dirs.path("key.pem"))
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", text(&made.stderr));
    let param = format!("cert={}", cert.display());
    let valid = run_ok(&dirs, "cert-expiry-check", &["--param", &param]);
    assert_eq!(valid["status"], "noop", "{valid}");
    assert_eq!(valid["toil"]["minutes"], 0.0);
    // Expiring within 90 days: the check fails, as it should.
    let out = untoil(
        &dirs,
        &[
            "run",
            "cert-expiry-check",
            "--param",
            &param,
            "--param",
            "days=90",
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    let expiring = last_run(&dirs);
    assert_eq!(expiring["status"], "failed");
    // The check a person would have made was made: credited, though the run fails to flag it.
    assert_eq!(expiring["toil"]["minutes"], 10.0, "{expiring}");
}

#[test]
fn shipped_disk_usage_over_its_threshold_fails_and_credits_its_diagnosis() {
    let dirs = Dirs::new();
    shipped(&dirs, "disk-usage");
    // Every filesystem is at least 0% used.
    let out = untoil(&dirs, &["run", "disk-usage", "--param", "threshold=0"]);
    assert_ne!(out.status.code(), Some(0));
    let run = last_run(&dirs);
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["toil"]["minutes"], 5.0, "{run}");
}

#[test]
fn shipped_restart_failed_service_with_no_failed_unit_is_noop() {
    let dirs = Dirs::new();
    shipped(&dirs, "restart-failed-service");
    let run = run_ok(
        &dirs,
        "restart-failed-service",
        &[
            "--bypass-guards",
            "--param",
            "unit=untoil-test-absent.service",
        ],
    );
    assert_eq!(run["status"], "noop", "{run}");
    assert_eq!(run["toil"]["minutes"], 0.0);
    assert_eq!(statuses(&run), ["succeeded", "skipped", "skipped"]);
}

#[test]
fn shipped_stuck_process_cleanup_in_its_default_dry_run_mode_is_noop_and_kills_nothing() {
    let dirs = Dirs::new();
    shipped(&dirs, "stuck-process-cleanup");
    let mut stuck = std::process::Command::new("sleep")
        .arg("31536017")
        .spawn()
        .expect("spawn sleep");
    // `max_minutes=0` takes processes older than 0 s, which `ps` counts in whole seconds from a
    // boot time each `ps` computes anew (now minus uptime, both truncated): two of them can
    // differ by a second (the runbook's read 0 after this loop's read 1, once, on a busy
    // machine). At 3 here, the runbook's own read is at least 1.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = std::process::Command::new("ps")
            .args(["-o", "etimes=", "-p", &stuck.id().to_string()])
            .output()
            .expect("ps");
        if text(&out.stdout).trim().parse::<u64>().unwrap_or(0) >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "sleep never aged");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let run = run_ok(
        &dirs,
        "stuck-process-cleanup",
        &[
            "--param",
            "pattern=^sleep 31536017$",
            "--param",
            "max_minutes=0",
        ],
    );
    let alive = stuck.try_wait().ok().flatten().is_none();
    let _ = stuck.kill();
    let _ = stuck.wait();
    assert!(alive, "the dry run killed the process");
    assert_eq!(run["status"], "noop", "{run}");
    assert_eq!(run["toil"]["minutes"], 0.0);
    assert_eq!(statuses(&run), ["succeeded", "succeeded"]);
    assert!(
        run["steps"][1]["stdout"]
            .as_str()
            .is_some_and(|s| s.starts_with("dry run: would send TERM to")),
        "{run}"
    );
}

/// A runbook that removes the `*.tmp` files of `dir` and reports how many as JSON, crediting
/// 2 minutes per file up to `max` files, on top of 1 minute per run.
fn sweeper(dir: &Path, max: u64, count: &str) -> String {
    format!(
        "name: sweeper\nowner: t\ntoil:\n  manual_minutes: 1\n  per_item:\n    minutes: 2\n    count: \"{count}\"\n    max_items: {max}\nsteps:\n  - name: clean\n    run: |\n      n=$(find {} -name '*.tmp' | wc -l)\n      find {} -name '*.tmp' -delete\n      echo \"{{\\\"removed\\\": $n}}\"\n",
        dir.display(),
        dir.display()
    )
}

#[test]
fn per_item_credit_counts_from_a_steps_real_output_up_to_its_cap() {
    let dirs = Dirs::new();
    let junk = dirs.path("junk");
    std::fs::create_dir(&junk).expect("mkdir");
    for i in 0..5 {
        std::fs::write(junk.join(format!("{i}.tmp")), "x").expect("write");
    }
    dirs.runbook(
        "sweeper",
        &sweeper(&junk, 3, "{{steps.clean.json.removed}}"),
    );
    let run = run_ok(&dirs, "sweeper", &[]);
    assert_eq!(run["status"], "succeeded", "{run}");
    // 1 per run + 3 items (5 removed, capped at 3) x 2.
    assert_eq!(run["toil"]["minutes"], 7.0, "{run}");
    let items = &run["toil"]["items"];
    assert_eq!(items["count"], 5, "{run}");
    assert_eq!(items["counted"], 3);
    assert_eq!(items["max_items"], 3);
    assert_eq!(items["minutes_each"], 2.0);
    assert_eq!(items["from"], "{{steps.clean.json.removed}}");
    assert_eq!(
        run["toil"]["reason"],
        "run succeeded: manual_minutes 1 + 3 items x 2 (count 5 capped at max_items 3, from {{steps.clean.json.removed}})"
    );
    let id = run["id"].as_str().unwrap_or_default();
    let shown = text(&untoil(&dirs, &["runs", "show", id]).stdout);
    assert!(shown.contains("toil      7 min credited"), "{shown}");
    assert!(shown.contains("3 items x 2"), "{shown}");
    // Nothing left: 0 items, the run figure only.
    let again = run_ok(&dirs, "sweeper", &[]);
    assert_eq!(again["toil"]["minutes"], 1.0, "{again}");
    assert_eq!(again["toil"]["items"]["count"], 0);
}

#[test]
fn a_count_that_is_not_a_number_credits_no_item_and_never_fails_the_run() {
    let dirs = Dirs::new();
    let junk = dirs.path("junk");
    std::fs::create_dir(&junk).expect("mkdir");
    // The whole JSON object, not a number.
    dirs.runbook("sweeper", &sweeper(&junk, 10, "{{steps.clean.stdout}}"));
    let run = run_ok(&dirs, "sweeper", &[]);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["toil"]["minutes"], 1.0, "{run}");
    let items = &run["toil"]["items"];
    assert_eq!(items["counted"], 0);
    assert!(
        items["problem"]
            .as_str()
            .is_some_and(|p| p.contains("not a whole number of items")),
        "{run}"
    );
    assert!(
        run["toil"]["reason"].as_str().is_some_and(
            |r| r.contains("+ 0 items (count from {{steps.clean.stdout}}: rendered to")
        ),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_dashboard_show_a_noop_run_and_a_per_item_credit() {
    let dirs = Dirs::new();
    let junk = dirs.path("junk");
    std::fs::create_dir(&junk).expect("mkdir");
    std::fs::write(junk.join("a.tmp"), "x").expect("write");
    dirs.runbook(
        "sweep",
        "name: sweep\nowner: t\ntoil: {manual_minutes: 5}\nsteps:\n  - name: find\n    run: exit 3\n    noop_exit_codes: [3]\n  - name: act\n    run: echo acted\n",
    );
    dirs.runbook(
        "sweeper",
        &sweeper(&junk, 10, "{{steps.clean.json.removed}}"),
    );
    let (served, base) = tokio::task::block_in_place(|| crate::common::serve(&dirs));
    let http = crate::common::Http::new(base);
    let mut ended = Vec::new();
    for runbook in ["sweep", "sweeper"] {
        let (status, answer) = http
            .post(
                &format!("/api/v1/runbooks/{runbook}/runs"),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["id"].as_str().unwrap_or_default().to_string();
        let run = crate::common::until("the run to end", || async {
            let (_, run) = http.get(&format!("/api/v1/runs/{id}")).await;
            (run["finished_at"].is_string()).then_some(run)
        })
        .await;
        ended.push((id, run));
    }
    let (noop_id, noop) = &ended[0];
    assert_eq!(noop["status"], "noop", "{noop}");
    assert_eq!(noop["toil"]["minutes"], 0.0);
    let (_, listed) = http.get("/api/v1/runs?status=noop").await;
    assert!(listed.to_string().contains(noop_id.as_str()), "{listed}");
    let (code, page) = http.text(&format!("/ui/runs/{noop_id}")).await;
    assert_eq!(code, 200);
    assert!(page.contains("noop"), "{page}");
    assert!(page.contains("run found nothing to do (noop)"), "{page}");
    let (items_id, items) = &ended[1];
    assert_eq!(items["status"], "succeeded", "{items}");
    assert_eq!(items["toil"]["minutes"], 3.0, "{items}");
    assert_eq!(items["toil"]["items"]["counted"], 1);
    let (_, page) = http.text(&format!("/ui/runs/{items_id}")).await;
    assert!(page.contains("1 item x 2 (count from"), "{page}");
    drop(served);
}

/// A runbook run on DiskFull that credits 10 minutes only once verified within `window`.
fn verified_only(name: &str, window: &str) -> String {
    format!(
        "name: {name}\nowner: t\ntoil: {{manual_minutes: 10}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nverify: {{alert_resolves_within: {window}, credit: verified_only}}\nsteps:\n  - name: fix\n    run: echo fixed\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_only_credit_reaches_the_report_when_the_verdict_does() {
    let dirs = Dirs::new();
    dirs.runbook("patient", &verified_only("patient", "1h"));
    dirs.runbook("quick", &verified_only("quick", "1s"));
    let d = crate::common::Running::start(dirs.settings()).await;
    let cli = |args: &[&str]| {
        let out = untoil_command(&dirs).args(args).output().expect("untoil");
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
    };
    let (status, _, _) = d
        .post(
            "/api/v1/alerts/alertmanager",
            crate::common::fixture("firing.json"),
        )
        .await;
    assert_eq!(status, 200);
    let runs = d.wait_runs_final(2).await;
    for run in &runs {
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["toil"]["minutes"], 0.0, "held: {run}");
        assert_eq!(run["toil"]["held"], 10.0, "{run}");
    }
    let report = tokio::task::block_in_place(|| cli(&["report", "--format", "json"]));
    assert_eq!(report["total"]["toil_minutes"], 0.0, "{report}");
    let verdict_of = |name: &'static str| {
        let d = &d;
        async move {
            d.runs()
                .await
                .into_iter()
                .find(|r| r["runbook"] == name)
                .filter(|r| r["verification"].is_object())
        }
    };
    // quick's 1 s window ends without a resolve: unverified then.
    let quick = crate::common::until("quick's window to end", || verdict_of("quick")).await;
    assert_eq!(quick["verification"]["verified"], false, "{quick}");
    assert_eq!(quick["toil"]["minutes"], 0.0);
    // The alert resolves: patient is verified and credited; quick's verdict stands.
    let (status, _, _) = d
        .post("/api/v1/alerts/alertmanager", crate::common::resolved_now())
        .await;
    assert_eq!(status, 200);
    let patient = crate::common::until("patient's verdict", || verdict_of("patient")).await;
    assert_eq!(patient["verification"]["verified"], true, "{patient}");
    assert_eq!(patient["toil"]["minutes"], 10.0);
    let quick = verdict_of("quick").await.unwrap_or_default();
    assert_eq!(quick["verification"]["verified"], false, "{quick}");
    let report = tokio::task::block_in_place(|| cli(&["report", "--format", "json"]));
    assert_eq!(report["total"]["runs"], 2, "{report}");
    assert_eq!(report["total"]["toil_minutes"], 10.0, "{report}");
    // The toil metric counts the released minutes too: what the report says, in seconds.
    let scraped = crate::common::scrape(&d).await;
    let saved = crate::common::sample(&scraped, "untoil_toil_saved_seconds_total", None);
    assert_eq!(saved, 600.0, "{:?}", scraped.samples);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_replaces_the_runs_rollups_once_and_leaves_the_runs_awaiting_one() {
    use untoil::store::Store;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = untoil::store::sled::SledStore::open(&dir.path().join("data")).expect("store");
    let rb = untoil::runbook::catalog::one(
        &verified_only("fix", "15m"),
        &untoil::runbook::plugins::Plugins::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let now = chrono::Utc::now();
    let cause = untoil::run::cause::Cause::Alert {
        source: untoil::trigger::source::ALERTMANAGER.into(),
        fingerprint: "fp".into(),
        starts_at: now - chrono::Duration::minutes(1),
        labels: Default::default(),
    };
    let mut run = untoil::engine::lifecycle::new_run(&rb, cause, Default::default(), None, now);
    untoil::engine::lifecycle::start(&mut run, now);
    run.status = untoil::run::status::RunStatus::Succeeded;
    untoil::engine::lifecycle::conclude(&mut run, now);
    untoil::engine::lifecycle::await_verdict(&mut run, &rb);
    assert_eq!(run.verify_by, Some(now + chrono::Duration::minutes(15)));
    assert_eq!(run.toil.as_ref().and_then(|t| t.held), Some(10.0));
    store.finish(run.clone(), None).await.expect("finish");
    let today = now.date_naive();
    let total = |store: &untoil::store::sled::SledStore| {
        let store = store.clone();
        async move {
            let mut t = untoil::ledger::rollup::Rollup::default();
            for by_month in [false, true] {
                let mut one = untoil::ledger::rollup::Rollup::default();
                for (_, r) in store
                    .rollups(today, today, by_month)
                    .await
                    .expect("rollups")
                {
                    one.merge(&r);
                }
                if by_month {
                    assert_eq!(one, t, "the monthly rollups follow the daily ones");
                } else {
                    t = one;
                }
            }
            t
        }
    };
    let before = total(&store).await;
    assert_eq!(
        (before.runs, before.toil_milli_minutes, before.verified),
        (1, 0, 0)
    );
    let reconciled = store
        .reconcile(std::sync::Arc::new(
            |_: &mut untoil::run::record::RunRecord| {},
        ))
        .await
        .expect("reconcile");
    assert_eq!(reconciled.awaiting_verdict.len(), 1);

    assert!(
        store
            .set_verified(
                &run.id,
                untoil::run::record::Verification {
                    verified: true,
                    at: now,
                    resolved_at: None,
                },
            )
            .await
            .expect("verdict")
    );
    let after = total(&store).await;
    assert_eq!(
        (
            after.runs,
            after.succeeded,
            after.toil_milli_minutes,
            after.verified,
            after.unverified
        ),
        (1, 1, 10_000, 1, 0)
    );
    // The first verdict stands, and the rollups do not move again.
    assert!(
        !store
            .set_verified(
                &run.id,
                untoil::run::record::Verification {
                    verified: false,
                    at: now,
                    resolved_at: None,
                },
            )
            .await
            .expect("verdict")
    );
    assert_eq!(total(&store).await, after);
    let stored = store.get_run(&run.id).await.expect("get").expect("stored");
    assert_eq!(stored.verification.map(|v| v.verified), Some(true));
    assert_eq!(stored.toil.map(|t| t.minutes), Some(10.0));
    let reconciled = store
        .reconcile(std::sync::Arc::new(
            |_: &mut untoil::run::record::RunRecord| {},
        ))
        .await
        .expect("reconcile");
    assert!(reconciled.awaiting_verdict.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_that_arrives_during_the_run_verifies_and_credits_it_when_it_finishes() {
    let dirs = Dirs::new();
    let go = dirs.path("go");
    // The fix ends when the test creates `go`; its 1 h window never ends during the test.
    dirs.runbook(
        "slowfix",
        &format!(
            "name: slowfix\nowner: t\ntoil: {{manual_minutes: 10}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nverify: {{alert_resolves_within: 1h, credit: verified_only}}\nsteps:\n  - name: fix\n    run: while [ ! -e {} ]; do sleep 0.01; done\n",
            go.display()
        ),
    );
    let d = crate::common::Running::start(dirs.settings()).await;
    let run_now = || {
        let d = &d;
        async move { d.runs().await.into_iter().next() }
    };
    let (status, _, _) = d
        .post(
            "/api/v1/alerts/alertmanager",
            crate::common::fixture("firing.json"),
        )
        .await;
    assert_eq!(status, 200);
    crate::common::until("the fix to run", || async {
        run_now().await.filter(|r| r["status"] == "running")
    })
    .await;
    let (status, body, _) = d
        .post("/api/v1/alerts/alertmanager", crate::common::resolved_now())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verified"], 0, "still running: {body}");
    std::fs::write(&go, "").expect("go");
    let run = crate::common::until("the verdict at the run's end", || async {
        run_now().await.filter(|r| r["verification"].is_object())
    })
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["verification"]["verified"], true, "{run}");
    assert!(run["verification"]["resolved_at"].is_string(), "{run}");
    assert_eq!(run["toil"]["minutes"], 10.0, "{run}");
    let report = tokio::task::block_in_place(|| {
        let out = untoil_command(&dirs)
            .args(["report", "--format", "json"])
            .output()
            .expect("untoil");
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
    });
    assert_eq!(report["total"]["toil_minutes"], 10.0, "{report}");
    assert_eq!(report["total"]["verified"], 1, "{report}");
    d.stop().await;
}
