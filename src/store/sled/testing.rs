//! What unit tests elsewhere start from: a store in a temp directory holding one run.

use std::sync::Arc;

use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::status::RunStatus;
use crate::store::sled::SledStore;
use crate::store::{Candidate, Store};
use crate::trigger::key::DedupeKey;

/// A store (kept while the directory is) holding one synthetic run stored `running`.
pub async fn with_running_run() -> (tempfile::TempDir, Arc<dyn Store>, RunId) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("store"));
    let mut run = RunRecord::synthetic(0);
    run.status = RunStatus::Running;
    let id = run.id.clone();
    let candidate = Candidate {
        key: DedupeKey::Manual { run: id.0.clone() },
        run,
        gate: None,
    };
    store
        .admit(vec![candidate], Vec::new())
        .await
        .expect("admit");
    (dir, store, id)
}
