//! The dashboard's answer to a request without credentials: a challenge browsers prompt for.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// Browsers only prompt for credentials on a challenge they understand as the first one, so
/// the dashboard's 401 offers basic auth alone.
pub async fn basic(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    if r.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"untoil\", charset=\"UTF-8\""),
        );
    }
    r
}
