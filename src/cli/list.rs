//! `untoil list`: the runbooks with their owner, triggers, next scheduled fire and toil
//! estimate: those the daemon runs while one holds the store, else those the files define;
//! either way with the broken files' errors beside them ([`super::file_errors`]).

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::cli::connect::{Target, target};
use crate::cli::file_errors::{self, FileError, InService};
use crate::cli::global::Global;
use crate::cli::remote::Remote;
use crate::cli::words::format_minutes;
use crate::report::table::Table;
use crate::runbook::model::Trigger;
use crate::trigger::matcher::Matcher;
use crate::trigger::source::ALERTMANAGER;

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

/// One runbook as listed.
struct Row {
    json: Value,
    short_triggers: Vec<String>,
}

/// Runs `untoil list`.
pub fn run(g: &Global, a: ListArgs) -> Result<ExitCode> {
    let (rows, note) = match target(g)? {
        Target::Daemon(r) => from_daemon(&r)?,
        Target::Local => from_files(g),
    };
    match a.format {
        ListFormat::Json => {
            let json: Vec<&Value> = rows.iter().map(|r| &r.json).collect();
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
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
            for r in &rows {
                let j = &r.json;
                t.row([
                    j["name"].as_str().unwrap_or("").to_string(),
                    j["owner"].as_str().unwrap_or("").to_string(),
                    j["service"].as_str().unwrap_or("-").to_string(),
                    if r.short_triggers.is_empty() {
                        "manual".into()
                    } else {
                        r.short_triggers.join("; ")
                    },
                    j["next_fire"].as_str().unwrap_or("-").to_string(),
                    format_minutes(j["toil_minutes"].as_f64().unwrap_or(0.0)),
                ]);
            }
            print!("{}", t.render());
        }
    }
    if let Some(note) = note {
        eprintln!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// An alert trigger in the TRIGGERS column: every matcher, as written.
fn alert(sources: &[String], matchers: impl Iterator<Item = String>) -> String {
    // Alertmanager alone is the default, left out so the column reads as before.
    let from = if sources.iter().all(|s| s == ALERTMANAGER) {
        String::new()
    } else {
        format!("from {} ", sources.join(", "))
    };
    format!("alert {from}{}", matchers.collect::<Vec<_>>().join(", "))
}

/// The runbooks the files define.
fn from_files(g: &Global) -> (Vec<Row>, Option<String>) {
    let loaded = g.load(&[]);
    let now = Utc::now();
    let rows = loaded
        .catalog
        .iter()
        .map(|rb| {
            let next = rb
                .schedules()
                .filter_map(|s| s.schedule.next_after(now))
                .min_by_key(|t| t.with_timezone(&Utc));
            let triggers: Vec<String> = rb.triggers.iter().map(Trigger::describe).collect();
            let short_triggers = rb
                .triggers
                .iter()
                .map(|t| match t {
                    Trigger::Schedule(s) => format!("cron {}", s.schedule.expression()),
                    Trigger::Alert(a) => alert(&a.sources, a.matchers.iter().map(Matcher::written)),
                })
                .collect();
            Row {
                json: serde_json::json!({
                    "name": rb.name,
                    "owner": rb.owner,
                    "service": rb.service,
                    "description": rb.description,
                    "triggers": triggers,
                    "next_fire": next.map(|t| t.to_rfc3339()),
                    "toil_minutes": rb.toil.manual_minutes,
                    "steps": rb.steps.len(),
                    "file": rb.source.display().to_string(),
                    "errors": 0,
                }),
                short_triggers,
            }
        })
        .collect();
    let errors = FileError::of_records(&loaded.sources.records(&loaded.diagnostics));
    (rows, file_errors::note(&errors, &InService::new(), None))
}

/// The runbooks the daemon runs (last good versions of broken files included).
fn from_daemon(r: &Remote) -> Result<(Vec<Row>, Option<String>)> {
    let list: Vec<Value> = serde_json::from_str(&r.get("/api/v1/runbooks", &[])?)?;
    let rows = list
        .iter()
        .map(|rb| {
            let triggers: Vec<&Value> = rb["triggers"].as_array().into_iter().flatten().collect();
            let short_triggers = triggers
                .iter()
                .map(|t| match t["kind"].as_str() {
                    Some("schedule") => format!("cron {}", t["schedule"].as_str().unwrap_or("")),
                    _ => alert(
                        &t["sources"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect::<Vec<_>>(),
                        t["matchers"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|m| m.as_str().map(String::from)),
                    ),
                })
                .collect();
            Row {
                json: serde_json::json!({
                    "name": rb["name"],
                    "owner": rb["owner"],
                    "service": rb["service"],
                    "description": rb["description"],
                    "triggers": triggers.iter().map(|t| t["text"].clone()).collect::<Vec<_>>(),
                    "next_fire": rb["next_fire"],
                    "toil_minutes": rb["toil"]["manual_minutes"],
                    "steps": rb["steps"].as_array().map_or(0, Vec::len),
                    "file": rb["file"],
                    "errors": rb["errors"],
                }),
                short_triggers,
            }
        })
        .collect();
    let errors = FileError::of_api(&serde_json::from_str(
        &r.get("/api/v1/runbooks/errors", &[])?,
    )?);
    let mut in_service = InService::new();
    for rb in &list {
        if let (Some(file), Some(name)) = (rb["file"].as_str(), rb["name"].as_str()) {
            in_service.entry(file).or_default().push(name);
        }
    }
    Ok((
        rows,
        file_errors::note(&errors, &in_service, Some(r.base())),
    ))
}
