//! Golden tests: each folder under tests/diagnostics holds broken runbooks and the exact text
//! `untoil validate` prints for them (`expected.txt`). Set UPDATE_GOLDEN=1 to rewrite the
//! expected files after an intended change, then review the diff. Every diagnostic kind has at
//! least one case (`every_diagnostic_kind_has_a_golden_case`).
//!
//! A case is loaded the way `untoil validate runbooks` loads a directory: its `*.yaml` files are
//! copied to a temporary `runbooks/` folder, which is read from disk, and the temporary prefix is
//! taken out of the output. A case can also hold `symlinks.txt`, lines `NAME -> TARGET` made into
//! symbolic links in that folder (a link whose target is gone is a file that cannot be read).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use untoil::runbook::catalog::{Loaded, load};
use untoil::runbook::diagnostic::Kind;
use untoil::runbook::plugins::Plugins;

fn plugins() -> (tempfile::TempDir, Plugins) {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = dir.path().join("notify.sh");
    std::fs::write(&exe, "#!/bin/sh\n").expect("write plugin");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let plugins = Plugins::discover(dir.path());
    (dir, plugins)
}

/// The case folders, sorted.
fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/diagnostics")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 15,
        "expected the full table of cases, found {}",
        cases.len()
    );
    cases
}

/// A case loaded from a temporary `runbooks/` folder.
struct LoadedCase {
    loaded: Loaded,
    /// The temporary folder's path with a trailing `/`, left out of rendered output.
    prefix: String,
    _dir: tempfile::TempDir,
}

impl LoadedCase {
    /// The text `untoil validate runbooks` prints (without its summary line).
    fn render(&self) -> String {
        self.loaded
            .sources
            .render(&self.loaded.diagnostics)
            .replace(&self.prefix, "")
    }
}

fn load_case(case: &Path) -> LoadedCase {
    let dir = tempfile::tempdir().expect("temp dir");
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir(&runbooks).expect("runbooks dir");
    for entry in std::fs::read_dir(case).expect("case dir").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, runbooks.join(entry.file_name())).expect("copy case file");
        }
    }
    let links = std::fs::read_to_string(case.join("symlinks.txt")).unwrap_or_default();
    for line in links.lines().filter(|l| !l.trim().is_empty()) {
        let (name, target) = line
            .split_once(" -> ")
            .expect("symlinks.txt lines read `NAME -> TARGET`");
        std::os::unix::fs::symlink(target.trim(), runbooks.join(name.trim())).expect("symlink");
    }
    let (_keep, plugins) = plugins();
    let loaded = load(&[runbooks], &plugins);
    let prefix = format!("{}/", dir.path().display());
    LoadedCase {
        loaded,
        prefix,
        _dir: dir,
    }
}

#[test]
fn every_diagnostic_renders_exactly_as_expected() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in &cases() {
        let actual = load_case(case).render();
        let expected_path = case.join("expected.txt");
        if update {
            std::fs::write(&expected_path, &actual).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "== {}\n-- expected\n{expected}\n-- actual\n{actual}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

/// The stable code of a kind, as `untoil validate --format json` prints it.
fn code(kind: Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("a kind serializes as its code")
}

#[test]
fn every_diagnostic_kind_has_a_golden_case() {
    // The codes the cases produce, read from the JSON format as editors and CI see them.
    let mut seen = BTreeSet::new();
    for case in &cases() {
        let case = load_case(case);
        let json = case.loaded.sources.render_json(&case.loaded.diagnostics);
        for record in json.as_array().expect("a JSON array") {
            let code = record["code"].as_str().expect("every record has a code");
            seen.insert(code.to_string());
        }
    }
    // `Kind::ALL` is checked at compile time to hold every variant; no kind is left out here.
    let all: BTreeSet<String> = Kind::ALL.into_iter().map(code).collect();
    assert_eq!(all.len(), Kind::ALL.len(), "two kinds share a code");
    // Kinds only source definitions (`--sources`) produce: their exact messages are checked by
    // the unit tests of src/source/definition.rs and by `untoil validate`'s tests in cli.rs
    // (which reads the sources directory), since these cases load runbooks alone.
    let from_sources = [code(Kind::DuplicateSource), code(Kind::UndefinedSource)];
    let missing: Vec<&String> = all
        .difference(&seen)
        .filter(|c| !from_sources.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "no golden case produces these diagnostic kinds: {missing:?}; add a folder under \
         tests/diagnostics with a runbook that shows each, and an expected.txt (UPDATE_GOLDEN=1)"
    );
    let unknown: Vec<&String> = seen.difference(&all).collect();
    assert!(unknown.is_empty(), "codes not in Kind::ALL: {unknown:?}");
}
