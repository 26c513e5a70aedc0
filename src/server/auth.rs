//! Who may call the webhook, the API and the dashboard, and as whom: bearer tokens and basic-auth
//! users (as Alertmanager's `http_config` sends them), each the credential of one
//! [`Principal`]. With none configured every request is `anonymous`.

use axum::http::HeaderMap;
use axum_extra::headers::authorization::{Basic, Bearer};
use axum_extra::headers::{Authorization, HeaderMapExt};

use crate::identity::principal::{Principal, SHARED_TOKEN};
use crate::identity::scope::Scope;

/// Accepted credentials, each with its principal; empty means no authentication.
#[derive(Clone, Default)]
pub struct Auth {
    /// (token, principal).
    tokens: Vec<(String, Principal)>,
    /// (password, principal): the user name is the principal's.
    users: Vec<(String, Principal)>,
}

/// Names only: a secret never reaches a log through `{:?}`.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[(String, Principal)]| -> Vec<String> {
            v.iter().map(|(_, p)| p.name.clone()).collect()
        };
        f.debug_struct("Auth")
            .field("tokens", &names(&self.tokens))
            .field("users", &names(&self.users))
            .finish()
    }
}

/// Compares without an early exit, so response time does not reveal how much matched.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

impl Auth {
    /// The credentials of `--token-file`/`UNTOIL_TOKEN` (each the principal `token`) and
    /// `user:password` pairs (each the principal of its user), all with full scope and no groups.
    pub fn new(tokens: Vec<String>, basic: Vec<(String, String)>) -> Auth {
        let mut auth = Auth::default();
        for t in tokens.into_iter().filter(|t| !t.is_empty()) {
            auth.add_token(t, Principal::token(SHARED_TOKEN, Vec::new(), Scope::Full));
        }
        for (user, password) in basic {
            auth.add_user(password, Principal::user(user, Vec::new(), Scope::Full));
        }
        auth
    }

    /// Accepts `token` as a bearer token for `principal`.
    pub fn add_token(&mut self, token: String, principal: Principal) {
        self.tokens.push((token, principal));
    }

    /// Accepts basic auth with the principal's name and `password` for `principal`.
    pub fn add_user(&mut self, password: String, principal: Principal) {
        self.users.push((password, principal));
    }

    /// Whether any credential is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.users.is_empty()
    }

    /// The principals, tokens first (several credentials may share one: the shared token).
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.tokens.iter().chain(&self.users).map(|(_, p)| p)
    }

    /// Whether `token` is already accepted (a second principal for it would be ambiguous).
    pub fn accepts_token(&self, token: &str) -> bool {
        self.tokens.iter().any(|(t, _)| t == token)
    }

    /// The caller's principal when the request carries valid credentials, `anonymous` when auth
    /// is off, else None.
    pub fn identify(&self, headers: &HeaderMap) -> Option<Principal> {
        if !self.enabled() {
            return Some(Principal::anonymous());
        }
        if let Some(Authorization(bearer)) = headers.typed_get::<Authorization<Bearer>>()
            && let Some((_, p)) = self.tokens.iter().find(|(t, _)| same(t, bearer.token()))
        {
            return Some(p.clone());
        }
        if let Some(Authorization(basic)) = headers.typed_get::<Authorization<Basic>>()
            && let Some((_, p)) = self.users.iter().find(|(password, p)| {
                // Both compared, so a right name with a wrong password takes as long as neither.
                same(&p.name, basic.username()) & same(password, basic.password())
            })
        {
            return Some(p.clone());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::principal::Via;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = value.parse() {
            h.insert("authorization", v);
        }
        h
    }

    fn name(p: Option<Principal>) -> Option<String> {
        p.map(|p| p.name)
    }

    #[test]
    fn bearer_and_basic_credentials_are_checked() {
        let auth = Auth::new(vec!["t0k".into()], vec![("am".into(), "pw".into())]);
        assert_eq!(
            name(auth.identify(&headers("Bearer t0k"))),
            Some("token".into())
        );
        assert_eq!(auth.identify(&headers("Bearer nope")), None);
        // "am:pw" in base64
        assert_eq!(
            name(auth.identify(&headers("Basic YW06cHc="))),
            Some("am".into())
        );
        assert_eq!(auth.identify(&headers("Basic YW06eHg=")), None);
        assert_eq!(auth.identify(&HeaderMap::new()), None);
        assert_eq!(
            Auth::default().identify(&HeaderMap::new()),
            Some(Principal::anonymous())
        );
    }

    #[test]
    fn existing_credentials_are_full_principals_without_groups() {
        let auth = Auth::new(vec!["t0k".into()], vec![("am".into(), "pw".into())]);
        let token = auth.identify(&headers("Bearer t0k"));
        assert_eq!(token, Some(Principal::token("token", vec![], Scope::Full)));
        let user = auth.identify(&headers("Basic YW06cHc="));
        assert!(
            user.is_some_and(|u| u.via == Via::Basic
                && u.groups.is_empty()
                && u.scope == Scope::Full)
        );
    }

    #[test]
    fn named_tokens_and_users_authenticate_as_themselves() {
        let mut auth = Auth::default();
        auth.add_token(
            "g-tok".into(),
            Principal::token("grafana", vec![], Scope::Read),
        );
        auth.add_user(
            "pw".into(),
            Principal::user("am", vec!["sre".into()], Scope::Full),
        );
        let grafana = auth.identify(&headers("Bearer g-tok"));
        assert!(grafana.is_some_and(|p| p.name == "grafana" && p.scope == Scope::Read));
        let am = auth.identify(&headers("Basic YW06cHc="));
        assert!(am.is_some_and(|p| p.groups == ["sre"]));
        assert!(auth.accepts_token("g-tok") && !auth.accepts_token("pw"));
        assert_eq!(auth.principals().count(), 2);
    }

    #[test]
    fn debug_output_names_principals_and_never_secrets() {
        let auth = Auth::new(
            vec!["s3cret-token".into()],
            vec![("am".into(), "pa55word".into())],
        );
        let shown = format!("{auth:?}");
        assert!(shown.contains("am") && shown.contains("token"), "{shown}");
        assert!(
            !shown.contains("s3cret-token") && !shown.contains("pa55word"),
            "{shown}"
        );
    }
}
