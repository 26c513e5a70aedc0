//! Runbooks that name approvers on a daemon without authentication: every caller is then
//! `anonymous`, which is no approver, so no run of theirs can ever be approved. Said at start
//! and after every reload, runbook by runbook.

use tracing::warn;

use crate::runbook::catalog::Catalog;

/// Warns about each runbook of `catalog` with `guards.approvers` when authentication is off.
pub fn check(catalog: &Catalog, auth_enabled: bool) {
    if auth_enabled {
        return;
    }
    for runbook in catalog.iter() {
        if let Some(approvers) = &runbook.guards.approvers {
            warn!(
                "runbook `{}` may be approved only by {}, but no authentication is configured: every caller is `anonymous`, so its runs can never be approved (they expire); start untoil serve with --auth-file",
                runbook.name,
                approvers.describe()
            );
        }
    }
}
