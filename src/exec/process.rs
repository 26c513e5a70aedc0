//! Runs one child process in its own process group, with a timeout, cancellation and bounded
//! output capture. Used by shell and plugin steps.
//!
//! On timeout or cancel the whole group gets SIGTERM, then SIGKILL after a grace period (at once
//! when hurried: a fenced replica's), so no grandchild survives (`Child::kill` alone would leave
//! them). When the main process exits on its own, whatever it left running in its group is
//! killed too.
//!
//! Processes are started with posix_spawn, not fork + pre_exec: forking a large multi-threaded
//! daemon costs about 0.35 ms more per step (measured by `cargo bench --bench executor`), so
//! PR_SET_PDEATHSIG is not used. Instead every step process carries its run's id in its
//! environment (`UNTOIL_RUN_ID`), and when untoil starts again it kills the process groups whose
//! members carry the id of a run it left running ([`kill_leftovers`]). The environment, not a
//! recorded group id, decides: after a reboot or a long pause, a recorded id may belong to an
//! unrelated process group by then, and a group started just before a crash was never recorded.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc::{Sender, UnboundedSender};
use tokio_util::sync::CancellationToken;

use crate::exec::capture::Capture;
use crate::exec::redact::Redactor;
use crate::exec::redact_stream::StreamRedactor;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct ProcessSpec {
    /// Executable.
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// The whole environment (nothing is inherited from the daemon).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub workdir: Option<PathBuf>,
    /// Bytes written to stdin, which is then closed; None gives /dev/null.
    pub stdin: Option<Vec<u8>>,
    /// Give it a stdin pipe that stays open, unwritten, until it ends (instead of `stdin`):
    /// `ssh` passes its end to the remote side, which stops the command when it closes, also
    /// when untoil dies and the kernel closes it.
    pub hold_stdin: bool,
    /// Masks the run's secrets in the output, as it is read (before lines and capture cut it).
    pub redactor: Redactor,
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited by itself (code, or None when killed by a signal).
    Exited(Option<i32>),
    /// It ran past its timeout and was killed.
    TimedOut,
    /// It was cancelled and killed.
    Cancelled,
}

/// The outcome of one process.
#[derive(Debug, Clone)]
pub struct ProcessOutcome {
    /// How it ended.
    pub ended: Ended,
    /// Captured stdout.
    pub stdout: Capture,
    /// Captured stderr.
    pub stderr: Capture,
}

/// Longest line streamed as one event; longer lines are split.
const MAX_LINE: usize = 8 * 1024;
/// How long readers may keep draining pipes after the process group is gone.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs a process to its end, its timeout or its cancellation. Lines are sent to `lines` as
/// they come. Output is redacted as it is read. Err only when it cannot be started.
pub async fn run(
    spec: &ProcessSpec,
    timeout: Duration,
    grace: Duration,
    hurry: &CancellationToken,
    cancel: &CancellationToken,
    lines: Option<Sender<(Stream, String)>>,
    spawned: Option<UnboundedSender<u32>>,
) -> std::io::Result<ProcessOutcome> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() || spec.hold_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.workdir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn()?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    if let (Some(tx), Some(id)) = (&spawned, child.id()) {
        let _ = tx.send(id);
    }

    // Dropped when this function returns, after the process ended.
    let _held = if spec.hold_stdin {
        child.stdin.take()
    } else {
        None
    };
    if let (Some(input), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            // A process that does not read its input is not an error here.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
    }
    let out_reader = child.stdout.take().map(|s| {
        let redactor = StreamRedactor::new(spec.redactor.clone());
        tokio::spawn(read(s, Stream::Stdout, redactor, lines.clone()))
    });
    let err_reader = child.stderr.take().map(|s| {
        let redactor = StreamRedactor::new(spec.redactor.clone());
        tokio::spawn(read(s, Stream::Stderr, redactor, lines))
    });

    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status.ok().and_then(|s| s.code())),
        _ = tokio::time::sleep(timeout) => Ended::TimedOut,
        _ = cancel.cancelled() => Ended::Cancelled,
    };
    if let Some(pgid) = pgid {
        if matches!(ended, Ended::Exited(_)) {
            // The step is over: nothing it started may outlive it.
            let _ = killpg(pgid, Signal::SIGKILL);
        } else {
            // SIGTERM and the grace, unless `hurry` says there is no time for them.
            if !hurry.is_cancelled() {
                let _ = killpg(pgid, Signal::SIGTERM);
                tokio::select! {
                    _ = tokio::time::timeout(grace, child.wait()) => {}
                    () = hurry.cancelled() => {}
                }
            }
            // What ignored SIGTERM, and anything left in the group after the leader exited.
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = child.wait().await;
        }
    }
    let stdout = finish(out_reader).await;
    let stderr = finish(err_reader).await;
    Ok(ProcessOutcome {
        ended,
        stdout,
        stderr,
    })
}

async fn finish(reader: Option<tokio::task::JoinHandle<Capture>>) -> Capture {
    let Some(mut handle) = reader else {
        return Capture::default();
    };
    match tokio::time::timeout(DRAIN, &mut handle).await {
        Ok(Ok(c)) => c,
        // A process that escaped the group (setsid) still holds the pipe: stop reading.
        _ => {
            handle.abort();
            Capture::default()
        }
    }
}

/// Reads a stream to its end: redacted first, then captured and split into lines, so neither
/// the capture's cut nor a line break falls inside a secret.
async fn read<R: AsyncRead + Unpin>(
    mut r: R,
    stream: Stream,
    mut redactor: StreamRedactor,
    lines: Option<Sender<(Stream, String)>>,
) -> Capture {
    let mut out = Output {
        capture: Capture::default(),
        pending: Vec::new(),
        stream,
        lines,
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        out.take(&redactor.push(&buf[..n]));
    }
    out.take(&redactor.finish());
    if let Some(tx) = &out.lines
        && !out.pending.is_empty()
    {
        let _ = tx.try_send((stream, String::from_utf8_lossy(&out.pending).to_string()));
    }
    out.capture
}

/// Where a stream's redacted bytes go: its capture, and its lines as they complete.
struct Output {
    capture: Capture,
    pending: Vec<u8>,
    stream: Stream,
    lines: Option<Sender<(Stream, String)>>,
}

impl Output {
    fn take(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.capture.push(bytes);
        let Some(tx) = &self.lines else { return };
        self.pending.extend_from_slice(bytes);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).to_string();
            // Streaming is best effort: when the watcher lags, lines are dropped here (the
            // capture keeps head and tail) rather than buffered without bound.
            let _ = tx.try_send((self.stream, text));
        }
        if self.pending.len() > MAX_LINE {
            let text = String::from_utf8_lossy(&self.pending).to_string();
            let _ = tx.try_send((self.stream, text));
            self.pending.clear();
        }
    }
}

/// Kills (SIGKILL) the process groups of step processes that a dead untoil left running for
/// `runs`: groups with a member whose environment holds `UNTOIL_RUN_ID=<one of them>` and that
/// are still a step's group (not leading their own session: a service a runbook started, which
/// called `setsid` as daemons do, is meant to outlive the run). Never this process's own group.
/// Returns the groups killed. Linux: reads `/proc/*/environ`.
pub fn kill_leftovers(runs: &[crate::run::id::RunId]) -> Vec<u32> {
    if runs.is_empty() {
        return Vec::new();
    }
    let markers: Vec<Vec<u8>> = runs
        .iter()
        .map(|id| format!("UNTOIL_RUN_ID={}", id.0).into_bytes())
        .collect();
    let own = nix::unistd::getpgrp();
    let marked = |pid: i32| {
        // Unreadable (another user's process, or gone): not ours.
        std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
            environ
                .split(|b| *b == 0)
                .any(|var| markers.iter().any(|m| var == m.as_slice()))
        })
    };
    let mut groups: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| marked(*pid))
        .filter_map(|pid| {
            let p = Pid::from_raw(pid);
            let pgid = nix::unistd::getpgid(Some(p)).ok()?;
            let sid = nix::unistd::getsid(Some(p)).ok()?;
            // Still marked after the lookups: the pid was not reused in between.
            (pgid != sid && pgid != own && pgid.as_raw() > 1 && marked(pid)).then_some(pgid)
        })
        .filter(|pgid| killpg(*pgid, Signal::SIGKILL).is_ok())
        .map(|pgid| pgid.as_raw() as u32)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> ProcessSpec {
        ProcessSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            ..Default::default()
        }
    }

    async fn run_sh(script: &str, timeout: Duration) -> ProcessOutcome {
        let never = CancellationToken::new();
        run(
            &sh(script),
            timeout,
            Duration::from_secs(1),
            &never,
            &never,
            None,
            None,
        )
        .await
        .expect("spawn /bin/sh")
    }

    #[tokio::test]
    async fn both_pipes_flooded_at_once_are_read_to_their_ends_without_stalling_the_process() {
        // 300 KB on each stream, interleaved, is far more than a pipe holds: the process only
        // ends if both are read while it runs.
        let out = run_sh(
            "i=0; while [ $i -lt 30 ]; do head -c 10000 /dev/zero | tr '\\0' o; head -c 10000 /dev/zero | tr '\\0' e >&2; i=$((i+1)); done",
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(out.ended, Ended::Exited(Some(0)));
        assert_eq!((out.stdout.total(), out.stderr.total()), (300_000, 300_000));
    }

    #[tokio::test]
    async fn a_process_that_escaped_its_group_holding_the_pipe_ends_the_step_after_the_drain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let script = format!(
            // The step waits until the escaped process is in its own session (else the end of
            // the step kills it with the group before it gets there).
            "setsid sh -c 'echo $$ > {p}; exec sleep 60' & \
             i=0; while [ ! -s {p} ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; echo started",
            p = pidfile.display()
        );
        let t0 = std::time::Instant::now();
        let out = run_sh(&script, Duration::from_secs(60)).await;
        let took = t0.elapsed();
        let escaped = std::fs::read_to_string(&pidfile).unwrap_or_default();
        if let Ok(pid) = escaped.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        assert_eq!(out.ended, Ended::Exited(Some(0)));
        assert!(
            escaped.trim().parse::<i32>().is_ok(),
            "pid file: {escaped:?}"
        );
        // Not the sleep's 60 s: the drain of each pipe it holds (2 s), then the step ends.
        assert!(
            took >= DRAIN && took < DRAIN + Duration::from_secs(20),
            "took {took:?}"
        );
    }
}
