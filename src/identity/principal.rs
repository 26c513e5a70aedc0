//! The authenticated identity of a request: a name, the groups it belongs to, the scope of its
//! credential and how it authenticated. It comes from the credential alone, never from what the
//! request says about itself (see [`crate::identity::claim`]).

use crate::identity::scope::Scope;

/// The principal of every request while no credential is configured.
pub const ANONYMOUS: &str = "anonymous";

/// The principal of the token of `--token-file` / `UNTOIL_TOKEN`, which has no name of its own.
pub const SHARED_TOKEN: &str = "token";

/// Who "decides" an approval that timed out; no principal may take this name, so a recorded
/// expiry can never be a person's denial and the other way round.
pub const EXPIRED: &str = "expired";

/// Names no user or token may have: each already means something else in records.
pub const RESERVED: [&str; 3] = [ANONYMOUS, SHARED_TOKEN, EXPIRED];

/// Longest user, token or group name.
pub const MAX_NAME: usize = 64;

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// HTTP basic auth: a user and its password.
    Basic,
    /// A bearer token.
    Token,
    /// Nothing: no credential is configured, so none is asked for.
    Anonymous,
}

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user or token name (`token` for the shared token, `anonymous` when auth is off).
    pub name: String,
    /// The groups it belongs to (for runbook approvers).
    pub groups: Vec<String>,
    /// What it may do.
    pub scope: Scope,
    /// How it authenticated.
    pub via: Via,
}

impl Principal {
    /// A basic-auth user.
    pub fn user(name: impl Into<String>, groups: Vec<String>, scope: Scope) -> Principal {
        Principal {
            name: name.into(),
            groups,
            scope,
            via: Via::Basic,
        }
    }

    /// A bearer token's principal.
    pub fn token(name: impl Into<String>, groups: Vec<String>, scope: Scope) -> Principal {
        Principal {
            name: name.into(),
            groups,
            scope,
            via: Via::Token,
        }
    }

    /// Everyone, while no credential is configured: full scope, no groups.
    pub fn anonymous() -> Principal {
        Principal {
            name: ANONYMOUS.into(),
            groups: Vec::new(),
            scope: Scope::Full,
            via: Via::Anonymous,
        }
    }

    /// Whether it is the principal of a daemon without authentication.
    pub fn is_anonymous(&self) -> bool {
        self.via == Via::Anonymous
    }

    /// Whether it belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Who it is, for messages: ``user `alice` ``, ``token `grafana` `` or `anonymous`.
    pub fn describe(&self) -> String {
        match self.via {
            Via::Basic => format!("user `{}`", self.name),
            Via::Token => format!("token `{}`", self.name),
            Via::Anonymous => ANONYMOUS.to_string(),
        }
    }

    /// Who it is with its groups, for refusals: `bob` or `bob (groups dev, ops)`.
    pub fn with_groups(&self) -> String {
        if self.groups.is_empty() {
            self.name.clone()
        } else {
            format!("{} (groups {})", self.name, self.groups.join(", "))
        }
    }
}

/// Why `name` cannot be a user, token or group name, if it cannot: names appear in records,
/// logs and messages, so they are short words of letters, digits, `.`, `_`, `@` and `-`.
pub fn invalid_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    if name.chars().count() > MAX_NAME {
        return Some(format!("the name is longer than {MAX_NAME} characters"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
    {
        return Some(format!(
            "`{}` is not a name: use letters, digits, `.`, `_`, `@` and `-`, starting with a letter or digit",
            name.escape_default()
        ));
    }
    None
}

/// Whether `name` is reserved ([`RESERVED`]).
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_plain_words() {
        for ok in [
            "alice",
            "a",
            "svc.alertmanager",
            "bob@example.com",
            "on-call_2",
        ] {
            assert_eq!(invalid_name(ok), None, "{ok}");
        }
        for bad in [
            "",
            "-lead",
            ".x",
            "alice smith",
            "a:b",
            "ünïcode",
            "tab\there",
        ] {
            assert!(invalid_name(bad).is_some(), "{bad:?}");
        }
        assert!(invalid_name(&"x".repeat(MAX_NAME)).is_none());
        assert!(invalid_name(&"x".repeat(MAX_NAME + 1)).is_some());
        assert!(is_reserved("anonymous") && is_reserved("token") && is_reserved("expired"));
        assert!(!is_reserved("alice"));
    }

    #[test]
    fn principals_describe_how_they_authenticated() {
        let alice = Principal::user("alice", vec!["sre".into()], Scope::Full);
        assert_eq!(alice.describe(), "user `alice`");
        assert!(alice.in_group("sre") && !alice.in_group("dev"));
        assert_eq!(alice.with_groups(), "alice (groups sre)");
        let grafana = Principal::token("grafana", vec![], Scope::Read);
        assert_eq!(grafana.describe(), "token `grafana`");
        assert_eq!(grafana.with_groups(), "grafana");
        let anonymous = Principal::anonymous();
        assert!(anonymous.is_anonymous() && anonymous.scope == Scope::Full);
        assert!(!alice.is_anonymous());
    }
}
