//! The middleware in front of the API and the dashboard: a request with valid credentials goes
//! on with its [`Principal`] when its scope allows it (403 otherwise, before any handler); a
//! request without them gets 401 with the schemes accepted.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::identity::principal::Principal;
use crate::server::authorize;
use crate::server::refusal::refuse;
use crate::server::respond::error;
use crate::server::state::Shared;

/// Middleware: lets a request through with its [`Principal`] when its credentials are valid and
/// their scope allows the request; else 401 with the schemes accepted, or 403 saying why.
pub async fn authenticate(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    let Some(principal) = s.auth.identify(req.headers()) else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid credentials: send `Authorization: Bearer <token>` or basic auth",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"untoil\", Basic realm=\"untoil\""),
        );
        return r;
    };
    if let Err(why) = authorize::check(&principal, req.method(), req.uri().path()) {
        tracing::warn!(principal = %principal.name, scope = %principal.scope, "refused: {why}");
        return refuse(req.uri().path(), StatusCode::FORBIDDEN, &why);
    }
    req.extensions_mut().insert::<Principal>(principal);
    next.run(req).await
}
