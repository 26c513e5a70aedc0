//! `untoil run NAME`: runs one runbook now, as a person, a schedule or an alert would,
//! streaming each step's progress. Through the daemon that holds the store when there is one;
//! else in the foreground, recorded in the store like any run.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use chrono::Utc;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::cli::connect::{Target, target};
use crate::cli::global::{Global, block_on};
use crate::cli::progress::Progress;
use crate::cli::remote::Remote;
use crate::cli::waiting;
use crate::cli::whoami;
use crate::engine::lifecycle;
use crate::exec::executor::Executor;
use crate::exec::plan::{Plan, resolve_params};
use crate::exec::recorder::{Discard, Recorder};
use crate::run::cause::{AlertContext, Cause};
use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::run::record::{Bypass, RunRecord};
use crate::run::status::RunStatus;
use crate::runbook::model::Runbook;
use crate::runbook::plugins::Plugins;
use crate::runbook::suggest::did_you_mean;
use crate::store::error::StoreError;
use crate::store::sled::SledStore;
use crate::store::{Candidate, Store};
use crate::trigger::alert::Notification;
use crate::trigger::key::DedupeKey;
use crate::trigger::source::ALERTMANAGER;

/// Arguments of `untoil run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Runbook name.
    pub name: String,
    /// A parameter value, `NAME=VALUE` (repeatable).
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Run as this Alertmanager webhook payload would (one run per matching alert).
    #[arg(long, value_name = "FILE.json")]
    pub alert: Option<PathBuf>,
    /// Render every step and print what would run; execute nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With no daemon holding the store, run a runbook that has approval, a cooldown, run
    /// limits or a breaker here anyway, without them; recorded with the run and your login.
    #[arg(long)]
    pub bypass_guards: bool,
}

fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in raw {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--param `{p}` is not NAME=VALUE");
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

/// Whether a foreground (non-dry) run of `rb` may go ahead: a runbook whose guards need the
/// daemon's state (approval, cooldown, run limits, breaker) runs here only when the person says
/// so, and then the run records who skipped what.
fn foreground_guards(g: &Global, rb: &Runbook, bypass: bool) -> Result<Option<Bypass>> {
    let guards = rb.guards.stateful();
    if guards.is_empty() {
        return Ok(None);
    }
    if !bypass {
        bail!(
            "runbook `{}` has guards ({}) that only the daemon decides, and no daemon holds the store at {}: start `untoil serve` (or point --server / --data at the daemon that serves this store) and run again, or add --bypass-guards to run it here without them (the run records that, and your login)",
            rb.name,
            guards.join(", "),
            g.data.display()
        );
    }
    let by = whoami::account();
    let claimed = whoami::claimed_name().filter(|u| *u != by);
    Ok(Some(Bypass {
        by,
        claimed,
        guards: guards.into_iter().map(String::from).collect(),
    }))
}

/// Finds a valid runbook by name, explaining what is wrong otherwise.
pub fn find_runbook(g: &Global, name: &str) -> Result<Arc<Runbook>> {
    let loaded = g.load(&[]);
    if let Some(rb) = loaded.catalog.get(name) {
        return Ok(rb.clone());
    }
    if let Some(&file) = loaded.failed.get(name) {
        let errors: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error() && d.primary.file == file)
            .cloned()
            .collect();
        eprint!("{}", loaded.sources.render(&errors));
        bail!("runbook `{name}` has errors; fix them (see above) and run again");
    }
    let hint = did_you_mean(name, loaded.catalog.names())
        .map(|h| format!("; {h}"))
        .unwrap_or_else(|| {
            let names: Vec<&str> = loaded.catalog.names().collect();
            if names.is_empty() {
                format!("; no runbooks found in {}", g.runbooks.display())
            } else {
                format!("; runbooks: {}", names.join(", "))
            }
        });
    bail!(
        "no runbook named `{name}` in {}{hint}",
        g.runbooks.display()
    )
}

/// Runs the runbook through the daemon and follows it to its end; a run that waits for
/// approval is said so, with how to decide it, and followed on.
fn run_remote(g: &Global, remote: &Remote, a: &RunArgs) -> Result<ExitCode> {
    // `$USER` is a claim: the daemon records the principal of UNTOIL_TOKEN, with it beside.
    let mut body =
        serde_json::json!({ "params": parse_params(&a.params)?, "user": whoami::claimed_name() });
    if let Some(file) = &a.alert {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let payload: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        body["alert"] = payload;
    }
    let answer = remote.post(&format!("/api/v1/runbooks/{}/runs", a.name), &body)?;
    let ids: Vec<String> = answer["ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "queued on the daemon at {}: {}",
        remote.base(),
        ids.join(", ")
    );
    // Runs that wait for a person, with when they expire (none when the list cannot be read:
    // the runs are followed all the same).
    let waiting: Vec<serde_json::Value> = remote
        .get("/api/v1/approvals", &[])
        .ok()
        .and_then(|body| serde_json::from_str(&body).ok())
        .unwrap_or_default();
    let mut all_ok = true;
    for id in ids {
        let mut progress = Progress::new(std::io::stdout().is_terminal());
        let mut status = None;
        let mut notice = waiting
            .iter()
            .find(|w| w["run"]["id"].as_str() == Some(id.as_str()))
            .map(|w| waiting::notice(&id, w, remote.base(), g.server.as_deref(), Utc::now()));
        remote.follow(&id, |event| {
            if let RunEvent::RunFinished { record } = event
                && let Some(decided) = waiting::decided(record)
            {
                eprintln!("run {id}: {decided}");
            }
            progress.show(event);
            // Once, under the run's first line.
            if let (RunEvent::RunStarted { .. }, Some(n)) = (event, notice.take()) {
                eprintln!("{n}");
            }
            if let RunEvent::RunFinished { record } = event {
                status = Some(record.status);
            }
        })?;
        all_ok &= status.is_some_and(RunStatus::is_success);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The runs `untoil run` makes: one, or one per alert of the payload that the runbook accepts.
fn runs(rb: &Arc<Runbook>, a: &RunArgs) -> Result<Vec<RunRecord>> {
    let params = resolve_params(rb, &parse_params(&a.params)?)?;
    let now = Utc::now();
    // No daemon, so no credentials: the account this process runs as is who runs it.
    let user = whoami::account();
    let manual = Cause::Manual {
        claimed_user: whoami::claimed_name().filter(|c| *c != user),
        user,
    };
    let mut runs = match &a.alert {
        None => vec![lifecycle::new_run(rb, manual, params, None, now)],
        // A replay by hand is a manual run with the alert attached (templates see `alert.*`),
        // never cause `alert`: no time to remediate from a payload's old `startsAt`.
        Some(file) => alert_contexts(rb, file)?
            .into_iter()
            .map(|ctx| lifecycle::new_run(rb, manual.clone(), params.clone(), Some(ctx), now))
            .collect(),
    };
    for r in &mut runs {
        r.dry_run = a.dry_run;
    }
    Ok(runs)
}

/// The alerts of a payload that the runbook accepts, as the contexts of runs.
fn alert_contexts(rb: &Arc<Runbook>, file: &PathBuf) -> Result<Vec<AlertContext>> {
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let notification =
        Notification::from_json(&body).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if !rb.has_alert_trigger() {
        bail!(
            "runbook `{}` has no alert trigger, so no alert would run it",
            rb.name
        );
    }
    let mut out = Vec::new();
    let shared = Arc::new(notification.without_alerts());
    for alert in &notification.alerts {
        if !rb.accepts_alert(ALERTMANAGER, alert) {
            continue;
        }
        out.push(AlertContext::new(alert.clone(), shared.clone()));
    }
    if out.is_empty() {
        let triggers: Vec<String> = rb.triggers.iter().map(|t| t.describe()).collect();
        bail!(
            "no alert in {} matches runbook `{}` (its triggers: {}; a resolved alert runs only triggers with `on: resolved` or `both`)",
            file.display(),
            rb.name,
            triggers.join("; ")
        );
    }
    Ok(out)
}

/// Runs `untoil run`.
pub fn run(g: &Global, a: RunArgs) -> Result<ExitCode> {
    let daemon = match target(g)? {
        Target::Daemon(r) => Some(r),
        Target::Local => None,
    };
    if let Some(remote) = &daemon {
        if a.bypass_guards {
            bail!(
                "--bypass-guards is for a run without a daemon; the daemon at {} holds the store and decides this runbook's guards: leave the flag out (or ask an approver)",
                remote.base()
            );
        }
        if !a.dry_run {
            return run_remote(g, remote, &a);
        }
    }
    if daemon.is_none() && !a.dry_run && g.database_url.is_some() {
        bail!(
            "with --database-url (fleet mode) `untoil run` never executes a run itself: a replica does, through the same admission as every run (dedupe, guards, approval); give one replica's address with --server (UNTOIL_SERVER), or add --dry-run to only render the plan"
        );
    }
    let rb = find_runbook(g, &a.name)?;
    let bypass = match (daemon.is_none() && !a.dry_run, a.bypass_guards) {
        (true, b) => foreground_guards(g, &rb, b)?,
        (false, true) => bail!(
            "--bypass-guards has no effect on a dry run, which executes nothing: leave it out"
        ),
        (false, false) => None,
    };
    let mut runs = runs(&rb, &a)?;
    if let Some(b) = &bypass {
        eprintln!(
            "note: --bypass-guards: this run is recorded as {}",
            b.describe()
        );
    }
    for r in &mut runs {
        r.bypassed = bypass.clone();
    }
    // Params and secrets are checked for every run before anything runs or is recorded.
    let plans: Vec<Plan> = runs
        .iter()
        .map(|r| Plan::of(rb.clone(), r))
        .collect::<Result<_, _>>()?;
    // Every run is recorded, dry runs too (they credit nothing); a dry run whose store another
    // process holds is only printed: it executes nothing, so it needs no store.
    let store: Option<Arc<dyn Store>> = match &daemon {
        Some(r) => {
            eprintln!(
                "note: this dry run is not recorded: it is rendered here, from the runbook files in {} (the daemon at {}, which holds the store, may run another version of them)",
                g.runbooks.display(),
                r.base()
            );
            None
        }
        None if g.database_url.is_some() => Some(g.open_store()?),
        None => match SledStore::open(&g.data) {
            Ok(store) => Some(Arc::new(store)),
            Err(e @ StoreError::Locked { .. }) if a.dry_run => {
                eprintln!("note: this dry run is not recorded: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    let mut executor = Executor::new(Plugins::discover(&g.plugins)).map_err(anyhow::Error::msg)?;
    // `report` steps read the store this run is recorded in (none for a dry run another
    // process holds the store of: the preview then only says what would be rendered).
    if let Some(store) = &store {
        executor = executor.with_store(store.clone());
    }
    let mut all_ok = true;
    for (plan, run) in plans.iter().zip(runs) {
        if a.dry_run {
            print_plan(&executor, plan, &rb);
        }
        let ended = block_on(execute(&executor, plan, run, store.clone(), a.dry_run))??;
        all_ok &= ended.status.is_success();
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_plan(executor: &Executor, plan: &Plan, rb: &Runbook) {
    println!(
        "dry run of {} (run {}): nothing is executed",
        rb.name,
        plan.id()
    );
    let steps = executor.preview(plan);
    let total = steps.len();
    for (i, s) in steps.iter().enumerate() {
        println!("[{}/{total}] {} ({})", i + 1, s.name, s.kind);
        if let Some(w) = &s.when {
            println!("  when: {w}");
        }
        if let Some(n) = &s.noop {
            println!("  {n}");
        }
        for line in s.detail.lines() {
            println!("  {line}");
        }
    }
}

/// Prints a foreground run's progress and records it in the store.
struct Foreground {
    store: Option<Arc<dyn Store>>,
    id: RunId,
    step: String,
    progress: Option<Progress>,
}

#[async_trait]
impl Recorder for Foreground {
    async fn record(&mut self, event: RunEvent) {
        if let Some(store) = &self.store {
            // Progress: a failure here still leaves the finish to record the whole run.
            let _ = match &event {
                RunEvent::StepStarted { name, .. } => {
                    self.step = name.clone();
                    store.step_started(&self.id, name, None).await
                }
                RunEvent::ProcessStarted { pgid, .. } => {
                    store.step_started(&self.id, &self.step, Some(*pgid)).await
                }
                RunEvent::StepFinished { result, .. } => store.record_step(&self.id, result).await,
                _ => Ok(()),
            };
        }
        if let Some(p) = &mut self.progress {
            p.show(&event);
        }
    }
}

/// Runs one run in the foreground: recorded running in the write that admits it (durably,
/// before its first step: a crash interrupts it, never repeats it), executed, finished.
async fn execute(
    executor: &Executor,
    plan: &Plan,
    mut run: RunRecord,
    store: Option<Arc<dyn Store>>,
    dry_run: bool,
) -> Result<RunRecord> {
    let id = run.id.clone();
    // Never stored `queued`: a crash between a queued write and the claim left a run that the
    // next `untoil serve` resumed and executed, with neither its guards nor an approval.
    lifecycle::start(&mut run, Utc::now());
    if let Some(store) = &store
        && !dry_run
    {
        let key = DedupeKey::Manual { run: id.0.clone() };
        let candidate = Candidate {
            key,
            run: run.clone(),
            gate: None,
        };
        store.admit(vec![candidate], Vec::new()).await?;
    }
    let cancel = CancellationToken::new();
    // Ctrl-C cancels the run: its processes are killed and it is recorded as cancelled.
    let on_signal = cancel.clone();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    if dry_run {
        executor.execute(plan, &mut run, cancel, &mut Discard).await;
    } else {
        let mut recorder = Foreground {
            store: store.clone(),
            id: id.clone(),
            step: String::new(),
            progress: Some(Progress::new(std::io::stdout().is_terminal())),
        };
        executor
            .execute(plan, &mut run, cancel, &mut recorder)
            .await;
        lifecycle::conclude(&mut run, Utc::now());
        if let Some(p) = &mut recorder.progress {
            p.show(&RunEvent::RunFinished {
                record: Box::new(run.clone()),
            });
        }
    }
    signal.abort();
    if dry_run {
        lifecycle::conclude(&mut run, Utc::now());
    }
    if let Some(store) = &store {
        store.finish(run.clone(), None).await?;
    }
    Ok(run)
}
