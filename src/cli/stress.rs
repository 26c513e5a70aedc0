//! `untoil store-stress` (hidden): records synthetic finished runs as fast as it can from
//! several tasks, printing each id once it is durable (the crash tests kill it mid-way).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;

use crate::cli::global::{Global, block_on};
use crate::run::record::RunRecord;
use crate::store::Store;
use crate::store::sled::SledStore;

/// Runs `untoil store-stress`.
pub fn run(g: &Global, count: usize, writers: usize) -> Result<ExitCode> {
    // The sled store's own: it counts the flushes group commit shared.
    let store = SledStore::open(&g.data)?;
    let flushes = store.clone();
    let store: Arc<dyn Store> = Arc::new(store);
    let next = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..writers.max(1) {
            let (store, next) = (store.clone(), next.clone());
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let run = RunRecord::synthetic(i);
                    let id = run.id.clone();
                    store.finish_many(vec![run]).await?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{id}")?;
                    out.flush()?;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok::<(), anyhow::Error>(())
    })??;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{count} runs in {secs:.2}s: {:.0} runs/s, {} flushes",
        count as f64 / secs,
        flushes.flushes()
    );
    Ok(ExitCode::SUCCESS)
}
