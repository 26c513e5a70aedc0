//! Secret files others can read: the token file, the basic-auth file and the runbooks' secret
//! files are checked at start, and each one its group or others may read or change is named in a
//! warning saying how to fix it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tracing::warn;

use crate::runbook::catalog::Catalog;
use crate::runbook::model::SecretSource;

/// Warns when the secret file at `path` (`what` says which) is readable (or writable) by its
/// group or others.
pub fn check(path: &Path, what: &str) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o066 != 0 {
        warn!(
            "{} ({what}) is open to {} (mode {mode:04o}): chmod 600 {} so that only untoil's user reads it",
            path.display(),
            if mode & 0o006 != 0 {
                "everyone"
            } else {
                "its group"
            },
            path.display()
        );
    }
}

/// [`check`] for every secret file a runbook in `catalog` reads.
pub fn check_runbooks(catalog: &Catalog) {
    for runbook in catalog.iter() {
        for (name, secret) in &runbook.secrets {
            if let SecretSource::File(path) = &secret.source {
                check(
                    path,
                    &format!("secret `{name}` of runbook `{}`", runbook.name),
                );
            }
        }
    }
}
