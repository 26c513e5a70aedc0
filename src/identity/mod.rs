//! Who asks: the [`principal`] a request authenticated as (a user, a named token, or
//! `anonymous` when authentication is off), the [`scope`] a credential is limited to, the
//! [`claim`] a request makes about who it is (recorded beside the principal, never instead of
//! it), the [`actor`] they make together, and the runbook [`approvers`] a principal must be
//! among to decide on a run.
//!
//! Nothing here reads files, headers or runbooks: the server authenticates, the engine records
//! and checks, with these types.

pub mod actor;
pub mod approvers;
pub mod claim;
pub mod principal;
pub mod scope;
