//! Remote step overhead: a runbook of 100 remote steps of `true` on one host against `ssh` run
//! by hand 100 times (a new connection each, as a person or a script typing `ssh host true`
//! does), both against an sshd of the benchmark's own on 127.0.0.1 with generated keys in a
//! temporary directory. untoil reuses one connection per run and host (ControlMaster), so the
//! goal is to be no slower than by hand. Needs /usr/sbin/sshd (scripts/test-deps installs
//! it). Run with `cargo bench --bench remote`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use untoil::engine::lifecycle;
use untoil::exec::executor::Executor;
use untoil::exec::plan::Plan;
use untoil::exec::recorder::Discard;
use untoil::run::cause::Cause;
use untoil::run::status::RunStatus;
use untoil::runbook::catalog::load_texts;
use untoil::runbook::plugins::Plugins;

const STEPS: usize = 100;
/// Each round makes 100 connections by hand: one round keeps the benchmark near a minute.
const ROUNDS: usize = 1;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn must(cmd: &mut Command) {
    let status = cmd.status().expect("runs");
    assert!(status.success(), "{cmd:?} failed");
}

/// Starts sshd on a free loopback port; returns it and the port.
fn sshd(dir: &Path) -> (std::process::Child, u16) {
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "/usr/sbin/sshd is missing: run scripts/test-deps"
    );
    std::fs::create_dir_all("/run/sshd").ok();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let p = |f: &str| dir.join(f).display().to_string();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nMaxStartups 200\nMaxSessions 200\n",
            p("host_key"),
            p("authorized_keys")
        ),
    )
    .expect("sshd_config");
    let mut child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f", &p("sshd_config")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("sshd starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("Server listening") => break,
            Some(Ok(_)) => {}
            _ => panic!("sshd did not start"),
        }
    }
    // Keep reading so that sshd never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, port)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for key in ["host_key", "user_key"] {
        must(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key)),
        );
    }
    std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).expect("authorize");
    let (mut server, port) = sshd(d);
    let host_key = std::fs::read_to_string(d.join("host_key.pub")).expect("host key");
    let known: Vec<&str> = host_key.split_whitespace().take(2).collect();
    std::fs::write(
        d.join("known_hosts"),
        format!("[127.0.0.1]:{port} {}\n", known.join(" ")),
    )
    .expect("known_hosts");
    std::fs::write(d.join("ssh_config"), "").expect("ssh_config");
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("a user name");
    let (key, known_hosts, config) = (
        d.join("user_key"),
        d.join("known_hosts"),
        d.join("ssh_config"),
    );

    let target = format!(
        "{{host: 127.0.0.1, port: {port}, user: {user}, identity: {{file: {}}}, known_hosts: {}, config: {}}}",
        key.display(),
        known_hosts.display(),
        config.display()
    );
    let mut yaml = String::from("name: bench\nowner: bench\nsteps:\n");
    for i in 0..STEPS {
        yaml.push_str(&format!(
            "  - name: s{i}\n    target: {target}\n    run: \"true\"\n"
        ));
    }
    let loaded = load_texts(&[("bench.yaml", &yaml)], &Plugins::default());
    let rb = loaded
        .catalog
        .get("bench")
        .cloned()
        .expect("bench runbook validates");
    let executor = Arc::new(Executor::new(Plugins::default()).expect("executor"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let run_once = || {
        let cause = Cause::Manual {
            user: "bench".into(),
            claimed_user: None,
        };
        let now = chrono::Utc::now();
        let mut run = lifecycle::new_run(&rb, cause, Default::default(), None, now);
        let plan = Plan::of(rb.clone(), &run).expect("plan");
        lifecycle::start(&mut run, now);
        let t = Instant::now();
        rt.block_on(executor.execute(&plan, &mut run, CancellationToken::new(), &mut Discard));
        assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
        t.elapsed()
    };
    let by_hand_once = || {
        let t = Instant::now();
        for _ in 0..STEPS {
            must(
                Command::new("ssh")
                    .args(["-F"])
                    .arg(&config)
                    .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
                    .arg("-o")
                    .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
                    .arg("-i")
                    .arg(&key)
                    .args(["-p", &port.to_string(), "-l", &user, "127.0.0.1", "true"])
                    .stdin(Stdio::null()),
            );
        }
        t.elapsed()
    };
    // No warm-up: the first step's connection (the shared one) is part of what untoil costs.
    let untoil = median((0..ROUNDS).map(|_| run_once()).collect());
    let by_hand = median((0..ROUNDS).map(|_| by_hand_once()).collect());
    let _ = server.kill();
    let _ = server.wait();

    println!(
        "remote benchmark: {STEPS} remote steps of `true` on one host, {ROUNDS} round(s), each a fresh run"
    );
    println!(
        "  untoil executor (one shared connection) {:>9.1} ms ({:.2} ms a step)",
        untoil.as_secs_f64() * 1e3,
        untoil.as_secs_f64() * 1e3 / STEPS as f64
    );
    println!(
        "  ssh by hand, {STEPS} connections          {:>9.1} ms ({:.2} ms each)",
        by_hand.as_secs_f64() * 1e3,
        by_hand.as_secs_f64() * 1e3 / STEPS as f64
    );
    println!(
        "  ratio untoil / by hand: {:.2}x (goal <= 1.00x)",
        untoil.as_secs_f64() / by_hand.as_secs_f64()
    );
}
