//! The loaded source definitions, by name.

use std::collections::BTreeMap;
use std::path::Path;

use crate::runbook::diagnostic::Diagnostic;
use crate::runbook::sources::Sources;
use crate::source::definition::{SourceDef, load_dir};

/// The defined sources by name.
#[derive(Debug, Clone, Default)]
pub struct SourceCatalog {
    by_name: BTreeMap<String, SourceDef>,
}

impl SourceCatalog {
    /// Loads every definition of `dir`; the diagnostics point into `sources`. The files that
    /// loaded are in the catalog even when others did not.
    pub fn load(dir: &Path, sources: &mut Sources) -> (SourceCatalog, Vec<Diagnostic>) {
        let (defs, diags) = load_dir(dir, sources);
        (SourceCatalog::from_defs(defs), diags)
    }

    /// A catalog of these definitions (the first of a name wins, as in `load_dir`).
    pub fn from_defs(defs: Vec<SourceDef>) -> SourceCatalog {
        let mut by_name = BTreeMap::new();
        for d in defs {
            by_name.entry(d.name.clone()).or_insert(d);
        }
        SourceCatalog { by_name }
    }

    /// The definition named `name`.
    pub fn get(&self, name: &str) -> Option<&SourceDef> {
        self.by_name.get(name)
    }

    /// Whether a source of that name is defined.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The definitions, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &SourceDef> {
        self.by_name.values()
    }

    /// How many sources are defined.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_holds_what_loaded_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write("b.yaml", "source: grafana-prod\nkind: grafana\n");
        write("a.yaml", "source: broken\nkind: nope\n");
        write(
            "c.yaml",
            "source: pd\nkind: pagerduty\nverify: { preset: pagerduty-v3, secret_env: PD }\n",
        );
        let mut sources = Sources::new();
        let (catalog, diags) = SourceCatalog::load(dir.path(), &mut sources);
        assert_eq!(diags.len(), 1, "the broken file");
        assert_eq!(catalog.names().collect::<Vec<_>>(), ["grafana-prod", "pd"]);
        assert_eq!(catalog.len(), 2);
        assert!(catalog.contains("pd") && !catalog.contains("broken"));
        assert_eq!(
            catalog.get("grafana-prod").map(|d| d.kind),
            Some(crate::source::definition::Kind::Grafana)
        );
        assert!(catalog.get("alertmanager").is_none());
        assert!(SourceCatalog::default().is_empty());
    }
}
