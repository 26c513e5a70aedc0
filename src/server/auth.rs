//! Who may call the webhook and the API: bearer tokens and/or basic auth, as Alertmanager's
//! `http_config` sends them.

use axum::http::HeaderMap;
use axum_extra::headers::authorization::{Basic, Bearer};
use axum_extra::headers::{Authorization, HeaderMapExt};

/// Accepted credentials; empty means no authentication.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Vec<String>,
    basic: Vec<(String, String)>,
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
    /// Credentials from bearer tokens and `user:password` pairs.
    pub fn new(tokens: Vec<String>, basic: Vec<(String, String)>) -> Auth {
        Auth {
            tokens: tokens.into_iter().filter(|t| !t.is_empty()).collect(),
            basic,
        }
    }

    /// Whether any credential is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.basic.is_empty()
    }

    /// The caller's identity when the request carries valid credentials (or auth is off).
    pub fn identify(&self, headers: &HeaderMap) -> Option<String> {
        if !self.enabled() {
            return Some("anonymous".into());
        }
        if let Some(Authorization(bearer)) = headers.typed_get::<Authorization<Bearer>>()
            && self.tokens.iter().any(|t| same(t, bearer.token()))
        {
            return Some("token".into());
        }
        if let Some(Authorization(basic)) = headers.typed_get::<Authorization<Basic>>()
            && self
                .basic
                .iter()
                .any(|(u, p)| same(u, basic.username()) && same(p, basic.password()))
        {
            return Some(basic.username().to_string());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = value.parse() {
            h.insert("authorization", v);
        }
        h
    }

    #[test]
    fn bearer_and_basic_credentials_are_checked() {
        let auth = Auth::new(vec!["t0k".into()], vec![("am".into(), "pw".into())]);
        assert_eq!(auth.identify(&headers("Bearer t0k")), Some("token".into()));
        assert_eq!(auth.identify(&headers("Bearer nope")), None);
        // "am:pw" in base64
        assert_eq!(auth.identify(&headers("Basic YW06cHc=")), Some("am".into()));
        assert_eq!(auth.identify(&headers("Basic YW06eHg=")), None);
        assert_eq!(auth.identify(&HeaderMap::new()), None);
        assert_eq!(
            Auth::default().identify(&HeaderMap::new()),
            Some("anonymous".into())
        );
    }
}
