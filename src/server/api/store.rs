//! `GET /api/v1/store`: which store this daemon serves, so that a client can tell it is the one
//! it means.

use axum::Json;
use axum::extract::State;

use crate::server::state::Shared;

/// The store's id.
pub async fn identity(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "id": s.engine.store.id() }))
}
