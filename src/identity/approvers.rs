//! Who may approve or deny the runs of a runbook (`guards.approvers`): principals named in
//! `users`, or belonging to one of `groups`. `anonymous`, the principal of a daemon without
//! authentication, is never one of them.

use serde::Serialize;

use crate::identity::principal::Principal;

/// The principals that may decide on a runbook's runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Approvers {
    /// User or token names.
    pub users: Vec<String>,
    /// Groups (of the auth file).
    pub groups: Vec<String>,
}

impl Approvers {
    /// Whether `p` is one of them: listed by name or by one of its groups, and authenticated.
    pub fn admits(&self, p: &Principal) -> bool {
        !p.is_anonymous()
            && (self.users.contains(&p.name) || self.groups.iter().any(|g| p.in_group(g)))
    }

    /// Who they are, for messages: `users alice, carol or groups sre`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.users.is_empty() {
            parts.push(format!("users {}", self.users.join(", ")));
        }
        if !self.groups.is_empty() {
            parts.push(format!("groups {}", self.groups.join(", ")));
        }
        parts.join(" or ")
    }

    /// Ok when `p` may approve (or deny, when not `approve`) a run of `runbook`; else why not,
    /// for the 403 answer.
    pub fn check(&self, runbook: &str, approve: bool, p: &Principal) -> Result<(), String> {
        if self.admits(p) {
            return Ok(());
        }
        let verb = if approve { "approved" } else { "denied" };
        if p.is_anonymous() {
            return Err(format!(
                "runbook {runbook} may be {verb} only by {}, and this daemon has no authentication configured, so no one can: start `untoil serve` with --auth-file (users and tokens with groups), --basic-auth-file or --token-file and decide as one of them",
                self.describe()
            ));
        }
        Err(format!(
            "runbook {runbook} may be {verb} by {}; you are {}",
            self.describe(),
            p.with_groups()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::scope::Scope;

    fn approvers() -> Approvers {
        Approvers {
            users: vec!["alice".into()],
            groups: vec!["sre".into()],
        }
    }

    #[test]
    fn listed_users_and_members_of_listed_groups_may_decide() {
        let a = approvers();
        assert!(
            a.check("g", true, &Principal::user("alice", vec![], Scope::Full))
                .is_ok()
        );
        let carol = Principal::token("carol", vec!["dev".into(), "sre".into()], Scope::Full);
        assert!(a.check("g", false, &carol).is_ok());
        let bob = Principal::user("bob", vec!["dev".into()], Scope::Full);
        assert_eq!(
            a.check("g", true, &bob),
            Err(
                "runbook g may be approved by users alice or groups sre; you are bob (groups dev)"
                    .into()
            )
        );
        assert_eq!(
            a.check("g", false, &Principal::user("bob", vec![], Scope::Full)),
            Err("runbook g may be denied by users alice or groups sre; you are bob".into())
        );
    }

    #[test]
    fn anonymous_matches_no_approver_even_when_named() {
        let named = Approvers {
            users: vec!["anonymous".into()],
            groups: vec![],
        };
        let e = named
            .check("g", true, &Principal::anonymous())
            .err()
            .unwrap_or_default();
        assert!(e.contains("no authentication configured"), "{e}");
        assert!(e.contains("--auth-file"), "{e}");
    }

    #[test]
    fn descriptions_name_only_what_is_listed() {
        let users = Approvers {
            users: vec!["alice".into(), "carol".into()],
            groups: vec![],
        };
        assert_eq!(users.describe(), "users alice, carol");
        let groups = Approvers {
            users: vec![],
            groups: vec!["sre".into()],
        };
        assert_eq!(groups.describe(), "groups sre");
    }
}
