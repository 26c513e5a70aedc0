//! The dashboard's form POSTs: approve or deny a run, reset a runbook's breakers, as the
//! authenticated principal (a form claims no other name). Each checks the CSRF token first and
//! answers with a redirect to the page that shows the result, or the error page saying why not
//! (403 with the reason when the runbook's approvers do not include the principal).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::engine::error::AcceptError;
use crate::identity::actor::Actor;
use crate::identity::principal::Principal;
use crate::run::id::RunId;
use crate::server::dashboard::csrf::check_csrf;
use crate::server::dashboard::form;
use crate::server::dashboard::format::enc;
use crate::server::dashboard::layout::error_page;
use crate::server::state::Shared;

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

fn refused(e: AcceptError) -> Response {
    let status = match e {
        AcceptError::Invalid(_) => StatusCode::NOT_FOUND,
        AcceptError::Conflict(_) => StatusCode::CONFLICT,
        AcceptError::Forbidden(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_page(status, &e.to_string())
}

async fn decide(
    d: Shared,
    principal: Principal,
    headers: HeaderMap,
    id: String,
    body: Bytes,
    approve: bool,
) -> Response {
    if let Err(e) = check_csrf(&headers, &form::pairs(&body)) {
        return error_page(StatusCode::FORBIDDEN, &e);
    }
    match d
        .engine
        .approvals
        .decide(&RunId(id.clone()), approve, &Actor::new(principal, None))
        .await
    {
        Ok(_) => see_other(&format!("/ui/runs/{}", enc(&id))),
        Err(e) => refused(e),
    }
}

/// `POST /ui/runs/{id}/approve`.
pub async fn approve(
    State(d): State<Shared>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    decide(d, principal, headers, id, body, true).await
}

/// `POST /ui/runs/{id}/deny`.
pub async fn deny(
    State(d): State<Shared>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    decide(d, principal, headers, id, body, false).await
}

/// `POST /ui/breakers/{runbook}/reset` (form field `key`: only that guard key).
pub async fn reset(
    State(d): State<Shared>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(runbook): Path<String>,
    body: Bytes,
) -> Response {
    let fields = form::pairs(&body);
    if let Err(e) = check_csrf(&headers, &fields) {
        return error_page(StatusCode::FORBIDDEN, &e);
    }
    match d
        .engine
        .reset_breakers(
            &runbook,
            fields.get("key").map(String::as_str),
            &Actor::new(principal, None),
        )
        .await
    {
        Ok(_) => see_other("/ui/runbooks"),
        Err(e) => refused(e),
    }
}
