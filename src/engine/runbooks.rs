//! The runbooks in service: the catalog the engine runs, reloaded whole when the files change. A
//! file that breaks keeps its last good version in service; its problems are kept for the API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tracing::{info, warn};

use crate::runbook::catalog::{self, Catalog, Loaded};
use crate::runbook::diagnostic::{Diagnostic, Record};
use crate::runbook::plugins::Plugins;

/// The catalog in service and the problems of the last load.
#[derive(Default)]
pub struct CatalogState {
    /// Runbooks in service (last good versions of broken files included).
    pub catalog: Arc<Catalog>,
    /// Diagnostics of the last load, rendered.
    pub errors_text: String,
    /// Diagnostics of the last load, placed by line and column.
    pub records: Vec<Record>,
    /// Diagnostics of the last load.
    pub diagnostics: Vec<Diagnostic>,
}

/// The runbooks in service, reloadable.
pub struct Runbooks {
    dir: PathBuf,
    plugins: PathBuf,
    state: RwLock<Arc<CatalogState>>,
    reloaded: tokio::sync::watch::Sender<u64>,
}

impl Runbooks {
    /// Runbooks of `dir` (plugins of `plugins`), none loaded yet.
    pub fn new(dir: PathBuf, plugins: PathBuf) -> Runbooks {
        Runbooks {
            dir,
            plugins,
            state: RwLock::new(Arc::new(CatalogState::default())),
            reloaded: tokio::sync::watch::channel(0).0,
        }
    }

    /// The directory the runbooks come from.
    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    /// The catalog in service.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.state().catalog.clone()
    }

    /// The catalog in service with the problems of the last load.
    pub fn state(&self) -> Arc<CatalogState> {
        self.state
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Reads the files again and puts the result in service; a broken file keeps its last good
    /// version. Blocks (reads files): call it from a blocking thread.
    pub fn reload(&self) {
        let plugins = Plugins::discover(&self.plugins);
        let loaded = catalog::load(std::slice::from_ref(&self.dir), &plugins);
        let (state, broken) = merge(&self.catalog(), loaded);
        let errors = state.diagnostics.iter().filter(|d| d.is_error()).count();
        info!(
            runbooks = state.catalog.len(),
            errors,
            "runbooks loaded from {}",
            self.dir.display()
        );
        if errors > 0 {
            warn!(
                "some runbook files have errors:\n{}\n{}",
                broken.join("\n"),
                state.errors_text
            );
        }
        match self.state.write() {
            Ok(mut s) => *s = Arc::new(state),
            Err(p) => *p.into_inner() = Arc::new(state),
        }
        self.reloaded.send_modify(|generation| *generation += 1);
    }

    /// Wakes when the catalog is reloaded (the scheduler restarts its timers then).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloaded.subscribe()
    }
}

/// Keeps the last good version of runbooks whose file now fails validation. Also answers one
/// line per file with errors, saying what is in service of it: its last good version, or
/// nothing when it never loaded (a new file, or any file at start-up).
fn merge(old: &Catalog, loaded: Loaded) -> (CatalogState, Vec<String>) {
    let broken: BTreeSet<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| loaded.sources.name(d.primary.file))
        .collect();
    let mut catalog = loaded.catalog.clone();
    let mut kept: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rb in old.iter() {
        let file = rb.source.display().to_string();
        if catalog.get(&rb.name).is_none() && broken.contains(&file) {
            catalog.insert(rb.clone());
            kept.entry(file).or_default().push(format!("`{}`", rb.name));
        }
    }
    let lines = broken
        .iter()
        .map(|file| match kept.get(file) {
            Some(names) => format!(
                "  {file}: its last good version ({}) stays in service until it is fixed",
                names.join(", ")
            ),
            None => format!(
                "  {file}: never loaded without errors, so nothing of it is in service until it is fixed"
            ),
        })
        .collect();
    let state = CatalogState {
        catalog: Arc::new(catalog),
        errors_text: loaded.sources.render(&loaded.diagnostics),
        records: loaded.sources.records(&loaded.diagnostics),
        diagnostics: loaded.diagnostics,
    };
    (state, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_breaks_keeps_its_last_good_version_in_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rb = dir.path().join("r.yaml");
        std::fs::write(
            &rb,
            "name: r\nowner: t\ntoil: {manual_minutes: 1}\ntriggers: [{schedule: '* * * * *'}]\nsteps: [{name: a, run: 'true'}]\n",
        )
        .expect("write");
        let runbooks = Runbooks::new(dir.path().to_path_buf(), dir.path().join("plugins"));
        let mut reloads = runbooks.watch();
        runbooks.reload();
        assert!(reloads.has_changed().expect("open"));
        reloads.mark_unchanged();
        assert!(runbooks.catalog().get("r").is_some());
        std::fs::write(&rb, "name: r\nowner: [\n").expect("write");
        runbooks.reload();
        assert!(reloads.has_changed().expect("open"));
        assert!(runbooks.catalog().get("r").is_some(), "last good version");
        assert!(!runbooks.state().errors_text.is_empty());
        std::fs::remove_file(&rb).expect("remove");
        runbooks.reload();
        assert!(
            runbooks.catalog().get("r").is_none(),
            "a removed file is gone"
        );
    }

    #[test]
    fn a_broken_file_never_loaded_is_not_said_to_keep_a_last_good_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = "name: r\nowner: t\ntoil: {manual_minutes: 1}\ntriggers: [{schedule: '* * * * *'}]\nsteps: [{name: a, run: 'true'}]\n";
        let load = || catalog::load(&[dir.path().to_path_buf()], &Plugins::default());
        std::fs::write(dir.path().join("r.yaml"), good).expect("write");
        std::fs::write(dir.path().join("new.yaml"), "name: new\nowner: [\n").expect("write");
        // At start-up nothing was loaded before: no file keeps anything.
        let (state, lines) = merge(&Catalog::default(), load());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("new.yaml: never loaded"), "{lines:?}");
        // `r` breaks after it loaded: it keeps its last good version; `new` still never loaded.
        std::fs::write(dir.path().join("r.yaml"), "name: r\nowner: [\n").expect("write");
        let (_, lines) = merge(&state.catalog, load());
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("new.yaml: never loaded"), "{lines:?}");
        assert!(
            lines[1].contains("r.yaml: its last good version (`r`) stays in service"),
            "{lines:?}"
        );
    }
}
