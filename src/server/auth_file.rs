//! The auth file (`untoil serve --auth-file FILE`): named users (basic auth, and optionally a
//! token of their own for the CLI) and named tokens (bearer), each with groups and a scope, as
//! YAML:
//!
//! ```yaml
//! users:
//!   - name: alice
//!     password: "..."          # or password_file: /run/secrets/alice
//!     token_file: alice.token  # optional: the same principal over a bearer token
//!     groups: [sre]
//! tokens:
//!   - name: alertmanager
//!     token: "..."             # or token_file: am.token (relative to this file)
//!     scope: alerts            # full (default) | read | alerts
//! ```
//!
//! Read with serde_yaml, unknown fields refused; every problem is reported at once as
//! `FILE:LINE:COL: what; what to do`, and the file is refused whole. No message holds a secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::identity::principal::{self, Principal};
use crate::identity::scope::Scope;
use crate::runbook::source_map::{Seg, SourceMap};

/// The file as written (no `Debug`: it holds secrets).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    users: Vec<RawEntry>,
    #[serde(default)]
    tokens: Vec<RawEntry>,
}

/// A user or a token as written: users take a password and maybe a token, tokens a token only
/// (checked after parsing, so that the message says where a password goes). No `Debug`: it
/// holds secrets.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    scope: Scope,
}

/// One user or token of the file: a principal and the secrets it authenticates with.
pub struct Entry {
    /// The user or token name.
    pub name: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// What it may do.
    pub scope: Scope,
    /// Its basic-auth password (users only).
    pub password: Option<String>,
    /// Its bearer token (every token; users that have one).
    pub token: Option<String>,
    /// Where its name is written, `FILE:LINE:COL`.
    pub place: String,
}

impl Entry {
    /// The principal of a request that sent its password.
    pub fn as_user(&self) -> Principal {
        Principal::user(self.name.clone(), self.groups.clone(), self.scope)
    }

    /// The principal of a request that sent its token.
    pub fn as_token(&self) -> Principal {
        Principal::token(self.name.clone(), self.groups.clone(), self.scope)
    }
}

/// No secrets: a password or token never reaches a log through `{:?}`.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .field("scope", &self.scope)
            .field("password", &self.password.as_ref().map(|_| "..."))
            .field("token", &self.token.as_ref().map(|_| "..."))
            .field("place", &self.place)
            .finish()
    }
}

/// What the file defines.
#[derive(Debug, Default)]
pub struct AuthFile {
    /// Users, then tokens, in file order.
    pub entries: Vec<Entry>,
    /// The `password_file`s and `token_file`s read (for the start-up check of who may read
    /// them).
    pub secret_files: Vec<PathBuf>,
}

/// One problem of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `FILE:LINE:COL`.
    pub place: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub help: String,
}

/// Why the auth file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// The file cannot be read.
    #[error("cannot read the auth file {path}: {reason}; check the path given to --auth-file")]
    Read {
        /// The file.
        path: String,
        /// Why (in the message, not a source: the message already says it).
        reason: std::io::Error,
    },
    /// The file has problems, each with its place.
    #[error("{}", render(.0))]
    Invalid(Vec<Problem>),
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}; {}", p.place, p.message, p.help))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and checks the auth file at `path` (and the secret files it names, relative to its
/// directory).
pub fn load(path: &Path) -> Result<AuthFile, AuthFileError> {
    let text = std::fs::read_to_string(path).map_err(|reason| AuthFileError::Read {
        path: path.display().to_string(),
        reason,
    })?;
    parse(path, &text)
}

/// Checks the text of the auth file at `path`.
pub fn parse(path: &Path, text: &str) -> Result<AuthFile, AuthFileError> {
    let mut c = Checker {
        file: path.display().to_string(),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        text,
        map: SourceMap::build(text),
        problems: Vec::new(),
        secret_files: Vec::new(),
    };
    let raw = c
        .raw()
        .ok_or_else(|| AuthFileError::Invalid(c.problems.clone()))?;
    let entries = c.check(raw);
    if c.problems.is_empty() {
        Ok(AuthFile {
            entries,
            secret_files: c.secret_files,
        })
    } else {
        Err(AuthFileError::Invalid(c.problems))
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

fn key(k: &str) -> Seg {
    Seg::Key(k.into())
}

/// A secret of an entry: `password` or `token`, written inline or in a file.
#[derive(Clone, Copy)]
struct Field {
    /// `password` or `token`.
    inline: &'static str,
    /// `password_file` or `token_file`.
    file: &'static str,
}

const PASSWORD: Field = Field {
    inline: "password",
    file: "password_file",
};
const TOKEN: Field = Field {
    inline: "token",
    file: "token_file",
};

struct Checker<'a> {
    file: String,
    dir: PathBuf,
    text: &'a str,
    map: SourceMap,
    problems: Vec<Problem>,
    secret_files: Vec<PathBuf>,
}

impl Checker<'_> {
    fn at_offset(&self, offset: usize) -> String {
        let (line, col) = line_col(self.text, offset);
        format!("{}:{line}:{col}", self.file)
    }

    /// `FILE:LINE:COL` of the value at `path` (or its nearest written ancestor).
    fn at(&self, path: &[Seg]) -> String {
        self.at_offset(self.map.value_span(path).start)
    }

    /// `LINE:COL` of a place of this file.
    fn short<'p>(&self, place: &'p str) -> &'p str {
        place
            .strip_prefix(self.file.as_str())
            .and_then(|p| p.strip_prefix(':'))
            .unwrap_or(place)
    }

    fn problem(&mut self, place: String, message: impl Into<String>, help: impl Into<String>) {
        self.problems.push(Problem {
            place,
            message: message.into(),
            help: help.into(),
        });
    }

    /// The file's shape, or None with its problem recorded.
    fn raw(&mut self) -> Option<RawFile> {
        if let Some(d) = self.map.duplicates.first() {
            let (line, col) = line_col(self.text, d.first.start);
            let place = self.at_offset(d.second.start);
            self.problem(
                place,
                format!(
                    "`{}` is given twice in one entry (first at {line}:{col})",
                    d.key
                ),
                "keep one of them",
            );
            return None;
        }
        match serde_yaml::from_str::<RawFile>(self.text) {
            Ok(raw) => Some(raw),
            Err(e) => {
                let place = match e.location() {
                    Some(l) => format!("{}:{}:{}", self.file, l.line(), l.column()),
                    None => format!("{}:1:1", self.file),
                };
                let message = shape_message(&e.to_string());
                self.problem(
                    place,
                    message,
                    "the file is `users:` and `tokens:` lists of entries with `name`, `password` or `password_file` (users), `token` or `token_file`, `groups` and `scope` (docs/api.md, Authentication)",
                );
                None
            }
        }
    }

    fn check(&mut self, raw: RawFile) -> Vec<Entry> {
        let mut out = Vec::new();
        if raw.users.is_empty() && raw.tokens.is_empty() {
            let place = self.at_offset(0);
            self.problem(
                place,
                "the auth file defines no users and no tokens",
                "add `users:` and/or `tokens:` entries, or leave out --auth-file",
            );
            return out;
        }
        // name -> where it was first given; token -> (whose, where).
        let mut names: HashMap<String, String> = HashMap::new();
        let mut tokens: HashMap<String, (String, String)> = HashMap::new();
        for (list, is_token) in [("users", false), ("tokens", true)] {
            let entries = if is_token { &raw.tokens } else { &raw.users };
            for (i, e) in entries.iter().enumerate() {
                let at = vec![key(list), Seg::Index(i)];
                let Some(entry) = self.entry(&at, e, is_token) else {
                    continue;
                };
                let here = self.short(&entry.place).to_string();
                if let Some(first) = names.get(&entry.name) {
                    let place = entry.place.clone();
                    self.problem(
                        place,
                        format!("the name `{}` is already given at {first}", entry.name),
                        "give each user and token a name of its own (a person's password and token go in one `users:` entry): it is who approvals and runs record",
                    );
                    continue;
                }
                names.insert(entry.name.clone(), here.clone());
                if let Some(token) = &entry.token {
                    if let Some((other, first)) = tokens.get(token) {
                        let mut p = at.clone();
                        p.push(key(if e.token.is_some() {
                            "token"
                        } else {
                            "token_file"
                        }));
                        let place = self.at(&p);
                        self.problem(
                            place,
                            format!(
                                "the token of `{}` is the same as the token of `{other}` (at {first})",
                                entry.name
                            ),
                            "give each token a secret of its own: the token says who calls",
                        );
                        continue;
                    }
                    tokens.insert(token.clone(), (entry.name.clone(), here));
                }
                out.push(entry);
            }
        }
        out
    }

    /// One user (`is_token` false) or token at `at`, or None with its problems recorded.
    fn entry(&mut self, at: &[Seg], e: &RawEntry, is_token: bool) -> Option<Entry> {
        let sub = |field: &str| {
            let mut p = at.to_vec();
            p.push(key(field));
            p
        };
        let place = self.at(&sub("name"));
        let before = self.problems.len();
        let kind = if is_token { "token" } else { "user" };
        if let Some(why) = principal::invalid_name(&e.name) {
            self.problem(
                place.clone(),
                format!("invalid {kind} name: {why}"),
                "name users and tokens with letters, digits, `.`, `_`, `@` and `-`",
            );
        } else if principal::is_reserved(&e.name) {
            self.problem(
                place.clone(),
                format!(
                    "`{}` is reserved: it is recorded for {}",
                    e.name,
                    match e.name.as_str() {
                        principal::ANONYMOUS => "every caller while no credential is configured",
                        principal::SHARED_TOKEN => "the token of --token-file and UNTOIL_TOKEN",
                        _ => "an approval that timed out",
                    }
                ),
                format!("choose another {kind} name"),
            );
        }
        for (j, g) in e.groups.iter().enumerate() {
            if let Some(why) = principal::invalid_name(g) {
                let mut p = sub("groups");
                p.push(Seg::Index(j));
                let place = self.at(&p);
                self.problem(
                    place,
                    format!("invalid group name: {why}"),
                    "name groups with letters, digits, `.`, `_`, `@` and `-`",
                );
            }
        }
        let password = if is_token {
            if let Some(written) = [
                ("password", e.password.is_some()),
                ("password_file", e.password_file.is_some()),
            ]
            .into_iter()
            .find_map(|(f, given)| given.then_some(f))
            {
                let p = self.at(&sub(written));
                self.problem(
                    p,
                    format!("a token has no `{written}`"),
                    "a token takes `token` or `token_file`; a person who logs in with a password goes under `users:` (where a `token` may be added for the CLI)",
                );
            }
            Ok(None)
        } else {
            self.secret(at, e, PASSWORD, kind)
        };
        let token = self.secret(at, e, TOKEN, kind);
        match (&password, &token) {
            (Ok(None), Ok(None)) if is_token => self.problem(
                place.clone(),
                format!("token `{}` has no `token` (or `token_file`)", e.name),
                "add `token: ...` or `token_file: PATH`",
            ),
            (Ok(None), Ok(None)) => self.problem(
                place.clone(),
                format!("user `{}` has no `password` (or `password_file`)", e.name),
                "add `password: ...` or `password_file: PATH` (a user may also have a `token` for the CLI)",
            ),
            _ => {}
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Entry {
            name: e.name.clone(),
            groups: e.groups.clone(),
            scope: e.scope,
            password: password.ok().flatten(),
            token: token.ok().flatten(),
            place,
        })
    }

    /// The `field` secret of entry `e` at `at`: None when not given; Err (recorded) when given
    /// twice, unreadable, empty, or not sendable.
    fn secret(
        &mut self,
        at: &[Seg],
        e: &RawEntry,
        field: Field,
        kind: &str,
    ) -> Result<Option<String>, ()> {
        let sub = |f: &str| {
            let mut p = at.to_vec();
            p.push(key(f));
            p
        };
        let is_token = field.inline == "token";
        let (inline, file) = if is_token {
            (&e.token, &e.token_file)
        } else {
            (&e.password, &e.password_file)
        };
        let (secret, place) = match (inline, file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                let p = self.at(&sub(field.file));
                self.problem(
                    p,
                    format!(
                        "{kind} `{}` has both `{}` and `{}`",
                        e.name, field.inline, field.file
                    ),
                    "keep one of them",
                );
                return Err(());
            }
            (Some(s), None) => (s.clone(), self.at(&sub(field.inline))),
            (None, Some(f)) => {
                let path = self.dir.join(f);
                let p = self.at(&sub(field.file));
                match std::fs::read_to_string(&path) {
                    Ok(s) => {
                        self.secret_files.push(path);
                        // A file's final line break is not part of the secret.
                        let s = if is_token {
                            s.trim().to_string()
                        } else {
                            s.trim_end_matches(['\n', '\r']).to_string()
                        };
                        (s, p)
                    }
                    Err(err) => {
                        self.problem(
                            p,
                            format!(
                                "cannot read {} ({} of {kind} `{}`): {err}",
                                path.display(),
                                field.file,
                                e.name
                            ),
                            "a relative path is taken from the auth file's directory",
                        );
                        return Err(());
                    }
                }
            }
        };
        let problem = if secret.is_empty() {
            Some(format!(
                "the {} of {kind} `{}` is empty",
                field.inline, e.name
            ))
        } else if is_token && secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some(format!(
                "the token of {kind} `{}` holds spaces or control characters, which a bearer token cannot",
                e.name
            ))
        } else if secret.chars().any(char::is_control) {
            Some(format!(
                "the password of {kind} `{}` holds control characters",
                e.name
            ))
        } else {
            None
        };
        match problem {
            Some(message) => {
                self.problem(
                    place,
                    message,
                    "use a long random one, e.g. the output of `openssl rand -hex 24`",
                );
                Err(())
            }
            None => Ok(Some(secret)),
        }
    }
}

/// serde_yaml's message without its trailing position (the place says it), and without the
/// value when it is about a secret.
fn shape_message(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    match message.split_once(": ") {
        Some((path, _)) if path.ends_with(".password") || path.ends_with(".token") => {
            format!("{path}: expected a string")
        }
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(Path::new("/etc/untoil/auth.yaml"), text) {
            Ok(f) => panic!("accepted: {f:?}"),
            Err(AuthFileError::Invalid(p)) => p
                .into_iter()
                .map(|p| format!("{}: {}", p.place, p.message))
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    fn one(text: &str) -> String {
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:?}");
        p.into_iter().next().unwrap_or_default()
    }

    const GOOD: &str = "\
users:
  - name: alice
    password: \"pw-alice\"
    token: alice-token-1
    groups: [sre]
  - name: bob
    password: pw-bob
tokens:
  - name: alertmanager
    token: am-token-1
    scope: alerts
  - name: grafana
    token: gr-token-1
    scope: read
";

    #[test]
    fn users_and_tokens_become_principals_with_their_groups_and_scopes() {
        let f = parse(Path::new("auth.yaml"), GOOD).expect("valid");
        let got: Vec<String> = f
            .entries
            .iter()
            .map(|e| {
                format!(
                    "{} {:?} {} {:?} {:?}",
                    e.name, e.groups, e.scope, e.password, e.token
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                r#"alice ["sre"] full Some("pw-alice") Some("alice-token-1")"#,
                r#"bob [] full Some("pw-bob") None"#,
                r#"alertmanager [] alerts None Some("am-token-1")"#,
                r#"grafana [] read None Some("gr-token-1")"#,
            ]
        );
        assert_eq!(f.entries[0].place, "auth.yaml:2:11");
        assert_eq!(f.entries[0].as_user().describe(), "user `alice`");
        assert_eq!(f.entries[0].as_token().describe(), "token `alice`");
        assert_eq!(f.entries[0].as_token().groups, ["sre"]);
        let shown = format!("{:?}", f.entries);
        assert!(
            !shown.contains("pw-alice") && !shown.contains("am-token-1"),
            "{shown}"
        );
    }

    #[test]
    fn shape_errors_name_file_line_and_column() {
        assert_eq!(
            one("users:\n  - name: a\n    pasword: x\n"),
            "/etc/untoil/auth.yaml:3:5: users[0]: unknown field `pasword`, expected one of `name`, `password`, `password_file`, `token`, `token_file`, `groups`, `scope`"
        );
        assert_eq!(
            one("tokens:\n  - name: g\n    token: t\n    scope: admin\n"),
            "/etc/untoil/auth.yaml:4:12: tokens[0].scope: unknown variant `admin`, expected one of `full`, `read`, `alerts`"
        );
        assert!(
            one("users:\n  - password: x\n")
                .starts_with("/etc/untoil/auth.yaml:2:5: users[0]: missing field `name`")
        );
        assert!(one("admins: []\n").contains("unknown field `admins`"));
        assert!(one("users: [\n").starts_with("/etc/untoil/auth.yaml:"));
        assert_eq!(
            one("users:\n  - name: a\n    name: b\n    password: x\n"),
            "/etc/untoil/auth.yaml:3:5: `name` is given twice in one entry (first at 2:5)"
        );
    }

    #[test]
    fn no_message_holds_a_secret() {
        for text in [
            "users:\n  - name: a\n    password: {x: hunter2}\n",
            "tokens:\n  - name: a\n    token: [hunter2]\n",
            "tokens:\n  - name: a\n    token: hunter2\n  - name: b\n    token: hunter2\n",
            "tokens:\n  - name: a\n    token: hun ter2\n",
        ] {
            let p = problems(text).join("\n");
            assert!(!p.contains("hunter2") && !p.contains("hun ter2"), "{p}");
        }
    }

    #[test]
    fn empty_duplicate_and_reserved_names_and_secrets_are_refused_where_they_are() {
        for (text, says) in [
            (
                "",
                "auth.yaml:1:1: the auth file defines no users and no tokens",
            ),
            (
                "# nothing yet\n",
                "auth.yaml:1:1: the auth file defines no users and no tokens",
            ),
            (
                "users: []\ntokens: []\n",
                "the auth file defines no users and no tokens",
            ),
            (
                "users:\n  - name: \"\"\n    password: x\n",
                "auth.yaml:2:11: invalid user name: the name is empty",
            ),
            (
                "users:\n  - name: anonymous\n    password: x\n",
                "auth.yaml:2:11: `anonymous` is reserved",
            ),
            (
                "tokens:\n  - name: token\n    token: x\n",
                "auth.yaml:2:11: `token` is reserved",
            ),
            (
                "users:\n  - name: expired\n    password: x\n",
                "`expired` is reserved",
            ),
            (
                "users:\n  - name: al ice\n    password: x\n",
                "auth.yaml:2:11: invalid user name",
            ),
            (
                "users:\n  - name: a\n    password: \"\"\n",
                "auth.yaml:3:15: the password of user `a` is empty",
            ),
            (
                "users:\n  - name: a\n",
                "auth.yaml:2:11: user `a` has no `password` (or `password_file`)",
            ),
            (
                "users:\n  - name: a\n    password: ~\n",
                "user `a` has no `password`",
            ),
            (
                "tokens:\n  - name: a\n    token: \"\"\n",
                "auth.yaml:3:12: the token of token `a` is empty",
            ),
            (
                "tokens:\n  - name: a\n    token: x\n    token_file: f\n",
                "auth.yaml:4:17: token `a` has both `token` and `token_file`",
            ),
            (
                "tokens:\n  - name: a\n    password: x\n",
                "auth.yaml:3:15: a token has no `password`",
            ),
            (
                "users:\n  - name: a\n    token: \"t t\"\n",
                "auth.yaml:3:12: the token of user `a` holds spaces",
            ),
            (
                "users:\n  - name: a\n    password: x\n    groups: [\"\"]\n",
                "auth.yaml:4:14: invalid group name",
            ),
            (
                "users:\n  - name: a\n    password: x\ntokens:\n  - name: a\n    token: t\n",
                "auth.yaml:5:11: the name `a` is already given at 2:11",
            ),
            (
                "tokens:\n  - name: a\n    token: same\n  - name: b\n    token: same\n",
                "auth.yaml:5:12: the token of `b` is the same as the token of `a` (at 2:11)",
            ),
        ] {
            let got = problems(text).join("\n");
            assert!(got.contains(says), "{text:?}\n  wants {says}\n  got {got}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let p = problems(
            "users:\n  - name: anonymous\n    password: x\n  - name: b\n    password: \"\"\n",
        );
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn secrets_may_live_in_files_beside_the_auth_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("am.token"), "am-token-2\n").expect("write");
        std::fs::write(dir.path().join("alice.pw"), " pass word \n").expect("write");
        let auth = dir.path().join("auth.yaml");
        std::fs::write(
            &auth,
            "users:\n  - name: alice\n    password_file: alice.pw\ntokens:\n  - name: am\n    token_file: am.token\n  - name: gone\n    token_file: /nonexistent/untoil.token\n",
        )
        .expect("write");
        let e = load(&auth).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.contains(":8:17: cannot read /nonexistent/untoil.token"),
            "{e}"
        );
        std::fs::write(
            &auth,
            "users:\n  - name: alice\n    password_file: alice.pw\ntokens:\n  - name: am\n    token_file: am.token\n",
        )
        .expect("write");
        let f = load(&auth).expect("valid");
        let secrets: Vec<(Option<&str>, Option<&str>)> = f
            .entries
            .iter()
            .map(|e| (e.password.as_deref(), e.token.as_deref()))
            .collect();
        assert_eq!(
            secrets,
            [(Some(" pass word "), None), (None, Some("am-token-2"))]
        );
        assert_eq!(f.secret_files.len(), 2);
    }

    #[test]
    fn the_example_auth_file_loads_once_its_secrets_exist() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/auth.yaml");
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = dir.path().join("auth.yaml");
        std::fs::copy(&example, &auth).expect("copy the example");
        std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
        for f in [
            "alice.password",
            "alice.token",
            "bob.password",
            "alertmanager.token",
            "grafana.token",
        ] {
            std::fs::write(dir.path().join("secrets").join(f), format!("{f}-secret\n"))
                .expect("write");
        }
        let f = load(&auth).expect("the example is valid");
        let names: Vec<&str> = f.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "alertmanager", "grafana"]);
        assert_eq!(f.secret_files.len(), 5);
    }

    #[test]
    fn positions_count_characters() {
        assert_eq!(line_col("ab\ncdé f", 8), (2, 5));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
