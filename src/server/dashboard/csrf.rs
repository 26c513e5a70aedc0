//! Cross-site request forgery: the per-process token every dashboard form carries, and the
//! check of a POST (token plus Origin / Sec-Fetch-Site).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::http::{HeaderMap, header};
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
/// match this process's token, and a browser's Origin / Sec-Fetch-Site must be this site.
pub fn check_csrf(headers: &HeaderMap, fields: &BTreeMap<String, String>) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(format!(
            "cross-site request refused (Sec-Fetch-Site: {site})"
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || origin_host != host {
            return Err(format!("cross-origin request refused (Origin: {origin})"));
        }
    }
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
    fn csrf_needs_the_token_and_a_same_origin() {
        let mut fields = BTreeMap::new();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_csrf(&h, &fields).is_err());
        fields.insert("csrf".to_string(), csrf_token().to_string());
        assert!(check_csrf(&h, &fields).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(check_csrf(&h, &fields).is_err());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_csrf(&h, &fields).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
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
