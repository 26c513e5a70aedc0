//! Circuit breakers: `GET /api/v1/breakers` and `POST /api/v1/breakers/{runbook}/reset`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::identity::principal::Principal;
use crate::server::api::actor::{actor, attribution};
use crate::server::api::body::optional_json;
use crate::server::respond::{accept_error, store_error};
use crate::server::state::Shared;

/// The body of a reset.
#[derive(Debug, Deserialize, Default)]
pub struct Reset {
    /// Only this guard key (default: all of the runbook's).
    key: Option<String>,
    /// Who the caller says resets: logged as a claim beside the authenticated principal.
    by: Option<String>,
}

/// `GET /api/v1/breakers`.
pub async fn list(State(s): State<Shared>) -> Response {
    match s.engine.store.guard_states().await {
        Ok(states) => Json(
            states
                .into_iter()
                .map(|(runbook, key, s)| {
                    serde_json::json!({
                        "runbook": runbook, "key": key, "open": s.breaker.is_some(),
                        "opened_at": s.breaker.as_ref().map(|b| b.opened_at),
                        "reason": s.breaker.as_ref().map(|b| b.reason.clone()),
                        "consecutive_failures": s.consecutive_failures,
                        "last_start": s.last_start,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// `POST /api/v1/breakers/{runbook}/reset`: answers the keys reset and who reset them.
pub async fn reset(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(runbook): Path<String>,
    body: Bytes,
) -> Response {
    let (key, actor) = match optional_json::<Reset>(&body)
        .and_then(|b| Ok((b.key, actor(principal, "by", b.by)?)))
    {
        Ok(parts) => parts,
        Err(r) => return *r,
    };
    match s
        .engine
        .reset_breakers(&runbook, key.as_deref(), &actor)
        .await
    {
        Ok(keys) => {
            let mut answer = attribution(&actor);
            answer["reset"] = serde_json::json!(keys);
            Json(answer).into_response()
        }
        Err(e) => accept_error(e),
    }
}
