//! `untoil validate`: checks runbook files, and the source definitions of `--sources` when that
//! directory exists, and reports every problem with its exact place.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::cli::global::Global;
use crate::cli::words::plural;
use crate::runbook::catalog::Loaded;
use crate::runbook::diagnostic::{Diagnostic, Kind};
use crate::runbook::model::Trigger;
use crate::runbook::source_map::{Seg, SourceMap};
use crate::runbook::suggest::did_you_mean;
use crate::source::catalog::SourceCatalog;
use crate::trigger::source::{ALERTMANAGER, GRAFANA};

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
    let mut loaded = g.load(&a.paths);
    let (source_files, defined) = check_sources(&g.sources, &mut loaded);
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
            let files = plural(loaded.files + source_files, "file");
            let summary = if errors == 0 && warnings == 0 {
                let sources = if defined > 0 {
                    format!(" and {}", plural(defined, "source"))
                } else {
                    String::new()
                };
                format!(
                    "ok: {}{sources} valid in {files}",
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

/// Loads the source definitions of `dir` (when it exists) into `loaded`'s files and
/// diagnostics, and warns about each alert trigger naming a source that is neither built in nor
/// defined there. Returns how many source files were read and how many sources they define.
fn check_sources(dir: &Path, loaded: &mut Loaded) -> (usize, usize) {
    let before = loaded.sources.len();
    let (catalog, mut diags) = if dir.is_dir() {
        SourceCatalog::load(dir, &mut loaded.sources)
    } else {
        // The default may be absent; a chosen path that is absent is likely mistyped.
        if dir != Path::new(crate::daemon::sources::DEFAULT_DIR) {
            eprintln!(
                "warning: the sources directory {} does not exist: no defined source would be served (check --sources / UNTOIL_SOURCES)",
                dir.display()
            );
        }
        (SourceCatalog::default(), Vec::new())
    };
    let source_files = loaded.sources.len() - before;
    let broken = diags.iter().any(Diagnostic::is_error);
    let known: Vec<String> = [ALERTMANAGER, GRAFANA]
        .into_iter()
        .chain(catalog.names())
        .map(str::to_string)
        .collect();
    for rb in loaded.catalog.iter() {
        let shown = rb.source.display().to_string();
        let Some(file) = (0..before).find(|&f| loaded.sources.name(f) == shown) else {
            continue;
        };
        let mut map = None;
        for (i, t) in rb.triggers.iter().enumerate() {
            let Trigger::Alert(at) = t else { continue };
            for (j, s) in at.sources.iter().enumerate() {
                if known.contains(s) {
                    continue;
                }
                let map = map.get_or_insert_with(|| SourceMap::build(loaded.sources.text(file)));
                // A scalar `source:` has no item j: the span is then the scalar's.
                let path = [
                    Seg::Key("triggers".into()),
                    Seg::Index(i),
                    Seg::Key("alert".into()),
                    Seg::Key("source".into()),
                    Seg::Index(j),
                ];
                let mut d = Diagnostic::warning(
                    Kind::UndefinedSource,
                    file,
                    map.value_span(&path),
                    format!(
                        "runbook `{}` triggers on source `{s}`, which is neither built in (alertmanager, grafana) nor defined in {}",
                        rb.name,
                        dir.display()
                    ),
                );
                d.primary.message = "no such source".into();
                if let Some(hint) = did_you_mean(s, known.iter().map(String::as_str)) {
                    d.help.push(hint);
                }
                let or_fix = if broken {
                    ", or fix the errors of the file that defines it"
                } else {
                    ""
                };
                d.help.push(format!(
                    "define it in {} (docs/sources.md){or_fix}; until then this trigger takes no alerts",
                    dir.join(format!("{s}.yaml")).display()
                ));
                diags.push(d);
            }
        }
    }
    loaded.sources.snap(&mut diags);
    loaded.diagnostics.extend(diags);
    loaded.sources.sort(&mut loaded.diagnostics);
    (source_files, catalog.len())
}
