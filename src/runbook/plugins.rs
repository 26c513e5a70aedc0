//! Installed plugins: executables in the plugins directory, with optional manifests.
//!
//! A plugin `NAME` is an executable file `NAME` or `NAME.<ext>` (e.g. `slack-notify.sh`) in the
//! plugins directory. A manifest `NAME.manifest.json` beside it describes the plugin and its
//! inputs, so the validator can check a step's `with:` at load time.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A plugin's manifest.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// What the plugin does.
    #[serde(default)]
    pub description: String,
    /// Inputs it accepts in `with:`; when present, others are rejected.
    #[serde(default)]
    pub inputs: Option<BTreeMap<String, Input>>,
    /// Outputs it returns.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
}

/// One declared input.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Whether a step must set it.
    #[serde(default)]
    pub required: bool,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// One installed plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Plugin {
    /// Name used in `plugin:`.
    pub name: String,
    /// The executable.
    pub path: PathBuf,
    /// Its manifest, if it has one.
    pub manifest: Option<Manifest>,
    /// Why its manifest could not be read, if it could not.
    pub manifest_error: Option<String>,
}

/// The plugins of one directory.
#[derive(Debug, Clone, Default)]
pub struct Plugins {
    plugins: BTreeMap<String, Plugin>,
}

impl Plugins {
    /// Finds the plugins in `dir`; a missing directory has none.
    pub fn discover(dir: &Path) -> Plugins {
        let mut plugins = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Plugins { plugins };
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let file_name = entry.file_name().to_string_lossy().to_string();
            if !meta.is_file()
                || meta.permissions().mode() & 0o111 == 0
                || file_name.starts_with('.')
            {
                continue;
            }
            let name = match file_name.split_once('.') {
                Some((stem, _)) => stem.to_string(),
                None => file_name.clone(),
            };
            let manifest_path = dir.join(format!("{name}.manifest.json"));
            let (manifest, manifest_error) = match std::fs::read_to_string(&manifest_path) {
                Ok(text) => match serde_json::from_str::<Manifest>(&text) {
                    Ok(m) => (Some(m), None),
                    Err(e) => (None, Some(format!("{}: {e}", manifest_path.display()))),
                },
                Err(_) => (None, None),
            };
            plugins.insert(
                name.clone(),
                Plugin {
                    name,
                    path,
                    manifest,
                    manifest_error,
                },
            );
        }
        Plugins { plugins }
    }

    /// A plugin by name.
    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.plugins.get(name)
    }

    /// All plugins, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.values()
    }

    /// The names, for "did you mean".
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.plugins.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_plugins_and_manifests_are_read() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let exe = dir.path().join("notify.sh");
        std::fs::write(&exe, "#!/bin/sh\n")?;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
        std::fs::write(
            dir.path().join("notify.manifest.json"),
            r#"{"description":"says hi","inputs":{"text":{"required":true}}}"#,
        )?;
        std::fs::write(dir.path().join("README.md"), "not a plugin")?;
        let plugins = Plugins::discover(dir.path());
        assert_eq!(plugins.names().collect::<Vec<_>>(), ["notify"]);
        let p = plugins.get("notify").map(|p| p.manifest.clone());
        let inputs = p.flatten().and_then(|m| m.inputs).unwrap_or_default();
        assert!(inputs["text"].required);
        Ok(())
    }
}
