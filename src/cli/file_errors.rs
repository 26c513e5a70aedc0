//! The runbook files' errors, said beside a listing of runbooks (`untoil list`): each broken
//! file, what of it is in service (its last good version, or nothing), and its errors by place.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cli::words::plural;
use crate::report::cell;
use crate::runbook::diagnostic::{Record, Severity};

/// Errors shown per file at most; `untoil validate` shows them all.
const SHOWN: usize = 5;

/// One error of a runbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file, as the loader named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl FileError {
    /// The errors (not warnings) among a load's records.
    pub fn of_records(records: &[Record]) -> Vec<FileError> {
        records
            .iter()
            .filter(|r| r.severity == Severity::Error)
            .map(|r| FileError {
                file: r.file.clone(),
                line: r.line,
                column: r.column,
                message: r.message.clone(),
            })
            .collect()
    }

    /// The errors among the diagnostics of a daemon's `/api/v1/runbooks/errors` answer.
    pub fn of_api(answer: &Value) -> Vec<FileError> {
        answer["diagnostics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["severity"] == "error")
            .filter_map(|d| {
                Some(FileError {
                    file: d["file"].as_str()?.to_string(),
                    line: d["line"].as_u64().unwrap_or(0) as usize,
                    column: d["column"].as_u64().unwrap_or(0) as usize,
                    message: d["message"].as_str().unwrap_or("").to_string(),
                })
            })
            .collect()
    }
}

/// What is in service of a file: the runbook names a daemon still runs from it.
pub type InService<'a> = BTreeMap<&'a str, Vec<&'a str>>;

/// The note under a listing: every broken file with its errors, and, when `daemon` (its address)
/// lists what it runs, what of each file it still runs. None when no file has errors.
pub fn note(
    errors: &[FileError],
    in_service: &InService<'_>,
    daemon: Option<&str>,
) -> Option<String> {
    let mut by_file: BTreeMap<&str, Vec<&FileError>> = BTreeMap::new();
    for e in errors {
        by_file.entry(e.file.as_str()).or_default().push(e);
    }
    if by_file.is_empty() {
        return None;
    }
    let files = plural(by_file.len(), "file");
    let mut out = match daemon {
        Some(url) => format!(
            "warning: {files} with errors: the daemon at {url} keeps running the last good version of what they define\n"
        ),
        None => format!("warning: {files} with errors: their runbooks are not listed\n"),
    };
    for (file, errs) in &by_file {
        let state = match (daemon, in_service.get(file)) {
            (None, _) => String::new(),
            (Some(_), Some(names)) => format!(
                ": in service as its last good version: {}",
                names.join(", ")
            ),
            (Some(_), None) => ": nothing of it in service (it never loaded)".to_string(),
        };
        out.push_str(&format!(
            "  {}{}\n",
            cell::terminal(file),
            cell::terminal(&state)
        ));
        for e in errs.iter().take(SHOWN) {
            out.push_str(&format!(
                "    {}:{}: {}\n",
                e.line,
                e.column,
                cell::terminal(&e.message)
            ));
        }
        if errs.len() > SHOWN {
            out.push_str(&format!("    and {} more\n", errs.len() - SHOWN));
        }
    }
    out.push_str("run `untoil validate` to see every problem with its fix");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(file: &str, line: usize, message: &str) -> FileError {
        FileError {
            file: file.into(),
            line,
            column: 1,
            message: message.into(),
        }
    }

    #[test]
    fn a_daemons_note_says_what_of_each_broken_file_it_still_runs() {
        let errors = [
            error("rb/a.yaml", 4, "unknown field `timeuot`"),
            error("rb/new.yaml", 1, "bad\u{1b}[2J"),
        ];
        let in_service = InService::from([("rb/a.yaml", vec!["a"])]);
        let note = note(&errors, &in_service, Some("http://127.0.0.1:1")).unwrap_or_default();
        assert_eq!(
            note,
            "warning: 2 files with errors: the daemon at http://127.0.0.1:1 keeps running the last good version of what they define\n  \
             rb/a.yaml: in service as its last good version: a\n    4:1: unknown field `timeuot`\n  \
             rb/new.yaml: nothing of it in service (it never loaded)\n    1:1: bad\\u{1b}[2J\n\
             run `untoil validate` to see every problem with its fix"
        );
    }

    #[test]
    fn the_files_note_caps_errors_per_file_and_none_without_errors() {
        let errors: Vec<FileError> = (1..=7).map(|l| error("x.yaml", l, "e")).collect();
        let note = note(&errors, &InService::new(), None).unwrap_or_default();
        assert!(
            note.starts_with(
                "warning: 1 file with errors: their runbooks are not listed\n  x.yaml\n"
            ),
            "{note}"
        );
        assert!(note.contains("    5:1: e\n    and 2 more\n"), "{note}");
        assert!(!note.contains("6:1"), "{note}");
        assert_eq!(super::note(&[], &InService::new(), None), None);
    }
}
