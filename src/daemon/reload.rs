//! Hot reload: a change under the runbooks directory (file watch) or SIGHUP reloads the
//! runbooks in service. Runs in flight keep the version they started with.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::daemon::approvers;
use crate::engine::runbooks::Runbooks;

/// Changes closer together than this cause one reload (editors write files in several steps).
const SETTLE: Duration = Duration::from_millis(200);

/// Watches the runbooks directory; the returned task ends when `stop` fires (await it before the
/// daemon ends, so nothing holds the store after shutdown). `auth_enabled` says whether runbooks
/// that name approvers are warned about after each reload.
pub fn watch(
    runbooks: Arc<Runbooks>,
    auth_enabled: bool,
    stop: CancellationToken,
) -> (
    Option<notify::RecommendedWatcher>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    });
    let watcher = match watcher.and_then(|mut w| {
        w.watch(runbooks.dir(), RecursiveMode::Recursive)
            .map(|()| w)
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(
                "cannot watch {} for changes ({e}); reload with SIGHUP",
                runbooks.dir().display()
            );
            None
        }
    };
    let task = tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let reason = tokio::select! {
                _ = stop.cancelled() => return,
                Some(()) = rx.recv() => "file change",
                Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
            };
            // Let a burst of changes settle, then reload once.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SETTLE) => {}
            }
            while rx.try_recv().is_ok() {}
            info!("reloading runbooks ({reason})");
            let r = runbooks.clone();
            let _ = tokio::task::spawn_blocking(move || r.reload()).await;
            approvers::check(&runbooks.catalog(), auth_enabled);
        }
    });
    (watcher, task)
}
