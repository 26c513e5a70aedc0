//! The daemon: wiring only. It opens the store and reconciles what a previous run left, builds
//! the engine, and starts its tasks (workers, [`scheduler`], [`reload`]) and the HTTP server;
//! on shutdown it stops accepting, lets running steps finish for the grace period, and
//! interrupts the rest.
//!
//! On a database the daemon is one replica of a fleet (docs/fleet.md): it joins with a lease
//! kept by its [`heartbeat`] (and fences itself, exiting non-zero, when it cannot keep it), and
//! instead of reconciling as if alone it runs the [`reaper`], at start and on an interval, which
//! takes over only what replicas whose lease expired left. Its [`signals`] listener hears what
//! the other replicas ask of it (cancel a run, forward a run's events to a follower).
//!
//! `run(settings, listener, shutdown)` serves on a listener the caller binds, so tests start the
//! daemon on 127.0.0.1:0.

pub mod approvers;
pub mod exposed;
pub mod files;
pub mod heartbeat;
pub mod locator;
pub mod memory;
pub mod reaper;
pub mod reload;
pub mod scheduler;
pub mod settings;
pub mod signals;
pub mod sources;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::daemon::locator::Location;
use crate::daemon::scheduler::Scheduler;
use crate::daemon::settings::Settings;
use crate::engine::Engine;
use crate::engine::clock::{Clock, SystemClock};
use crate::engine::lifecycle;
use crate::engine::runbooks::Runbooks;
use crate::exec::executor::Executor;
use crate::exec::process::kill_leftovers;
use crate::run::record::RunRecord;
use crate::runbook::plugins::Plugins;
use crate::server::listen::{self, Limits};
use crate::server::site::Site;
use crate::server::state::AppState;
use crate::store::Store;
use crate::store::database::{Database, DatabaseOptions};
use crate::store::postgres::PgStore;
use crate::store::postgres::signal::PgSignals;
use crate::store::signals::Signals;
use crate::store::sled::SledStore;

/// Starts the daemon on `listener` and serves until `shutdown` resolves; then stops accepting,
/// lets running steps finish up to the grace period, and interrupts the rest.
pub async fn run<F>(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (store, replica, wire) = open_store(&settings).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    // A replica of a fleet takes over only what dead replicas left (the reaper, below, once the
    // engine exists): other replicas' running runs are live.
    let mut reconciled = match &replica {
        Some(_) => Default::default(),
        None => {
            store
                .reconcile(Arc::new(move |r: &mut RunRecord| {
                    lifecycle::interrupt(r, now, false)
                }))
                .await?
        }
    };
    // Their step processes die before anything new starts.
    let killed = kill_leftovers(&reconciled.interrupted);
    if !reconciled.interrupted.is_empty() || !killed.is_empty() {
        warn!(
            interrupted = reconciled.interrupted.len(),
            killed_process_groups = killed.len(),
            "runs left running by a previous untoil were marked interrupted"
        );
    }
    // Key files and control sockets of remote steps a killed untoil could not remove.
    let swept = tokio::task::spawn_blocking(crate::exec::step::private_dir::remove_stale)
        .await
        .unwrap_or(0);
    if swept > 0 {
        warn!(
            directories = swept,
            "removed the remote steps' private directories (key files, control sockets) that an untoil which died left behind"
        );
    }
    let executor = Arc::new(
        Executor::new(Plugins::discover(&settings.plugins))
            .map_err(anyhow::Error::msg)?
            .with_grace(settings.kill_grace)
            .with_pass_env(settings.pass_env.clone())
            .with_store(store.clone()),
    );
    let runbooks = Arc::new(Runbooks::new(
        settings.runbooks.clone(),
        settings.plugins.clone(),
    ));
    {
        let runbooks = runbooks.clone();
        tokio::task::spawn_blocking(move || runbooks.reload()).await?;
    }
    exposed::check_runbooks(&runbooks.catalog());
    let receivers = {
        let dir = settings.sources.clone();
        Arc::new(tokio::task::spawn_blocking(move || sources::load(&dir)).await?)
    };
    sources::check_runbooks(&runbooks.catalog(), &receivers, &settings.sources);
    approvers::check(&runbooks.catalog(), settings.auth.enabled());
    let capacity = settings
        .queue_capacity
        .max(reconciled.queued.len() + reconciled.interrupted.len())
        .max(1);
    let (signals, ear) = wire.unzip();
    let engine = Arc::new(Engine::in_fleet(
        store.clone(),
        runbooks.clone(),
        executor,
        clock.clone(),
        capacity,
        signals,
    ));
    // Kept until the server stopped: runs finishing in the shutdown grace can still be
    // cancelled and followed from other replicas.
    let deaf = CancellationToken::new();
    let listening = ear.map(|ear| tokio::spawn(signals::listen(ear, engine.clone(), deaf.clone())));
    // Interrupted runs of idempotent runbooks start again, queued after those that waited.
    let retries = engine.retry_interrupted(&reconciled.interrupted).await?;
    reconciled.queued.extend(retries);
    // Queued runs from before the restart resume first; approvals are re-armed.
    engine.resume(&reconciled).await?;
    if !reconciled.queued.is_empty() {
        info!(queued = reconciled.queued.len(), "resuming queued runs");
    }
    if let Some(replica) = &replica {
        reaper::once(replica, &engine).await?;
        // Verdict windows are timers of the replica that finished the run: one that died took
        // them along, so a starting replica arms them all (the first verdict stands).
        for run in replica.awaiting_verdict().await? {
            engine.verdicts.watch(&run).await;
        }
    }

    let stop = CancellationToken::new();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..settings.workers.max(1) {
        workers.spawn(engine.workers.clone().work());
    }
    let scheduler = tokio::spawn(scheduler::run(
        Arc::new(Scheduler {
            admission: engine.admission.clone(),
            runbooks: runbooks.clone(),
            store: store.clone(),
            clock,
        }),
        stop.clone(),
    ));
    let (watcher, reloader) = reload::watch(runbooks, settings.auth.enabled(), stop.clone());
    let reaping = replica.clone().map(|r| {
        tokio::spawn(reaper::run(
            r,
            engine.clone(),
            settings.lease_ttl,
            stop.clone(),
        ))
    });

    let addr = listener.local_addr()?;
    let site = Site::new(
        settings.public_url.clone(),
        &settings.allowed_hosts,
        Some(addr),
    );
    info!(
        hosts = site.names().join(", "),
        "answering requests for loopback and these hosts"
    );
    let limits = files::fit(
        Limits {
            max_connections: settings.max_connections,
            refusing: listen::REFUSING,
            header_read_timeout: settings.header_read_timeout,
        },
        settings.workers.max(1),
    );
    let app = crate::server::app(Arc::new(AppState {
        engine: engine.clone(),
        auth: settings.auth.clone(),
        body_limit: settings.body_limit,
        site,
        sources: receivers,
    }));
    // On a database, CLI commands find a daemon by --server: no address is left in --data.
    let location = Location::of(addr, store.id());
    let on_data = settings.database.is_none();
    if on_data && let Err(e) = locator::write(&settings.data, &location) {
        warn!(
            "cannot write {}: {e}; the CLI will not find this daemon by its store",
            locator::FILE
        );
    }
    info!(
        "untoil listening on http://{addr} (dashboard at http://{addr}/, API at /api/v1, health at /healthz)"
    );
    drop(store);
    let queue = engine.queue.clone();
    let fleet = engine.fleet.clone();
    let server_stop = stop.clone();
    // A replica that cannot keep its lease stops its steps at once (their process groups are
    // killed) and stops, before another replica may take its runs over.
    // The heartbeat is a task of its own, kept through the shutdown grace: runs finishing then
    // still hold their leases.
    let fence = CancellationToken::new();
    let beating = replica.clone().map(|r| {
        let (ttl, engine, fence) = (settings.lease_ttl, engine.clone(), fence.clone());
        tokio::spawn(async move {
            let why = heartbeat::keep(r, ttl).await;
            error!("fencing: {why}");
            // No kill grace: other replicas may reap within a sixth of the lease.
            engine.executor.hurry();
            engine.workers.interrupt();
            fence.cancel();
        })
    });
    let lost = fence.clone();
    let graceful = async move {
        tokio::select! {
            () = shutdown => {}
            () = lost.cancelled() => {}
        }
        info!("shutting down: no new work is accepted");
        queue.close();
        // Requests following runs of other replicas would hold the server's end for as long as
        // those runs go on.
        if let Some(f) = &fleet {
            f.close();
        }
        server_stop.cancel();
    };
    let server = tokio::spawn(listen::serve(listener, app, limits, graceful));

    stop.cancelled().await;
    let _ = scheduler.await;
    if let Some(r) = reaping {
        let _ = r.await;
    }
    // Its queue is closed: what waits in it is the other replicas' to run, now rather than
    // once this one's lease ends after its running runs.
    if let Some(replica) = &replica {
        match replica.disown().await {
            Ok(0) => {}
            Ok(n) => info!(
                runs = n,
                "queued and waiting runs left to the other replicas"
            ),
            Err(e) => warn!(
                "cannot leave queued runs to the other replicas (they take them when this replica's lease ends): {e}"
            ),
        }
    }
    drop(watcher);
    let _ = reloader.await;
    // Let running runs finish up to the grace period, then interrupt them. A fence (now or
    // during the grace) interrupted them already and SIGKILLed their steps: their workers get a
    // moment to let go, and one still retrying a write through a database outage must not hold
    // the exit (its run is another replica's now).
    let drained = async {
        let deadline = tokio::time::Instant::now() + settings.shutdown_grace;
        let all_done = async { while workers.join_next().await.is_some() {} };
        if tokio::time::timeout_at(deadline, all_done).await.is_err() {
            warn!(
                running = engine.queue.running(),
                "shutdown grace expired: interrupting running runs"
            );
            engine.workers.interrupt();
            while workers.join_next().await.is_some() {}
        }
    };
    let fenced_wait = async {
        fence.cancelled().await;
        tokio::time::sleep(FENCED_LET_GO).await;
    };
    let cut_short = tokio::select! {
        () = drained => false,
        () = fenced_wait => true,
    };
    if cut_short {
        workers.abort_all();
        while workers.join_next().await.is_some() {}
    }
    if let Some(b) = beating {
        b.abort();
    }
    let fenced = fence.is_cancelled();
    let _ = server.await;
    deaf.cancel();
    if let Some(l) = listening {
        let _ = l.await;
    }
    if let Some(replica) = &replica
        && !fenced
        && let Err(e) = replica.leave().await
    {
        warn!(
            "cannot end this replica's lease (the others take over its queue when it expires): {e}"
        );
    }
    if on_data {
        locator::remove(&settings.data, &location);
    }
    // Connection and helper tasks can hold the engine for a moment after the server future
    // ends; the store (and its directory lock) goes only with the last of them. Wait briefly,
    // so that a caller starting again on the same directory finds it free.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&engine) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if fenced {
        anyhow::bail!(
            "stopped after fencing: this replica lost its lease, its steps were stopped and other replicas take over its runs; start it again (a new replica) once the database answers"
        );
    }
    info!("stopped; queued runs stay queued for the next start");
    Ok(())
}

/// How long a fenced replica's workers get, after their steps were killed, before the exit cuts
/// them short: the step's output pipes drain within two seconds of its group's death.
const FENCED_LET_GO: Duration = Duration::from_secs(3);
/// How a replica signals the fleet and where it listens to it.
type Wire = (Arc<dyn Signals>, signals::Ear);

/// Opens the store: the PostgreSQL database, joined as a new replica of the fleet (returned
/// too, with how it signals the others), or sled under `--data`; either migrated to the current
/// schema, which is logged.
async fn open_store(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn Store>, Option<PgStore>, Option<Wire>)> {
    if let Some(options) = &settings.database {
        // A replica stalled inside a transaction past its lease has lost its runs to the fleet:
        // the server ends that session, so its row locks do not keep the others from them.
        let options = DatabaseOptions {
            idle_in_transaction: Some(settings.lease_ttl),
            ..options.clone()
        };
        let db = Database::new(&options, |k| std::env::var(k).ok())?;
        let pg = PgStore::open(db.pool.clone(), db.name.clone()).await?;
        let replica = pg
            .join(&host_name(), std::process::id(), settings.lease_ttl)
            .await?;
        info!(
            replica = replica.replica().unwrap_or_default(),
            lease_ttl = ?settings.lease_ttl,
            "runs are kept in the database {}, shared with the fleet's other replicas",
            db.name
        );
        let signals: Arc<dyn Signals> = Arc::new(PgSignals::new(db.pool.clone(), db.name.clone()));
        let ear = signals::Ear {
            config: db.config,
            tls: db.tls,
            name: db.name,
        };
        return Ok((
            Arc::new(replica.clone()),
            Some(replica),
            Some((signals, ear)),
        ));
    }
    let data = settings.data.clone();
    let sled = tokio::task::spawn_blocking(move || SledStore::open(&data)).await??;
    let migrated = sled.migrated().clone();
    if let Some(from) = migrated.from.filter(|f| *f < migrated.to) {
        info!(
            from,
            to = migrated.to,
            "store at {} migrated to the current schema",
            settings.data.display()
        );
    }
    Ok((Arc::new(sled), None, None))
}

/// This host's name, recorded with the replica for operators ("unknown" when unreadable).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Waits for SIGTERM or SIGINT. The handlers are installed when this is called (inside the
/// runtime), so a signal that comes before the future is first polled is not missed.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {}
                    _ = i.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
