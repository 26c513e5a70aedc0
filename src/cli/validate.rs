//! `untoil validate`: checks runbook files and reports every problem with its exact place.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::cli::global::Global;
use crate::cli::words::plural;

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

/// Runs `untoil validate`.
pub fn run(g: &Global, a: ValidateArgs) -> Result<ExitCode> {
    let loaded = g.load(&a.paths);
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
