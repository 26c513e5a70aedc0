//! Who asks for an action: the authenticated principal and, beside it, the name the request
//! claimed. The engine records the principal's name; the claim only next to it.

use crate::identity::principal::Principal;

/// A principal and the claim its request made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Who authenticated.
    pub principal: Principal,
    /// The name the request claimed, when it claimed one other than the principal's.
    pub claimed: Option<String>,
}

impl Actor {
    /// `principal` claiming `claimed`; a claim of its own name is no claim.
    pub fn new(principal: Principal, claimed: Option<String>) -> Actor {
        let claimed = claimed.filter(|c| *c != principal.name);
        Actor { principal, claimed }
    }

    /// The principal's name.
    pub fn name(&self) -> &str {
        &self.principal.name
    }

    /// The name with the claim beside it: `alice (claimed: bob)`.
    pub fn shown(&self) -> String {
        crate::identity::claim::shown(&self.principal.name, self.claimed.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::scope::Scope;

    #[test]
    fn a_claim_of_ones_own_name_is_dropped() {
        let alice = Principal::user("alice", vec![], Scope::Full);
        assert_eq!(
            Actor::new(alice.clone(), Some("alice".into())).claimed,
            None
        );
        let claiming = Actor::new(alice, Some("admin".into()));
        assert_eq!(claiming.claimed.as_deref(), Some("admin"));
        assert_eq!(claiming.name(), "alice");
        assert_eq!(claiming.shown(), "alice (claimed: admin)");
    }
}
