//! Remote steps against a real OpenSSH server of the test's own on 127.0.0.1 (common::Sshd):
//! values arrive verbatim in the remote argv, hosts are never options, host keys are checked
//! strictly, remote processes stop with the step (timeout, cancel, untoil killed), an
//! unreachable host fails fast, and a step over several hosts follows its policy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use untoil::engine::lifecycle;
use untoil::exec::executor::Executor;
use untoil::exec::plan::Plan;
use untoil::exec::recorder::Recorder;
use untoil::run::cause::Cause;
use untoil::run::event::RunEvent;
use untoil::run::record::RunRecord;
use untoil::run::status::{RunStatus, StepStatus};
use untoil::runbook::catalog::load_texts;
use untoil::runbook::model::Runbook;
use untoil::runbook::plugins::Plugins;

use crate::common::{self, Dirs, Sshd, closed_port};

fn runbook(yaml: &str) -> Arc<Runbook> {
    let loaded = load_texts(&[("remote.yaml", yaml)], &Plugins::default());
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    assert!(errors.is_empty(), "{}", loaded.sources.render(&errors));
    loaded.catalog.iter().next().cloned().expect("one runbook")
}

struct Events(tokio::sync::mpsc::UnboundedSender<RunEvent>);

#[async_trait::async_trait]
impl Recorder for Events {
    async fn record(&mut self, event: RunEvent) {
        let _ = self.0.send(event);
    }
}

fn executor() -> Executor {
    Executor::new(Plugins::default())
        .expect("executor")
        .with_grace(Duration::from_millis(300))
}

/// Runs `rb` by hand with `params` to its end; the record and the events.
async fn run(
    rb: Arc<Runbook>,
    params: &[(&str, &str)],
    cancel: CancellationToken,
) -> (RunRecord, Vec<RunEvent>) {
    let given: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let params = untoil::exec::plan::resolve_params(&rb, &given).expect("params");
    let cause = Cause::Manual {
        user: "tester".into(),
        claimed_user: None,
    };
    let mut record = lifecycle::new_run(&rb, cause, params, None, chrono::Utc::now());
    let plan = Plan::of(rb, &record).expect("plan");
    lifecycle::start(&mut record, chrono::Utc::now());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    executor()
        .execute(&plan, &mut record, cancel, &mut Events(tx))
        .await;
    lifecycle::conclude(&mut record, chrono::Utc::now());
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (record, events)
}

/// A number no other test or process uses in a `sleep` command line.
fn unique_seconds() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    7_000_000 + u64::from(std::process::id() % 1000) * 1000 + u64::from(nanos % 1000)
}

/// Processes that are exactly `sleep N` (the remote command itself, not the ssh client whose
/// command line quotes it).
fn sleeping(n: u64) -> Vec<String> {
    let exact = format!("sleep {n} ");
    common::processes_with(&format!("sleep {n}"))
        .into_iter()
        .filter(|p| p.split_once(": ").is_some_and(|(_, c)| c == exact))
        .collect()
}

/// Waits (with a deadline) until no process is `sleep n`.
async fn gone(n: u64) {
    common::until("the remote sleep to be gone", || async {
        sleeping(n).is_empty().then_some(())
    })
    .await;
}

fn one_step(sshd: &Sshd, params: &str, host: &str, step: &str) -> String {
    format!(
        "name: remote\nowner: sre\nparams: {{{params}}}\nsteps:\n  - name: s\n    target: {{host: '{host}', {}}}\n{step}",
        sshd.target_fields()
    )
}

#[tokio::test]
async fn injection_corpus_arrives_verbatim_in_the_remote_argv() {
    let sshd = Sshd::start();
    let marker = sshd.dir.path().join("injected");
    let m = marker.display().to_string();
    let corpus = [
        "it's".to_string(),
        "\"double\" quotes".into(),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("a; touch {m}"),
        format!("line1\ntouch {m}\nline3"),
        format!("-oProxyCommand=touch {m}"),
        "ünïcødé ☃ 日本".into(),
        "$HOME ${PATH} \\ * ? [a] ~ # & | > <".into(),
        "  spaced  ".into(),
        "".into(),
    ];
    let names: Vec<String> = (0..corpus.len()).map(|i| format!("v{i}")).collect();
    let params = names
        .iter()
        .map(|n| format!("{n}: {{}}"))
        .collect::<Vec<_>>()
        .join(", ");
    // `option`: the leading `-` value is passed on purpose; it is still quoted.
    let args = names
        .iter()
        .map(|n| format!("{{{{option params.{n}}}}}"))
        .collect::<Vec<_>>()
        .join(" ");
    let rb = runbook(&one_step(
        &sshd,
        &params,
        "127.0.0.1",
        &format!("    run: printf '%s\\0' {args}\n"),
    ));
    let given: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(corpus.iter().map(String::as_str))
        .collect();
    let (record, _) = run(rb, &given, CancellationToken::new()).await;
    let step = &record.steps[0];
    assert_eq!(
        step.status,
        Some(StepStatus::Succeeded),
        "{:?} {}",
        step.error,
        step.stderr
    );
    let got: Vec<&str> = step.stdout.split('\0').collect();
    let mut want: Vec<&str> = corpus.iter().map(String::as_str).collect();
    want.push("");
    assert_eq!(got, want);
    assert!(!marker.exists(), "a value was run as code");
    assert_eq!(step.hosts.len(), 1);
    assert_eq!(step.hosts[0].host, format!("127.0.0.1:{}", sshd.port));
    // Stdout and stderr stay apart (no tty).
    let rb = runbook(&one_step(
        &sshd,
        "",
        "127.0.0.1",
        "    run: echo out; echo err >&2; exit 3\n",
    ));
    let (record, _) = run(rb, &[], CancellationToken::new()).await;
    let s = &record.steps[0];
    assert_eq!((s.stdout.as_str(), s.stderr.as_str()), ("out\n", "err\n"));
    assert_eq!(s.exit_code, Some(3));
    assert_eq!(s.status, Some(StepStatus::Failed));
}

#[tokio::test]
async fn an_option_like_host_is_refused_before_ssh_starts() {
    let sshd = Sshd::start();
    let marker = sshd.dir.path().join("proxied");
    let rb = runbook(&one_step(
        &sshd,
        "host: {}",
        "{{params.host}}",
        "    run: 'true'\n",
    ));
    let bad = format!("-oProxyCommand=touch {}", marker.display());
    let (record, events) = run(rb, &[("host", &bad)], CancellationToken::new()).await;
    let s = &record.steps[0];
    assert_eq!(s.status, Some(StepStatus::Failed));
    let error = s.error.clone().unwrap_or_default();
    assert!(
        error.contains("is not a hostname") && error.contains("ssh was not started"),
        "{error}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RunEvent::ProcessStarted { .. })),
        "ssh was started"
    );
    assert!(!marker.exists());
    // A literal one is refused when the runbook loads.
    let text = one_step(&sshd, "", "-oProxyCommand=x", "    run: 'true'\n");
    let loaded = load_texts(&[("bad.yaml", &text)], &Plugins::default());
    let shown = loaded.sources.render(&loaded.diagnostics);
    assert!(
        shown.contains("target host `-oProxyCommand=x` is not"),
        "{shown}"
    );
    assert!(shown.contains("bad.yaml:6:"), "{shown}");
}

#[tokio::test]
async fn unknown_and_changed_host_keys_fail_with_what_to_do() {
    let sshd = Sshd::start();
    std::fs::write(&sshd.known_hosts, "").expect("empty known_hosts");
    let rb = runbook(&one_step(&sshd, "", "127.0.0.1", "    run: 'true'\n"));
    let (record, _) = run(rb.clone(), &[], CancellationToken::new()).await;
    let s = &record.steps[0];
    let error = s.error.clone().unwrap_or_default();
    assert_eq!(s.status, Some(StepStatus::Failed));
    assert!(
        error.contains("is not known") && error.contains("untoil hosts add 127.0.0.1 --port"),
        "{error}"
    );
    assert_eq!(s.attempts, 1);
    // Another key under the server's name: changed.
    let other = sshd.dir.path().join("other");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let public = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let key: Vec<&str> = public.split_whitespace().take(2).collect();
    std::fs::write(
        &sshd.known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port, key.join(" ")),
    )
    .expect("known_hosts");
    let (record, _) = run(rb, &[], CancellationToken::new()).await;
    let error = record.steps[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("has CHANGED") && error.contains("untoil hosts add"),
        "{error}"
    );
}

/// Starts `rb` in the background; returns when the remote `sleep n` runs.
async fn started(
    rb: Arc<Runbook>,
    n: u64,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<(RunRecord, Vec<RunEvent>)> {
    let task = tokio::spawn(run(rb, &[], cancel));
    common::until("the remote sleep to start", || async {
        (!sleeping(n).is_empty()).then_some(())
    })
    .await;
    task
}

#[tokio::test]
async fn a_timeout_leaves_no_remote_process() {
    let sshd = Sshd::start();
    let n = unique_seconds();
    let rb = runbook(&one_step(
        &sshd,
        "",
        "127.0.0.1",
        &format!("    run: sleep {n}; echo never\n    timeout: 3s\n"),
    ));
    let task = started(rb, n, CancellationToken::new()).await;
    let (record, _) = task.await.expect("run");
    let s = &record.steps[0];
    assert_eq!(s.status, Some(StepStatus::TimedOut), "{:?}", s.error);
    assert!(
        s.error
            .as_deref()
            .is_some_and(|e| e.contains("remote command with it")),
        "{:?}",
        s.error
    );
    gone(n).await;
}

#[tokio::test]
async fn a_cancel_leaves_no_remote_process() {
    let sshd = Sshd::start();
    let n = unique_seconds() + 1;
    let rb = runbook(&one_step(
        &sshd,
        "",
        "127.0.0.1",
        &format!("    run: sleep {n}\n"),
    ));
    let cancel = CancellationToken::new();
    let task = started(rb, n, cancel.clone()).await;
    cancel.cancel();
    let (record, _) = task.await.expect("run");
    assert_eq!(record.status, RunStatus::Cancelled);
    assert_eq!(record.steps[0].status, Some(StepStatus::Cancelled));
    gone(n).await;
}

/// Serves `dirs`, starts its runbook `remote` by hand and waits for its `sleep n` to run.
async fn serve_sleeping(dirs: &Dirs, n: u64) -> common::Served {
    let (served, base) = common::serve(dirs);
    let http = common::Http::new(base);
    let (status, answer) = http.post("/api/v1/runbooks/remote/runs", json!({})).await;
    assert!(status < 300, "{status} {answer}");
    common::until("the remote sleep to start", || async {
        (!sleeping(n).is_empty()).then_some(())
    })
    .await;
    served
}

#[tokio::test]
async fn a_sigkilled_daemon_leaves_no_remote_process() {
    let sshd = Sshd::start();
    let n = unique_seconds() + 2;
    let dirs = Dirs::new();
    dirs.runbook(
        "remote",
        &one_step(&sshd, "", "127.0.0.1", &format!("    run: sleep {n}\n")),
    );
    let served = serve_sleeping(&dirs, n).await;
    served.sigkill();
    gone(n).await;
}

/// The remote steps' private directories in /tmp now.
fn private_dirs() -> Vec<PathBuf> {
    std::fs::read_dir("/tmp")
        .expect("/tmp")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("untoil-ssh_"))
        })
        .collect()
}

#[tokio::test]
async fn a_sigkilled_daemons_key_files_are_gone_once_untoil_starts_again() {
    let sshd = Sshd::start();
    let n = unique_seconds() + 2;
    let dirs = Dirs::new();
    // The key comes from a secret, so untoil writes it to the run's private directory.
    let text = one_step(&sshd, "", "127.0.0.1", &format!("    run: sleep {n}\n"))
        .replace(
            &format!("identity: {{file: {}}}", sshd.key.display()),
            "identity: {secret: key}",
        )
        .replace(
            "owner: sre\n",
            &format!(
                "owner: sre\nsecrets: {{key: {{file: {}}}}}\n",
                sshd.key.display()
            ),
        );
    dirs.runbook("remote", &text);
    let before = private_dirs();
    let served = serve_sleeping(&dirs, n).await;
    // Other tests' runs make directories too; only this one's holds a key named `key`.
    let made: Vec<PathBuf> = private_dirs()
        .into_iter()
        .filter(|d| !before.contains(d) && d.join("key-KEY").exists())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    served.sigkill();
    gone(n).await;

    // Any untoil starting now removes it (another test's daemon may be the first).
    let (served, _) = common::serve(&Dirs::new());
    common::until("the dead daemon's key file to be removed", || async {
        (!made[0].exists()).then_some(())
    })
    .await;
    drop(served);
}

/// What `untoil run` does when it runs a remote step itself: the first step of the process
/// removes what a dead untoil left, as a starting daemon does.
#[tokio::test]
async fn a_processs_first_remote_step_removes_the_key_files_a_dead_untoil_left() {
    let sshd = Sshd::start();
    // A dead untoil's directory: the right name, a key, and no process holding it.
    let stale = tempfile::Builder::new()
        .prefix("untoil-ssh_")
        .tempdir_in("/tmp")
        .expect("stale dir")
        .keep();
    std::fs::write(stale.join("key-OLD"), "KEY").expect("key");
    let (record, _) = run(
        runbook(&one_step(&sshd, "", "127.0.0.1", "    run: 'true'\n")),
        &[],
        CancellationToken::new(),
    )
    .await;
    assert_eq!(record.status, RunStatus::Succeeded, "{record:?}");
    assert!(!stale.exists(), "{} is still there", stale.display());
}

#[tokio::test]
async fn an_unreachable_host_fails_within_the_connect_timeout() {
    let sshd = Sshd::start();
    let port = closed_port();
    let text = format!(
        "name: remote\nowner: sre\nsteps:\n  - name: s\n    target: {{host: 127.0.0.1, port: {port}, user: {}, identity: {{file: {}}}, known_hosts: {}, config: {}, connect_timeout: 3s}}\n    run: 'true'\n",
        sshd.user,
        sshd.key.display(),
        sshd.known_hosts.display(),
        sshd.config.display()
    );
    let started = Instant::now();
    let (record, _) = run(runbook(&text), &[], CancellationToken::new()).await;
    assert!(started.elapsed() < Duration::from_secs(3 + 2));
    let error = record.steps[0].error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("cannot connect to 127.0.0.1:{port}"))
            && error.contains("Connection refused"),
        "{error}"
    );
}

#[tokio::test]
async fn three_hosts_two_at_a_time_policy_all_one_failing() {
    // Two servers: h1 and h2 are aliases of the first, h3 of the second, whose sessions get
    // FAIL_HERE set so that the command fails there.
    let a = Sshd::start();
    let b = Sshd::start_with("SetEnv FAIL_HERE=1");
    let config = a.dir.path().join("aliases");
    std::fs::write(
        &config,
        format!(
            "Host h1 h2\n  HostName 127.0.0.1\n  Port {}\nHost h3\n  HostName 127.0.0.1\n  Port {}\n",
            a.port, b.port
        ),
    )
    .expect("ssh_config");
    let known = a.dir.path().join("both_known");
    std::fs::write(
        &known,
        std::fs::read_to_string(&a.known_hosts).expect("a")
            + &std::fs::read_to_string(&b.known_hosts).expect("b"),
    )
    .expect("known");
    // b authorizes a's key too.
    std::fs::copy(
        a.key.with_extension("pub"),
        b.dir.path().join("authorized_keys"),
    )
    .expect("authorize");
    let text = format!(
        "name: fleet\nowner: sre\ntoil: {{manual_minutes: 1, per_item: {{minutes: 3, count: '{{{{steps.s.hosts_succeeded}}}}'}}}}\nsteps:\n  - name: s\n    target: {{hosts: [h1, 'h2 h3'], parallelism: 2, policy: all, user: {}, identity: {{file: {}}}, known_hosts: {}, config: {}}}\n    run: 'echo on-$UNTOIL_STEP; test -z \"$FAIL_HERE\"'\n    continue_on_error: true\n  - name: count\n    run: 'echo {{{{steps.s.hosts_succeeded}}}} of {{{{steps.s.hosts_total}}}}, {{{{steps.s.hosts_failed}}}} failed on {{{{steps.s.hosts.[2].host}}}}'\n",
        a.user,
        a.key.display(),
        known.display(),
        config.display()
    );
    let (record, _) = run(runbook(&text), &[], CancellationToken::new()).await;
    let s = &record.steps[0];
    assert_eq!(s.status, Some(StepStatus::Failed), "{:?}", s.error);
    let hosts: Vec<(&str, Option<StepStatus>, Option<i32>)> = s
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.status, h.exit_code))
        .collect();
    assert_eq!(
        hosts,
        [
            ("h1", Some(StepStatus::Succeeded), Some(0)),
            ("h2", Some(StepStatus::Succeeded), Some(0)),
            ("h3", Some(StepStatus::Failed), Some(1)),
        ]
    );
    assert_eq!(s.hosts[0].stdout, "on-s\n");
    let error = s.error.clone().unwrap_or_default();
    assert!(
        error.contains("succeeded on 2 of 3 hosts, policy all"),
        "{error}"
    );
    assert!(s.stdout.contains("[h3] on-s"), "{}", s.stdout);
    assert_eq!(
        record.steps[1].stdout, "2 of 3, 1 failed on h3\n",
        "{:?}",
        record.steps[1].error
    );
    // Per-host results feed per-item credit: the hosts it succeeded on are the items.
    let items = record.toil.as_ref().and_then(|t| t.items.as_ref());
    assert_eq!(items.map(|i| i.counted), Some(2), "{:?}", record.toil);
    // The same hosts with `threshold: 2` succeed.
    let text = text.replace("policy: all", "threshold: 2");
    let (record, _) = run(runbook(&text), &[], CancellationToken::new()).await;
    assert_eq!(record.steps[0].status, Some(StepStatus::Succeeded));
}

#[test]
fn a_target_is_validated_with_located_errors() {
    let text = "name: r\nowner: t\nsecrets: {key: {file: /nonexistent}}\nsteps:\n  - name: a\n    run: 'true'\n    target:\n      host: db-1\n      identity: {secret: kye}\n      jump: '-oProxyCommand=x'\n      policy: most\n      parallelism: 0\n  - name: b\n    http: {url: 'http://127.0.0.1/'}\n    target: {host: db-1}\n";
    let loaded = load_texts(&[("t.yaml", text)], &Plugins::default());
    let shown = loaded.sources.render(&loaded.diagnostics);
    for want in [
        "t.yaml:9:",
        "secret `kye` is not declared",
        "did you mean `key`",
        "t.yaml:10:",
        "jump host `-oProxyCommand=x`",
        "unknown policy `most`",
        "`parallelism` must be at least 1",
        "`target` is only for `run` steps",
    ] {
        assert!(shown.contains(want), "{want} in:\n{shown}");
    }
}

#[tokio::test]
async fn a_remote_step_keeps_the_step_contract_over_an_inventory_group() {
    let sshd = Sshd::start();
    let d = sshd.dir.path();
    std::fs::write(
        &sshd.config,
        format!(
            "Host web-1 web-2\n  HostName 127.0.0.1\n  Port {}\n",
            sshd.port
        ),
    )
    .expect("ssh_config");
    let inventory = d.join("inventory.yaml");
    std::fs::write(&inventory, "groups:\n  web: [web-1, web-2]\n  db: [db-1]\n").expect("inv");
    let secret = d.join("secret");
    std::fs::write(&secret, "hunter2-remote-secret\n").expect("secret");
    let flaky = d.join("flaky");
    let target = format!(
        "{{inventory: {}, group: web, user: {}, identity: {{file: {}}}, known_hosts: {}, config: {}}}",
        inventory.display(),
        sshd.user,
        sshd.key.display(),
        sshd.known_hosts.display(),
        sshd.config.display()
    );
    let text = format!(
        "name: contract\nowner: sre\nsecrets: {{tok: {{file: {}}}}}\nsteps:
  - name: skipped
    when: 'false'
    target: {target}
    run: 'false'
  - name: flaky
    target: {target}
    run: 'mkdir {}-$UNTOIL_RUN_ID 2>/dev/null && exit 1; echo {{{{secrets.tok}}}}; echo {{\"\\\"n\\\"\": 1}}'
    retries: {{attempts: 1}}
    env: {{WHO: '{{{{run.runbook}}}}'}}
  - name: after
    run: 'echo {{{{steps.flaky.hosts_succeeded}}}}'
",
        secret.display(),
        flaky.display()
    );
    let (record, _) = run(runbook(&text), &[], CancellationToken::new()).await;
    let [skipped, flaky, after] = &record.steps[..] else {
        panic!("three steps: {:?}", record.steps);
    };
    assert_eq!(skipped.status, Some(StepStatus::Skipped));
    assert_eq!(
        flaky.status,
        Some(StepStatus::Succeeded),
        "{:?}",
        flaky.error
    );
    // The first attempt failed on one host (the first to make the directory), the second
    // succeeded on both.
    assert_eq!(flaky.attempts, 2);
    let hosts: Vec<&str> = flaky.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["web-1", "web-2"]);
    assert!(!flaky.stdout.contains("hunter2"), "{}", flaky.stdout);
    assert!(flaky.stdout.contains("[web-2] "), "{}", flaky.stdout);
    assert!(flaky.hosts.iter().all(|h| !h.stdout.contains("hunter2")));
    assert_eq!(after.stdout, "2\n");
    // A host in an inventory is checked like any other, with the line it is on.
    std::fs::write(
        &inventory,
        "groups:\n  web:\n    - web-1\n    - -oProxyCommand=x\n",
    )
    .expect("inv");
    let (record, _) = run(runbook(&text), &[], CancellationToken::new()).await;
    let error = record.steps[1].error.clone().unwrap_or_default();
    assert!(error.contains("line 4 column 7"), "{error}");
}

/// `untoil hosts add` with `answer` on its stdin: its exit code and stderr.
fn hosts_add(args: &[&str], answer: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_untoil"))
        .args(["hosts", "add"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("untoil hosts add");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(answer.as_bytes()).expect("answer");
    }
    let out = child.wait_with_output().expect("exit");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn hosts_add_shows_fingerprints_and_adds_the_keys_only_once_confirmed() {
    let sshd = Sshd::start();
    let file = sshd.dir.path().join("untoil_known_hosts");
    let port = sshd.port.to_string();
    let f = file.display().to_string();
    let args = ["127.0.0.1", "--port", &port, "--known-hosts", &f];
    let fingerprint = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(sshd.dir.path().join("host_key.pub"))
        .output()
        .expect("ssh-keygen");
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let (code, said) = hosts_add(&args, "n\n");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains(&fingerprint), "{said}");
    assert!(said.contains("Nothing added."), "{said}");
    assert!(!file.exists());
    let (code, said) = hosts_add(&args, "y\n");
    assert_eq!(code, Some(0), "{said}");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .starts_with(&format!("[127.0.0.1]:{port} ")),
        "{said}"
    );
    // A remote step trusts the added key.
    let text = one_step(&sshd, "", "127.0.0.1", "    run: echo ok\n").replace(
        &format!("known_hosts: {}", sshd.known_hosts.display()),
        &format!("known_hosts: {f}"),
    );
    let (record, _) = run(runbook(&text), &[], CancellationToken::new()).await;
    assert_eq!(
        record.steps[0].stdout, "ok\n",
        "{:?}",
        record.steps[0].error
    );
    // Again: nothing twice. And never an option for a host.
    let (code, said) = hosts_add(&[&args[..], &["--yes"]].concat(), "");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("Added 0 key(s)"), "{said}");
    let (code, said) = hosts_add(&["--known-hosts", &f, "--", "-oProxyCommand=x"], "y\n");
    assert_ne!(code, Some(0));
    assert!(said.contains("is not a hostname"), "{said}");
}

#[test]
fn dry_runs_and_plans_show_the_hosts_and_the_exact_remote_command() {
    let text = "name: plan\nowner: sre\nparams: {unit: {default: nginx.service}}\nsteps:\n  - name: restart\n    target: {hosts: ['web-1, web-2'], user: ops, port: 2222, parallelism: 1}\n    run: sudo systemctl restart {{params.unit}}\n";
    let rb = runbook(text);
    let params = untoil::exec::plan::resolve_params(&rb, &BTreeMap::new()).expect("params");
    let cause = Cause::Manual {
        user: "tester".into(),
        claimed_user: None,
    };
    let mut record = lifecycle::new_run(&rb, cause, params, None, chrono::Utc::now());
    record.dry_run = true;
    let plan = Plan::of(rb, &record).expect("plan");
    let planned = executor().preview(&plan);
    assert_eq!(
        planned[0].detail,
        "on 2 hosts (web-1:2222, web-2:2222), 1 at once, policy all:\n  ssh -l ops -p 2222 -- web-1 sh -c 'sudo systemctl restart nginx.service'\n  ssh -l ops -p 2222 -- web-2 sh -c 'sudo systemctl restart nginx.service'"
    );
}

#[tokio::test]
async fn the_steps_of_a_run_share_one_connection_per_host_closed_when_the_run_ends() {
    let sshd = Sshd::start();
    let target = format!("{{host: 127.0.0.1, {}}}", sshd.target_fields());
    let mut text = String::from("name: shared\nowner: sre\nsteps:\n");
    for i in 0..3 {
        text.push_str(&format!(
            "  - name: s{i}\n    target: {target}\n    run: echo {i}\n"
        ));
    }
    let (record, _) = run(runbook(&text), &[], CancellationToken::new()).await;
    assert_eq!(record.status, RunStatus::Succeeded, "{:?}", record.error);
    assert_eq!(
        sshd.logged("Accepted publickey"),
        1,
        "three steps, one login"
    );
    // Closed when the run ended, not when ControlPersist (30s) runs out.
    let ended = Instant::now();
    common::until("the shared connection to close", || async {
        (sshd.logged("Disconnected from user") == 1).then_some(())
    })
    .await;
    assert!(ended.elapsed() < Duration::from_secs(20));
    // The next run connects anew.
    let (record, _) = run(runbook(&text), &[], CancellationToken::new()).await;
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(sshd.logged("Accepted publickey"), 2);
}

#[tokio::test]
async fn a_jump_host_is_checked_as_strictly_as_the_target() {
    let sshd = Sshd::start_with("");
    let jump = format!("{}@127.0.0.1:{}", sshd.user, sshd.port);
    let text = format!(
        "name: jumped\nowner: sre\nsteps:\n  - name: s\n    target: {{host: 127.0.0.1, jump: '{jump}', {}}}\n    run: echo through\n",
        sshd.target_fields()
    );
    let (record, _) = run(runbook(&text), &[], CancellationToken::new()).await;
    let s = &record.steps[0];
    assert_eq!(s.stdout, "through\n", "{:?} {}", s.error, s.stderr);
    // Two logins: the jump host's and the target's.
    assert_eq!(sshd.logged("Accepted publickey"), 2);
    // With the target's known-hosts file empty, the jump host's key is unknown too: refused.
    std::fs::write(&sshd.known_hosts, "").expect("empty known_hosts");
    let (record, _) = run(runbook(&text), &[], CancellationToken::new()).await;
    let error = record.steps[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("is not known"),
        "{error}: {}",
        record.steps[0].stderr
    );
    assert_eq!(sshd.logged("Accepted publickey"), 2);
}
