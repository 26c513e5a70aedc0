//! The defined alert sources (`--sources DIR`, docs/sources.md), read once at start: each file's
//! diagnostics are logged with `file:line:col`, a source whose secret cannot be read answers 503
//! until the daemon restarts with it fixed, and a runbook that triggers on a source nobody
//! defined is named in a warning (its trigger waits for the definition).

use std::path::Path;

use tracing::{error, info, warn};

use crate::runbook::catalog::Catalog;
use crate::runbook::model::Trigger;
use crate::runbook::sources::Sources;
use crate::source::catalog::SourceCatalog;
use crate::source::receiver::Receivers;
use crate::trigger::source::{ALERTMANAGER, GRAFANA};

/// The `--sources` default, which may be missing without a warning.
pub const DEFAULT_DIR: &str = "./sources";

/// Loads and readies the sources of `dir`; a missing directory means none.
pub fn load(dir: &Path) -> Receivers {
    if !dir.exists() {
        // The default may be absent; a path someone chose that is absent is likely mistyped, and
        // would turn every signed endpoint into a 404 (PagerDuty stops retrying on 4xx).
        if dir == Path::new(DEFAULT_DIR) {
            info!(
                "no sources directory at {}: only the built-in receivers (Alertmanager, Grafana) take alerts",
                dir.display()
            );
        } else {
            warn!(
                "the sources directory {} does not exist: no defined source is served, every /api/v1/sources/NAME answers 404 (check --sources / UNTOIL_SOURCES)",
                dir.display()
            );
        }
        return Receivers::default();
    }
    let mut files = Sources::new();
    let (catalog, diagnostics) = SourceCatalog::load(dir, &mut files);
    if !diagnostics.is_empty() {
        let text = files.render(&diagnostics);
        if diagnostics.iter().any(|d| d.is_error()) {
            error!("source definitions with errors are not served:\n{text}");
        } else {
            warn!("source definitions:\n{text}");
        }
    }
    let receivers = Receivers::build(&catalog);
    for (name, state) in receivers.states() {
        match state {
            Ok(r) => info!(
                source = name,
                kind = r.def.kind.as_str(),
                signed = r.verifier.is_some(),
                "source ready at POST /api/v1/sources/{name}"
            ),
            Err(why) => error!(source = name, "source not ready (answers 503): {why}"),
        }
    }
    receivers
}

/// Warns about each runbook whose alert trigger names a source that is neither built in nor
/// defined.
pub fn check_runbooks(catalog: &Catalog, receivers: &Receivers, dir: &Path) {
    for rb in catalog.iter() {
        for t in &rb.triggers {
            let Trigger::Alert(a) = t else { continue };
            for s in &a.sources {
                if s != ALERTMANAGER && s != GRAFANA && !receivers.contains(s) {
                    warn!(
                        "runbook `{}` ({}) triggers on source `{s}`, which is not defined in {}: define it in {} and restart untoil (sources are read at start)",
                        rb.name,
                        rb.source.display(),
                        dir.display(),
                        dir.join(format!("{s}.yaml")).display()
                    );
                }
            }
        }
    }
}
