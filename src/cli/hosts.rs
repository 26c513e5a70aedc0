//! `untoil hosts add HOST`: onboarding a host's SSH key for remote steps. The keys are fetched
//! with `ssh-keyscan`, their fingerprints shown, and they are added to untoil's known-hosts file
//! only once a person has confirmed them (or `--yes`, for someone who checked them already).
//! Remote steps check host keys strictly, so this is the one way a key gets trusted.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::runbook::target::check_host;

/// `untoil hosts ...`.
#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Show a host's SSH key fingerprints and, once confirmed, add its keys to untoil's
    /// known-hosts file.
    Add(AddArgs),
}

/// `untoil hosts add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The host: a DNS name or IP address (as the runbook's target names it).
    pub host: String,
    /// SSH port, when not 22 (as the target's `port`).
    #[arg(long)]
    pub port: Option<u16>,
    /// The known-hosts file to add to (as the target's `known_hosts`), default
    /// ~/.ssh/known_hosts of the user running this (run it as untoil's user).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Add without asking: only for fingerprints already checked another way.
    #[arg(long)]
    pub yes: bool,
    /// How long to wait for the host, in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u32,
}

/// Runs `untoil hosts`.
pub fn run(command: HostsCommand) -> Result<ExitCode> {
    match command {
        HostsCommand::Add(a) => add(a, &mut std::io::stdin().lock(), &mut std::io::stderr()),
    }
}

/// The name known-hosts files give a host on a port (`[host]:port` when not 22).
pub fn known_name(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) if p != 22 => format!("[{host}]:{p}"),
        _ => host.to_string(),
    }
}

fn default_known_hosts() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set: give --known-hosts")?;
    Ok(Path::new(&home).join(".ssh/known_hosts"))
}

/// Adds a host's keys after confirmation read from `input`; talks to the person on `out`.
pub fn add(a: AddArgs, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<ExitCode> {
    let host = check_host(&a.host).map_err(|why| anyhow::anyhow!("host `{}` {why}", a.host))?;
    let file = match &a.known_hosts {
        Some(f) => f.clone(),
        None => default_known_hosts()?,
    };
    let mut scan = Command::new("ssh-keyscan");
    scan.args(["-T", &a.timeout.to_string()]);
    if let Some(p) = a.port {
        scan.args(["-p", &p.to_string()]);
    }
    // `--`: the host, checked above, is never an option anyway.
    let scanned = scan
        .arg("--")
        .arg(&host)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh-keyscan (install openssh-client)")?;
    let keys: Vec<String> = String::from_utf8_lossy(&scanned.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if keys.is_empty() {
        bail!(
            "no host key from {}: {}",
            known_name(&host, a.port),
            String::from_utf8_lossy(&scanned.stderr).trim()
        );
    }
    let fingerprints = fingerprints(&keys)?;
    writeln!(
        out,
        "{} presents these keys:\n{}",
        known_name(&host, a.port),
        fingerprints
    )?;
    if !a.yes {
        write!(
            out,
            "Compare them with the host's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it). Add them to {}? [y/N] ",
            file.display()
        )?;
        out.flush()?;
        let mut answer = String::new();
        input.read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "yes") {
            writeln!(out, "Nothing added.")?;
            return Ok(ExitCode::FAILURE);
        }
    }
    let existing = std::fs::read_to_string(&file).unwrap_or_default();
    let new: Vec<&String> = keys
        .iter()
        .filter(|k| !existing.lines().any(|l| l == k.as_str()))
        .collect();
    if let Some(dir) = file.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .with_context(|| format!("cannot open {}", file.display()))?;
    if !existing.is_empty() && !existing.ends_with('\n') {
        writeln!(f)?;
    }
    for k in &new {
        writeln!(f, "{k}")?;
    }
    writeln!(
        out,
        "Added {} key(s) of {} to {} ({} already there).",
        new.len(),
        known_name(&host, a.port),
        file.display(),
        keys.len() - new.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `ssh-keygen -lf -` of the scanned keys: one fingerprint line per key.
fn fingerprints(keys: &[String]) -> Result<String> {
    let mut child = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ssh-keygen (install openssh-client)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(keys.join("\n").as_bytes())?;
        stdin.write_all(b"\n")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "ssh-keygen cannot read the scanned keys: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n"))
}
