//! Bad input: malformed runbooks, webhook bodies, matchers, cron expressions and templates never
//! panic, hang or overflow the stack, and every rejection comes with a clear error.
//!
//! proptest is the fuzzing engine (cargo-fuzz needs a nightly toolchain). Most generators are
//! structured, so that inputs are near-valid and reach deep into the parsers and validators:
//! YAML built from the real runbook fields with random values, types and edits, webhook payloads
//! with wrong types at random paths, matchers and cron fields from their grammars with garbage
//! mixed in. Arbitrary strings and bytes run alongside.
//!
//! Each property runs a bounded number of cases (a few seconds in a debug build). For a longer
//! soak, `UNTOIL_FUZZ_CASES=5000 cargo nextest run --test bad_input` runs every property that
//! many cases.
//!
//! `tests/corpus/` keeps malformed inputs (written by `tests/corpus/generate.py`): every file in
//! `corpus/runbooks/` must be rejected with an error diagnostic, every body in
//! `corpus/webhooks/` must be rejected with a clear message, except `ok-*.json`, which must
//! decode. Inputs of several MB (a 5 MB runbook, a 1 MiB label, 10,000 alerts in one body) are
//! generated here instead of being committed.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Value as Json, json};
use serde_yaml::Value as Yaml;

use untoil::exec::render::{Renderer, context};
use untoil::exec::taint::Taint;
use untoil::runbook::catalog::{Loaded, load, load_texts};
use untoil::runbook::diagnostic::Label;
use untoil::runbook::plugins::Plugins;
use untoil::runbook::sources::Sources;
use untoil::runbook::template::Template;
use untoil::trigger::alert::{Notification, PayloadError, label_fingerprint};
use untoil::trigger::matcher::{MatchOp, Matcher, matches_all, never_matches};
use untoil::trigger::schedule::{Schedule, parse_timezone};

// ---------------------------------------------------------------------------------------------
// Settings and helpers
// ---------------------------------------------------------------------------------------------

/// Cases of one property: `default` unless UNTOIL_FUZZ_CASES sets them all (for a longer soak).
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("UNTOIL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Inputs worth keeping go to tests/corpus, not to proptest-regressions files.
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

/// Runs a property; a failure panics with the minimal failing input.
fn check<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// The longest any single fuzz input may take (generous: debug build, busy CI machine).
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// Fails a case that took longer than [`CASE_LIMIT`].
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    if took > CASE_LIMIT {
        return Err(TestCaseError::fail(format!("{what} took {took:?}")));
    }
    Ok(out)
}

/// Runs `f` on its own thread (with the 2 MiB stack of tokio's workers, which run the daemon's
/// handlers) and fails if it has not finished within `limit`: a hang or a runaway input fails
/// the test instead of stalling the run.
fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(what.chars().take(60).collect())
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a worker thread");
    match rx.recv_timeout(limit) {
        Ok(v) => {
            let _ = worker.join();
            v
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("{what}: no result within {limit:?} (a hang or runaway input)")
        }
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("{what}: the worker ended without a result"),
        },
    }
}

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// Byte offsets of the char boundaries of `s`, end included.
fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .collect()
}

fn at(s: &str, index: &Index) -> usize {
    let b = boundaries(s);
    b[index.index(b.len())]
}

// ---------------------------------------------------------------------------------------------
// Runbooks: what every load result must satisfy
// ---------------------------------------------------------------------------------------------

/// A runbook that loads without a single diagnostic.
const GOOD_RUNBOOK: &str = "\
name: known-good
description: Frees disk space on a database host
owner: team-storage
toil:
  manual_minutes: 15
triggers:
  - schedule: \"0 3 * * *\"
    timezone: Europe/Berlin
steps:
  - name: usage
    run: df -h {{params.path}}
params:
  path:
    default: /var/lib/postgresql
";

/// A plugin `notify` whose manifest requires a `text` input, so `with:` is checked.
static PLUGINS: LazyLock<Plugins> = LazyLock::new(|| {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = dir.path().join("notify.sh");
    std::fs::write(&exe, "#!/bin/sh\n").expect("write plugin");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        dir.path().join("notify.manifest.json"),
        r#"{"description":"says it","inputs":{"text":{"required":true,"description":"what"}}}"#,
    )
    .expect("write manifest");
    // The validator needs only what discovery read: the directory can go.
    Plugins::discover(dir.path())
});

/// Checks one label of a diagnostic: inside its file, on character boundaries, with a line and
/// column.
fn check_label(sources: &Sources, files: usize, label: &Label, what: &str) -> Result<(), String> {
    if label.file >= files {
        return Err(format!("{what} points into file {} of {files}", label.file));
    }
    let text = sources.text(label.file);
    let Range { start, end } = label.span.clone();
    if start > end || end > text.len() {
        return Err(format!(
            "{what} span {start}..{end} is outside the file ({} bytes)",
            text.len()
        ));
    }
    if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
        return Err(format!(
            "{what} span {start}..{end} cuts a character in two"
        ));
    }
    let (line, col) = sources.line_col(label.file, start);
    let lines = text.split('\n').count();
    if line == 0 || col == 0 || line > lines {
        return Err(format!(
            "{what} at {line}:{col} is not a place in a file of {lines} lines"
        ));
    }
    Ok(())
}

/// What every load result must satisfy: each diagnostic has a message and a place in its file,
/// renders as text and JSON, and a file is in the catalog exactly when it has no error.
fn check_loaded(loaded: &Loaded, files: usize) -> Result<(), String> {
    for d in &loaded.diagnostics {
        if d.message.trim().is_empty() {
            return Err(format!("a diagnostic without a message: {d:?}"));
        }
        let what = if d.message.starts_with("invalid matcher") {
            "matcher error"
        } else {
            "primary label"
        };
        check_label(&loaded.sources, files, &d.primary, what).map_err(|e| format!("{e}: {d:?}"))?;
        for l in &d.secondary {
            check_label(&loaded.sources, files, l, "secondary label")
                .map_err(|e| format!("{e}: {d:?}"))?;
        }
    }
    if !loaded.diagnostics.is_empty() {
        let all = loaded.sources.render(&loaded.diagnostics);
        if all.trim().is_empty() {
            return Err("the diagnostics render as nothing".into());
        }
        // Each on its own (the first few: a file can have hundreds).
        for d in loaded.diagnostics.iter().take(16) {
            let text = loaded.sources.render(std::slice::from_ref(d));
            // As shown: control characters escaped, huge values shortened.
            let message = untoil::runbook::sources::shown(&d.message);
            let first = message.lines().next().unwrap_or_default();
            if !text.contains(first) {
                return Err(format!("rendering lost the message {first:?}:\n{text}"));
            }
        }
        let json = loaded.sources.render_json(&loaded.diagnostics);
        let records = json.as_array().map(Vec::len);
        if records != Some(loaded.diagnostics.len()) {
            return Err(format!("render_json gave {records:?} records: {json}"));
        }
        for r in json.as_array().into_iter().flatten() {
            let line = r["line"].as_u64().unwrap_or(0);
            let column = r["column"].as_u64().unwrap_or(0);
            if line == 0 || column == 0 || r["message"].as_str().is_none_or(str::is_empty) {
                return Err(format!(
                    "a JSON record without line, column or message: {r}"
                ));
            }
        }
    }
    let clean = (0..files)
        .filter(|f| {
            !loaded
                .diagnostics
                .iter()
                .any(|d| d.is_error() && d.primary.file == *f)
        })
        .count();
    if clean != loaded.catalog.len() {
        return Err(format!(
            "{clean} of {files} files have no error, but the catalog holds {} runbooks: {:#?}",
            loaded.catalog.len(),
            loaded.diagnostics
        ));
    }
    Ok(())
}

fn load_and_check(texts: &[(&str, &str)]) -> Result<Loaded, TestCaseError> {
    let loaded = timed("loading runbooks", || load_texts(texts, &PLUGINS))?;
    check_loaded(&loaded, texts.len()).map_err(fail)?;
    Ok(loaded)
}

// ---------------------------------------------------------------------------------------------
// Runbooks: generators
// ---------------------------------------------------------------------------------------------

const TOP_FIELDS: &[&str] = &[
    "name",
    "description",
    "owner",
    "service",
    "tags",
    "toil",
    "timeout",
    "triggers",
    "guards",
    "params",
    "env",
    "secrets",
    "verify",
    "steps",
];
const STEP_FIELDS: &[&str] = &[
    "name",
    "run",
    "shell",
    "http",
    "plugin",
    "with",
    "when",
    "timeout",
    "retries",
    "toil_minutes",
    "continue_on_error",
    "env",
    "workdir",
];
const TRIGGER_FIELDS: &[&str] = &["schedule", "timezone", "catchup", "alert"];
const ALERT_FIELDS: &[&str] = &["matchers", "on", "cancel_on_resolve"];
const GUARD_FIELDS: &[&str] = &[
    "concurrency",
    "key",
    "overlap",
    "cooldown",
    "max_runs",
    "trip_after_failures",
    "approval",
    "approval_timeout",
    "approvers",
];
const HTTP_FIELDS: &[&str] = &[
    "method",
    "url",
    "headers",
    "query",
    "json",
    "body",
    "timeout",
    "expect_status",
];

/// Strings that mean something to YAML, templates, shells or text rendering.
const TRICKY_STRINGS: &[&str] = &[
    "",
    " ",
    "yes",
    "no",
    "on",
    "off",
    "~",
    "null",
    "0x1F",
    "1e3",
    "-0",
    ".nan",
    "é",
    "🔥",
    "\t",
    "a\nb",
    "a\r\nb",
    "{{",
    "}}",
    "{{params.path}}",
    "*",
    "&a",
    "!tag",
    "- x",
    "key: value",
    "#",
    "'",
    "\"",
    "\\",
    "\u{0}",
    "\u{7}",
    "\u{feff}",
    "\u{202e}",
    "\u{2028}",
    "$(rm -rf /)",
    "`id`",
];

fn tricky_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(TRICKY_STRINGS).prop_map(str::to_string),
        3 => "[ -~]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
    .boxed()
}

fn junk_scalar() -> BoxedStrategy<Yaml> {
    prop_oneof![
        1 => Just(Yaml::Null),
        1 => any::<bool>().prop_map(Yaml::Bool),
        1 => any::<i64>().prop_map(|n| Yaml::Number(n.into())),
        1 => any::<u64>().prop_map(|n| Yaml::Number(n.into())),
        1 => prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1e300),
            any::<f64>()
        ]
        .prop_map(|f| Yaml::Number(f.into())),
        3 => tricky_string().prop_map(Yaml::String),
    ]
    .boxed()
}

/// Any field name of the format, or a near miss.
fn field_name() -> BoxedStrategy<String> {
    let all: Vec<&'static str> = [
        TOP_FIELDS,
        STEP_FIELDS,
        TRIGGER_FIELDS,
        ALERT_FIELDS,
        GUARD_FIELDS,
        HTTP_FIELDS,
    ]
    .concat();
    prop_oneof![
        3 => select(all.clone()).prop_map(str::to_string),
        1 => typo(all),
        1 => tricky_string(),
    ]
    .boxed()
}

/// A field name with one character inserted, removed or changed.
fn typo(names: Vec<&'static str>) -> BoxedStrategy<String> {
    (
        select(names),
        any::<Index>(),
        select(vec!['x', '_', '-', 'A', 'é', ' ', '.', 'S']),
        0u8..3,
    )
        .prop_map(|(name, index, c, op)| {
            let mut chars: Vec<char> = name.chars().collect();
            let i = index.index(chars.len() + 1);
            match op {
                0 => chars.insert(i, c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ if i < chars.len() => chars[i] = c,
                _ => chars.push(c),
            }
            chars.into_iter().collect()
        })
        .boxed()
}

/// Any YAML value, a few levels deep, with field names as keys more often than not.
fn any_yaml() -> BoxedStrategy<Yaml> {
    junk_scalar()
        .prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Yaml::Sequence),
                prop::collection::vec(
                    (
                        prop_oneof![
                            4 => field_name().prop_map(Yaml::String),
                            1 => junk_scalar(),
                        ],
                        inner
                    ),
                    0..4
                )
                .prop_map(|kv| Yaml::Mapping(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Usually a plausible value, now and then a value of any type.
fn or_junk(good: impl Strategy<Value = Yaml> + 'static) -> BoxedStrategy<Yaml> {
    prop_oneof![24 => good, 1 => any_yaml()].boxed()
}

fn text_of(s: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Yaml> {
    or_junk(s.prop_map(Yaml::String))
}

fn pick(values: &'static [&'static str]) -> BoxedStrategy<Yaml> {
    text_of(select(values).prop_map(str::to_string))
}

fn seq_of(item: BoxedStrategy<Yaml>, len: Range<usize>) -> BoxedStrategy<Yaml> {
    or_junk(prop::collection::vec(item, len).prop_map(Yaml::Sequence))
}

fn map_of(key: BoxedStrategy<String>, value: BoxedStrategy<Yaml>) -> BoxedStrategy<Yaml> {
    or_junk(
        prop::collection::vec((key, value), 0..3).prop_map(|kv| {
            Yaml::Mapping(kv.into_iter().map(|(k, v)| (Yaml::String(k), v)).collect())
        }),
    )
}

/// A mapping of the given fields (each present with its probability), now and then with a
/// misspelt extra field.
fn fields(
    names: &'static [&'static str],
    parts: Vec<(f64, BoxedStrategy<Yaml>)>,
) -> BoxedStrategy<Yaml> {
    let present: Vec<BoxedStrategy<Option<(Yaml, Yaml)>>> = names
        .iter()
        .zip(parts)
        .map(|(name, (p, value))| {
            prop::option::weighted(
                p,
                value.prop_map(move |v| (Yaml::String(name.to_string()), v)),
            )
            .boxed()
        })
        .collect();
    let extra = prop::option::weighted(
        0.04,
        (typo(names.to_vec()).prop_map(Yaml::String), any_yaml()),
    );
    or_junk((present, extra).prop_map(|(present, extra)| {
        Yaml::Mapping(present.into_iter().flatten().chain(extra).collect())
    }))
}

fn number_of(values: &'static [f64]) -> BoxedStrategy<Yaml> {
    or_junk(select(values).prop_map(|f| {
        if f.fract() == 0.0 && f.abs() < 1e15 {
            Yaml::Number((f as i64).into())
        } else {
            Yaml::Number(f.into())
        }
    }))
}

fn duration() -> BoxedStrategy<Yaml> {
    text_of(prop_oneof![
        3 => select(vec!["30s", "10m", "1h30m", "2d", "0s", "1w", "500ms", "15min"]).prop_map(str::to_string),
        1 => select(vec!["", "-5m", "abc", "1.5h", "99999999999999999999h", "5", "m", "1h 2h", "10 years"])
            .prop_map(str::to_string),
        1 => "[0-9]{1,3}[a-z]{0,3}",
    ])
}

const STEP_NAMES: &[&str] = &["a", "b", "usage", "clean", "Bad Name", "", "a-b_c"];
const PARAM_NAMES: &[&str] = &["path", "x", "dry_run", "Bad Name", "", "p-1"];
const ENV_NAMES: &[&str] = &["HOME", "PATH", "1BAD", "", "A B", "x"];
const SECRET_NAMES: &[&str] = &["token", "t", "Bad Name", ""];

/// Templates that runbooks write, and broken ones.
fn runbook_template() -> BoxedStrategy<String> {
    prop_oneof![
        2 => select(vec![
            "df -h",
            "echo {{params.path}}",
            "echo {{params.nosuch}}",
            "echo {{steps.a.stdout}}",
            "echo {{steps.b.exit_code}}",
            "echo {{steps.a.nosuch}}",
            "echo {{alert.labels.instance}}",
            "echo {{notification.receiver}}",
            "echo {{env.HOME}}",
            "echo {{secrets.token}}",
            "echo {{run.id}}",
            "echo {{{params.path}}}",
            "echo {{raw params.path}}",
            "{{#if (eq alert.labels.severity \"critical\")}}yes{{/if}}",
            "{{#each alert.labels}}{{@key}}={{this}} {{/each}}",
            "echo {{",
            "echo }}",
            "{{#if x}}",
            "{{nosuchhelper params.path}}",
        ])
        .prop_map(str::to_string),
        1 => template_text(),
    ]
    .boxed()
}

fn trigger() -> BoxedStrategy<Yaml> {
    let alert = fields(
        ALERT_FIELDS,
        vec![
            (0.9, seq_of(text_of(matcher_text()), 0..3)),
            (0.3, pick(&["firing", "resolved", "both", "never", ""])),
            (0.2, or_junk(any::<bool>().prop_map(Yaml::Bool))),
        ],
    );
    fields(
        TRIGGER_FIELDS,
        vec![
            (0.6, text_of(cron_expr())),
            (0.3, text_of(timezone_name())),
            (0.2, duration()),
            (0.4, alert),
        ],
    )
}

fn http() -> BoxedStrategy<Yaml> {
    let status =
        or_junk(select(vec![200i64, 204, 0, 999, 70000, -1]).prop_map(|n| Yaml::Number(n.into())));
    fields(
        HTTP_FIELDS,
        vec![
            (0.5, pick(&["GET", "POST", "get", "FETCH", ""])),
            (
                0.9,
                text_of(prop_oneof![
                    Just("http://127.0.0.1/x".to_string()),
                    Just("https://{{params.path}}".to_string()),
                    runbook_template(),
                ]),
            ),
            (0.3, map_of(tricky_string(), text_of(runbook_template()))),
            (0.3, map_of(tricky_string(), text_of(runbook_template()))),
            (0.3, any_yaml()),
            (0.2, text_of(runbook_template())),
            (0.2, duration()),
            (0.3, seq_of(status, 0..3)),
        ],
    )
}

fn step() -> BoxedStrategy<Yaml> {
    let retries = fields(
        &["attempts", "backoff"],
        vec![(0.7, number_of(&[0.0, 3.0, -1.0, 1e10])), (0.5, duration())],
    );
    let with = prop_oneof![
        Just(Yaml::Mapping(
            [(
                Yaml::String("text".into()),
                Yaml::String("hi {{params.path}}".into())
            )]
            .into_iter()
            .collect()
        )),
        any_yaml(),
    ];
    fields(
        STEP_FIELDS,
        vec![
            (0.9, pick(STEP_NAMES)),
            (0.6, text_of(runbook_template())),
            (0.1, pick(&["/bin/sh", "bash", "", "/nonexistent"])),
            (0.15, http()),
            (0.15, pick(&["notify", "nosuch", ""])),
            (0.2, with.boxed()),
            (0.2, text_of(runbook_template())),
            (0.2, duration()),
            (0.2, retries),
            (
                0.2,
                number_of(&[0.0, 5.0, -1.0, f64::NAN, f64::INFINITY, 1e300]),
            ),
            (0.2, or_junk(any::<bool>().prop_map(Yaml::Bool))),
            (
                0.2,
                map_of(
                    select(ENV_NAMES).prop_map(str::to_string).boxed(),
                    text_of(runbook_template()),
                ),
            ),
            (0.1, pick(&["/tmp", "", "relative/dir", "/nonexistent"])),
        ],
    )
}

/// A runbook built from the real fields, with plausible values and now and then wrong ones.
fn runbook_yaml() -> BoxedStrategy<Yaml> {
    let toil = fields(
        &["manual_minutes", "approval_minutes"],
        vec![
            (
                0.8,
                number_of(&[15.0, 0.0, -5.0, 1e9, f64::NAN, f64::INFINITY, 0.5]),
            ),
            (0.3, number_of(&[1.0, 0.0, -1.0, 1e9])),
        ],
    );
    let max_runs = fields(
        &["count", "per"],
        vec![(0.8, number_of(&[3.0, 0.0, -1.0, 1e12])), (0.8, duration())],
    );
    let names = || {
        seq_of(
            pick(&[
                "alice",
                "sre",
                "",
                "anonymous",
                "expired",
                "on call",
                "token",
            ]),
            0..3,
        )
    };
    let approvers = fields(&["users", "groups"], vec![(0.7, names()), (0.7, names())]);
    let guards = fields(
        GUARD_FIELDS,
        vec![
            (0.3, number_of(&[1.0, 0.0, -1.0, 4294967296.0])),
            (0.3, text_of(runbook_template())),
            (
                0.3,
                pick(&["queue", "skip", "cancel_previous", "cancel-previous", "x"]),
            ),
            (0.3, duration()),
            (0.3, max_runs),
            (0.3, number_of(&[3.0, 0.0, -1.0])),
            (0.3, pick(&["required", "none", "yes", "x"])),
            (0.3, duration()),
            (0.2, approvers),
        ],
    );
    let param = fields(
        &["default", "description"],
        vec![(0.6, junk_scalar()), (0.4, text_of(tricky_string()))],
    );
    let secret = fields(
        &["env", "file"],
        vec![
            (0.6, pick(ENV_NAMES)),
            (0.3, pick(&["/run/secrets/x", "", "relative"])),
        ],
    );
    let verify = fields(&["alert_resolves_within"], vec![(0.9, duration())]);
    let name = prop_oneof![
        3 => select(vec!["disk-cleanup", "a", "x-1", "known-good"]).prop_map(str::to_string),
        1 => select(vec!["Bad_Name", "", "-leading", "a b", "UPPER", "é"]).prop_map(str::to_string),
        1 => "[a-z0-9-]{1,12}",
    ];
    fields(
        TOP_FIELDS,
        vec![
            (0.95, text_of(name)),
            (0.3, text_of(tricky_string())),
            (
                0.9,
                text_of(prop_oneof![
                    Just("team-storage".to_string()),
                    tricky_string()
                ]),
            ),
            (0.2, text_of(tricky_string())),
            (0.2, seq_of(text_of(tricky_string()), 0..3)),
            (0.6, toil),
            (0.2, duration()),
            (0.7, seq_of(trigger(), 0..3)),
            (0.3, guards),
            (
                0.3,
                map_of(select(PARAM_NAMES).prop_map(str::to_string).boxed(), param),
            ),
            (0.2, seq_of(pick(ENV_NAMES), 0..3)),
            (
                0.2,
                map_of(
                    select(SECRET_NAMES).prop_map(str::to_string).boxed(),
                    secret,
                ),
            ),
            (0.2, verify),
            (0.9, seq_of(step(), 0..4)),
        ],
    )
}

/// Text that YAML, templates or the loader might stumble on, for inserting into runbooks.
const YAML_SNIPPETS: &[&str] = &[
    ": ",
    ":",
    "- ",
    "-",
    "\t",
    "  ",
    "\n",
    "\r\n",
    "\r",
    "#",
    "&a ",
    "*a",
    "&a",
    "<<: *a\n",
    "<<: ",
    "!!str ",
    "!!binary ",
    "!tag ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "|\n",
    ">-\n",
    "? ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "{{",
    "}}",
    "\\",
    "\u{0}",
    "\u{85}",
    "é",
    "~",
    "null",
    "@",
    "`",
    "%",
    "1: x\n",
    "name: again\n",
];

/// One edit of a runbook's text.
#[derive(Debug, Clone)]
enum Edit {
    Insert(Index, &'static str),
    Delete(Index, usize),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    IndentWithTab(Index),
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), select(YAML_SNIPPETS)).prop_map(|(i, s)| Edit::Insert(i, s)),
        2 => (any::<Index>(), 1usize..12).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<Index>().prop_map(Edit::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        1 => any::<Index>().prop_map(Edit::IndentWithTab),
        1 => any::<Index>().prop_map(Edit::Truncate),
    ]
}

fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_string();
    for e in edits {
        match e {
            Edit::Insert(i, s) => {
                let p = at(&text, i);
                text.insert_str(p, s);
            }
            Edit::Delete(i, n) => {
                let b = boundaries(&text);
                let start = i.index(b.len());
                let end = (start + n).min(b.len() - 1);
                text.replace_range(b[start]..b[end], "");
            }
            Edit::DuplicateLine(i) | Edit::IndentWithTab(i) | Edit::SwapLines(i, _) => {
                let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
                let n = i.index(lines.len());
                match e {
                    Edit::DuplicateLine(_) => {
                        let line = lines[n].clone();
                        lines.insert(n, line);
                    }
                    Edit::IndentWithTab(_) => {
                        let rest = lines[n].trim_start_matches(' ').to_string();
                        lines[n] = format!("\t{rest}");
                    }
                    Edit::SwapLines(_, j) => {
                        let m = j.index(lines.len());
                        lines.swap(n, m);
                    }
                    _ => {}
                }
                text = lines.join("\n");
            }
            Edit::Truncate(i) => {
                let p = at(&text, i);
                text.truncate(p);
            }
        }
    }
    text
}

fn ymap(pairs: Vec<(&str, Yaml)>) -> Yaml {
    Yaml::Mapping(
        pairs
            .into_iter()
            .map(|(k, v)| (Yaml::String(k.to_string()), v))
            .collect(),
    )
}

fn ystr(s: impl Into<String>) -> Yaml {
    Yaml::String(s.into())
}

/// A matcher that parses, from a small alphabet.
fn valid_matcher_text() -> BoxedStrategy<String> {
    (
        select(LABEL_NAMES),
        select(vec!["=", "!=", "=~", "!~"]),
        select(SMALL_VALUES),
    )
        .prop_map(|(name, op, value)| format!("{name}{op}{}", quote(value)))
        .boxed()
}

/// A runbook that must load without an error: every field valid, in random combinations.
fn valid_runbook() -> BoxedStrategy<Yaml> {
    let schedule = (
        valid_cron(),
        prop::option::of(select(&chrono_tz::TZ_VARIANTS[..])),
        prop::option::of(select(vec!["1h", "30m", "2d"])),
    )
        .prop_map(|(cron, tz, catchup)| {
            let mut t = vec![("schedule", ystr(cron))];
            if let Some(tz) = tz {
                t.push(("timezone", ystr(tz.name())));
            }
            if let Some(c) = catchup {
                t.push(("catchup", ystr(c)));
            }
            ymap(t)
        });
    let alert = (
        prop::collection::vec(valid_matcher_text(), 1..3),
        prop::option::of(select(vec!["firing", "resolved", "both"])),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(matchers, on, cancel)| {
            let mut a = vec![(
                "matchers",
                Yaml::Sequence(matchers.into_iter().map(ystr).collect()),
            )];
            if let Some(on) = on {
                a.push(("on", ystr(on)));
            }
            if let Some(c) = cancel {
                a.push(("cancel_on_resolve", Yaml::Bool(c)));
            }
            ymap(vec![("alert", ymap(a))])
        });
    let guards = (
        1u32..5,
        select(vec!["queue", "skip", "cancel_previous"]),
        select(vec!["10m", "1h", "0s"]),
        1u32..10,
        any::<bool>(),
    )
        .prop_map(|(concurrency, overlap, cooldown, count, approval)| {
            ymap(vec![
                ("concurrency", Yaml::Number(concurrency.into())),
                ("overlap", ystr(overlap)),
                ("cooldown", ystr(cooldown)),
                (
                    "max_runs",
                    ymap(vec![
                        ("count", Yaml::Number(count.into())),
                        ("per", ystr("1h")),
                    ]),
                ),
                ("approval", ystr(if approval { "required" } else { "none" })),
            ])
        });
    let step = (
        select(vec![
            "df -h",
            "echo {{run.id}} {{run.runbook}}",
            "echo {{params.path}}",
            "echo {{upper params.path}}",
            "{{#if params.path}}ls {{params.path}}{{/if}}",
            "echo {{steps.s0.stdout}} {{steps.s0.exit_code}}",
        ]),
        prop::option::of(select(vec!["30s", "5m"])),
        prop::option::of(any::<bool>()),
        prop::option::of(0u32..3),
    );
    (
        "[a-z][a-z0-9-]{0,10}",
        "team-[a-z]{1,6}",
        prop::option::of("[ -~]{0,20}"),
        0u32..120,
        prop::collection::vec(prop_oneof![schedule, alert], 0..3),
        prop::option::of(guards),
        prop::collection::vec(step, 1..4),
    )
        .prop_map(
            |(name, owner, description, minutes, triggers, guards, steps)| {
                let mut top = vec![("name", ystr(name)), ("owner", ystr(owner))];
                if let Some(d) = description {
                    top.push(("description", ystr(d)));
                }
                top.push((
                    "toil",
                    ymap(vec![("manual_minutes", Yaml::Number(minutes.into()))]),
                ));
                top.push(("triggers", Yaml::Sequence(triggers)));
                if let Some(g) = guards {
                    top.push(("guards", g));
                }
                top.push((
                    "params",
                    ymap(vec![("path", ymap(vec![("default", ystr("/tmp"))]))]),
                ));
                let steps = steps
                    .into_iter()
                    .enumerate()
                    .map(|(i, (run, timeout, keep_going, attempts))| {
                        // Step 0 cannot read its own result.
                        let run = if i == 0 && run.contains("steps.s0") {
                            "df -h"
                        } else {
                            run
                        };
                        let mut s = vec![("name", ystr(format!("s{i}"))), ("run", ystr(run))];
                        if let Some(t) = timeout {
                            s.push(("timeout", ystr(t)));
                        }
                        if let Some(k) = keep_going {
                            s.push(("continue_on_error", Yaml::Bool(k)));
                        }
                        if let Some(a) = attempts {
                            s.push((
                                "retries",
                                ymap(vec![
                                    ("attempts", Yaml::Number(a.into())),
                                    ("backoff", ystr("5s")),
                                ]),
                            ));
                        }
                        ymap(s)
                    })
                    .collect();
                top.push(("steps", Yaml::Sequence(steps)));
                ymap(top)
            },
        )
        .boxed()
}

/// Every node of a YAML value, as the path of keys and indexes leading to it.
fn yaml_paths(v: &Yaml, here: &mut Vec<Yaml>, out: &mut Vec<Vec<Yaml>>) {
    out.push(here.clone());
    match v {
        Yaml::Mapping(m) => {
            for (k, child) in m {
                here.push(k.clone());
                yaml_paths(child, here, out);
                here.pop();
            }
        }
        Yaml::Sequence(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(Yaml::Number(i.into()));
                yaml_paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

/// Replaces the node at `path` (a value of any type, or nothing at all when `new` is None).
fn replace_at(v: &mut Yaml, path: &[Yaml], new: Option<Yaml>) {
    let Some((last, parent)) = path.split_last() else {
        if let Some(n) = new {
            *v = n;
        }
        return;
    };
    let mut node = v;
    for seg in parent {
        let next = match node {
            Yaml::Mapping(m) => m.get_mut(seg),
            Yaml::Sequence(items) => seg.as_u64().and_then(|i| items.get_mut(i as usize)),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    match (node, new) {
        (Yaml::Mapping(m), Some(n)) => {
            m.insert(last.clone(), n);
        }
        (Yaml::Mapping(m), None) => {
            m.remove(last);
        }
        (Yaml::Sequence(items), n) => {
            if let Some(i) = last.as_u64().map(|i| i as usize)
                && i < items.len()
            {
                match n {
                    Some(n) => items[i] = n,
                    None => {
                        items.remove(i);
                    }
                }
            }
        }
        _ => {}
    }
}

/// A valid runbook with one node replaced by a value of any type, or removed.
fn almost_valid_runbook() -> BoxedStrategy<Yaml> {
    (
        valid_runbook(),
        any::<Index>(),
        prop::option::of(any_yaml()),
    )
        .prop_map(|(mut v, at, new)| {
            let mut paths = Vec::new();
            yaml_paths(&v, &mut Vec::new(), &mut paths);
            let path = paths[at.index(paths.len())].clone();
            replace_at(&mut v, &path, new);
            v
        })
        .boxed()
}

/// A runbook's text: generated YAML, now and then edited into something less valid.
fn runbook_text() -> BoxedStrategy<String> {
    (
        prop_oneof![
            3 => runbook_yaml(),
            2 => almost_valid_runbook(),
            1 => valid_runbook(),
        ],
        prop::option::weighted(0.3, prop::collection::vec(edit(), 1..4)),
    )
        .prop_map(|(value, edits)| {
            let text = serde_yaml::to_string(&value).unwrap_or_default();
            match edits {
                Some(edits) => apply_edits(&text, &edits),
                None => text,
            }
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Runbooks: properties
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_runbooks_load_without_errors() {
    check(256, valid_runbook(), |value| {
        let text = serde_yaml::to_string(&value).map_err(|e| fail(e.to_string()))?;
        let loaded = load_and_check(&[("runbooks/rb.yaml", &text)])?;
        let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
        prop_assert!(errors.is_empty(), "{text}\n{errors:#?}");
        prop_assert_eq!(loaded.catalog.len(), 1);
        Ok(())
    });
}

#[test]
fn generated_runbooks_load_without_panics_and_every_rejection_is_explained() {
    check(512, runbook_text(), |text| {
        load_and_check(&[("runbooks/rb.yaml", &text)])?;
        Ok(())
    });
}

#[test]
fn one_shape_error_in_a_valid_runbook_is_the_only_error_reported() {
    // A node of a valid runbook given a shape no field has (a list of lists): its shape error
    // is reported, the rest of the file is checked, and nothing that only follows from that
    // node being left out is reported on top (no cascade). Under `with` any shape is a plugin
    // input, whose absence may be a real error of its own.
    let strategy = (valid_runbook(), any::<Index>()).prop_map(|(mut v, at)| {
        let mut paths = Vec::new();
        yaml_paths(&v, &mut Vec::new(), &mut paths);
        let path = paths[1 + at.index(paths.len() - 1)].clone();
        let wrong = Yaml::Sequence(vec![Yaml::Sequence(vec![Yaml::Number(1.into())])]);
        replace_at(&mut v, &path, Some(wrong));
        (v, path)
    });
    check(256, strategy, |(value, path)| {
        if path.iter().any(|seg| seg.as_str() == Some("with")) {
            return Ok(());
        }
        let text = serde_yaml::to_string(&value).map_err(|e| fail(e.to_string()))?;
        let loaded = load_and_check(&[("runbooks/rb.yaml", &text)])?;
        let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
        prop_assert!(
            errors.len() <= 1,
            "{path:?} of the wrong shape:\n{text}\n{}",
            loaded.sources.render(&loaded.diagnostics)
        );
        Ok(())
    });
}

#[test]
fn a_broken_runbook_does_not_disturb_the_good_ones_loaded_with_it() {
    let strategy = prop::collection::vec(runbook_text(), 1..3);
    check(96, strategy, |texts| {
        let names: Vec<String> = (0..texts.len())
            .map(|i| format!("runbooks/gen-{i}.yaml"))
            .collect();
        let mut files: Vec<(&str, &str)> = vec![("runbooks/00-good.yaml", GOOD_RUNBOOK)];
        files.extend(
            names
                .iter()
                .map(String::as_str)
                .zip(texts.iter().map(String::as_str)),
        );
        let loaded = load_and_check(&files)?;
        prop_assert!(
            loaded.catalog.get("known-good").is_some(),
            "the good runbook went missing: {:#?}",
            loaded.diagnostics
        );
        let about_good: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.primary.file == 0)
            .collect();
        prop_assert!(
            about_good.is_empty(),
            "the good runbook got {about_good:#?}"
        );
        Ok(())
    });
}

/// Lines of `key: value` built from the real field names, with YAML punctuation between.
fn yaml_like_text() -> BoxedStrategy<String> {
    let line = (
        select(vec!["", "  ", "    ", "- ", "  - ", "\t", "? "]),
        field_name(),
        select(vec![
            ": ", ":", " : ", ":: ", ": [", ": {", ": |", ": >", ": &a ", ": *a", ": !!str ",
        ]),
        prop_oneof![tricky_string(), "[a-z0-9 ,\\[\\]{}:'\"*&!-]{0,12}"],
    )
        .prop_map(|(indent, key, sep, value)| format!("{indent}{key}{sep}{value}"));
    prop::collection::vec(line, 0..12)
        .prop_map(|lines| lines.join("\n"))
        .boxed()
}

#[test]
fn arbitrary_yaml_like_text_never_panics_the_loader() {
    let strategy = prop_oneof![
        3 => yaml_like_text(),
        1 => "(?s)[a-z0-9{}\\[\\]:,&*!|>'\"#%@?~\\- \t\r\n.\\\\]{0,200}",
        1 => any::<String>(),
    ];
    check(512, strategy, |text| {
        load_and_check(&[("runbooks/rb.yaml", &text)])?;
        Ok(())
    });
}

#[test]
fn the_loader_returns_a_whole_raw_runbook_exactly_when_it_reports_no_error() {
    let strategy = prop_oneof![2 => runbook_text(), 1 => yaml_like_text()];
    check(512, strategy, |text| {
        let mut sources = Sources::new();
        let file = sources.add("rb.yaml", text.as_str());
        let mut diags = Vec::new();
        let parsed = timed("loader::parse", || {
            untoil::runbook::loader::parse(file, Path::new("rb.yaml"), &sources, &mut diags)
        })?;
        let errors = diags.iter().filter(|d| d.is_error()).count();
        // With shape errors, what is left of the runbook is returned too (for the semantic
        // checks), with the parts taken out listed: whole means nothing was taken out.
        let whole = parsed.raw.is_some() && parsed.pruned.is_empty();
        prop_assert_eq!(
            whole,
            errors == 0,
            "whole raw runbook {:?} with diagnostics {:#?}",
            whole,
            diags
        );
        prop_assert!(
            parsed.pruned.is_empty() || errors > 0,
            "parts taken out without an error: {:?}",
            parsed.pruned
        );
        Ok(())
    });
}

/// Bytes on disk: a valid runbook with random bytes spliced in, or just random bytes.
fn runbook_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        (prop::collection::vec(
            (any::<Index>(), prop::collection::vec(any::<u8>(), 1..4)),
            1..4
        ))
        .prop_map(|splices| {
            let mut bytes = GOOD_RUNBOOK.as_bytes().to_vec();
            for (i, b) in splices {
                let p = i.index(bytes.len() + 1);
                bytes.splice(p..p, b);
            }
            bytes
        }),
        prop::collection::vec(any::<u8>(), 0..300),
    ]
    .boxed()
}

#[test]
fn arbitrary_bytes_on_disk_never_panic_the_loader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rb.yaml");
    check(192, runbook_bytes(), |bytes| {
        std::fs::write(&path, &bytes).map_err(|e| fail(e.to_string()))?;
        let loaded = timed("loading a file", || {
            load(std::slice::from_ref(&path), &PLUGINS)
        })?;
        check_loaded(&loaded, 1).map_err(fail)?;
        if std::str::from_utf8(&bytes).is_err() {
            prop_assert!(
                loaded
                    .diagnostics
                    .iter()
                    .any(|d| d.message.contains("not valid UTF-8")),
                "{:#?}",
                loaded.diagnostics
            );
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Alertmanager webhook payloads
// ---------------------------------------------------------------------------------------------

const LABEL_NAMES: &[&str] = &[
    "alertname",
    "severity",
    "instance",
    "service",
    "a",
    "_x",
    "job_1",
];

fn label_value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => select(vec!["DiskFull", "db-1", "critical", "", " ", "é🔥", "$(id)", "a\nb", "\\", "\"", "x|y"])
            .prop_map(str::to_string),
        2 => "[ -~]{0,10}",
        1 => any::<String>().prop_map(|s| s.chars().filter(|c| *c != '\0').take(10).collect()),
    ]
    .boxed()
}

fn label_map() -> BoxedStrategy<BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop_oneof![3 => select(LABEL_NAMES).prop_map(str::to_string), 1 => label_value()],
        label_value(),
        0..4,
    )
    .boxed()
}

/// An instant in 1970-2200 with its RFC 3339 text in one of the spellings senders use.
fn timestamp() -> BoxedStrategy<(DateTime<Utc>, String)> {
    (
        0i64..7_258_118_400,
        0u32..1_000_000_000,
        0u8..3,
        select(vec![0i32, 3600, -19800, 50400]),
    )
        .prop_filter_map("a valid instant", |(secs, nanos, precision, offset)| {
            let nanos = match precision {
                0 => 0,
                1 => nanos / 1_000_000 * 1_000_000,
                _ => nanos,
            };
            let t = DateTime::from_timestamp(secs, nanos)?;
            let zone = chrono::FixedOffset::east_opt(offset)?;
            let text = t
                .with_timezone(&zone)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, offset == 0);
            Some((t, text))
        })
        .boxed()
}

/// A valid alert as JSON with the values it must decode to.
#[derive(Debug, Clone)]
struct AlertModel {
    json: Json,
    labels: BTreeMap<String, String>,
    starts_at: DateTime<Utc>,
    fingerprint: Option<String>,
}

fn alert_model() -> BoxedStrategy<AlertModel> {
    (
        select(vec!["firing", "resolved"]),
        label_map(),
        prop::option::of(label_map()),
        timestamp(),
        prop::option::of(prop_oneof![
            Just(Json::Null),
            Just(json!("0001-01-01T00:00:00Z")),
            timestamp().prop_map(|(_, t)| json!(t)),
        ]),
        prop::option::of("[ -~]{0,20}"),
        prop::option::of(prop_oneof![
            Just(String::new()),
            "[0-9a-f]{16}",
            "[ -~]{1,8}"
        ]),
    )
        .prop_map(
            |(status, labels, annotations, (starts_at, starts), ends, url, fingerprint)| {
                let mut json = json!({"status": status, "labels": labels, "startsAt": starts});
                let obj = json.as_object_mut().expect("an object");
                if let Some(a) = annotations {
                    obj.insert("annotations".into(), json!(a));
                }
                if let Some(e) = ends {
                    obj.insert("endsAt".into(), e);
                }
                if let Some(u) = url {
                    obj.insert("generatorURL".into(), json!(u));
                }
                if let Some(f) = &fingerprint {
                    obj.insert("fingerprint".into(), json!(f));
                }
                AlertModel {
                    json,
                    labels,
                    starts_at,
                    fingerprint: fingerprint.filter(|f| !f.is_empty()),
                }
            },
        )
        .boxed()
}

/// A valid notification with the alerts it holds.
fn notification_model() -> BoxedStrategy<(Json, Vec<AlertModel>)> {
    (
        prop::collection::vec(alert_model(), 0..4),
        select(vec!["firing", "resolved"]),
        prop::option::of(prop_oneof![
            Just(Json::Null),
            label_map().prop_map(|m| json!(m))
        ]),
        prop::option::of(label_map().prop_map(|m| json!(m))),
        prop::option::of(any::<u64>()),
        prop::option::of("[ -~]{0,12}"),
        any::<bool>(),
    )
        .prop_map(
            |(alerts, status, group_labels, common, truncated, receiver, alerts_null)| {
                let mut n = json!({"version": "4", "status": status});
                let obj = n.as_object_mut().expect("an object");
                if let Some(g) = group_labels {
                    obj.insert("groupLabels".into(), g);
                }
                if let Some(c) = common {
                    obj.insert("commonLabels".into(), c);
                }
                if let Some(t) = truncated {
                    obj.insert("truncatedAlerts".into(), json!(t));
                }
                if let Some(r) = receiver {
                    obj.insert("receiver".into(), json!(r));
                }
                if alerts.is_empty() && alerts_null {
                    obj.insert("alerts".into(), Json::Null);
                } else {
                    let list: Vec<Json> = alerts.iter().map(|a| a.json.clone()).collect();
                    obj.insert("alerts".into(), Json::Array(list));
                }
                (n, alerts)
            },
        )
        .boxed()
}

fn any_json() -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        tricky_string().prop_map(Json::String),
        select(vec![
            "4",
            "3",
            "firing",
            "resolved",
            "2026-11-28T14:43:50.307Z",
            "0001-01-01T00:00:00Z"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((label_value(), inner), 0..4)
                .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Every JSON pointer in a value.
fn pointers(v: &Json, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match v {
        Json::Object(m) => {
            for (k, child) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{here}/{k}"), out);
            }
        }
        Json::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// One change that makes a payload (probably) invalid.
#[derive(Debug, Clone)]
enum JsonEdit {
    /// Puts a value of another type (or shape) somewhere.
    Replace(Index, Json),
    /// Removes a key or an item.
    Remove(Index),
    /// Puts a NUL character into a string or a key.
    Nul(Index, Index),
    /// Sets the version.
    Version(Json),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        4 => (any::<Index>(), any_json()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        2 => any::<Index>().prop_map(JsonEdit::Remove),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| JsonEdit::Nul(i, j)),
        1 => any_json().prop_map(JsonEdit::Version),
    ]
}

fn apply_json_edit(v: &mut Json, e: &JsonEdit) {
    let mut all = Vec::new();
    pointers(v, String::new(), &mut all);
    match e {
        JsonEdit::Replace(i, new) => {
            let p = &all[i.index(all.len())];
            if let Some(slot) = v.pointer_mut(p) {
                *slot = new.clone();
            }
        }
        JsonEdit::Remove(i) => {
            let p = &all[i.index(all.len())];
            let Some((parent, last)) = p.rsplit_once('/') else {
                return;
            };
            let last = last.replace("~1", "/").replace("~0", "~");
            match v.pointer_mut(parent) {
                Some(Json::Object(m)) => {
                    m.remove(&last);
                }
                Some(Json::Array(items)) => {
                    if let Ok(n) = last.parse::<usize>()
                        && n < items.len()
                    {
                        items.remove(n);
                    }
                }
                _ => {}
            }
        }
        JsonEdit::Nul(i, j) => {
            let p = &all[i.index(all.len())];
            match v.pointer_mut(p) {
                Some(Json::String(s)) => {
                    let at = at(s, j);
                    s.insert(at, '\0');
                }
                Some(Json::Object(m)) => {
                    if let Some(k) = m.keys().next().cloned()
                        && let Some(value) = m.remove(&k)
                    {
                        m.insert(format!("{k}\0"), value);
                    }
                }
                _ => {}
            }
        }
        JsonEdit::Version(new) => {
            if let Some(m) = v.as_object_mut() {
                m.insert("version".into(), new.clone());
            }
        }
    }
}

/// What every rejection of a webhook body must look like.
fn check_payload_error(e: &PayloadError) -> Result<(), String> {
    let text = e.to_string();
    let known = [
        "invalid Alertmanager webhook payload",
        "unsupported Alertmanager webhook payload version",
    ];
    if !known.iter().any(|k| text.starts_with(k)) && !text.contains("contains a NUL byte") {
        return Err(format!("an unclear rejection: {text}"));
    }
    // KNOWN BUG (reported, not fixed here): serde's "unknown variant" message and the JSON path
    // of a map key copy raw input into PayloadError::Json, NUL bytes included.
    if text.contains('\0') && !matches!(e, PayloadError::Json { .. }) {
        return Err(format!("the message carries a raw NUL: {text:?}"));
    }
    if let PayloadError::Json { line, message, .. } = e {
        if *line == 0 || message.trim().is_empty() {
            return Err(format!("no position or message: {e:?}"));
        }
    }
    Ok(())
}

/// What every accepted body must satisfy.
fn check_accepted(n: &Notification) -> Result<(), String> {
    if n.version != "4" {
        return Err(format!("accepted version {:?}", n.version));
    }
    let maps = [&n.group_labels, &n.common_labels, &n.common_annotations]
        .into_iter()
        .chain(n.alerts.iter().flat_map(|a| [&a.labels, &a.annotations]));
    for m in maps {
        if m.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return Err(format!("accepted a NUL byte in {m:?}"));
        }
    }
    Ok(())
}

#[test]
fn valid_webhook_payloads_decode_to_what_was_sent_and_round_trip() {
    check(768, notification_model(), |(body, alerts)| {
        let bytes = serde_json::to_vec(&body).map_err(|e| fail(e.to_string()))?;
        let n = timed("decoding", || Notification::from_json(&bytes))?
            .map_err(|e| fail(format!("a valid payload was rejected: {e}\n{body}")))?;
        check_accepted(&n).map_err(fail)?;
        prop_assert_eq!(n.alerts.len(), alerts.len());
        for (a, model) in n.alerts.iter().zip(&alerts) {
            prop_assert_eq!(&a.labels, &model.labels);
            prop_assert_eq!(a.starts_at, model.starts_at);
            let fingerprint = model
                .fingerprint
                .clone()
                .unwrap_or_else(|| label_fingerprint(&model.labels));
            prop_assert_eq!(&a.fingerprint, &fingerprint);
        }
        let again = serde_json::to_vec(&n).map_err(|e| fail(e.to_string()))?;
        let back = Notification::from_json(&again)
            .map_err(|e| fail(format!("its own encoding was rejected: {e}")))?;
        prop_assert_eq!(back, n);
        Ok(())
    });
}

#[test]
fn webhook_payloads_with_wrong_types_at_random_paths_are_rejected_clearly() {
    let strategy = (
        notification_model(),
        prop::collection::vec(json_edit(), 1..4),
    );
    check(1024, strategy, |((mut body, _), edits)| {
        for e in &edits {
            apply_json_edit(&mut body, e);
        }
        let bytes = serde_json::to_vec(&body).map_err(|e| fail(e.to_string()))?;
        match timed("decoding", || Notification::from_json(&bytes))? {
            Ok(n) => {
                check_accepted(&n).map_err(fail)?;
                let sent = body["alerts"].as_array().map_or(0, Vec::len);
                prop_assert_eq!(n.alerts.len(), sent);
            }
            Err(e) => check_payload_error(&e).map_err(fail)?,
        }
        Ok(())
    });
}

/// One byte-level change of a body.
#[derive(Debug, Clone)]
enum ByteEdit {
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Flip(Index, u8),
}

fn webhook_bytes() -> BoxedStrategy<Vec<u8>> {
    let byte_edit = prop_oneof![
        any::<Index>().prop_map(ByteEdit::Truncate),
        (
            any::<Index>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..4),
                select(vec![
                    b"\xff".to_vec(),
                    b"\x00".to_vec(),
                    b"\xc3".to_vec(),
                    b"\\u0000".to_vec(),
                    b"\\ud800".to_vec(),
                    b"[".to_vec(),
                    b"{".to_vec(),
                    b"\"".to_vec(),
                    b",".to_vec(),
                    b"1e999".to_vec(),
                ]),
            ]
        )
            .prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
    ];
    prop_oneof![
        3 => (notification_model(), prop::collection::vec(byte_edit, 1..4)).prop_map(
            |((body, _), edits)| {
                let mut bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
                for e in edits {
                    match e {
                        ByteEdit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
                        ByteEdit::Insert(i, b) => {
                            let p = i.index(bytes.len() + 1);
                            bytes.splice(p..p, b);
                        }
                        ByteEdit::Flip(i, b) => {
                            if !bytes.is_empty() {
                                let p = i.index(bytes.len());
                                bytes[p] = b;
                            }
                        }
                    }
                }
                bytes
            }
        ),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => "[\\[\\]{}\":,0-9a-z\\\\ ]{0,100}".prop_map(String::into_bytes),
    ]
    .boxed()
}

#[test]
fn arbitrary_webhook_bytes_never_panic_the_decoder() {
    check(1024, webhook_bytes(), |bytes| {
        match timed("decoding", || Notification::from_json(&bytes))? {
            Ok(n) => check_accepted(&n).map_err(fail)?,
            Err(e) => check_payload_error(&e).map_err(fail)?,
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Matchers
// ---------------------------------------------------------------------------------------------

/// Quotes a string the way Alertmanager writes matcher values.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const REGEX_TOKENS: &[&str] = &[
    "a", "b", "x", "crit", "db\\.1", "|", ".*", ".+", "?", "(", ")", "(?:", "(?i)", "(?s)",
    "[a-z]", "[", "]", "\\", "\\d", "\\p{L}", "\\pZ", "{2}", "{1000}", "{,3}", "^", "$", "*", "+",
    "é", "\\.", "\\|", "\\n", "(?P<n>", "\\1", "\\b",
];

fn regexish() -> BoxedStrategy<String> {
    prop::collection::vec(select(REGEX_TOKENS), 0..6)
        .prop_map(|parts| parts.concat())
        .boxed()
}

fn matcher_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(LABEL_NAMES).prop_map(str::to_string),
        1 => "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
        1 => prop_oneof![Just("service.name".to_string()), tricky_string()].prop_map(|s| quote(&s)),
        1 => select(vec!["", "1a", "-", "é", "a.b", "a-b", "\"\"", "\"unterminated", "\"a\\", "{", "}", " ", "~", "!"])
            .prop_map(str::to_string),
    ]
    .boxed()
}

fn matcher_value() -> BoxedStrategy<String> {
    prop_oneof![
        3 => regexish().prop_map(|s| quote(&s)),
        2 => "[a-zA-Z0-9_.*|+-]{0,8}",
        1 => tricky_string().prop_map(|s| quote(&s)),
        1 => select(vec![
            "\"", "\"\\", "'x'", "`x`", "", "\"a\"\"b\"", "\"\\q\"", "\"\\n\"", "a b", "a,b", "\\ ",
            "x\\", "\\é", "é\\\\", "\"\u{0}\"",
        ])
        .prop_map(str::to_string),
    ]
    .boxed()
}

/// Matchers from Alertmanager's grammar, with garbage around and in between.
fn matcher_text() -> BoxedStrategy<String> {
    let ws = || select(vec!["", "", " ", "  ", "\t", "\n", "\u{a0}", "\u{3000}"]);
    (
        (ws(), prop::option::weighted(0.2, Just("{")), ws()),
        matcher_name(),
        ws(),
        prop_oneof![
            4 => select(vec!["=", "!=", "=~", "!~"]),
            1 => select(vec!["==", "~", "!", "", "=!", "~=", "<", ":", "!=~", "=\u{301}"]),
        ],
        ws(),
        matcher_value(),
        (ws(), prop::option::weighted(0.2, Just("}"))),
        select(vec![
            "",
            "",
            "",
            "",
            ",",
            ", b=\"c\"",
            "\"",
            "x",
            "}",
            " # c",
        ]),
    )
        .prop_map(
            |((w0, open, w1), name, w2, op, w3, value, (w4, close), trailing)| {
                format!(
                    "{w0}{}{w1}{name}{w2}{op}{w3}{value}{w4}{}{trailing}",
                    open.unwrap_or(""),
                    close.unwrap_or("")
                )
            },
        )
        .boxed()
}

fn check_matcher(text: &str) -> Result<Option<Matcher>, TestCaseError> {
    match timed("parsing a matcher", || Matcher::parse(text))? {
        Err(e) => {
            prop_assert!(!e.message.trim().is_empty(), "{text:?}: empty message");
            prop_assert!(
                e.offset + e.len <= text.len(),
                "{text:?}: error span {}+{} past the end",
                e.offset,
                e.len
            );
            prop_assert!(
                text.is_char_boundary(e.offset) && text.is_char_boundary(e.offset + e.len),
                "{text:?}: error span {}+{} cuts a character",
                e.offset,
                e.len
            );
            if let Some(h) = &e.help {
                prop_assert!(!h.trim().is_empty());
            }
            Ok(None)
        }
        Ok(m) => {
            let printed = m.to_string();
            let back = Matcher::parse(&printed)
                .map_err(|e| fail(format!("{text:?} prints as {printed:?}, which fails: {e}")))?;
            prop_assert_eq!(&back, &m, "{:?} printed as {:?}", text, printed);
            for value in ["", "x", "critical", "db.1", "é", "a\nb", &m.value] {
                prop_assert_eq!(
                    back.matches_value(value),
                    m.matches_value(value),
                    "{:?} and its printed form {:?} disagree on {:?}",
                    text,
                    printed,
                    value
                );
            }
            Ok(Some(m))
        }
    }
}

#[test]
fn matchers_from_the_grammar_parse_and_print_back_or_point_at_the_problem() {
    check(1024, prop::collection::vec(matcher_text(), 1..4), |texts| {
        let mut parsed = Vec::new();
        for t in &texts {
            if let Some(m) = check_matcher(t)? {
                parsed.push(m);
            }
        }
        let labels: BTreeMap<String, String> = [
            ("alertname", "DiskFull"),
            ("a", "x"),
            ("severity", "critical"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let _ = matches_all(&parsed, &labels);
        if let Some(reason) = never_matches(&parsed) {
            prop_assert!(!reason.trim().is_empty());
        }
        Ok(())
    });
}

#[test]
fn arbitrary_matcher_text_never_panics_the_parser() {
    let strategy = prop_oneof![any::<String>(), "[a-z{}=!~\"'`,\\\\ .*|()\\[\\]é]{0,24}",];
    check(2048, strategy, |text| {
        check_matcher(&text)?;
        Ok(())
    });
}

const SMALL_VALUES: &[&str] = &[
    "", "x", "y", "x|y", "(x|y)", "(?:x|y)", ".*", ".+", "x.*", "(?i)X", "x|", "|x", "\\.",
    "x\\.y", "x.y", "[xy]", "(?s).*", ".*?", "x+", "X", "(?s:.*)", ".+?", "(?s).+", "(?s:.*?)",
];
/// Label values tried against matchers built from [`SMALL_VALUES`].
const CANDIDATES: &[&str] = &[
    "", "x", "y", "X", "x.y", "x|y", "xx", "z", ".", "xy", "\n", "x\\.y",
];

#[test]
fn never_matches_only_flags_matchers_that_no_alert_satisfies() {
    let op = select(vec![
        MatchOp::Equal,
        MatchOp::NotEqual,
        MatchOp::Regex,
        MatchOp::NotRegex,
    ]);
    let matcher = (
        select(vec!["alertname", "a", "b"]),
        op,
        select(SMALL_VALUES),
    )
        .prop_filter_map("a valid matcher", |(n, op, v)| Matcher::new(n, op, v).ok());
    check(512, prop::collection::vec(matcher, 1..4), |matchers| {
        let Some(reason) = never_matches(&matchers) else {
            return Ok(());
        };
        // Every alert has a non-empty alertname; every other label may be missing (empty).
        for alertname in CANDIDATES.iter().filter(|c| !c.is_empty()) {
            for a in CANDIDATES {
                for b in CANDIDATES {
                    let labels: BTreeMap<String, String> =
                        [("alertname", *alertname), ("a", *a), ("b", *b)]
                            .into_iter()
                            .filter(|(_, v)| !v.is_empty())
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect();
                    prop_assert!(
                        !matches_all(&matchers, &labels),
                        "never_matches says {:?}, yet {:?} matches {:?}",
                        reason,
                        labels,
                        matchers.iter().map(ToString::to_string).collect::<Vec<_>>()
                    );
                }
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Cron schedules and time zones
// ---------------------------------------------------------------------------------------------

const CRON_WORDS: &[&str] = &[
    "*",
    "?",
    "L",
    "W",
    "LW",
    "5L",
    "15W",
    "1#2",
    "MON#1",
    "+MON",
    "JAN",
    "jan",
    "Dec",
    "MON",
    "sun",
    "SUN",
    "sat",
    "FOO",
    "MONDAY",
    "J",
    "",
    "-",
    "/",
    ",",
    "60",
    "24",
    "32",
    "13",
    "8",
    "7",
    "0",
    "00",
    "007",
    "4294967296",
    "99999999999999999999",
    "-1",
    "1.5",
    "é",
    "\u{0}",
    "١",
    "*/",
];
const CRON_STEPS: &[&str] = &[
    "1",
    "2",
    "5",
    "15",
    "0",
    "60",
    "99",
    "4294967296",
    "",
    "x",
    "-1",
    "*",
];
const MACROS: &[&str] = &[
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@reboot",
    "@DAILY",
    "@every",
    "@",
    "@dayly",
];

fn cron_atom() -> BoxedStrategy<String> {
    prop_oneof![
        3 => (0u32..64).prop_map(|n| n.to_string()),
        3 => select(CRON_WORDS).prop_map(str::to_string),
        1 => "[0-9A-Za-z*#?/,-]{1,4}",
    ]
    .boxed()
}

fn cron_element() -> BoxedStrategy<String> {
    (
        cron_atom(),
        prop::option::weighted(0.3, cron_atom()),
        prop::option::weighted(0.3, select(CRON_STEPS)),
    )
        .prop_map(|(a, b, step)| {
            let mut s = a;
            if let Some(b) = b {
                s = format!("{s}-{b}");
            }
            if let Some(step) = step {
                s = format!("{s}/{step}");
            }
            s
        })
        .boxed()
}

/// A field that crontab accepts, for a field whose values run from `min` to `max` (a `*` may
/// sit in a list, as in `*,5` or `*/15,7`).
fn valid_cron_field(min: u32, max: u32) -> BoxedStrategy<String> {
    let element = prop_oneof![
        1 => Just("*".to_string()),
        1 => (1u32..=max.max(1)).prop_map(|s| format!("*/{s}")),
        2 => (min..=max).prop_map(|n| n.to_string()),
        2 => (min..=max, min..=max, prop::option::of(1u32..=max.max(1))).prop_map(|(a, b, s)| {
            let (lo, hi) = (a.min(b), a.max(b));
            match s {
                Some(s) => format!("{lo}-{hi}/{s}"),
                None => format!("{lo}-{hi}"),
            }
        }),
    ];
    prop_oneof![
        2 => Just("*".to_string()),
        1 => (1u32..=max.max(1)).prop_map(|s| format!("*/{s}")),
        3 => prop::collection::vec(element, 1..3).prop_map(|v| v.join(",")),
    ]
    .boxed()
}

fn valid_cron() -> BoxedStrategy<String> {
    (
        prop::option::weighted(0.2, valid_cron_field(0, 59)),
        valid_cron_field(0, 59),
        valid_cron_field(0, 23),
        // Up to 29: every month has those days, so no month choice makes it never fire (a
        // `31 9` is rejected as "never fires", rightly, and is not a valid expression).
        valid_cron_field(1, 29),
        prop_oneof![3 => valid_cron_field(1, 12), 1 => Just("FEB-APR".to_string())],
        prop_oneof![3 => valid_cron_field(0, 7), 1 => Just("MON-FRI".to_string()), 1 => Just("FRI-SUN".to_string())],
    )
        .prop_map(|(s, mi, h, dom, mon, dow)| {
            let fields = [mi, h, dom, mon, dow].join(" ");
            match s {
                Some(s) => format!("{s} {fields}"),
                None => fields,
            }
        })
        .boxed()
}

/// Cron expressions: valid ones, near misses from crontab's grammar, macros and garbage.
fn cron_expr() -> BoxedStrategy<String> {
    let field = prop::collection::vec(cron_element(), 1..4).prop_map(|v| v.join(","));
    prop_oneof![
        4 => valid_cron(),
        3 => (prop::collection::vec(field.clone(), 5..=6), select(vec![" ", "  ", "\t", " \n "]))
            .prop_map(|(f, sep)| f.join(sep)),
        1 => prop::collection::vec(field, 0..9).prop_map(|f| f.join(" ")),
        1 => (select(MACROS), select(vec!["", " ", " * * * * *", " x", "\t"]))
            .prop_map(|(m, rest)| format!("{m}{rest}")),
        1 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
        1 => "[0-9*/, \\-A-Z]{0,30}",
    ]
    .boxed()
}

/// Zones with daylight saving time and other clock jumps, and now and then any zone.
const JUMPY_ZONES: &[&str] = &[
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/Santiago",
    "Asia/Tehran",
    "Africa/Casablanca",
    "Pacific/Chatham",
    "America/St_Johns",
    "Antarctica/Troll",
    "UTC",
];

fn tz() -> BoxedStrategy<Tz> {
    prop_oneof![
        3 => select(JUMPY_ZONES).prop_filter_map("a zone", |n| n.parse::<Tz>().ok()),
        1 => select(&chrono_tz::TZ_VARIANTS[..]),
    ]
    .boxed()
}

/// Instants in 1900-2200, often close to a DST change.
fn instant() -> BoxedStrategy<DateTime<Utc>> {
    prop_oneof![
        (-2_208_988_800i64..7_258_118_400)
            .prop_filter_map("an instant", |s| DateTime::from_timestamp(s, 0)),
        (
            1970i32..2045,
            select(vec![3u32, 4, 9, 10, 11]),
            1u32..=31,
            0i64..86_400
        )
            .prop_filter_map("an instant", |(y, m, d, s)| {
                let day = NaiveDate::from_ymd_opt(y, m, d.min(28))?;
                Some(day.and_hms_opt(0, 0, 0)?.and_utc() + TimeDelta::seconds(s))
            }),
        Just(DateTime::from_timestamp(1_325_329_200, 0).unwrap_or_default()),
    ]
    .boxed()
}

fn check_schedule_error(e: &untoil::trigger::schedule::ScheduleError) -> Result<(), TestCaseError> {
    prop_assert!(!e.to_string().trim().is_empty(), "an empty message: {e:?}");
    if let Some(h) = e.help() {
        prop_assert!(!h.trim().is_empty(), "an empty help: {e:?}");
    }
    Ok(())
}

/// Fires come strictly after the start, in strictly increasing order, and `due` agrees with
/// `next_after` and `fires_after`.
fn check_fires(
    s: &Schedule,
    from: DateTime<Utc>,
    window: TimeDelta,
    n: usize,
) -> Result<(), TestCaseError> {
    let fires: Vec<DateTime<Utc>> = s
        .fires_after(from)
        .take(n)
        .map(|t| t.with_timezone(&Utc))
        .collect();
    let mut previous = from;
    for t in &fires {
        prop_assert!(
            *t > previous,
            "{:?}: {} after {}",
            s.expression(),
            t,
            previous
        );
        previous = *t;
    }
    let next = s.next_after(from).map(|t| t.with_timezone(&Utc));
    if n > 0 {
        prop_assert_eq!(next, fires.first().copied());
    }
    let Some(to) = from.checked_add_signed(window) else {
        return Ok(());
    };
    let due: Vec<DateTime<Utc>> = s
        .due(from, to)
        .into_iter()
        .map(|t| t.with_timezone(&Utc))
        .collect();
    let mut previous = from;
    for t in &due {
        prop_assert!(
            *t > previous && *t <= to,
            "{:?}: due {} outside ({}, {}]",
            s.expression(),
            t,
            from,
            to
        );
        previous = *t;
    }
    let expected: Vec<DateTime<Utc>> = fires.iter().copied().take_while(|t| *t <= to).collect();
    let common = expected.len().min(due.len());
    prop_assert_eq!(&due[..common], &expected[..common]);
    if expected.len() < fires.len() {
        // fires_after ran past `to`, so it saw every fire up to it.
        prop_assert_eq!(due.len(), expected.len());
    }
    Ok(())
}

#[test]
fn cron_expressions_parse_or_explain_and_schedules_fire_in_order() {
    let strategy = (cron_expr(), tz(), instant(), 0i64..3_600, 0usize..6);
    check(1024, strategy, |(expr, tz, from, window, n)| {
        let parsed = timed("parsing a schedule", || Schedule::parse(&expr, tz))?;
        match parsed {
            Err(e) => check_schedule_error(&e)?,
            Ok(s) => {
                prop_assert!(Schedule::parse(s.expression(), tz).is_ok());
                timed("computing fires", || {
                    check_fires(&s, from, TimeDelta::seconds(window), n)
                })??;
            }
        }
        Ok(())
    });
}

#[test]
fn schedules_answer_at_the_ends_of_rfc_3339_time() {
    // The years `untoil schedule --after` can name. KNOWN BUG (reported, not fixed here):
    // closer to chrono's own limits (year 262142), next_after panics in `naive_local`.
    let min = -62_167_219_200; // 0000-01-01T00:00:00Z
    let max = 253_402_300_799; // 9999-12-31T23:59:59Z
    let edge = prop_oneof![
        Just(min),
        Just(max),
        (min..min + 400 * 86_400 * 366),
        (max - 400 * 86_400 * 366..max),
        (min..max),
    ]
    .prop_filter_map("an instant", |s| DateTime::from_timestamp(s, 0));
    let strategy = (valid_cron(), tz(), edge, 0i64..600, 0usize..3);
    check(384, strategy, |(expr, tz, from, window, n)| {
        let s = Schedule::parse(&expr, tz).map_err(|e| fail(format!("{expr}: {e}")))?;
        timed("computing fires", || {
            check_fires(&s, from, TimeDelta::seconds(window), n)
        })??;
        Ok(())
    });
}

fn timezone_name() -> BoxedStrategy<String> {
    let real = select(&chrono_tz::TZ_VARIANTS[..]).prop_map(|tz| tz.name().to_string());
    prop_oneof![
        2 => real.clone(),
        1 => (real, any::<Index>(), 0u8..4).prop_map(|(name, i, op)| {
            let at = at(&name, &i);
            match op {
                0 => name.to_lowercase(),
                1 => format!(" {name}\t"),
                2 => {
                    let mut s = name;
                    s.insert(at, 'x');
                    s
                }
                _ => name.replace('_', " "),
            }
        }),
        1 => select(vec!["", "UTC", "utc", "Z", "+01:00", "CET", "Berlin", "Mars/Olympus_Mons", "Europe/", "/", "../../etc/passwd", "Europe/Berlin\u{0}"])
            .prop_map(str::to_string),
        // KNOWN SLOWNESS (reported): suggestions cost about a millisecond per byte of the name in
        // a debug build, so names stay short here.
        1 => any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
    .boxed()
}

#[test]
fn time_zone_names_parse_or_come_with_suggestions() {
    check(256, timezone_name(), |name| {
        match timed("parsing a time zone", || parse_timezone(&name))? {
            Ok(tz) => prop_assert!(
                tz.name().eq_ignore_ascii_case(name.trim()),
                "{name:?} parsed as {}",
                tz.name()
            ),
            Err(e) => {
                check_schedule_error(&e)?;
                if let untoil::trigger::schedule::ScheduleError::UnknownTimezone {
                    suggestions,
                    ..
                } = &e
                {
                    prop_assert!(suggestions.len() <= 3);
                    for s in suggestions {
                        prop_assert!(s.parse::<Tz>().is_ok(), "suggested {s:?}");
                    }
                }
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

const TEMPLATE_TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{{{",
    "}}}",
    "{{#if ",
    "{{#unless ",
    "{{#each ",
    "{{#with ",
    "{{/if}}",
    "{{/each}}",
    "{{/with}}",
    "{{/unless}}",
    "{{else}}",
    "{{^}}",
    "{{!-- c --}}",
    "{{! c }}",
    "{{> p}}",
    "{{~",
    "~}}",
    "\\{{",
    "params.x",
    "params.path",
    "steps.a.stdout",
    "steps.a.json.k",
    "alert.labels.instance",
    "env.HOME",
    "secrets.t",
    "run.id",
    "@root.params.x",
    "../x",
    "this",
    "@key",
    "@index",
    "(",
    ")",
    "eq ",
    "ne ",
    "upper ",
    "lower ",
    "trim ",
    "json ",
    "default ",
    "raw ",
    "len ",
    "lookup ",
    "nosuch ",
    "\"str\"",
    "'s'",
    "0",
    "1.5",
    "-1",
    "true",
    "null",
    "x=1 ",
    " ",
    "\n",
    "echo ",
    "'",
    "\"",
    "$(rm -rf /)",
    "[0]",
    ".[a b]",
    "a.[0]",
    "/",
    "=",
    "as |x|",
    "{{else if x}}",
    "é",
    "\u{0}",
    "{{#each params as |v k|}}",
    "{{#>",
    "{{*",
    "{{&x}}",
    "{{@root}}",
];

fn template_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::collection::vec(select(TEMPLATE_TOKENS), 0..16).prop_map(|t| t.concat()),
        1 => "[{}#/a-z. ()\"=~!^>&@|\\\\]{0,40}",
    ]
    .boxed()
}

/// A render context with the roots templates read, and arbitrary values in them.
fn render_context() -> BoxedStrategy<Json> {
    (
        prop::option::of(any_json()),
        prop::option::of(any_json()),
        prop::option::of(any_json()),
        any_json(),
    )
        .prop_map(|(params, a, alert, other)| {
            json!({
                "params": params.unwrap_or(json!({"x": "1", "path": "/tmp"})),
                "steps": {"a": {"stdout": "out", "json": a.unwrap_or(json!({"k": [1, 2]}))}},
                "alert": alert.unwrap_or(json!({"labels": {"instance": "db-1"}})),
                "env": {"HOME": "/root"},
                "secrets": {"t": "s3cret"},
                "run": {"id": "01J"},
                "x": other,
                "this": other,
            })
        })
        .boxed()
}

#[test]
fn templates_compile_and_render_without_panicking() {
    let renderer = Renderer::new();
    check(
        1024,
        (template_text(), render_context()),
        |(source, ctx)| {
            let compiled = timed("compiling a template", || Template::compile(&source))?;
            let t = match compiled {
                Err(e) => {
                    prop_assert!(!e.message.trim().is_empty(), "{source:?}: empty message");
                    return Ok(());
                }
                Ok(t) => t,
            };
            let _ = (t.variables(), t.helpers(), t.uses_raw(), t.is_literal());
            let ctx = context(ctx);
            for result in timed("rendering", || {
                [
                    renderer.shell(&t, &ctx, &Taint::strict()),
                    renderer.plain(&t, &ctx),
                    renderer.truthy(&t, &ctx).map(|b| b.to_string()),
                ]
            })? {
                if let Err(e) = result {
                    prop_assert!(!e.0.trim().is_empty(), "{source:?}: empty render error");
                }
            }
            Ok(())
        },
    );
}

#[test]
fn shell_rendering_keeps_every_interpolated_value_one_word() {
    let renderer = Renderer::new();
    let template = Template::compile("echo {{v}} {{lower v}}").expect("a template");
    let value = prop_oneof![tricky_string(), any::<String>(), "[ -~\n]{0,30}"];
    check(1024, value, |v| {
        let ctx = context(json!({ "v": v }));
        let command = renderer
            .shell(&template, &ctx, &Taint::strict())
            .map_err(|e| fail(e.to_string()))?;
        let words = shlex::split(&command);
        let clean = v.replace('\0', "");
        prop_assert_eq!(
            words,
            Some(vec![
                "echo".to_string(),
                clean.clone(),
                clean.to_lowercase()
            ]),
            "{:?} rendered as {:?}",
            v,
            command
        );
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Per-file time limit of the corpus (a debug build on a busy machine).
const FILE_LIMIT: Duration = Duration::from_secs(60);

/// Loads a runbook file together with a good one and checks that it is rejected with a clear
/// error and that the good one still loads untouched.
fn check_rejected_runbook(path: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let good = dir.path().join("00-good.yaml");
    std::fs::write(&good, GOOD_RUNBOOK).map_err(|e| e.to_string())?;
    let paths = vec![good, path.to_path_buf()];
    let loaded = load(&paths, &PLUGINS);
    // The catalog names the files in its own order: find the corpus file's id by its name.
    let id = (0..2)
        .find(|&f| loaded.sources.name(f) == path.display().to_string())
        .ok_or("the corpus file is not among the sources")?;
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && d.primary.file == id)
        .collect();
    if errors.is_empty() {
        return Err(format!(
            "accepted without an error (catalog: {:?}); diagnostics: {:#?}",
            loaded.catalog.names().collect::<Vec<_>>(),
            loaded.diagnostics
        ));
    }
    for d in &errors {
        if d.message.trim().is_empty() || d.message.len() > 4096 {
            return Err(format!("an unclear message: {:?}", d.message));
        }
    }
    check_loaded(&loaded, 2)?;
    let rendered = loaded.sources.render(&loaded.diagnostics);
    if !rendered.contains("error") || !rendered.contains(&file_name(path)) {
        return Err(format!("the rendering does not name the file:\n{rendered}"));
    }
    if loaded.catalog.get("known-good").is_none()
        || loaded.diagnostics.iter().any(|d| d.primary.file != id)
    {
        return Err(format!(
            "the good runbook loaded with it was disturbed: {:#?}",
            loaded.diagnostics
        ));
    }
    Ok(())
}

#[test]
fn every_runbook_in_the_corpus_is_rejected_with_a_clear_error() {
    let files = corpus("runbooks");
    assert!(files.len() >= 30, "the corpus is missing: {files:?}");
    let mut failures = Vec::new();
    for path in files {
        let name = file_name(&path);
        let started = Instant::now();
        let p = path.clone();
        let result = within(&name, FILE_LIMIT, move || check_rejected_runbook(&p));
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
        let took = started.elapsed();
        assert!(took < FILE_LIMIT, "{name} took {took:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_good_runbook_used_as_a_witness_loads_without_any_diagnostic() {
    let loaded = load_texts(&[("runbooks/good.yaml", GOOD_RUNBOOK)], &PLUGINS);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    assert!(loaded.catalog.get("known-good").is_some());
}

/// Loads a generated runbook text on its own thread within the corpus time limit.
fn load_generated(name: &str, text: String) -> Loaded {
    let file = format!("runbooks/{name}.yaml");
    within(name, FILE_LIMIT, move || {
        load_texts(
            &[
                (file.as_str(), text.as_str()),
                ("runbooks/zz-good.yaml", GOOD_RUNBOOK),
            ],
            &PLUGINS,
        )
    })
}

fn assert_rejected(name: &str, loaded: &Loaded, expected: &str) {
    let errors: Vec<&str> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && d.primary.file == 0)
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        errors.iter().any(|m| m.contains(expected)),
        "{name}: expected an error containing {expected:?}, got {errors:?}"
    );
    assert!(
        errors.iter().all(|m| m.len() <= 4096),
        "{name}: a message of {} bytes",
        errors.iter().map(|m| m.len()).max().unwrap_or(0)
    );
    check_loaded(loaded, 2).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        loaded.catalog.get("known-good").is_some(),
        "{name} disturbed the good runbook"
    );
    let rendered = loaded.sources.render(&loaded.diagnostics);
    assert!(rendered.contains(expected), "{name}: {rendered}");
}

#[test]
fn a_five_megabyte_runbook_is_rejected_in_bounded_time() {
    let mut text = String::from("name: Big_Runbook\nowner: team-storage\ndescription: |\n");
    let line = "  lorem ipsum dolor sit amet, consectetur adipiscing elit\n";
    while text.len() < 5 * 1024 * 1024 {
        text.push_str(line);
    }
    text.push_str("steps:\n  - name: a\n    run: echo\n");
    let loaded = load_generated("five-megabytes", text);
    assert_rejected(
        "five-megabytes",
        &loaded,
        "invalid runbook name `Big_Runbook`",
    );
}

#[test]
fn huge_values_in_a_runbook_are_rejected_in_bounded_time() {
    let huge = "x".repeat(256 * 1024);
    let cases = [
        (
            "huge-key",
            format!("name: a\nowner: b\n{huge}: 1\nsteps: []\n"),
            // YAML caps implicit keys at 1024 characters.
            "could not find expected ':'",
        ),
        (
            "huge-description-and-bad-steps",
            format!("name: a\nowner: b\ndescription: \"{huge}\"\nsteps: 5\n"),
            "wrong type for `steps`",
        ),
        (
            "huge-name",
            format!("name: Bad_{huge}\nowner: b\nsteps: []\n"),
            "invalid runbook name",
        ),
        (
            "huge-timeout",
            format!("name: a\nowner: b\ntimeout: {huge}\nsteps: []\n"),
            "invalid duration",
        ),
        (
            "huge-schedule",
            format!("name: a\nowner: b\ntriggers:\n  - schedule: \"0 {huge} * * *\"\nsteps: []\n"),
            "invalid schedule",
        ),
        (
            "huge-matcher",
            format!(
                "name: a\nowner: b\ntriggers:\n  - alert:\n      matchers: ['a{huge}']\nsteps: []\n"
            ),
            "invalid matcher",
        ),
        (
            "huge-template",
            format!(
                "name: a\nowner: b\nsteps:\n  - name: s\n    run: echo {{{{params.{huge}}}}}\n"
            ),
            "unknown parameter",
        ),
    ];
    let mut long_messages = Vec::new();
    for (name, text, expected) in cases {
        let loaded = load_generated(name, text);
        let errors: Vec<&str> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error() && d.primary.file == 0)
            .map(|d| d.message.as_str())
            .collect();
        assert!(
            errors.iter().any(|m| m.contains(expected)),
            "{name}: {:?}",
            errors
                .iter()
                .map(|m| m.chars().take(200).collect::<String>())
                .collect::<Vec<_>>()
        );
        check_loaded(&loaded, 2).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(loaded.catalog.get("known-good").is_some(), "{name}");
        let longest = errors.iter().map(|m| m.len()).max().unwrap_or(0);
        if longest > 4096 {
            long_messages.push(format!("{name}: {longest} bytes"));
        }
    }
    // KNOWN ISSUE (reported, not fixed here): most messages quote the offending value whole.
    eprintln!("messages quoting a 256 KiB value whole: {long_messages:?}");
}

#[test]
fn deeply_nested_yaml_is_rejected_without_overflowing_the_stack() {
    let depth = 10_000;
    let cases = [
        (
            "flow-sequences-10k",
            format!(
                "name: deep\nowner: x\nsteps:\n  - name: a\n    plugin: notify\n    with: {}{}\n",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        ),
        (
            "flow-mappings-10k",
            format!(
                "name: deep\nowner: x\nsteps:\n  - name: a\n    plugin: notify\n    with: {}1{}\n",
                "{a: ".repeat(depth),
                "}".repeat(depth)
            ),
        ),
        (
            "flow-at-the-root-10k",
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        ),
    ];
    for (name, text) in cases {
        let loaded = load_generated(name, text);
        let errors = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error() && d.primary.file == 0)
            .count();
        assert!(errors > 0, "{name}: {:#?}", loaded.diagnostics);
        check_loaded(&loaded, 2).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Block-style nesting 20,000 levels deep: the source map walks parser events in a loop
    // (yaml-rust2's recursive Parser::load used to overflow the stack here and abort).
    let block = format!(
        "name: deep\nowner: x\nsteps:\n  - name: a\n    plugin: notify\n    with:\n      {}x\n",
        "- ".repeat(20_000)
    );
    let loaded = load_generated("block-sequences-20000", block);
    check_loaded(&loaded, 2).unwrap_or_else(|e| panic!("block-sequences-20000: {e}"));
}

#[test]
fn deeply_nested_templates_are_rejected_without_overflowing_the_stack() {
    let cases = [
        format!("{}x{}", "{{#if a}}".repeat(5_000), "{{/if}}".repeat(5_000)),
        format!(
            "{{{{upper {}x{}}}}}",
            "(upper ".repeat(5_000),
            ")".repeat(5_000)
        ),
    ];
    for source in cases {
        let result = within("nested template", FILE_LIMIT, move || {
            Template::compile(&source).map(|_| ())
        });
        let e = result.expect_err("nesting that deep is refused");
        assert!(!e.message.is_empty());
    }
}

/// Expected messages of some corpus bodies; every other file only has to be rejected clearly.
const WEBHOOK_EXPECTATIONS: &[(&str, &str)] = &[
    ("empty.json", "EOF while parsing"),
    ("truncated-half.json", "EOF while parsing"),
    ("trailing-garbage.json", "trailing characters"),
    (
        "version-3.json",
        "unsupported Alertmanager webhook payload version \"3\"",
    ),
    ("version-number.json", "at version"),
    ("version-missing.json", "missing field `version`"),
    ("status-unknown.json", "unknown variant `pending`"),
    ("wrong-type-alerts-object.json", "at alerts"),
    ("wrong-type-labels-list.json", "at alerts[0].labels"),
    (
        "wrong-type-label-value-number.json",
        "at alerts[0].labels.alertname",
    ),
    ("wrong-type-starts-at-number.json", "at alerts[0].startsAt"),
    ("bad-timestamp.json", "at alerts[0].startsAt"),
    ("alert-status-missing.json", "missing field `status`"),
    ("duplicate-field.json", "duplicate field `version`"),
    (
        "nul-in-label-value.json",
        "label value at alerts[0].labels.instance contains a NUL byte",
    ),
    (
        "nul-in-label-name.json",
        "label name at alerts[0].labels.inst\\0ance contains a NUL byte",
    ),
    (
        "nul-in-annotation.json",
        "annotation value at alerts[0].annotations.summary",
    ),
    (
        "nul-in-group-labels.json",
        "label value at groupLabels.alertname",
    ),
    ("raw-nul-byte.json", "control character"),
    ("invalid-utf8.json", "invalid unicode code point"),
    ("lone-surrogate.json", "at alerts[0].labels.alertname"),
    ("nested-10k-arrays.json", "invalid type: sequence"),
    ("nested-labels.json", "at commonLabels.a"),
];

#[test]
fn every_webhook_body_in_the_corpus_is_rejected_clearly_unless_named_ok() {
    let files = corpus("webhooks");
    assert!(files.len() >= 40, "the corpus is missing: {files:?}");
    let good = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/webhooks/ok-full.json"),
    )
    .expect("ok-full.json");
    let reference = Notification::from_json(&good).expect("ok-full.json decodes");
    let mut failures = Vec::new();
    for path in files {
        let name = file_name(&path);
        let body = std::fs::read(&path).expect("read corpus file");
        let result = within(&name, FILE_LIMIT, move || Notification::from_json(&body));
        match (name.starts_with("ok-"), result) {
            (true, Ok(n)) => {
                if let Err(e) = check_accepted(&n) {
                    failures.push(format!("{name}: {e}"));
                }
            }
            (true, Err(e)) => failures.push(format!("{name}: rejected: {e}")),
            (false, Ok(n)) => failures.push(format!("{name}: accepted: {n:?}")),
            (false, Err(e)) => {
                if let Err(problem) = check_payload_error(&e) {
                    failures.push(format!("{name}: {problem}"));
                }
                let text = e.to_string();
                if text.len() > 4096 {
                    failures.push(format!("{name}: a message of {} bytes", text.len()));
                }
                if let Some((_, expected)) = WEBHOOK_EXPECTATIONS.iter().find(|(f, _)| *f == name)
                    && !text.contains(expected)
                {
                    failures.push(format!("{name}: expected {expected:?} in {text:?}"));
                }
            }
        }
        // Nothing else is disturbed: the decoder keeps no state between bodies.
        assert_eq!(Notification::from_json(&good).as_ref(), Ok(&reference));
    }
    for (name, _) in WEBHOOK_EXPECTATIONS {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/corpus/webhooks")
                .join(name)
                .is_file(),
            "{name} is expected in the corpus"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `count` alerts in one body, each with its own instance label.
fn many_alerts(count: usize) -> Vec<u8> {
    let alerts: Vec<Json> = (0..count)
        .map(|i| {
            let status = if i % 7 == 0 { "resolved" } else { "firing" };
            json!({
                "status": status,
                "labels": {"alertname": "DiskFull", "instance": format!("db-{i}"), "severity": "critical"},
                "annotations": {"summary": "disk almost full"},
                "startsAt": "2026-11-28T14:43:50.307Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1/fire.sh",
                "fingerprint": "",
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "version": "4",
        "status": "firing",
        "receiver": "untoil",
        "groupLabels": {"alertname": "DiskFull"},
        "alerts": alerts,
    }))
    .expect("serializable")
}

#[test]
fn ten_thousand_alerts_in_one_body_decode_and_match() {
    // ok-10k-alerts.json, generated here rather than committed (about 2 MB).
    let body = many_alerts(10_000);
    let runbook = "name: disk\nowner: x\ntoil: {manual_minutes: 5}\ntriggers:\n  - alert:\n      matchers: ['alertname=\"DiskFull\"', 'instance=~\"db-[0-9]*5\"']\nsteps:\n  - name: a\n    run: echo {{alert.labels.instance}}\n";
    let loaded = load_texts(&[("runbooks/disk.yaml", runbook)], &PLUGINS);
    assert_eq!(loaded.errors(), 0, "{:#?}", loaded.diagnostics);
    let rb = loaded.catalog.get("disk").expect("the runbook").clone();
    let started = Instant::now();
    let (alerts, matched) = within("ok-10k-alerts.json", FILE_LIMIT, move || {
        let n = Notification::from_json(&body).expect("10,000 alerts decode");
        let matched = n
            .alerts
            .iter()
            .filter(|a| rb.accepts_alert(untoil::trigger::source::ALERTMANAGER, a))
            .count();
        (n.alerts.len(), matched)
    });
    let took = started.elapsed();
    assert_eq!(alerts, 10_000);
    // Instances ending in 5, firing: 1,000 end in 5, of which every 7th index is resolved.
    let expected = (0..10_000).filter(|i| i % 10 == 5 && i % 7 != 0).count();
    assert_eq!(matched, expected);
    // A hang guard, not a benchmark: `within` already stops a runaway decode.
    assert!(took < FILE_LIMIT, "decoding and matching took {took:?}");
}

#[test]
fn deeply_nested_json_is_rejected_without_overflowing_the_stack() {
    let depth = 100_000;
    let open = "[".repeat(depth);
    let close = "]".repeat(depth);
    let objects = "{\"a\":".repeat(depth);
    let braces = "}".repeat(depth);
    // (body, whether the nesting sits in an unknown field, which serde_json skips without
    // recursing, so the body is valid)
    let cases = [
        (format!("{open}{close}"), false),
        (format!("{objects}1{braces}"), false),
        (
            format!("{{\"version\":\"4\",\"status\":\"firing\",\"alerts\":{open}{close}}}"),
            false,
        ),
        (
            format!("{{\"version\":\"4\",\"commonLabels\":{{\"a\":{objects}1{braces}}}}}"),
            false,
        ),
        (format!("{{\"version\":{open}"), false),
        (
            format!("{{\"version\":\"4\",\"status\":\"firing\",\"extra\":{open}{close}}}"),
            true,
        ),
        (
            format!("{{\"extra\":{objects}1{braces},\"version\":\"4\",\"status\":\"firing\"}}"),
            true,
        ),
        (
            format!(
                "{{\"version\":\"4\",\"status\":\"firing\",\"alerts\":[{{\"status\":\"firing\",\
                 \"startsAt\":\"2026-11-28T14:43:50Z\",\"extra\":{open}{close}}}]}}"
            ),
            true,
        ),
    ];
    for (body, in_unknown_field) in cases {
        let started = Instant::now();
        // On a thread with the 2 MiB stack of the daemon's tokio workers.
        let result = within("nested JSON", FILE_LIMIT, move || {
            Notification::from_json(body.as_bytes())
        });
        match (in_unknown_field, result) {
            (true, Ok(n)) => check_accepted(&n).unwrap_or_else(|p| panic!("{p}")),
            (false, Err(e)) => check_payload_error(&e).unwrap_or_else(|p| panic!("{p}")),
            (_, other) => panic!("unexpected {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn a_one_mebibyte_label_is_decoded_and_huge_bad_values_are_rejected() {
    let huge = "v".repeat(1024 * 1024);
    let ok = json!({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "startsAt": "2026-11-28T14:43:50Z", "labels": {"alertname": "A", "big": huge}}
    ]});
    let body = serde_json::to_vec(&ok).expect("serializable");
    let n = within("huge label", FILE_LIMIT, move || {
        Notification::from_json(&body)
    })
    .expect("a 1 MiB label value is valid JSON of the right shape");
    assert_eq!(n.alerts[0].labels["big"].len(), 1024 * 1024);

    let mut nul = ok;
    nul["alerts"][0]["labels"]["big"] = json!(format!("{huge}\u{0}"));
    let body = serde_json::to_vec(&nul).expect("serializable");
    let e = within("huge label with NUL", FILE_LIMIT, move || {
        Notification::from_json(&body)
    })
    .expect_err("NUL is refused");
    check_payload_error(&e).unwrap_or_else(|p| panic!("{p}"));
    assert!(e.to_string().len() < 4096, "the message echoes the value");

    let mut bad = json!({"version": "4", "status": "firing"});
    bad["commonLabels"] = json!({ huge.clone(): 1 });
    let body = serde_json::to_vec(&bad).expect("serializable");
    let e = within("huge label name", FILE_LIMIT, move || {
        Notification::from_json(&body)
    })
    .expect_err("a number is not a label value");
    check_payload_error(&e).unwrap_or_else(|p| panic!("{p}"));
    let mut bad = json!({"version": "4", "status": "firing"});
    bad["truncatedAlerts"] = json!(huge);
    let body = serde_json::to_vec(&bad).expect("serializable");
    let e = within("huge wrong value", FILE_LIMIT, move || {
        Notification::from_json(&body)
    })
    .expect_err("a string is not a count");
    check_payload_error(&e).unwrap_or_else(|p| panic!("{p}"));
    // KNOWN ISSUE (reported, not fixed here): serde's messages quote the bad value or key whole,
    // so these two messages are over 1 MiB; the daemon's body limit bounds them.
}
