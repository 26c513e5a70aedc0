//! The credentials `untoil serve` accepts, from `--token-file`, `--basic-auth-file` and the
//! environment. An entry that would accept an empty user, password or token is refused at start
//! with the file (or variable) and line that holds it, instead of counting as authentication.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::server::auth::Auth;

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
    Ok((user.to_string(), password.to_string()))
}

/// The credentials the daemon accepts: the token file's token, `UNTOIL_TOKEN`, the basic-auth
/// file's `user:password` lines (blank lines and `#` comments skipped) and `UNTOIL_BASIC_AUTH`.
pub fn load(token_file: Option<&Path>, basic_auth_file: Option<&Path>) -> Result<Auth> {
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
    if let Some(f) = basic_auth_file {
        for (n, line) in read(f)?.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            basic.push(entry(line, &format!("{}:{}", f.display(), n + 1))?);
        }
    }
    if let Ok(p) = std::env::var("UNTOIL_BASIC_AUTH")
        && !p.trim().is_empty()
    {
        basic.push(entry(p.trim(), "UNTOIL_BASIC_AUTH")?);
    }
    Ok(Auth::new(tokens, basic))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            let e = entry(text, "f:3")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with(says), "{e}");
        }
    }
}
