//! `untoil run NAME`: runs one runbook in the foreground, as a person, a schedule or an alert
//! would, streaming each step's progress.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::exec::executor::{Executor, RunRequest};
use crate::run::cause::{AlertContext, Cause};
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::runbook::diagnostic::did_you_mean;
use crate::runbook::model::Runbook;
use crate::runbook::plugins::Plugins;
use crate::store::Store;
use crate::trigger::alert::Notification;

use super::Global;
use super::progress::Progress;

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

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// Finds a valid runbook by name, explaining what is wrong otherwise.
pub fn find_runbook(g: &Global, name: &str) -> Result<Arc<Runbook>> {
    let loaded = super::load(g, &[]);
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

/// Builds one request per alert of the payload that the runbook accepts.
fn alert_requests(rb: &Arc<Runbook>, file: &PathBuf, base: &RunRequest) -> Result<Vec<RunRequest>> {
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let notification =
        Notification::from_json(&body).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if !rb.has_alert_trigger() {
        bail!(
            "runbook `{}` has no alert trigger, so no alert would run it",
            rb.name
        );
    }
    let mut requests = Vec::new();
    for alert in &notification.alerts {
        if !rb.accepts_alert(alert) {
            continue;
        }
        let mut one = notification.clone();
        one.alerts = Vec::new();
        let mut req = base.clone();
        req.cause = Cause::Alert {
            fingerprint: alert.fingerprint.clone(),
            starts_at: alert.starts_at,
            labels: alert.labels.clone(),
        };
        req.alert = Some(AlertContext {
            alert: alert.clone(),
            notification: one,
        });
        requests.push(req);
    }
    if requests.is_empty() {
        let triggers: Vec<String> = rb.triggers.iter().map(|t| t.describe()).collect();
        bail!(
            "no alert in {} matches runbook `{}` (its triggers: {}; a resolved alert runs only triggers with `on: resolved` or `both`)",
            file.display(),
            rb.name,
            triggers.join("; ")
        );
    }
    Ok(requests)
}

/// Runs the runbook through the daemon and follows it to its end.
fn run_remote(remote: &super::remote::Remote, a: &RunArgs) -> Result<ExitCode> {
    let mut body = serde_json::json!({ "params": parse_params(&a.params)?, "user": user() });
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
    let mut all_ok = true;
    for id in ids {
        let mut progress = Progress::new(std::io::stdout().is_terminal());
        let mut status = None;
        remote.follow(&id, |event| {
            progress.show(event);
            if let crate::run::event::RunEvent::RunFinished { record } = event {
                status = Some(record.status);
            }
        })?;
        all_ok &= status == Some(RunStatus::Succeeded);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `untoil run`.
pub fn run(g: &Global, a: RunArgs) -> Result<ExitCode> {
    if !a.dry_run
        && let Some(remote) = super::remote::Remote::detect(&g.server)
    {
        return run_remote(&remote, &a);
    }
    let rb = find_runbook(g, &a.name)?;
    let mut base = RunRequest::manual(rb.clone(), &user());
    base.params = parse_params(&a.params)?;
    base.dry_run = a.dry_run;
    let requests = match &a.alert {
        Some(file) => alert_requests(&rb, file, &base)?,
        None => vec![base],
    };
    let executor = Executor::new(Plugins::discover(&g.plugins)).map_err(anyhow::Error::msg)?;
    // Params and secrets are checked for every run before anything runs or is recorded.
    let prepared: Vec<_> = requests
        .into_iter()
        .map(|r| executor.prepare(r))
        .collect::<Result<_, _>>()?;
    // Every run is recorded, including dry runs (which credit nothing); a dry run while the
    // daemon holds the store is only printed.
    let store: Option<Arc<dyn Store>> = match super::open_store(g) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) if a.dry_run => {
            eprintln!("note: this dry run is not recorded ({e:#})");
            None
        }
        Err(e) => return Err(e),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut all_ok = true;
    for prepared in prepared {
        if a.dry_run {
            print_plan(&executor, &prepared, &rb);
            let record =
                runtime.block_on(executor.execute(prepared, CancellationToken::new(), None));
            if let Some(store) = &store {
                store.finish_run(&record)?;
            }
            continue;
        }
        let Some(store) = store.clone() else {
            continue;
        };
        let record = runtime.block_on(execute(&executor, prepared, store))?;
        all_ok &= record.status == RunStatus::Succeeded;
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_plan(executor: &Executor, prepared: &crate::exec::executor::Prepared, rb: &Runbook) {
    println!(
        "dry run of {} (run {}): nothing is executed",
        rb.name,
        prepared.id()
    );
    let plan = executor.plan(prepared);
    let total = plan.len();
    for (i, s) in plan.iter().enumerate() {
        println!("[{}/{total}] {} ({})", i + 1, s.name, s.kind);
        if let Some(w) = &s.when {
            println!("  when: {w}");
        }
        for line in s.detail.lines() {
            println!("  {line}");
        }
    }
}

async fn execute(
    executor: &Executor,
    prepared: crate::exec::executor::Prepared,
    store: Arc<dyn Store>,
) -> Result<RunRecord> {
    let queued = executor.queued_record(&prepared);
    {
        let store = store.clone();
        let queued = queued.clone();
        tokio::task::spawn_blocking(move || {
            store.enqueue_run(&queued)?;
            // Durably running before the first step: a crash interrupts it, never repeats it.
            store.start_run(&queued.id, chrono::Utc::now())
        })
        .await??;
    }
    let cancel = CancellationToken::new();
    // Ctrl-C cancels the run: its processes are killed and it is recorded as cancelled.
    let on_signal = cancel.clone();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (shown_tx, mut shown_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = tokio::spawn(crate::engine::recorder::record(
        store,
        queued.id.clone(),
        rx,
        |_| {},
        move |event| {
            let _ = shown_tx.send(event);
        },
    ));
    let printer = tokio::spawn(async move {
        let mut progress = Progress::new(std::io::stdout().is_terminal());
        while let Some(event) = shown_rx.recv().await {
            progress.show(&event);
        }
    });
    let record = executor.execute(prepared, cancel, Some(tx)).await;
    let recorded = recorder.await;
    let _ = printer.await;
    signal.abort();
    recorded??;
    Ok(record)
}
