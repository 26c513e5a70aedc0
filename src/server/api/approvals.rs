//! Approvals: runs waiting for a person (`GET /api/v1/approvals`, with what each would run) and
//! the decisions (`POST /api/v1/runs/{id}/approve` and `/deny`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::engine::Engine;
use crate::exec::executor::PlannedStep;
use crate::exec::plan::Plan;
use crate::identity::approvers::Approvers;
use crate::identity::principal::Principal;
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::server::api::actor::actor;
use crate::server::api::body::optional_json;
use crate::server::respond::{accept_error, store_error};
use crate::server::state::Shared;
use crate::store::RunFilter;

/// The body of a decision.
#[derive(Debug, Deserialize, Default)]
pub struct Decision {
    /// Who the caller says decides: recorded as `claimed_by` beside the authenticated principal.
    by: Option<String>,
}

/// A run waiting for approval, with when it expires and what it would run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Waiting {
    /// The run.
    pub run: RunRecord,
    /// When the approval expires (None when its runbook is no longer loaded).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What it would run, rendered as a dry run (None when it cannot be prepared).
    pub plan: Option<Vec<PlannedStep>>,
    /// Who may approve or deny it (None: anyone who may call the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
}

/// Runs waiting for approval, oldest first, each with its plan.
pub async fn waiting(engine: &Engine) -> Result<Vec<Waiting>, crate::store::error::StoreError> {
    let filter = RunFilter {
        runbook: None,
        status: Some(RunStatus::PendingApproval),
        limit: 0,
        ..RunFilter::default()
    };
    let mut runs = engine.store.list_runs(&filter).await?;
    runs.reverse();
    let catalog = engine.runbooks.catalog();
    Ok(runs
        .into_iter()
        .map(|run| {
            let rb = catalog.get(&run.runbook);
            let expires_at = rb.map(|rb| {
                run.created_at
                    + chrono::Duration::from_std(rb.guards.approval_timeout).unwrap_or_default()
            });
            // Previewed as a dry run: secrets show as the mask.
            let mut preview = run.clone();
            preview.dry_run = true;
            let plan = rb
                .and_then(|rb| Plan::of(Arc::clone(rb), &preview).ok())
                .map(|p| engine.executor.preview(&p));
            // As the decision will judge them: by the runbook version the run waits with.
            let approvers = engine.approvals.approvers_of(&run.id);
            Waiting {
                run,
                expires_at,
                plan,
                approvers,
            }
        })
        .collect())
}

/// `GET /api/v1/approvals`.
pub async fn list(State(s): State<Shared>) -> Response {
    match waiting(&s.engine).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => store_error(e),
    }
}

/// Approves or denies as the authenticated principal, with the body's `by` as its claim; 403
/// when the runbook's approvers do not include the principal.
async fn decide(
    s: Shared,
    principal: Principal,
    id: String,
    body: &[u8],
    approve: bool,
) -> Response {
    let actor = match optional_json::<Decision>(body).and_then(|b| actor(principal, "by", b.by)) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match s.engine.approvals.decide(&RunId(id), approve, &actor).await {
        Ok(record) => Json(record).into_response(),
        Err(e) => accept_error(e),
    }
}

/// `POST /api/v1/runs/{id}/approve`.
pub async fn approve(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    decide(s, principal, id, &body, true).await
}

/// `POST /api/v1/runs/{id}/deny`.
pub async fn deny(
    State(s): State<Shared>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    decide(s, principal, id, &body, false).await
}
