//! The runbooks in service: the catalog the engine runs, reloaded whole when the files change. A
//! file that breaks keeps its last good version in service; its problems are kept for the API.

use std::collections::HashSet;
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
        let state = merge(&self.catalog(), loaded);
        let errors = state.diagnostics.iter().filter(|d| d.is_error()).count();
        info!(
            runbooks = state.catalog.len(),
            errors,
            "runbooks loaded from {}",
            self.dir.display()
        );
        if errors > 0 {
            warn!(
                "some runbook files have errors and keep their last good version:\n{}",
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

/// Keeps the last good version of runbooks whose file now fails validation.
fn merge(old: &Catalog, loaded: Loaded) -> CatalogState {
    let broken: HashSet<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| loaded.sources.name(d.primary.file))
        .collect();
    let mut catalog = loaded.catalog.clone();
    for rb in old.iter() {
        if catalog.get(&rb.name).is_none() && broken.contains(&rb.source.display().to_string()) {
            catalog.insert(rb.clone());
        }
    }
    CatalogState {
        catalog: Arc::new(catalog),
        errors_text: loaded.sources.render(&loaded.diagnostics),
        records: loaded.sources.records(&loaded.diagnostics),
        diagnostics: loaded.diagnostics,
    }
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
}
