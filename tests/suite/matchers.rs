//! untoil's matcher parser accepts exactly the matcher strings Alertmanager 0.25 accepts: each
//! entry of tests/fixtures/matchers/corpus.txt is put in a route's `matchers:` list, checked by
//! the real `amtool check-config` (Debian package `prometheus-alertmanager`, installed by
//! scripts/test-deps), and parsed by `Matcher::parse_list`. Offline: amtool reads a file. Fails
//! loudly when amtool is not installed.

use std::process::Command;

use untoil::trigger::matcher::Matcher;

/// The entries of a file of tests/fixtures/matchers, decoded from their JSON string lines.
fn entries(file: &str) -> Vec<String> {
    let path = format!(
        "{}/tests/fixtures/matchers/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            serde_json::from_str::<String>(l)
                .unwrap_or_else(|e| panic!("{file} line {}: not a JSON string: {e}", i + 1))
        })
        .collect()
}

/// amtool's version line, failing when it is not installed or not 0.25.
fn require_amtool_0_25() {
    let version = Command::new("amtool").arg("--version").output().expect(
        "amtool (Debian package prometheus-alertmanager) must be installed: run scripts/test-deps",
    );
    let version = String::from_utf8_lossy(&version.stdout).to_string()
        + &String::from_utf8_lossy(&version.stderr);
    assert!(
        version.contains("version 0.25."),
        "the corpus is checked against Alertmanager 0.25 (Debian's); amtool says: {version}"
    );
}

/// Whether amtool accepts `matcher` as one item of a route's `matchers`, and what it said.
fn amtool_accepts(dir: &std::path::Path, n: usize, matcher: &str) -> (bool, String) {
    let config = dir.join(format!("alertmanager-{n}.yml"));
    // A JSON string is a YAML double-quoted scalar: the matcher reaches amtool unchanged.
    let quoted = serde_json::to_string(matcher).expect("a string encodes");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: default\n  routes:\n    - matchers: [{quoted}]\n\
             receivers:\n  - name: default\n"
        ),
    )
    .expect("write config");
    let out = Command::new("amtool")
        .arg("check-config")
        .arg(&config)
        .output()
        .expect("amtool (Debian package prometheus-alertmanager) must be installed: run scripts/test-deps");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_matcher_parser_accepts_exactly_what_amtool_0_25_accepts() {
    require_amtool_0_25();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut accepted, mut refused) = (0, 0);
    let mut disagreements = Vec::new();
    for (n, matcher) in entries("corpus.txt").iter().enumerate() {
        let (am, said) = amtool_accepts(dir.path(), n, matcher);
        let ours = Matcher::parse_list(matcher);
        if am {
            accepted += 1;
        } else {
            refused += 1;
        }
        if am != ours.is_ok() {
            disagreements.push(format!(
                "{matcher:?}: amtool {}, untoil {}\n  amtool: {}",
                if am { "accepts" } else { "refuses" },
                match &ours {
                    Ok(list) => format!("accepts ({} matchers)", list.len()),
                    Err(e) => format!("refuses ({e})"),
                },
                said.trim()
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "untoil and amtool disagree on {} of {} matchers:\n{}",
        disagreements.len(),
        accepted + refused,
        disagreements.join("\n")
    );
    assert!(
        accepted >= 20 && refused >= 20,
        "the corpus needs both kinds: {accepted} accepted, {refused} refused"
    );
}

#[test]
fn the_known_differences_from_amtool_still_differ() {
    require_amtool_0_25();
    let dir = tempfile::tempdir().expect("temp dir");
    for (n, matcher) in entries("known-differences.txt").iter().enumerate() {
        let (am, said) = amtool_accepts(dir.path(), n, matcher);
        assert!(am, "{matcher:?}: amtool refuses it now: {said}");
        assert!(
            Matcher::parse_list(matcher).is_err(),
            "{matcher:?}: untoil accepts it now; if it reads it as Go does, move it to corpus.txt"
        );
    }
}

#[test]
fn the_matcher_parser_agrees_with_amtool_on_strings_made_of_matcher_fragments() {
    // Beyond the corpus: strings stitched from the pieces of matcher syntax, the same ones on
    // every run (a fixed linear congruential sequence), each asked of amtool and of untoil.
    // (Class set operations, the known differences, are left out of the pieces.)
    require_amtool_0_25();
    const PIECES: &[&str] = &[
        "a", "job", ":", "_", "1", "=", "!", "~", "\"", "\\", ",", "{", "}", " ", "x", ".*", "(",
        ")", "é", "\n", "\t", "|", "=~", "!=", "\\\"", "\\Q", "\\E", "0", "2", "[", "]", "*", "+",
        "?", "\\p{L}", "\\d", "(?", "(?i)", "{2}", "{1,", "\\0", "\\1", "7",
    ];
    let mut state: u64 = 0x5eed;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut disagreements = Vec::new();
    for n in 0..300 {
        // Mostly `name op value` shapes, with pieces around them.
        let mut s = String::new();
        if next(3) == 0 {
            s.push('{');
        }
        s.push_str(["a", "job", "_x", ":a", "a:b"][next(5)]);
        s.push_str(["=", "!=", "=~", "!~"][next(4)]);
        for _ in 0..next(6) {
            s.push_str(PIECES[next(PIECES.len())]);
        }
        if next(3) == 0 {
            s.push('}');
        }
        let (am, said) = amtool_accepts(dir.path(), n, &s);
        let ours = Matcher::parse_list(&s);
        if am != ours.is_ok() {
            disagreements.push(format!(
                "{s:?}: amtool {}, untoil {:?}\n  amtool: {}",
                if am { "accepts" } else { "refuses" },
                ours.map(|l| l.len()),
                said.trim()
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "untoil and amtool disagree on {} strings:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
