//! The loaded runbooks: every file under the runbooks directory, validated, by name.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::runbook::diagnostic::{Diagnostic, Kind};
use crate::runbook::loader::{self, ParsedFile};
use crate::runbook::model::Runbook;
use crate::runbook::plugins::Plugins;
use crate::runbook::source_map::Seg;
use crate::runbook::sources::Sources;
use crate::runbook::validator;

/// Validated runbooks by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    runbooks: BTreeMap<String, Arc<Runbook>>,
}

impl Catalog {
    /// A runbook by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Runbook>> {
        self.runbooks.get(name)
    }

    /// All runbooks, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Runbook>> {
        self.runbooks.values()
    }

    /// How many runbooks.
    pub fn len(&self) -> usize {
        self.runbooks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.runbooks.is_empty()
    }

    /// Adds (or replaces) a runbook.
    pub fn insert(&mut self, rb: Arc<Runbook>) {
        self.runbooks.insert(rb.name.clone(), rb);
    }

    /// Names, for "did you mean".
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.runbooks.keys().map(String::as_str)
    }
}

/// The result of loading runbook files: the catalog and everything found wrong.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Runbooks that validated.
    pub catalog: Catalog,
    /// Texts of the files read, for rendering diagnostics.
    pub sources: Sources,
    /// Errors and warnings, sorted by file then position.
    pub diagnostics: Vec<Diagnostic>,
    /// How many runbook files were read.
    pub files: usize,
    /// Runbooks that failed validation: name -> file id.
    pub failed: BTreeMap<String, usize>,
}

impl Loaded {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Loads and validates every runbook file under `paths` (files or directories).
pub fn load(paths: &[PathBuf], plugins: &Plugins) -> Loaded {
    let mut sources = Sources::new();
    let (files, mut diagnostics) = loader::discover(paths, &mut sources);
    let parsed: Vec<ParsedFile> = files
        .iter()
        .map(|path| loader::load_file(path, &mut sources, &mut diagnostics))
        .collect();
    build(parsed, sources, diagnostics, plugins)
}

/// Loads runbooks from in-memory texts, named as given (for tests and editors).
pub fn load_texts(texts: &[(&str, &str)], plugins: &Plugins) -> Loaded {
    let mut sources = Sources::new();
    let mut diagnostics = Vec::new();
    let parsed: Vec<ParsedFile> = texts
        .iter()
        .map(|(name, text)| {
            let file = sources.add(*name, *text);
            loader::parse(file, Path::new(name), &sources, &mut diagnostics)
        })
        .collect();
    build(parsed, sources, diagnostics, plugins)
}

/// The one runbook a YAML text defines, or its diagnostics rendered (for tests, benchmarks and
/// tools that hold a runbook in memory).
pub fn one(text: &str, plugins: &Plugins) -> Result<Arc<Runbook>, String> {
    let loaded = load_texts(&[("runbook.yaml", text)], plugins);
    match loaded.catalog.iter().next() {
        Some(rb) if loaded.errors() == 0 => Ok(rb.clone()),
        _ => Err(loaded.sources.render(&loaded.diagnostics)),
    }
}

fn build(
    parsed: Vec<ParsedFile>,
    sources: Sources,
    mut diagnostics: Vec<Diagnostic>,
    plugins: &Plugins,
) -> Loaded {
    let mut by_name: BTreeMap<String, (usize, Range<usize>)> = BTreeMap::new();
    let mut runbooks = BTreeMap::new();
    let mut failed = BTreeMap::new();
    let files = parsed.len();
    for parsed in &parsed {
        let Some(raw) = &parsed.raw else {
            continue;
        };
        let name_span = parsed.map.value_span(&[Seg::Key("name".into())]);
        if let Some(name) = &raw.name {
            if let Some((first_file, first_span)) = by_name.get(name) {
                diagnostics.push(
                    Diagnostic::error(
                        Kind::DuplicateRunbook,
                        parsed.file,
                        name_span.clone(),
                        format!("duplicate runbook name `{name}`"),
                    )
                    .with_label("used again here")
                    .with_secondary(*first_file, first_span.clone(), "first used here")
                    .with_help(
                        "runbook names must be unique across the runbooks directory; rename one",
                    ),
                );
                // Validate it anyway so that all its other problems are reported too.
            } else {
                by_name.insert(name.clone(), (parsed.file, name_span.clone()));
            }
        }
        let text = sources.text(parsed.file);
        let (runbook, diags) = validator::validate(
            raw,
            &parsed.pruned,
            parsed.file,
            &parsed.path,
            text,
            &parsed.map,
            plugins,
        );
        diagnostics.extend(diags);
        match runbook {
            Some(rb) if by_name.get(&rb.name).map(|(f, _)| *f) == Some(parsed.file) => {
                runbooks.insert(rb.name.clone(), Arc::new(rb));
            }
            _ => {
                if let Some(name) = &raw.name {
                    failed.insert(name.clone(), parsed.file);
                }
            }
        }
    }
    sources.snap(&mut diagnostics);
    sources.sort(&mut diagnostics);
    Loaded {
        catalog: Catalog { runbooks },
        sources,
        diagnostics,
        files,
        failed,
    }
}
