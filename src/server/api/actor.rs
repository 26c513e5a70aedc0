//! Who acts in an API request: the principal the authentication middleware found, and beside it
//! the name the body claims (`by`, `user`), which never replaces it.

use axum::http::StatusCode;
use axum::response::Response;

use crate::identity::actor::Actor;
use crate::identity::claim;
use crate::identity::principal::Principal;
use crate::server::respond::error;

/// The actor of a request by `principal` whose body's `field` held `claimed`; a 400 answer
/// when the claim cannot be recorded (too long, control characters).
pub fn actor(
    principal: Principal,
    field: &str,
    claimed: Option<String>,
) -> Result<Actor, Box<Response>> {
    match claim::parse(field, claimed) {
        Ok(c) => Ok(Actor::new(principal, c)),
        Err(e) => Err(Box::new(error(StatusCode::BAD_REQUEST, e))),
    }
}

/// The JSON fields that say who acted: `{by}` plus `claimed_by` when the request claimed
/// another name.
pub fn attribution(actor: &Actor) -> serde_json::Value {
    let mut v = serde_json::json!({ "by": actor.name() });
    if let Some(c) = &actor.claimed {
        v["claimed_by"] = serde_json::json!(c);
    }
    v
}
