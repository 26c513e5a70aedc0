//! Answers every handler gives the same way: JSON errors, refused triggers and requests.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::engine::error::AcceptError;
use crate::store::error::StoreError;

/// A JSON error body: `{"error": "..."}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// A 503 with `Retry-After`, for conditions that pass.
fn unavailable(message: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// A store failure: 503 (the caller may retry), logged.
pub fn store_error(e: StoreError) -> Response {
    tracing::error!("store error: {e}");
    unavailable(format!("store unavailable: {e}"))
}

/// Maps a refused trigger or request to its HTTP answer (503 with Retry-After when it may pass
/// later).
pub fn accept_error(e: AcceptError) -> Response {
    match e {
        AcceptError::QueueFull(_)
        | AcceptError::FleetQueueFull { .. }
        | AcceptError::ShuttingDown => unavailable(e.to_string()),
        AcceptError::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
        AcceptError::NotFound(id) => error(StatusCode::NOT_FOUND, format!("no run with id {id}")),
        AcceptError::Conflict(m) => error(StatusCode::CONFLICT, m),
        AcceptError::Forbidden(m) => error(StatusCode::FORBIDDEN, m),
        AcceptError::Store(s) => store_error(s),
    }
}

/// A query string's parameters, or why they are refused: an unknown parameter is named with the
/// accepted ones (serde's "unknown field" message, said in the API's words).
pub fn query<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, String> {
    match q {
        Ok(axum::extract::Query(t)) => Ok(t),
        Err(e) => Err(e
            .body_text()
            .replace("Failed to deserialize query string: ", "")
            .replace("unknown field", "unknown parameter")),
    }
}
