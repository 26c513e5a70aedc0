//! The credentials `untoil serve` accepts, from `--auth-file` (named users and tokens with
//! groups and scopes), `--token-file`, `--basic-auth-file` and the environment. An entry that
//! would accept an empty user, password or token is refused at start with the file (or
//! variable) and line that holds it, instead of counting as authentication; so is a name or a
//! token two entries share, since each credential must say who calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::identity::principal;
use crate::server::auth::Auth;
use crate::server::auth_file;

/// What the daemon accepts, and the secret files it read beyond the ones named by flags.
pub struct Credentials {
    /// The credentials.
    pub auth: Auth,
    /// The auth file's `password_file`s and `token_file`s (checked for who may read them).
    pub secret_files: Vec<PathBuf>,
}

/// Reads a secret file whole.
fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// One `user:password` entry, `place` naming where it is (`FILE:LINE` or the variable).
fn entry(text: &str, place: &str) -> Result<(String, String)> {
    let Some((user, password)) = text.split_once(':') else {
        bail!("{place}: a basic-auth entry is `user:password`, this one has no `:`");
    };
    if user.is_empty() {
        bail!("{place}: a basic-auth entry has an empty user name");
    }
    if password.is_empty() {
        bail!("{place}: the basic-auth entry of `{user}` has an empty password");
    }
    if principal::is_reserved(user) {
        bail!(
            "{place}: the basic-auth user name `{user}` is reserved (`anonymous`, `token` and `expired` are recorded for callers without credentials, the --token-file token and expired approvals); choose another name"
        );
    }
    Ok((user.to_string(), password.to_string()))
}

/// The credentials the daemon accepts: the token file's token, `UNTOIL_TOKEN` (both the
/// principal `token`), the basic-auth file's `user:password` lines (blank lines and `#`
/// comments skipped) and `UNTOIL_BASIC_AUTH`, and the auth file's users and tokens.
pub fn load(
    token_file: Option<&Path>,
    basic_auth_file: Option<&Path>,
    auth_file: Option<&Path>,
) -> Result<Credentials> {
    let mut tokens = Vec::new();
    if let Some(f) = token_file {
        let token = read(f)?.trim().to_string();
        if token.is_empty() {
            bail!("{}: the token file is empty", f.display());
        }
        tokens.push(token);
    }
    if let Ok(t) = std::env::var("UNTOIL_TOKEN")
        && !t.trim().is_empty()
    {
        tokens.push(t.trim().to_string());
    }
    let mut basic = Vec::new();
    // user -> where it is written.
    let mut basic_places: HashMap<String, String> = HashMap::new();
    if let Some(f) = basic_auth_file {
        for (n, line) in read(f)?.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let place = format!("{}:{}", f.display(), n + 1);
            let e = entry(line, &place)?;
            basic_places.entry(e.0.clone()).or_insert(place);
            basic.push(e);
        }
    }
    if let Ok(p) = std::env::var("UNTOIL_BASIC_AUTH")
        && !p.trim().is_empty()
    {
        let e = entry(p.trim(), "UNTOIL_BASIC_AUTH")?;
        basic_places
            .entry(e.0.clone())
            .or_insert_with(|| "UNTOIL_BASIC_AUTH".into());
        basic.push(e);
    }
    let mut auth = Auth::new(tokens, basic);
    let mut secret_files = Vec::new();
    if let Some(f) = auth_file {
        let file = auth_file::load(f)?;
        for e in file.entries {
            if let Some(other) = basic_places.get(&e.name) {
                bail!(
                    "{}: `{}` is also a basic-auth user ({other}); give each user one entry, in the auth file",
                    e.place,
                    e.name
                );
            }
            if let Some(token) = &e.token {
                if auth.accepts_token(token) {
                    bail!(
                        "{}: the token of `{}` is also the --token-file or UNTOIL_TOKEN token; give it a secret of its own",
                        e.place,
                        e.name
                    );
                }
                auth.add_token(token.clone(), e.as_token());
            }
            if let Some(password) = &e.password {
                auth.add_user(password.clone(), e.as_user());
            }
        }
        secret_files = file.secret_files;
    }
    Ok(Credentials { auth, secret_files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::principal::Principal;
    use crate::identity::scope::Scope;

    fn full(name: &str) -> Principal {
        Principal::user(name, Vec::new(), Scope::Full)
    }

    #[test]
    fn empty_users_and_passwords_are_refused_where_they_are() {
        assert!(entry("am:pw", "f:1").is_ok());
        assert!(entry("am:p:w", "f:1").is_ok_and(|(u, p)| u == "am" && p == "p:w"));
        for (text, says) in [
            (":pw", "f:3: a basic-auth entry has an empty user name"),
            (
                "am:",
                "f:3: the basic-auth entry of `am` has an empty password",
            ),
            ("ampw", "f:3: a basic-auth entry is `user:password`"),
            (
                "anonymous:pw",
                "f:3: the basic-auth user name `anonymous` is reserved",
            ),
            (
                "expired:pw",
                "f:3: the basic-auth user name `expired` is reserved",
            ),
        ] {
            let e = entry(text, "f:3")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with(says), "{e}");
        }
    }

    #[test]
    fn the_auth_file_joins_the_other_credentials_without_sharing_names_or_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let basic = dir.path().join("basic");
        let token = dir.path().join("token");
        let auth = dir.path().join("auth.yaml");
        std::fs::write(&basic, "lead:pw\n").expect("write");
        std::fs::write(&token, "shared-token\n").expect("write");
        let with = |text: &str| {
            std::fs::write(&auth, text).expect("write");
            load(Some(&token), Some(&basic), Some(&auth))
        };
        let ok =
            with("users:\n  - name: alice\n    password: pw\n    groups: [sre]\n").expect("valid");
        let names: Vec<&str> = ok.auth.principals().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["token", "lead", "alice"]);
        assert!(ok.auth.principals().any(|p| *p == full("lead")));
        let e = with("users:\n  - name: lead\n    password: other\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.ends_with(&format!("auth.yaml:2:11: `lead` is also a basic-auth user ({}:1); give each user one entry, in the auth file", basic.display())), "{e}");
        let e = with("tokens:\n  - name: am\n    token: shared-token\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("the token of `am` is also the --token-file"),
            "{e}"
        );
        assert!(!e.contains("shared-token"), "{e}");
    }
}
