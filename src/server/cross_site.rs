//! Requests a browser sends on behalf of another site's page: refused (403) before any handler
//! runs when they could change state, that is for every method but GET and HEAD.
//!
//! A browser names the page that caused a request in `Origin` (every POST) and, in browsers of
//! recent years, `Sec-Fetch-Site`. A request whose `Origin` is not the daemon's own
//! ([`Site::is_own_origin`]) or whose `Sec-Fetch-Site` is `cross-site` or `same-site` (a page
//! of the same host on another port is another origin, but the same site) is refused; one
//! without either header (curl, Alertmanager, the CLI) passes. The dashboard's forms carry a
//! CSRF token as well (`dashboard/csrf.rs`).
//!
//! GETs are answered whatever their origin: they change nothing, links from elsewhere to the
//! dashboard must work, and a browser keeps another site's page from reading the answer, since
//! untoil sends no CORS headers. A DNS-rebinding page, the one way to read answers as the
//! daemon's own origin, is refused by the host check (`host.rs`).

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::authority::{Authority, Origin};
use crate::server::connection::local_ip;
use crate::server::refusal::refuse;
use crate::server::site::Site;
use crate::server::state::Shared;

/// Whether a request with these headers may act: Ok, or why not.
pub fn check(
    site: &Site,
    headers: &HeaderMap,
    uri: &Uri,
    local: Option<IpAddr>,
) -> Result<(), String> {
    for site_header in headers.get_all("sec-fetch-site") {
        let value = site_header.to_str().unwrap_or("?");
        if !matches!(value, "same-origin" | "none") {
            return Err(format!(
                "cross-site request refused (Sec-Fetch-Site: {value}): a page of another site may not act on untoil"
            ));
        }
    }
    for origin in headers.get_all(header::ORIGIN) {
        let text = origin.to_str().unwrap_or("?");
        let own = match (Origin::parse(text), Authority::of_request(headers, uri)) {
            (Some(o), Some(h)) => site.is_own_origin(&o, &h, local),
            _ => false,
        };
        if !own {
            let shown: String = text.chars().take(100).collect();
            return Err(format!(
                "cross-origin request refused (Origin: {shown}): a page of another origin may not act on untoil"
            ));
        }
    }
    Ok(())
}

/// Middleware: 403 for a request that could change state and comes from another site's page.
pub async fn refuse_cross_site(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    match check(
        &s.site,
        req.headers(),
        req.uri(),
        local_ip(req.extensions()),
    ) {
        Ok(()) => next.run(req).await,
        Err(why) => refuse(req.uri().path(), StatusCode::FORBIDDEN, &why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9470"));
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_the_own_origin_and_same_origin_fetches_may_act() {
        let site = Site::default();
        let uri: Uri = "/api/v1/runs/x/approve".parse().expect("uri");
        let ok = |pairs| check(&site, &headers(pairs), &uri, None);
        assert!(ok(&[]).is_ok());
        assert!(ok(&[("origin", "http://127.0.0.1:9470")]).is_ok());
        assert!(ok(&[("sec-fetch-site", "same-origin")]).is_ok());
        assert!(ok(&[("sec-fetch-site", "none")]).is_ok());
        for refused in [
            &[("origin", "http://evil.example")][..],
            &[("origin", "null")],
            &[("origin", "http://127.0.0.1:9471")],
            &[
                ("origin", "http://127.0.0.1:9470"),
                ("origin", "http://evil.example"),
            ],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[("sec-fetch-site", "whatever")],
            &[
                ("origin", "http://127.0.0.1:9470"),
                ("sec-fetch-site", "same-site"),
            ],
        ] {
            assert!(ok(refused).is_err(), "{refused:?}");
        }
    }
}
