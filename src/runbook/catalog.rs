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

#[cfg(test)]
mod tests {
    //! The validator's rules for outcomes and credit (`noop_*`, `toil.per_item`,
    //! `verify.credit`), through [`one`] as a runbook file is loaded.
    use super::*;

    const HEAD: &str =
        "name: r\nowner: t\ntoil: {manual_minutes: 5}\ntriggers: [{schedule: '* * * * *'}]\n";

    /// The rendered diagnostics of a runbook made of HEAD and `rest` (empty when it loads).
    fn problems(rest: &str) -> String {
        match one(&format!("{HEAD}{rest}"), &Plugins::default()) {
            Ok(_) => String::new(),
            Err(e) => e,
        }
    }

    #[test]
    fn noop_exit_codes_are_statuses_of_run_steps_other_than_zero() {
        let ok = problems("steps:\n  - name: a\n    run: exit 3\n    noop_exit_codes: [3, 4]\n");
        assert_eq!(ok, "");
        let zero = problems("steps:\n  - name: a\n    run: 'true'\n    noop_exit_codes: [0]\n");
        assert!(zero.contains("`0` cannot be a noop exit status"), "{zero}");
        assert!(zero.contains("0 is success"), "{zero}");
        let big = problems("steps:\n  - name: a\n    run: 'true'\n    noop_exit_codes: [256]\n");
        assert!(big.contains("`256` cannot be a noop exit status"), "{big}");
        let http = problems(
            "steps:\n  - name: a\n    http: {url: 'http://127.0.0.1:1/'}\n    noop_exit_codes: [3]\n",
        );
        assert!(
            http.contains("`noop_exit_codes` is only for `run` steps"),
            "{http}"
        );
    }

    #[test]
    fn noop_when_reads_its_own_step_and_no_later_one() {
        let own = problems(
            "steps:\n  - name: a\n    run: echo 0\n    noop_when: '{{eq steps.a.stdout \"0\"}}'\n",
        );
        assert_eq!(own, "");
        let later = problems(
            "steps:\n  - name: a\n    run: echo 0\n    noop_when: '{{steps.b.stdout}}'\n  - name: b\n    run: echo\n",
        );
        assert!(later.contains("runs after this one"), "{later}");
        let typo = problems("steps:\n  - name: a\n    run: echo 0\n    noop_whn: 'x'\n");
        assert!(typo.contains("did you mean `noop_when`?"), "{typo}");
    }

    #[test]
    fn per_item_needs_minutes_and_a_count_reading_any_step() {
        let typo = problems("toil_minutes: 1\nsteps: [{name: a, run: echo}]\n");
        assert!(typo.contains("unknown field `toil_minutes`"), "{typo}");
        let rb = one(
            "name: r\nowner: t\ntoil: {per_item: {minutes: 2, count: '{{steps.b.stdout}}'}}\ntriggers: [{schedule: '* * * * *'}]\nsteps:\n  - name: a\n    run: echo\n  - name: b\n    run: echo 3\n",
            &Plugins::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let per_item = rb.toil.per_item.as_ref().map(|p| (p.minutes, p.max_items));
        assert_eq!(
            per_item,
            Some((2.0, crate::runbook::model::DEFAULT_MAX_ITEMS))
        );
        let missing = one(
            "name: r\nowner: t\ntoil: {per_item: {minutes: 2, max_items: 0}}\ntriggers: [{schedule: '* * * * *'}]\nsteps: [{name: a, run: echo}]\n",
            &Plugins::default(),
        )
        .err()
        .unwrap_or_default();
        assert!(missing.contains("missing field `count`"), "{missing}");
        assert!(
            missing.contains("`toil.per_item.max_items` must be at least 1"),
            "{missing}"
        );
        let unknown = one(
            "name: r\nowner: t\ntoil: {per_item: {minutes: 2, count: '{{steps.nope.stdout}}'}}\ntriggers: [{schedule: '* * * * *'}]\nsteps: [{name: a, run: echo}]\n",
            &Plugins::default(),
        )
        .err()
        .unwrap_or_default();
        assert!(unknown.contains("unknown step `nope`"), "{unknown}");
    }

    #[test]
    fn verify_credit_is_at_finish_or_verified_only() {
        let text = |credit: &str| {
            format!(
                "name: r\nowner: t\ntoil: {{manual_minutes: 5}}\ntriggers: [{{alert: {{matchers: ['alertname=\"X\"']}}}}]\nverify: {{alert_resolves_within: 15m, credit: {credit}}}\nsteps: [{{name: a, run: echo}}]\n"
            )
        };
        let rb = one(&text("verified_only"), &Plugins::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rb.verify.as_ref().map(|v| v.credit),
            Some(crate::runbook::model::VerifyCredit::VerifiedOnly)
        );
        let bad = one(&text("verifed_only"), &Plugins::default())
            .err()
            .unwrap_or_default();
        assert!(
            bad.contains("invalid `verify.credit` `verifed_only`"),
            "{bad}"
        );
        assert!(bad.contains("did you mean `verified_only`?"), "{bad}");
    }
}
