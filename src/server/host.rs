//! The middleware in front of everything but the health checks: a request for a host the daemon
//! does not answer to gets 421 Misdirected Request before any handler runs (DNS rebinding).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::server::authority::Authority;
use crate::server::connection::local_ip;
use crate::server::refusal::refuse;
use crate::server::state::Shared;

/// Paths load balancers and probes call by the pod's or machine's address: they change nothing
/// and reveal nothing, so any host may ask.
const ANY_HOST: [&str; 2] = ["/healthz", "/readyz"];

/// Middleware: 421 unless the request's host is one the daemon answers to.
pub async fn check_host(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if ANY_HOST.contains(&path) {
        return next.run(req).await;
    }
    let host = Authority::of_request(req.headers(), req.uri());
    if host.is_some_and(|h| s.site.allows(&h, local_ip(req.extensions()))) {
        return next.run(req).await;
    }
    let named = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(100)
        .collect::<String>();
    let message = if named.is_empty() {
        "this request names no host: send a `Host` header".to_string()
    } else {
        format!(
            "this daemon does not answer to the host `{named}`; if it should, start it with \
             --allowed-host {named} or --public-url (loopback names and addresses are always answered)"
        )
    };
    refuse(path, StatusCode::MISDIRECTED_REQUEST, &message)
}
