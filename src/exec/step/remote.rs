//! `run:` steps with a `target:`: the command runs on remote hosts through the system OpenSSH
//! client, so operators' `ssh_config`, agents and jump hosts work as they do by hand.
//!
//! Safe by construction: every host is checked as a DNS name or IP address (never an option)
//! before `ssh` starts, and comes after `--`; host keys are checked strictly, never prompted
//! for (`BatchMode`); the remote command is quoted for the remote POSIX shell, so every
//! templated value arrives as one argument, verbatim. `ssh` gets no tty (stdout and stderr stay
//! apart), and a small wrapper on the remote side runs the command in its own process group and
//! kills that group when its stdin (the SSH channel) closes: without a tty a remote command does
//! not notice the connection going, so without it a timeout, a cancel or a killed untoil would
//! leave it running. Connections to one host are reused within a run (ControlMaster in a
//! private directory of the run, removed when the run ends).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use chrono::Utc;
use futures_util::future::join_all;
use tokio::sync::Semaphore;

use crate::exec::process::{Ended, ProcessSpec, Stream};
use crate::exec::render::shell_quote;
use crate::exec::step::attempt::{Attempt, failed_before_start, parse_json};
use crate::exec::step::command::process_attempt;
use crate::exec::step::env::StepEnv;
use crate::exec::step::private_dir::{self, PrivateDir};
use crate::run::status::StepStatus;
use crate::run::step::{HostResult, StepResult};
use crate::runbook::model::Step;
use crate::runbook::target::{
    Host, HostSource, Identity, Target, check_host, check_user, inventory_group, split_hosts,
};
use crate::runbook::template::Template;

/// The OpenSSH client.
pub const SSH: &str = "ssh";

/// How long an idle shared connection outlives its last step (the run's end closes it sooner).
const CONTROL_PERSIST: &str = "30s";

/// Runs on the remote host as `sh -c WRAPPER untoil SCRIPT WORKDIR [NAME=VALUE]...`: starts the
/// script in a session (and process group) of its own, stops that group when stdin reaches its
/// end (ssh's channel closed: a timeout, a cancel or untoil gone), and when the script exits
/// kills whatever it left in its group, as local steps do. The watcher reads stdin through fd 3
/// because `sh` gives background jobs /dev/null as their stdin.
const WRAPPER: &str = r#"s=$1 d=$2; shift 2
if [ -n "$d" ]; then cd "$d" || exit 126; fi
command -v setsid >/dev/null 2>&1 || { echo "untoil: setsid is not installed on this host; remote steps need it (util-linux)" >&2; exit 127; }
exec 3<&0
setsid env "$@" sh -c "$s" </dev/null 3<&- &
p=$!
( while IFS= read -r _; do :; done; kill -TERM -"$p" 2>/dev/null; sleep 2; kill -KILL -"$p" 2>/dev/null ) <&3 &
w=$!
exec 3<&-
wait "$p"; c=$?
kill "$w" 2>/dev/null
kill -KILL -"$p" 2>/dev/null
exit "$c""#;

/// The command line the remote login shell runs (it is parsed once there, as POSIX `sh`).
pub fn remote_command(script: &str, workdir: Option<&str>, vars: &[(String, String)]) -> String {
    let mut words = vec![
        "exec".to_string(),
        "sh".into(),
        "-c".into(),
        shell_quote(WRAPPER),
        "untoil".into(),
        shell_quote(script),
        shell_quote(workdir.unwrap_or("")),
    ];
    words.extend(vars.iter().map(|(k, v)| shell_quote(&format!("{k}={v}"))));
    words.join(" ")
}

/// What a remote step attempt needs for every host.
struct Prepared {
    script: String,
    hosts: Vec<Host>,
    user: Option<String>,
    remote_vars: Vec<(String, String)>,
    workdir: Option<String>,
    local_env: Vec<(String, String)>,
    identity: Option<PathBuf>,
    control: Option<PathBuf>,
}

/// The hosts of a target, rendered and checked.
fn hosts(target: &Target, env: &StepEnv<'_>) -> Result<Vec<Host>, String> {
    let mut names = Vec::new();
    match &target.hosts {
        HostSource::One(t) => names.push(render_host(t, env)?),
        HostSource::List(list) => {
            for t in list {
                let text = env.renderer.plain(t, env.ctx).map_err(|e| e.0)?;
                for h in split_hosts(&text) {
                    names.push(checked(h, t)?);
                }
            }
        }
        HostSource::Inventory { file, group } => {
            names = inventory_group(file, group).map_err(|e| e.to_string())?;
        }
    }
    if names.is_empty() {
        return Err("the target names no host".into());
    }
    let mut seen = std::collections::HashSet::new();
    Ok(names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .map(|name| Host {
            name,
            port: target.port,
        })
        .collect())
}

fn render_host(t: &Template, env: &StepEnv<'_>) -> Result<String, String> {
    let text = env.renderer.plain(t, env.ctx).map_err(|e| e.0)?;
    checked(&text, t)
}

/// The value is not shown: it may be anything an alert sent.
fn checked(value: &str, t: &Template) -> Result<String, String> {
    check_host(value).map_err(|why| {
        format!(
            "target host `{}` {why}; ssh was not started",
            t.source().trim()
        )
    })
}

fn prepare(
    step: &Step,
    command: &Template,
    target: &Target,
    env: &StepEnv<'_>,
) -> Result<Prepared, String> {
    let script = env
        .renderer
        .shell(command, env.ctx, env.taint)
        .map_err(|e| e.0)?;
    let hosts = hosts(target, env)?;
    let user = match &target.user {
        Some(t) => {
            let u = env.renderer.plain(t, env.ctx).map_err(|e| e.0)?;
            check_user(&u).map_err(|why| format!("target user {why}"))?;
            Some(u)
        }
        None => None,
    };
    let run_id = var(env.process_env, "UNTOIL_RUN_ID").unwrap_or_default();
    let mut remote_vars = vec![
        ("UNTOIL_RUN_ID".to_string(), run_id.clone()),
        ("UNTOIL_STEP".to_string(), step.name.clone()),
    ];
    for (k, t) in &step.env {
        remote_vars.push((k.clone(), env.renderer.plain(t, env.ctx).map_err(|e| e.0)?));
    }
    let workdir = match &step.workdir {
        Some(t) => Some(env.renderer.plain(t, env.ctx).map_err(|e| e.0)?),
        None => None,
    };
    // ssh itself gets the step's base environment without the run's secrets (an ssh_config
    // `SendEnv` would otherwise send them) and without the agent unless the target asks.
    let mut local_env: Vec<(String, String)> = env
        .process_env
        .iter()
        .filter(|(k, _)| !k.starts_with("UNTOIL_SECRET_") && k != "SSH_AUTH_SOCK")
        .cloned()
        .collect();
    if target.agent
        && let Ok(sock) = std::env::var("SSH_AUTH_SOCK")
    {
        local_env.push(("SSH_AUTH_SOCK".into(), sock));
    }
    let dir = run_dir(&run_id);
    let identity = match &target.identity {
        None => None,
        Some(Identity::File(f)) => Some(f.clone()),
        Some(Identity::Secret(name)) => {
            let key = env.ctx.data()["secrets"][name]
                .as_str()
                .ok_or_else(|| format!("secret `{name}` (the target's identity) is not set"))?;
            let dir = dir.as_ref().map_err(Clone::clone)?;
            Some(write_key(dir, name, key)?)
        }
    };
    Ok(Prepared {
        script,
        hosts,
        user,
        remote_vars,
        workdir,
        local_env,
        identity,
        control: dir.ok(),
    })
}

fn var(vars: &[(String, String)], name: &str) -> Option<String> {
    vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The `ssh` arguments for one host, up to and including the host (the remote command follows).
pub fn ssh_args(
    target: &Target,
    host: &Host,
    user: Option<&str>,
    identity: Option<&Path>,
    control: Option<&Path>,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["-T".into()];
    let mut opt = |o: String| {
        a.push("-o".into());
        a.push(o);
    };
    opt("BatchMode=yes".into());
    opt("StrictHostKeyChecking=yes".into());
    opt("UpdateHostKeys=no".into());
    opt(format!(
        "ConnectTimeout={}",
        target.connect_timeout.as_secs().max(1)
    ));
    opt("ServerAliveInterval=15".into());
    opt("ForwardAgent=no".into());
    opt("ForwardX11=no".into());
    opt("ClearAllForwardings=yes".into());
    opt("PermitLocalCommand=no".into());
    if !target.agent {
        opt("IdentityAgent=none".into());
    }
    if let Some(f) = &target.known_hosts {
        opt(format!("UserKnownHostsFile={}", f.display()));
        opt("GlobalKnownHostsFile=/dev/null".into());
    }
    if let Some(k) = identity {
        opt(format!("IdentityFile={}", k.display()));
        opt("IdentitiesOnly=yes".into());
    }
    if let Some(dir) = control {
        opt("ControlMaster=auto".into());
        opt(format!("ControlPath={}/%C", dir.display()));
        opt(format!("ControlPersist={CONTROL_PERSIST}"));
    }
    if let Some(c) = &target.config {
        a.push("-F".into());
        a.push(c.display().to_string());
    }
    if let Some(p) = host.port {
        a.push("-p".into());
        a.push(p.to_string());
    }
    if let Some(u) = user {
        a.push("-l".into());
        a.push(u.into());
    }
    if let Some(j) = &target.jump {
        // Not `-J`: ssh gives the jump connection none of the `-o` options above (strict host
        // keys, batch mode, the known-hosts file), so the jump gets its own `ssh` with them.
        a.push("-o".into());
        a.push(format!(
            "ProxyCommand={}",
            jump_command(target, j, identity)
        ));
    }
    a.push("--".into());
    a.push(host.name.clone());
    a
}

/// The `ProxyCommand` reaching the target through the jump host `[user@]host[:port]`, with the
/// same strict options. ssh runs it with `sh -c` after expanding `%` tokens: every word is
/// shell-quoted and its `%` doubled, but for `%h` and `%p` themselves.
fn jump_command(target: &Target, jump: &str, identity: Option<&Path>) -> String {
    let (user, rest) = match jump.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, jump),
    };
    let (name, port) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((v6, after)) => (v6, after.strip_prefix(':')),
        None => match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (rest, None),
        },
    };
    let via = Target {
        jump: None,
        ..target.clone()
    };
    let mut args = ssh_args(
        &via,
        &Host {
            name: name.to_string(),
            port: port.and_then(|p| p.parse().ok()),
        },
        user,
        identity,
        None,
    );
    // `-W` forwards stdin and stdout to the target: no remote command, no `-T` needed.
    let host = args.pop().unwrap_or_default();
    args.pop();
    let mut words: Vec<String> = std::iter::once(SSH.to_string())
        .chain(args)
        .map(|w| shell_quote(&w).replace('%', "%%"))
        .collect();
    words.extend(["-W".into(), "'[%h]:%p'".into(), "--".into()]);
    words.push(shell_quote(&host).replace('%', "%%"));
    words.join(" ")
}

/// What the step will run, as dry runs and approval plans show it: the hosts and, for each,
/// the `ssh` command and the remote command (the stop-on-disconnect wrapper left out).
pub fn describe(command: &Template, target: &Target, env: &StepEnv<'_>) -> Result<String, String> {
    let script = env
        .renderer
        .shell(command, env.ctx, env.taint)
        .map_err(|e| e.0)?;
    let hosts = hosts(target, env)?;
    let user = match &target.user {
        Some(t) => Some(env.renderer.plain(t, env.ctx).map_err(|e| e.0)?),
        None => None,
    };
    let mut out = String::new();
    if hosts.len() > 1 {
        out.push_str(&format!(
            "on {} hosts ({}), {} at once, policy {}:",
            hosts.len(),
            hosts
                .iter()
                .map(Host::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            target.parallelism,
            target.policy.written()
        ));
    }
    for h in &hosts {
        let mut line = vec![SSH.to_string()];
        if let Some(u) = &user {
            line.push(format!("-l {}", shell_quote(u)));
        }
        if let Some(p) = h.port {
            line.push(format!("-p {p}"));
        }
        if let Some(j) = &target.jump {
            line.push(format!("-J {}", shell_quote(j)));
        }
        line.push(format!("-- {}", h.name));
        line.push(format!("sh -c {}", shell_quote(&script)));
        if hosts.len() > 1 {
            out.push_str("\n  ");
        }
        out.push_str(&line.join(" "));
    }
    Ok(out)
}

/// Runs the command once on every host of the target (at most `parallelism` at once), and
/// judges the step by the target's policy.
pub async fn run(step: &Step, command: &Template, target: &Target, env: &StepEnv<'_>) -> Attempt {
    let p = match prepare(step, command, target, env) {
        Ok(p) => p,
        Err(e) => return failed_before_start(e),
    };
    let started_at = Utc::now();
    let many = p.hosts.len() > 1;
    // A slot of the step's parallelism per host running; results come back in host order.
    let slots = Semaphore::new(target.parallelism.max(1) as usize);
    let mut futures = Vec::with_capacity(p.hosts.len());
    for h in &p.hosts {
        let (slots, p) = (&slots, &p);
        futures.push(async move {
            let _slot = slots.acquire().await.ok();
            on_host(step, target, h, p, env, many).await
        });
    }
    let attempts: Vec<(HostResult, bool)> = join_all(futures).await;

    let mut result = StepResult {
        started_at: Some(started_at),
        ..Default::default()
    };
    let hosts: Vec<HostResult> = attempts.iter().map(|(h, _)| h.clone()).collect();
    let succeeded = hosts
        .iter()
        .filter(|h| h.status == Some(StepStatus::Succeeded))
        .count();
    let retryable = attempts
        .iter()
        .any(|(h, r)| *r && h.status != Some(StepStatus::Succeeded));
    if let [one] = hosts.as_slice() {
        result.stdout = one.stdout.clone();
        result.stderr = one.stderr.clone();
        result.exit_code = one.exit_code;
        result.status = one.status;
        result.error = one.error.clone();
    } else {
        for h in &hosts {
            for (text, out) in [
                (&h.stdout, &mut result.stdout),
                (&h.stderr, &mut result.stderr),
            ] {
                for line in text.lines() {
                    out.push_str(&format!("[{}] {line}\n", h.host));
                }
            }
        }
        let stopped = hosts
            .iter()
            .find(|h| matches!(h.status, Some(StepStatus::Cancelled | StepStatus::TimedOut)));
        if target.policy.satisfied(succeeded, hosts.len()) {
            result.status = Some(StepStatus::Succeeded);
        } else if let Some(s) = stopped.filter(|_| env.cancel.is_cancelled()) {
            result.status = s.status;
            result.error = s.error.clone();
        } else {
            let failed: Vec<String> = hosts
                .iter()
                .filter(|h| h.status != Some(StepStatus::Succeeded))
                .map(|h| {
                    format!(
                        "{}: {}",
                        h.host,
                        h.error.as_deref().unwrap_or("did not succeed")
                    )
                })
                .collect();
            result.status = Some(StepStatus::Failed);
            result.error = Some(format!(
                "succeeded on {succeeded} of {} hosts, policy {}; {}",
                hosts.len(),
                target.policy.written(),
                failed.join("; ")
            ));
        }
    }
    result.json = parse_json(&result.stdout);
    result.hosts = hosts;
    let retryable = retryable && result.status != Some(StepStatus::Succeeded);
    Attempt { result, retryable }
}

/// The per-host guards: remote steps (of every run) on one host at once.
fn guard(key: String, permits: u32) -> Arc<Semaphore> {
    static GUARDS: OnceLock<Mutex<HashMap<String, Arc<Semaphore>>>> = OnceLock::new();
    let map = GUARDS.get_or_init(Default::default);
    let mut map = match map.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry(key)
        .or_insert_with(|| Arc::new(Semaphore::new(permits.max(1) as usize)))
        .clone()
}

/// One host: its result and whether trying again may help.
async fn on_host(
    step: &Step,
    target: &Target,
    host: &Host,
    p: &Prepared,
    env: &StepEnv<'_>,
    many: bool,
) -> (HostResult, bool) {
    let started = Instant::now();
    let label = host.to_string();
    let key = format!("{}@{label}", p.user.as_deref().unwrap_or(""));
    let sem = guard(key, target.per_host);
    let permit = tokio::select! {
        p = sem.acquire_owned() => p.ok(),
        _ = env.cancel.cancelled() => None,
    };
    if permit.is_none() {
        let r = HostResult {
            host: label,
            status: Some(StepStatus::Cancelled),
            error: Some("cancelled while waiting for the host's other remote steps".into()),
            ..Default::default()
        };
        return (r, false);
    }
    // Through a jump host, no shared connection: with ControlPersist, ssh sends the jump
    // connection's errors (an unknown jump host key) to /dev/null, and the step could not say
    // what went wrong.
    let control = p.control.as_deref().filter(|_| target.jump.is_none());
    let mut args = ssh_args(
        target,
        host,
        p.user.as_deref(),
        p.identity.as_deref(),
        control,
    );
    args.push(remote_command(
        &p.script,
        p.workdir.as_deref(),
        &p.remote_vars,
    ));
    let spec = ProcessSpec {
        program: SSH.into(),
        args,
        env: p.local_env.clone(),
        workdir: None,
        stdin: None,
        hold_stdin: true,
        redactor: env.redactor.clone(),
    };
    // Several hosts stream their lines into the step's, each prefixed with its host.
    let lines = match (&env.lines, many) {
        (Some(out), true) => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(Stream, String)>(256);
            let out = out.clone();
            let prefix = label.clone();
            tokio::spawn(async move {
                while let Some((s, line)) = rx.recv().await {
                    let _ = out.try_send((s, format!("[{prefix}] {line}")));
                }
            });
            Some(tx)
        }
        (lines, _) => lines.clone(),
    };
    let host_env = StepEnv {
        renderer: env.renderer,
        ctx: env.ctx,
        redactor: env.redactor,
        cancel: env.cancel,
        lines,
        spawned: env.spawned.clone(),
        grace: env.grace,
        hurry: env.hurry,
        http: env.http,
        plugins: env.plugins,
        process_env: env.process_env,
        plugin_input: env.plugin_input,
        taint: env.taint,
        store: env.store,
        command: None,
    };
    let attempt = process_attempt(&spec, step, &host_env, |outcome, result| {
        judge(outcome, result, host, target)
    })
    .await;
    let r = attempt.result;
    let error = match r.status {
        Some(StepStatus::TimedOut) => Some(format!(
            "timed out after {}; ssh was stopped and the remote command with it",
            crate::runbook::model::format_duration(step.timeout)
        )),
        Some(StepStatus::Cancelled) => {
            Some("cancelled; ssh was stopped and the remote command with it".into())
        }
        _ => r.error,
    };
    let host_result = HostResult {
        host: label,
        status: r.status,
        exit_code: r.exit_code.filter(|c| *c != 255 || error.is_none()),
        stdout: r.stdout,
        stderr: r.stderr,
        error,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    (host_result, attempt.retryable)
}

/// The status of an `ssh` that exited: ssh's own failures (255 with its message) said in
/// untoil's words with what to do, otherwise the remote command's exit status.
fn judge(
    outcome: &crate::exec::process::ProcessOutcome,
    result: &mut StepResult,
    host: &Host,
    target: &Target,
) -> (StepStatus, Option<String>, bool) {
    let stderr = &result.stderr;
    let known_hosts = target
        .known_hosts
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "the known-hosts file of untoil's user".into());
    let port = host
        .port
        .map(|p| format!(" --port {p}"))
        .unwrap_or_default();
    let kh = target
        .known_hosts
        .as_ref()
        .map(|f| format!(" --known-hosts {}", f.display()))
        .unwrap_or_default();
    let ssh_line = || {
        stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("ssh:") || l.contains("Connection") || l.contains("denied"))
            .or_else(|| stderr.lines().last())
            .unwrap_or("no message")
            .trim()
            .to_string()
    };
    match outcome.ended {
        Ended::Exited(Some(0)) => (StepStatus::Succeeded, None, false),
        Ended::Exited(Some(255)) if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") => (
            StepStatus::Failed,
            Some(format!(
                "the host key of {host} has CHANGED since it was added to {known_hosts}: ssh refused to connect (this may be an attack, or the host was reinstalled). Check the new key with the host's owner, then remove the old one (`ssh-keygen -R {} -f FILE`) and add the new one with `untoil hosts add {}{port}{kh}`",
                host.name, host.name
            )),
            false,
        ),
        Ended::Exited(Some(255)) if stderr.contains("Host key verification failed") => (
            StepStatus::Failed,
            Some(format!(
                "the host key of {host} is not known ({known_hosts}): ssh refused to connect. Check the key and add it with `untoil hosts add {}{port}{kh}`",
                host.name
            )),
            false,
        ),
        Ended::Exited(Some(255)) if stderr.contains("Permission denied") => (
            StepStatus::Failed,
            Some(format!(
                "ssh could not log in to {host}: {} (is the key in the remote user's authorized_keys?)",
                ssh_line()
            )),
            false,
        ),
        Ended::Exited(Some(255))
            if [
                "Connection refused",
                "timed out",
                "No route to host",
                "Could not resolve",
                "Connection closed",
                "Network is unreachable",
            ]
            .iter()
            .any(|m| stderr.contains(m)) =>
        {
            (
                StepStatus::Failed,
                Some(format!("cannot connect to {host}: {}", ssh_line())),
                true,
            )
        }
        Ended::Exited(Some(255)) => (
            StepStatus::Failed,
            Some(format!(
                "ssh to {host} failed (exit status 255: ssh's own failure, or the remote command's): {}",
                ssh_line()
            )),
            true,
        ),
        Ended::Exited(Some(code)) => (
            StepStatus::Failed,
            Some(format!("command exited with status {code} on {host}")),
            true,
        ),
        Ended::Exited(None) => (
            StepStatus::Failed,
            Some("ssh was killed by a signal".into()),
            true,
        ),
        // Handled by `process_attempt` before this closure runs.
        Ended::TimedOut | Ended::Cancelled => (StepStatus::Failed, None, false),
    }
}

/// The private directories of runs that used remote steps, by run id.
fn run_dirs() -> &'static Mutex<HashMap<String, PrivateDir>> {
    static DIRS: OnceLock<Mutex<HashMap<String, PrivateDir>>> = OnceLock::new();
    DIRS.get_or_init(Default::default)
}

/// The run's private directory (0700): control sockets and key files.
fn run_dir(run_id: &str) -> Result<PathBuf, String> {
    let mut dirs = match run_dirs().lock() {
        Ok(d) => d,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(d) = dirs.get(run_id) {
        return Ok(d.path().to_path_buf());
    }
    let dir = private_dir::create()
        .map_err(|e| {
            format!("cannot create a private directory for ssh under /tmp (untoil's user must be able to write there): {e}")
        })?;
    let path = dir.path().to_path_buf();
    dirs.insert(run_id.to_string(), dir);
    Ok(path)
}

/// Writes a key held by a secret to the run's directory, readable by untoil's user only.
fn write_key(dir: &Path, name: &str, key: &str) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!(
        "key-{}",
        crate::exec::environment::upper_name(name)
    ));
    if path.exists() {
        return Ok(path);
    }
    let mut text = key.to_string();
    // OpenSSH refuses a key file without its final newline.
    if !text.ends_with('\n') {
        text.push('\n');
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write the key of secret `{name}` for ssh: {e}"))?;
    Ok(path)
}

/// Ends a run's shared connections and removes its private directory (control sockets, key
/// files). Called when the run ends; nothing to do for a run without remote steps.
pub async fn end_run(run_id: &str) {
    let dir = {
        let mut dirs = match run_dirs().lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        dirs.remove(run_id)
    };
    let Some(dir) = dir else { return };
    let sockets: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with("key-"))
        .map(|e| e.path())
        .collect();
    for socket in sockets {
        // `-O exit` asks the master to close now rather than after ControlPersist.
        let _ = tokio::process::Command::new(SSH)
            .arg("-o")
            .arg(format!("ControlPath={}", socket.display()))
            .args(["-O", "exit", "untoil-control"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
    }
    drop(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_runs_directory_is_private_and_gone_when_the_run_ends() {
        use std::os::unix::fs::PermissionsExt;
        let dir = run_dir("unit-test-run").unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(&dir).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o700));
        let key = write_key(&dir, "k", "KEY").unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(&key).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        assert_eq!(std::fs::read_to_string(&key).ok().as_deref(), Some("KEY\n"));
        end_run("unit-test-run").await;
        assert!(!dir.exists());
    }

    #[test]
    fn the_remote_command_hands_the_script_to_the_wrapper_as_one_word() {
        let cmd = remote_command("echo 'a b'", Some("/srv"), &[("K".into(), "v w".into())]);
        let words = shlex::split(&cmd).unwrap_or_default();
        assert_eq!(words[..3], ["exec", "sh", "-c"]);
        assert_eq!(words[3], WRAPPER);
        assert_eq!(words[4..], ["untoil", "echo 'a b'", "/srv", "K=v w"]);
    }
}
