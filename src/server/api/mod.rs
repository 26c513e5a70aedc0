//! The HTTP API, one file per resource: JSON in and out, the same report code as the CLI so the
//! numbers match exactly. Documented in docs/api.md.

pub mod actor;
pub mod approvals;
pub mod body;
pub mod breakers;
pub mod reports;
pub mod runbooks;
pub mod runs;
pub mod store;
