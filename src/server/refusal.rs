//! How the checks in front of every handler (host, cross-site, content type) refuse a request:
//! a JSON error for the API and `/metrics`, the dashboard's error page for everything else.

use axum::http::StatusCode;
use axum::response::Response;

use crate::server::dashboard::layout::error_page;
use crate::server::respond::error;

/// A refusal of a request for `path`, in the form its caller reads.
pub fn refuse(path: &str, status: StatusCode, message: &str) -> Response {
    if path == "/api" || path.starts_with("/api/") || path == "/metrics" {
        error(status, message)
    } else {
        error_page(status, message)
    }
}
