//! The middleware in front of the API and the dashboard: a request with valid credentials goes
//! on with its [`Caller`]; any other gets 401 with the schemes accepted.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::respond::{Caller, error};
use crate::server::state::Shared;

/// Middleware: lets a request through with its [`Caller`] when its credentials are valid,
/// else answers 401 with the schemes accepted.
pub async fn authenticate(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    match s.auth.identify(req.headers()) {
        Some(who) => {
            req.extensions_mut().insert(Caller(who));
            next.run(req).await
        }
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing or invalid credentials: send `Authorization: Bearer <token>` or basic auth",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"untoil\", Basic realm=\"untoil\""),
            );
            r
        }
    }
}
