//! Cross-site request forgery: the per-process token every dashboard form carries, and its
//! check on a POST. The Origin / Sec-Fetch-Site check, the same for the API and the dashboard,
//! runs before any handler (`server/cross_site.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::http::HeaderMap;
use maud::{Markup, html};

/// The name of the form field that carries the token.
pub const FIELD: &str = "csrf";

/// The per-process CSRF token, from the OS random source (two ULIDs as a fallback).
pub fn csrf_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut bytes = [0u8; 32];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
        if random.is_err() {
            let a = ulid::Ulid::new().0.to_le_bytes();
            let b = ulid::Ulid::new().0.to_le_bytes();
            bytes[..16].copy_from_slice(&a);
            bytes[16..].copy_from_slice(&b);
        }
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    })
}

/// The hidden field that carries the token in a form.
pub fn field() -> Markup {
    html! { input type="hidden" name=(FIELD) value=(csrf_token()); }
}

/// Checks a dashboard POST: the CSRF token (form field `csrf` or header `X-CSRF-Token`) must
/// match this process's token.
pub fn check_csrf(headers: &HeaderMap, fields: &BTreeMap<String, String>) -> Result<(), String> {
    let given = fields
        .get(FIELD)
        .map(String::as_str)
        .or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    let want = csrf_token();
    // Compared in constant time, so the answer's timing tells nothing about the token.
    let (a, b) = (given.as_bytes(), want.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    if diff != 0 {
        return Err("missing or invalid CSRF token; reload the page and try again".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn csrf_needs_the_token_in_the_form_or_the_header() {
        let mut fields = BTreeMap::new();
        let mut h = HeaderMap::new();
        assert!(check_csrf(&h, &fields).is_err());
        h.insert("x-csrf-token", HeaderValue::from_static("not-the-token"));
        assert!(check_csrf(&h, &fields).is_err());
        fields.insert("csrf".to_string(), csrf_token().to_string());
        assert!(check_csrf(&h, &fields).is_ok());
        fields.clear();
        if let Ok(v) = HeaderValue::from_str(csrf_token()) {
            h.insert("x-csrf-token", v);
        }
        assert!(check_csrf(&h, &fields).is_ok());
    }

    #[test]
    fn the_field_carries_the_token_under_its_name() {
        assert_eq!(
            field().into_string(),
            format!(
                "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
                csrf_token()
            )
        );
    }
}
