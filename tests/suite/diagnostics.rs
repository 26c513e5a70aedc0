//! Golden tests: each folder under tests/diagnostics holds broken runbooks and the exact text
//! `untoil validate` prints for them (`expected.txt`). Set UPDATE_GOLDEN=1 to rewrite the
//! expected files after an intended change, then review the diff.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use untoil::runbook::catalog::load_texts;
use untoil::runbook::plugins::Plugins;

fn plugins() -> (tempfile::TempDir, Plugins) {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = dir.path().join("notify.sh");
    std::fs::write(&exe, "#!/bin/sh\n").expect("write plugin");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let plugins = Plugins::discover(dir.path());
    (dir, plugins)
}

fn render_case(dir: &Path) -> String {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("case dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = format!(
                "runbooks/{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
            (name, std::fs::read_to_string(&p).expect("read case"))
        })
        .collect();
    files.sort();
    let texts: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let (_keep, plugins) = plugins();
    let loaded = load_texts(&texts, &plugins);
    loaded.sources.render(&loaded.diagnostics)
}

#[test]
fn every_diagnostic_renders_exactly_as_expected() {
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
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let actual = render_case(case);
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
