//! The headers every answer carries, set in one layer over the whole router (fallback 404s,
//! 405s, 413s and error pages included): `X-Content-Type-Options: nosniff` on all, and on HTML
//! ones a Content-Security-Policy that allows scripts and styles from this site only and no
//! framing, `X-Frame-Options: DENY`, and `Cache-Control: no-store` unless the page set its own.

use axum::http::{HeaderValue, header};
use axum::response::Response;

/// The Content-Security-Policy of HTML answers.
pub const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'";

/// Middleware (`map_response`): adds the headers to `r`.
pub async fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/html"));
    if html {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    r
}
