//! The `untoil` command line: the only place that prints for humans.

mod progress;
mod remote;
mod report;
mod run;
mod runs;
mod serve;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::report::table::Table;
use crate::runbook::catalog::{self, Loaded};
use crate::runbook::model::Trigger;
use crate::runbook::plugins::Plugins;
use crate::trigger::schedule::{Schedule, parse_timezone};

/// untoil: runs toil-automation runbooks and proves the toil they save.
#[derive(Debug, Parser)]
#[command(name = "untoil", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Directory of runbook files (*.yaml, *.yml), searched recursively.
    #[arg(
        long,
        global = true,
        env = "UNTOIL_RUNBOOKS",
        default_value = "./runbooks"
    )]
    pub runbooks: PathBuf,
    /// Directory of plugin executables.
    #[arg(
        long,
        global = true,
        env = "UNTOIL_PLUGINS",
        default_value = "./plugins"
    )]
    pub plugins: PathBuf,
    /// Directory of the run store.
    #[arg(long, global = true, env = "UNTOIL_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// A running daemon's address: `run`, `runs`, `report` and `cancel` use its API when it
    /// answers, and the store directly when not (token from UNTOIL_TOKEN).
    #[arg(
        long,
        global = true,
        env = "UNTOIL_SERVER",
        default_value = "http://127.0.0.1:9470"
    )]
    pub server: String,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check runbook files and report every problem with its exact place.
    Validate(ValidateArgs),
    /// List the runbooks with their owner, triggers, next scheduled fire and toil estimate.
    List(ListArgs),
    /// Print the next fire times of a crontab expression, as the scheduler computes them.
    Next(NextArgs),
    /// Print the JSON Schema of the runbook format, for editor completion and checks.
    Schema,
    /// Run the daemon: schedules, the Alertmanager receiver and the HTTP API.
    Serve(serve::ServeArgs),
    /// Run one runbook now, in the foreground, streaming its steps.
    Run(run::RunArgs),
    /// List the installed plugins.
    Plugins,
    /// Toil saved by team, service, runbook, cause and period; or the automation backlog.
    Report(report::ReportArgs),
    /// Run history; `runs show ID` prints one run in full.
    Runs(runs::RunsArgs),
    /// Approve a run waiting for approval (through the daemon).
    Approve {
        /// Run id.
        id: String,
        /// Who approves (default: your login name).
        #[arg(long)]
        by: Option<String>,
    },
    /// Deny a run waiting for approval (through the daemon).
    Deny {
        /// Run id.
        id: String,
        /// Who denies (default: your login name).
        #[arg(long)]
        by: Option<String>,
    },
    /// Runs waiting for approval, with what they would execute.
    Approvals,
    /// Circuit breakers: list them, or reset one runbook's.
    Breaker {
        #[command(subcommand)]
        command: Option<BreakerCommand>,
    },
    /// Cancel a queued or running run (through the daemon).
    Cancel {
        /// Run id.
        id: String,
    },
    /// Delete run details older than a retention period; rollups (report totals) stay.
    Prune {
        /// Keep this much history, e.g. 400d.
        #[arg(long)]
        retain: String,
    },
    /// Records runs as fast as it can, printing each id once durable (crash tests).
    #[command(hide = true)]
    StoreStress {
        /// How many runs.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Writer threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
}

/// `untoil breaker` subcommands.
#[derive(Debug, Subcommand)]
pub enum BreakerCommand {
    /// Every breaker with its state (the default).
    List,
    /// Close a runbook's breakers.
    Reset {
        /// Runbook name.
        runbook: String,
        /// Only this guard key.
        #[arg(long)]
        key: Option<String>,
    },
}

/// Output format of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiagFormat {
    /// Human-readable, with source lines and carets.
    Text,
    /// One JSON array of diagnostics, for editors and CI.
    Json,
}

/// Arguments of `untoil validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Runbook files or directories (default: the runbooks directory).
    pub paths: Vec<PathBuf>,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiagFormat::Text)]
    pub format: DiagFormat,
}

/// Output format of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

/// Arguments of `untoil list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// Arguments of `untoil next`.
#[derive(Debug, Args)]
pub struct NextArgs {
    /// Crontab expression: 5 fields, 6 with seconds first, or a macro such as @daily.
    pub expression: String,
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// Start after this instant (RFC 3339), default now.
    #[arg(long)]
    pub after: Option<String>,
    /// How many fire times.
    #[arg(short = 'n', long = "count", default_value_t = 5)]
    pub count: usize,
}

/// Parses arguments, runs the command and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Validate(a) => validate(&g, a),
        Command::List(a) => list(&g, a),
        Command::Next(a) => next(a),
        Command::Run(a) => run::run(&g, a),
        Command::Serve(a) => serve::run(&g, a),
        Command::Plugins => plugins(&g),
        Command::Report(a) => report::run(&g, a),
        Command::Runs(a) => runs::run(&g, a),
        Command::Prune { retain } => prune(&g, &retain),
        Command::Cancel { id } => cancel(&g, &id),
        Command::Approve { id, by } => decide(&g, &id, true, by),
        Command::Deny { id, by } => decide(&g, &id, false, by),
        Command::Approvals => approvals(&g),
        Command::Breaker { command } => breaker(&g, command),
        Command::StoreStress { count, threads } => store_stress(&g, count, threads),
        Command::Schema => {
            let schema = serde_json::to_string_pretty(&crate::runbook::spec::json_schema())?;
            println!("{schema}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the runbooks the way every command does.
pub fn load(g: &Global, paths: &[PathBuf]) -> Loaded {
    let plugins = Plugins::discover(&g.plugins);
    let paths = if paths.is_empty() {
        vec![g.runbooks.clone()]
    } else {
        paths.to_vec()
    };
    catalog::load(&paths, &plugins)
}

fn validate(g: &Global, a: ValidateArgs) -> Result<ExitCode> {
    let loaded = load(g, &a.paths);
    let (errors, warnings) = (loaded.errors(), loaded.warnings());
    let failed = errors > 0 || (a.deny_warnings && warnings > 0);
    match a.format {
        DiagFormat::Json => {
            let json = loaded.sources.render_json(&loaded.diagnostics);
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        DiagFormat::Text => {
            let mut err = std::io::stderr().lock();
            write!(err, "{}", loaded.sources.render(&loaded.diagnostics))?;
            let files = plural(loaded.files, "file");
            let summary = if errors == 0 && warnings == 0 {
                format!(
                    "ok: {} valid in {files}",
                    plural(loaded.catalog.len(), "runbook")
                )
            } else {
                format!(
                    "{}: {}, {} in {files}",
                    if failed { "failed" } else { "ok" },
                    plural(errors, "error"),
                    plural(warnings, "warning"),
                )
            };
            writeln!(err, "{summary}")?;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn list(g: &Global, a: ListArgs) -> Result<ExitCode> {
    let loaded = load(g, &[]);
    let now = Utc::now();
    let rows: Vec<serde_json::Value> = loaded
        .catalog
        .iter()
        .map(|rb| {
            let next = rb
                .schedules()
                .filter_map(|s| s.schedule.next_after(now))
                .min_by_key(|t| t.with_timezone(&Utc));
            let triggers: Vec<String> = rb.triggers.iter().map(Trigger::describe).collect();
            serde_json::json!({
                "name": rb.name,
                "owner": rb.owner,
                "service": rb.service,
                "description": rb.description,
                "triggers": triggers,
                "next_fire": next.map(|t| t.to_rfc3339()),
                "toil_minutes": rb.toil.manual_minutes,
                "steps": rb.steps.len(),
                "file": rb.source.display().to_string(),
            })
        })
        .collect();
    match a.format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        ListFormat::Table => {
            let mut t = Table::new([
                "NAME",
                "OWNER",
                "SERVICE",
                "TRIGGERS",
                "NEXT FIRE",
                "TOIL (min)",
            ]);
            t.align_right(5);
            for (r, rb) in rows.iter().zip(loaded.catalog.iter()) {
                let triggers: Vec<String> = rb
                    .triggers
                    .iter()
                    .map(|t| match t {
                        Trigger::Schedule(s) => format!("cron {}", s.schedule.expression()),
                        Trigger::Alert(a) => format!(
                            "alert {}",
                            a.matchers
                                .first()
                                .map(|m| m.to_string())
                                .unwrap_or_default()
                        ),
                    })
                    .collect();
                t.row([
                    rb.name.clone(),
                    rb.owner.clone(),
                    rb.service.clone().unwrap_or_else(|| "-".into()),
                    if triggers.is_empty() {
                        "manual".into()
                    } else {
                        triggers.join("; ")
                    },
                    r["next_fire"].as_str().unwrap_or("-").to_string(),
                    format_minutes(rb.toil.manual_minutes),
                ]);
            }
            print!("{}", t.render());
        }
    }
    let errors = loaded.errors();
    if errors > 0 {
        let broken = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.primary.file)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        eprintln!(
            "warning: {} with errors not listed; run `untoil validate` to see them",
            plural(broken, "file")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn format_minutes(m: f64) -> String {
    if m.fract() == 0.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

fn next(a: NextArgs) -> Result<ExitCode> {
    let tz = match parse_timezone(&a.tz) {
        Ok(tz) => tz,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(h) = e.help() {
                eprintln!("  help: {h}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let schedule = match Schedule::parse(&a.expression, tz) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: invalid schedule `{}`: {e}", a.expression);
            if let Some(h) = e.help() {
                eprintln!("  help: {h}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let after: DateTime<Utc> = match &a.after {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .with_context(|| {
                format!("--after `{t}` is not an RFC 3339 time such as 2026-03-29T00:00:00+01:00")
            })?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let mut out = std::io::stdout().lock();
    for t in schedule.fires_after(after).take(a.count) {
        writeln!(out, "{}", t.to_rfc3339())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn plugins(g: &Global) -> Result<ExitCode> {
    let plugins = Plugins::discover(&g.plugins);
    let mut t = Table::new(["NAME", "DESCRIPTION", "INPUTS", "PATH"]);
    for p in plugins.iter() {
        let (description, inputs) = match &p.manifest {
            Some(m) => (
                m.description.clone(),
                m.inputs
                    .as_ref()
                    .map(|i| {
                        i.iter()
                            .map(|(k, v)| {
                                if v.required {
                                    format!("{k}*")
                                } else {
                                    k.clone()
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_else(|| "any".into()),
            ),
            None => (
                p.manifest_error
                    .as_ref()
                    .map(|e| format!("(bad manifest: {e})"))
                    .unwrap_or_else(|| "(no manifest)".into()),
                "any".into(),
            ),
        };
        t.row([
            p.name.clone(),
            description,
            inputs,
            p.path.display().to_string(),
        ]);
    }
    if plugins.iter().next().is_none() {
        eprintln!("no plugins in {}", g.plugins.display());
    } else {
        print!("{}", t.render());
        println!("(* required input)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the run store at `--data`.
pub fn open_store(g: &Global) -> Result<crate::store::sled::SledStore> {
    std::fs::create_dir_all(&g.data)
        .with_context(|| format!("cannot create the data directory {}", g.data.display()))?;
    Ok(crate::store::sled::SledStore::open(&g.data)?)
}

fn prune(g: &Global, retain: &str) -> Result<ExitCode> {
    use crate::store::Store;
    let keep = crate::runbook::model::parse_duration(retain)
        .map_err(|e| anyhow::anyhow!("--retain `{retain}`: {e}"))?;
    let store = open_store(g)?;
    let before = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let n = store.prune(before)?;
    println!(
        "removed {n} run(s) started before {}; rollups (report totals) are kept",
        before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes synthetic finished runs from several threads; prints each id once it is durable.
fn store_stress(g: &Global, count: usize, threads: usize) -> Result<ExitCode> {
    use crate::store::Store;
    use std::io::Write;
    let store = std::sync::Arc::new(open_store(g)?);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let store = store.clone();
            let next = next.clone();
            std::thread::spawn(move || -> Result<()> {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= count {
                        return Ok(());
                    }
                    let run = crate::run::record::RunRecord::synthetic(i);
                    store.finish_run(&run)?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{}", run.id)?;
                    out.flush()?;
                }
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{count} runs in {secs:.2}s: {:.0} runs/s, {} flushes",
        count as f64 / secs,
        store.flushes()
    );
    Ok(ExitCode::SUCCESS)
}

fn cancel(g: &Global, id: &str) -> Result<ExitCode> {
    let Some(remote) = remote::Remote::detect(&g.server) else {
        anyhow::bail!(
            "no daemon answers at {}: only the daemon can cancel its runs (a foreground `untoil run` stops with Ctrl-C)",
            g.server
        );
    };
    remote.post(&format!("/api/v1/runs/{id}/cancel"), &serde_json::json!({}))?;
    println!("cancelling run {id}");
    Ok(ExitCode::SUCCESS)
}

fn daemon(g: &Global, what: &str) -> Result<remote::Remote> {
    remote::Remote::detect(&g.server).ok_or_else(|| {
        anyhow::anyhow!("no daemon answers at {}: {what} needs a running `untoil serve` (--server, UNTOIL_SERVER)", g.server)
    })
}

fn decide(g: &Global, id: &str, approve: bool, by: Option<String>) -> Result<ExitCode> {
    let r = daemon(g, if approve { "approve" } else { "deny" })?;
    let by = by.unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "cli".into()));
    let verb = if approve { "approve" } else { "deny" };
    let record = r.post(
        &format!("/api/v1/runs/{id}/{verb}"),
        &serde_json::json!({ "by": by }),
    )?;
    println!(
        "run {id}: {}{}",
        record["status"].as_str().unwrap_or("?"),
        record["error"]
            .as_str()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn approvals(g: &Global) -> Result<ExitCode> {
    let r = daemon(g, "approvals")?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&r.get("/api/v1/approvals", &[])?)?;
    if list.is_empty() {
        println!("no run is waiting for approval");
    }
    for item in &list {
        let run = &item["run"];
        println!(
            "{}  {}  cause {}  expires {}",
            run["id"].as_str().unwrap_or(""),
            run["runbook"].as_str().unwrap_or(""),
            run["cause"]["kind"].as_str().unwrap_or(""),
            item["expires_at"].as_str().unwrap_or("-")
        );
        for step in item["plan"].as_array().into_iter().flatten() {
            println!(
                "    {} ({}): {}",
                step["name"].as_str().unwrap_or(""),
                step["kind"].as_str().unwrap_or(""),
                step["detail"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn breaker(g: &Global, command: Option<BreakerCommand>) -> Result<ExitCode> {
    let r = daemon(g, "breaker")?;
    match command.unwrap_or(BreakerCommand::List) {
        BreakerCommand::List => {
            let list: Vec<serde_json::Value> =
                serde_json::from_str(&r.get("/api/v1/breakers", &[])?)?;
            let mut t = Table::new(["RUNBOOK", "KEY", "STATE", "FAILURES", "REASON"]);
            for b in &list {
                t.row([
                    b["runbook"].as_str().unwrap_or("").to_string(),
                    b["key"].as_str().unwrap_or("").to_string(),
                    if b["open"] == true {
                        "open".into()
                    } else {
                        "closed".to_string()
                    },
                    b["consecutive_failures"].to_string(),
                    b["reason"].as_str().unwrap_or("").to_string(),
                ]);
            }
            print!("{}", t.render());
        }
        BreakerCommand::Reset { runbook, key } => {
            let answer = r.post(
                &format!("/api/v1/breakers/{runbook}/reset"),
                &serde_json::json!({ "key": key }),
            )?;
            let keys: Vec<String> = answer["reset"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(String::from))
                .collect();
            println!(
                "reset {} breaker(s) of {runbook}: {}",
                keys.len(),
                keys.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
