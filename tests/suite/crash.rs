//! Crashes around the guards' decision on a run (cooldown, run limits, approval). The decision is
//! durable in the write that admits the run, so no crash lets a step run that its guards did not
//! allow (issue 13, item 4):
//!
//! - the real daemon (`untoil serve`, a child process) SIGKILLed right after it answered an alert
//!   (the answer means the admitting write is durable), then started again;
//! - an admission cut short after each of its durable writes in turn (by a store that fails every
//!   write after the k-th, as a process killed there would), the store checked as the crash left
//!   it, then the daemon started on it: the crash no answer shows, between a write that stores a
//!   run and one that would decide it;
//! - a queued run that needs an approval it never got (what an untoil that wrote the run and the
//!   decision apart left when it died in between) waits for one after a restart.
//!
//! The storm of alerts to an approval-required runbook while the daemon is SIGKILLed repeatedly
//! is in `storm.rs`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use untoil::engine::Engine;
use untoil::engine::clock::{Clock, SystemClock};
use untoil::engine::lifecycle;
use untoil::engine::runbooks::Runbooks;
use untoil::exec::executor::Executor;
use untoil::guard::KeyState;
use untoil::ledger::rollup::{Rollup, RollupKey};
use untoil::run::cause::Cause;
use untoil::run::id::RunId;
use untoil::run::record::{RunRecord, Verification};
use untoil::run::status::RunStatus;
use untoil::run::step::StepResult;
use untoil::runbook::plugins::Plugins;
use untoil::store::error::StoreError;
use untoil::store::sled::SledStore;
use untoil::store::{
    AlertReceived, Candidate, Change, Delivery, GuardChanged, GuardOf, Reconciled, RunFilter,
    Store, Transition, Update,
};
use untoil::trigger::alert::Notification;
use untoil::trigger::key::{DedupeKey, Episode, Fire};

use crate::common::{Dirs, Http, Running, Served, fixture, raw_get, until, untoil_command};

const ALERTS: &str = "/api/v1/alerts/alertmanager";

/// A runbook for DiskFull alerts with these guards, whose one step appends the run's id to
/// `marker`: each line is one execution.
fn guarded(guards: &str, marker: &Path) -> String {
    format!(
        "name: guarded\nowner: t\ntoil: {{manual_minutes: 1}}\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nguards:\n{guards}\nsteps:\n  - name: mark\n    run: printf '%s\\n' {{{{run.id}}}} >> {}\n",
        marker.display()
    )
}

/// A manual runbook whose step holds the daemon's only worker, so that runs admitted meanwhile
/// are certainly still `queued` when the daemon is killed.
const BLOCK: &str = "name: block\nowner: t\ntoil: {manual_minutes: 1}\nsteps:\n  - name: hold\n    run: sleep 300\n";

/// A notification of one firing DiskFull alert with this fingerprint.
fn alert(fingerprint: &str) -> Value {
    let mut v: Value = serde_json::from_slice(&fixture("firing.json")).expect("fixture json");
    v["alerts"][0]["fingerprint"] = json!(fingerprint);
    v
}

/// The executions the marker file records, in order.
fn executions(marker: &Path) -> Vec<String> {
    std::fs::read_to_string(marker)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// `untoil serve` on 127.0.0.1 (an ephemeral port) over `dirs`.
fn serve(dirs: &Dirs, extra: &[&str]) -> (Served, Http) {
    let mut c = untoil_command(dirs);
    c.args(["serve", "--listen", "127.0.0.1:0"]).args(extra);
    let mut served = Served::spawn(c);
    let http = Http::new(served.base());
    (served, http)
}

/// Posts an alert; returns the id of the one run it made.
async fn post_alert(d: &Http, fingerprint: &str) -> String {
    let (status, answer) = d.post(ALERTS, alert(fingerprint)).await;
    assert_eq!(status, 200, "{answer}");
    answer["accepted"][0]
        .as_str()
        .unwrap_or_else(|| panic!("one run accepted: {answer}"))
        .to_string()
}

/// Polls the run until its status is `want`; returns it.
async fn run_when(d: &Http, id: &str, want: &str) -> Value {
    until(&format!("run {id} to be {want}"), || async {
        let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
        (run["status"] == want).then_some(run)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_needing_approval_sigkilled_right_after_its_answer_waits_for_approval_and_runs_once_approved()
 {
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    dirs.runbook(
        "guarded",
        &guarded("  approval: required\n  approval_timeout: 1h", &marker),
    );
    let (served, d) = serve(&dirs, &[]);
    let id = post_alert(&d, "k1").await;
    served.sigkill();

    let (served, d) = serve(&dirs, &[]);
    // A run resumed as queued would be queued, running or over by now: its workers start before
    // the daemon answers.
    let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["status"], "pending_approval", "{run}");
    assert!(
        run["approval"].is_null() && run["started_at"].is_null(),
        "{run}"
    );
    let (_, waiting) = d.get("/api/v1/approvals").await;
    let waiting: Vec<&str> = waiting
        .as_array()
        .map(|w| w.iter().filter_map(|w| w["run"]["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(waiting, [id.as_str()]);
    assert_eq!(executions(&marker), Vec::<String>::new(), "ran unapproved");

    let (status, body) = d
        .post(
            &format!("/api/v1/runs/{id}/approve"),
            json!({"by": "alice"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Its events end once its end is on disk: a status read alone can come before the worker's
    // flush, and a SIGKILL then leaves the run interrupted (seen once under load).
    let events = raw_get(&d.base, &format!("/api/v1/runs/{id}/events")).await;
    assert_eq!(events.status, 200, "{}", events.body);
    let run = run_when(&d, &id, "succeeded").await;
    // No authentication here: the principal is anonymous, the body's name a claim beside it.
    assert_eq!(run["approval"]["by"], "anonymous", "{run}");
    assert_eq!(run["approval"]["claimed_by"], "alice", "{run}");
    assert_eq!(executions(&marker), [id.as_str()]);
    served.sigkill();

    // Once more: a run that ran is not run again.
    let (served, d) = serve(&dirs, &[]);
    run_when(&d, &id, "succeeded").await;
    assert_eq!(executions(&marker), [id]);
    served.sigkill();
}

/// A run of a runbook with `guards` is admitted (held queued behind a blocking run on the only
/// worker), the daemon is SIGKILLed right after the answer and started again: the run resumes
/// and executes once, and a second alert within the guard's limit is skipped with `reason`.
async fn a_guard_decided_before_a_sigkill_holds_after_the_restart(guards: &str, reason: &str) {
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    dirs.runbook("guarded", &guarded(guards, &marker));
    dirs.runbook("block", BLOCK);
    let (served, d) = serve(&dirs, &["--workers", "1"]);
    let (status, answer) = d.post("/api/v1/runbooks/block/runs", json!({})).await;
    assert_eq!(status, 202, "{answer}");
    let block = answer["id"].as_str().expect("run id").to_string();
    run_when(&d, &block, "running").await;
    let first = post_alert(&d, "k1").await;
    served.sigkill();

    // The blocking run is interrupted (its step killed), the first run resumes.
    let (served, d) = serve(&dirs, &["--workers", "1"]);
    run_when(&d, &block, "interrupted").await;
    run_when(&d, &first, "succeeded").await;
    let second = post_alert(&d, "k2").await;
    let run = run_when(&d, &second, "skipped").await;
    assert!(
        run["error"].as_str().is_some_and(|e| e.contains(reason)),
        "the second run should be skipped for `{reason}`: {run}"
    );
    assert_eq!(executions(&marker), [first]);
    served.sigkill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_decided_before_a_sigkill_skips_the_next_alert_after_the_restart() {
    a_guard_decided_before_a_sigkill_holds_after_the_restart("  cooldown: 1h", "cooldown: ").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_limit_decided_before_a_sigkill_skips_the_next_alert_after_the_restart() {
    a_guard_decided_before_a_sigkill_holds_after_the_restart(
        "  max_runs: {count: 1, per: 1h}",
        "circuit breaker opened: more than 1 runs within 1h",
    )
    .await;
}

/// A store whose process "dies" after `budget` writes: every later write fails without being
/// applied, as if the process had been killed right after the last write that returned.
struct Dying {
    inner: SledStore,
    budget: usize,
    writes: AtomicUsize,
}

impl Dying {
    fn write(&self) -> Result<(), StoreError> {
        if self.writes.fetch_add(1, Ordering::SeqCst) < self.budget {
            return Ok(());
        }
        Err(StoreError::Backend {
            path: "test".into(),
            reason: "the process died before this write".into(),
        })
    }
}

#[async_trait]
impl Store for Dying {
    fn id(&self) -> &str {
        self.inner.id()
    }
    async fn admit(
        &self,
        candidates: Vec<Candidate>,
        alerts: Vec<AlertReceived>,
    ) -> Result<Vec<untoil::store::Admitted>, StoreError> {
        self.write()?;
        self.inner.admit(candidates, alerts).await
    }
    async fn admit_delivery(
        &self,
        delivery: Delivery,
        candidates: Vec<Candidate>,
        alerts: Vec<AlertReceived>,
    ) -> Result<Option<Vec<untoil::store::Admitted>>, StoreError> {
        self.write()?;
        self.inner
            .admit_delivery(delivery, candidates, alerts)
            .await
    }
    async fn transition(
        &self,
        id: &RunId,
        from: &[RunStatus],
        change: Change,
    ) -> Result<Transition, StoreError> {
        self.write()?;
        self.inner.transition(id, from, change).await
    }
    async fn step_started(
        &self,
        id: &RunId,
        step: &str,
        pgid: Option<u32>,
    ) -> Result<(), StoreError> {
        self.write()?;
        self.inner.step_started(id, step, pgid).await
    }
    async fn record_step(&self, id: &RunId, step: &StepResult) -> Result<(), StoreError> {
        self.write()?;
        self.inner.record_step(id, step).await
    }
    async fn finish(
        &self,
        run: RunRecord,
        guard: Option<GuardOf<Update>>,
    ) -> Result<Option<GuardChanged>, StoreError> {
        self.write()?;
        self.inner.finish(run, guard).await
    }
    async fn finish_many(&self, runs: Vec<RunRecord>) -> Result<(), StoreError> {
        self.write()?;
        self.inner.finish_many(runs).await
    }
    async fn set_verified(
        &self,
        id: &RunId,
        verification: Verification,
    ) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.set_verified(id, verification).await
    }
    async fn update_guards(
        &self,
        runbook: &str,
        key: Option<&str>,
        update: Update,
    ) -> Result<Vec<(String, KeyState)>, StoreError> {
        self.write()?;
        self.inner.update_guards(runbook, key, update).await
    }
    async fn reconcile(&self, interrupt: Change) -> Result<Reconciled, StoreError> {
        self.write()?;
        self.inner.reconcile(interrupt).await
    }
    async fn runs_of_episode(&self, episode: &Episode) -> Result<Vec<RunId>, StoreError> {
        self.inner.runs_of_episode(episode).await
    }
    async fn episode_at_millis(
        &self,
        fingerprint: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<Option<Episode>, StoreError> {
        self.inner.episode_at_millis(fingerprint, starts_at).await
    }
    async fn last_fire(&self, fire: &Fire) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.last_fire(fire).await
    }
    async fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>, StoreError> {
        self.inner.get_run(id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.list_runs(filter).await
    }
    async fn rollups(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        by_month: bool,
    ) -> Result<Vec<(RollupKey, Rollup)>, StoreError> {
        self.inner.rollups(from, to, by_month).await
    }
    async fn alerts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AlertReceived>, StoreError> {
        self.inner.alerts(from, to).await
    }
    async fn guard_states(&self) -> Result<Vec<(String, String, KeyState)>, StoreError> {
        self.inner.guard_states().await
    }
    async fn prune(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.write()?;
        self.inner.prune(before).await
    }
    async fn prune_deliveries(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.write()?;
        self.inner.prune_deliveries(now).await
    }
}

/// Admits one alert to the runbooks under `dirs` through an engine (no workers) whose store dies
/// after `budget` writes, then lets the engine go as a killed process would. Returns how many
/// writes the admission made or tried.
async fn admit_and_die(dirs: &Dirs, fingerprint: &str, budget: usize) -> usize {
    let store = Arc::new(Dying {
        inner: SledStore::open(&dirs.path("data")).expect("store"),
        budget,
        writes: AtomicUsize::new(0),
    });
    let runbooks = Arc::new(Runbooks::new(dirs.path("runbooks"), dirs.path("plugins")));
    runbooks.reload();
    let engine = Engine::new(
        store.clone(),
        runbooks,
        Arc::new(Executor::new(Plugins::default()).expect("executor")),
        Arc::new(SystemClock) as Arc<dyn Clock>,
        100,
    );
    let n: Notification = serde_json::from_value(alert(fingerprint)).expect("notification");
    // Refused once the store died: what a dead process never answers.
    let _ = engine
        .admission
        .notification(untoil::trigger::source::ALERTMANAGER, &n)
        .await;
    drop(engine);
    store.writes.load(Ordering::SeqCst)
}

/// What the guards of the crash-cut admission must have stored by the time the run was.
#[derive(Clone, Copy)]
enum Guard {
    Approval,
    Cooldown,
    MaxRuns,
}

impl Guard {
    fn yaml(self) -> &'static str {
        match self {
            Guard::Approval => "  approval: required\n  approval_timeout: 1h",
            Guard::Cooldown => "  cooldown: 1h",
            Guard::MaxRuns => "  max_runs: {count: 1, per: 1h}",
        }
    }

    /// Checks the store as the crash left it: each run it holds carries its decision.
    async fn check_store(self, dirs: &Dirs, at: usize) {
        let store = SledStore::open(&dirs.path("data")).expect("store");
        let runs = store.list_runs(&RunFilter::default()).await.expect("runs");
        let guard = store.guard_states().await.expect("guard states");
        let state = guard
            .iter()
            .find(|(rb, key, _)| rb == "guarded" && key == "guarded")
            .map(|(_, _, s)| s.clone())
            .unwrap_or_default();
        assert!(runs.len() <= 1, "after write {at}: {runs:?}");
        for run in &runs {
            match self {
                Guard::Approval => assert_eq!(
                    run.status,
                    RunStatus::PendingApproval,
                    "after write {at}: the run is stored without its approval decision: {run:?}"
                ),
                Guard::Cooldown => assert!(
                    state.last_start.is_some(),
                    "after write {at}: run {} is stored {} but the cooldown did not count it: {state:?}",
                    run.id,
                    run.status
                ),
                Guard::MaxRuns => assert_eq!(
                    state.starts.len(),
                    1,
                    "after write {at}: run {} is stored {} but the run limit did not count it: {state:?}",
                    run.id,
                    run.status
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_cut_short_after_any_of_its_writes_leaves_each_run_with_its_guards_decision() {
    for guard in [Guard::Approval, Guard::Cooldown, Guard::MaxRuns] {
        // How many writes an admission makes when nothing dies (one: the decision is in it).
        let whole = {
            let dirs = Dirs::new();
            dirs.runbook("guarded", &guarded(guard.yaml(), &dirs.path("marker")));
            admit_and_die(&dirs, "w1", usize::MAX).await
        };
        assert!(whole >= 1, "an admission writes");
        for at in 0..=whole {
            let dirs = Dirs::new();
            let marker = dirs.path("marker");
            dirs.runbook("guarded", &guarded(guard.yaml(), &marker));
            admit_and_die(&dirs, "w1", at).await;
            guard.check_store(&dirs, at).await;

            // The daemon starts on what the crash left.
            let d = Running::start(dirs.settings()).await;
            let first = d.runs().await;
            match guard {
                Guard::Approval => {
                    for run in &first {
                        assert_eq!(
                            run["status"], "pending_approval",
                            "after write {at}: run {}",
                            run["id"]
                        );
                    }
                    assert_eq!(
                        executions(&marker),
                        Vec::<String>::new(),
                        "after write {at}"
                    );
                    for run in &first {
                        let id = run["id"].as_str().unwrap_or_default();
                        let (status, body, _) = d
                            .post(&format!("/api/v1/runs/{id}/approve"), b"{}".to_vec())
                            .await;
                        assert_eq!(status, 200, "{body}");
                    }
                    let runs = d.wait_runs_final(first.len()).await;
                    let ran: Vec<String> = runs
                        .iter()
                        .filter_map(|r| r["id"].as_str().map(String::from))
                        .collect();
                    assert_eq!(executions(&marker), ran, "after write {at}");
                }
                Guard::Cooldown | Guard::MaxRuns => {
                    d.wait_runs_final(first.len()).await;
                    let (status, answer, _) = d
                        .post(ALERTS, serde_json::to_vec(&alert("w2")).expect("json"))
                        .await;
                    assert_eq!(status, 200, "{answer}");
                    let runs = d.wait_runs_final(first.len() + 1).await;
                    let succeeded = runs.iter().filter(|r| r["status"] == "succeeded").count();
                    let seen: Vec<(&Value, &Value, &Value)> = runs
                        .iter()
                        .map(|r| (&r["id"], &r["status"], &r["error"]))
                        .collect();
                    assert_eq!(
                        (succeeded, executions(&marker).len()),
                        (1, 1),
                        "after write {at}: one run within the guard's limit executes, once: {seen:?}"
                    );
                }
            }
            d.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_that_needs_an_approval_it_never_got_waits_for_one_after_a_restart() {
    let dirs = Dirs::new();
    let marker = dirs.path("marker");
    let text = guarded("  approval: required\n  approval_timeout: 1h", &marker);
    dirs.runbook("guarded", &text);
    // What an untoil that stored the run before deciding it left when it died in between.
    let id = {
        let rb = untoil::runbook::catalog::one(&text, &Plugins::default()).expect("runbook");
        let run = lifecycle::new_run(
            &rb,
            Cause::Manual {
                user: "t".into(),
                claimed_user: None,
            },
            Default::default(),
            None,
            Utc::now(),
        );
        assert!(run.status == RunStatus::Queued && run.approval_required);
        let id = run.id.clone();
        let store = SledStore::open(&dirs.path("data")).expect("store");
        let candidate = Candidate {
            key: DedupeKey::Manual { run: id.0.clone() },
            run,
            gate: None,
        };
        store
            .admit(vec![candidate], Vec::new())
            .await
            .expect("admit");
        id.0
    };

    let d = Running::start(dirs.settings()).await;
    let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["status"], "pending_approval", "{run}");
    let (_, waiting) = d.get("/api/v1/approvals").await;
    assert_eq!(waiting[0]["run"]["id"], id.as_str(), "{waiting}");
    assert_eq!(executions(&marker), Vec::<String>::new(), "ran unapproved");
    let (status, body, _) = d
        .post(&format!("/api/v1/runs/{id}/approve"), b"{}".to_vec())
        .await;
    assert_eq!(status, 200, "{body}");
    d.wait_runs_final(1).await;
    assert_eq!(executions(&marker), [id]);
    d.stop().await;
}

/// An idempotent runbook for DiskFull alerts whose step records its run id in `marker`, then
/// holds until `release` exists.
fn idempotent(marker: &Path, release: &Path) -> String {
    format!(
        "name: idem\nowner: t\ntoil: {{manual_minutes: 1}}\nidempotent: true\ntriggers:\n  - alert: {{matchers: ['alertname=\"DiskFull\"']}}\nparams: {{level: {{default: deep}}}}\nsteps:\n  - name: mark\n    run: printf '%s\\n' {{{{run.id}}}} >> {} && while [ ! -e {} ]; do sleep 0.05; done\n",
        marker.display(),
        release.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_runs_interruption_by_a_crash_starts_it_again_once_after_the_restart() {
    let dirs = Dirs::new();
    let (marker, release) = (dirs.path("marker"), dirs.path("release"));
    dirs.runbook("idem", &idempotent(&marker, &release));
    dirs.runbook("block", BLOCK);
    let (served, d) = serve(&dirs, &[]);
    let first = post_alert(&d, "i1").await;
    let (status, answer) = d.post("/api/v1/runbooks/block/runs", json!({})).await;
    assert_eq!(status, 202, "{answer}");
    let block = answer["id"].as_str().expect("run id").to_string();
    run_when(&d, &first, "running").await;
    run_when(&d, &block, "running").await;
    until("the step to have started", || async {
        (executions(&marker).len() == 1).then_some(())
    })
    .await;
    served.sigkill();
    std::fs::write(&release, "").expect("release");

    let (served, d) = serve(&dirs, &[]);
    let original = run_when(&d, &first, "interrupted").await;
    run_when(&d, &block, "interrupted").await;
    let runs = until("the retry", || async {
        let (_, runs) = d.get("/api/v1/runs?limit=100").await;
        let runs = runs.as_array().cloned().unwrap_or_default();
        (runs.len() == 3).then_some(runs)
    })
    .await;
    let retry = runs
        .iter()
        .find(|r| r["retry_of"] == first.as_str())
        .unwrap_or_else(|| panic!("a run retrying {first}: {runs:?}"));
    let retry_id = retry["id"].as_str().expect("id").to_string();
    let retry = run_when(&d, &retry_id, "succeeded").await;
    for field in ["cause", "params", "alert", "runbook", "guard_key"] {
        assert_eq!(retry[field], original[field], "{field}: {retry}");
    }
    assert_eq!(retry["cause"]["kind"], "alert");
    assert_eq!(executions(&marker), [first.clone(), retry_id.clone()]);
    assert!(
        runs.iter().all(|r| r["retry_of"] != block.as_str()),
        "a runbook not marked idempotent is not started again: {runs:?}"
    );
    let shown = tokio::task::block_in_place(|| {
        untoil_command(&dirs)
            .args(["runs", "show", &retry_id])
            .output()
            .expect("runs show")
    });
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&format!("retries   run {first}")), "{shown}");
    served.sigkill();

    // Started again: the interrupted run is not retried a second time.
    let (served, d) = serve(&dirs, &[]);
    run_when(&d, &retry_id, "succeeded").await;
    let (_, runs) = d.get("/api/v1/runs?limit=100").await;
    assert_eq!(runs.as_array().map(Vec::len), Some(3), "{runs}");
    assert_eq!(executions(&marker), [first, retry_id]);
    served.sigkill();
}
