//! Request bodies that may be empty.

use axum::http::StatusCode;
use axum::response::Response;

use crate::server::respond::error;

/// A JSON body that may be empty (then the defaults apply); a 400 answer when it is not JSON of
/// the expected shape.
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
        ))
    })
}
