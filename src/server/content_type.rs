//! The middleware in front of the API's POSTs: they take `application/json` only (a `charset`
//! parameter is fine), so that a page of another site cannot send one. Browsers let a page
//! send `text/plain`, form and multipart bodies anywhere, but JSON only to its own origin or
//! with the target's CORS consent, which untoil never gives. Anything else gets 415.

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::respond::error;

/// Whether a `Content-Type` value is JSON: `application/json`, any case, any parameters.
pub fn is_json(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Middleware: 415 for a POST whose body is not declared as JSON (an empty body too: where the
/// body is optional, send it empty with the JSON content type).
pub async fn require_json(req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let mut types = req.headers().get_all(header::CONTENT_TYPE).iter();
    let given: Result<String, &str> = match (types.next(), types.next()) {
        (Some(t), None) => t
            .to_str()
            .map(|t| t.chars().take(100).collect())
            .map_err(|_| "a Content-Type that is not text"),
        (None, _) => Err("no Content-Type"),
        (Some(_), Some(_)) => Err("several Content-Type headers"),
    };
    let got = match given {
        Ok(t) if is_json(&t) => return next.run(req).await,
        Ok(t) => format!("got `{t}`"),
        Err(e) => format!("got {e}"),
    };
    error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("send the body as JSON with `Content-Type: application/json` ({got})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_any_case_and_parameters_is_json() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;x=y",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "text/plain",
            "application/jsonx",
            "application/json-seq",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
            "json",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }
}
