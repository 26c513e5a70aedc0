//! A replica's ear on the fleet: one connection of its own (outside the pool, which cannot
//! hold a LISTEN) listening on the signal channel, each notification handed to the engine
//! ([`receive`]). A broken connection is opened again with growing pauses, said at warn; the
//! daemon goes on meanwhile (a follower elsewhere then finishes from the stored record, and a
//! cancel sent meanwhile is lost).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::engine::Engine;
use crate::engine::forward;
use crate::store::postgres::signal::{CHANNEL, decode};
use crate::store::signals::Signal;

/// The first pause before connecting again; it doubles up to [`MOST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MOST_PAUSE: Duration = Duration::from_secs(5);

/// How often an idle connection is checked (a connection cut without a word shows only when
/// used), and how long the check (or connecting) may take.
const CHECK_EVERY: Duration = Duration::from_secs(10);
const CHECK_WITHIN: Duration = Duration::from_secs(5);

/// The longest follower's token taken.
const MOST_TOKEN: usize = 64;

/// Where the listener connects: the pool's settings and TLS.
pub struct Ear {
    /// The pool's connection settings.
    pub config: tokio_postgres::Config,
    /// The pool's TLS connector.
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// The database's URL without its password, for messages.
    pub name: String,
}

/// Listens until `stop`, reconnecting as needed.
pub async fn listen(ear: Ear, engine: Arc<Engine>, stop: CancellationToken) {
    let mut pause = FIRST_PAUSE;
    loop {
        let why = tokio::select! {
            () = stop.cancelled() => return,
            why = session(&ear, &engine, &mut pause) => why,
        };
        if let Some(fleet) = &engine.fleet {
            fleet.set_listening(false);
        }
        warn!(
            "not listening for the fleet's signals on the database {} ({why}); connecting again in {pause:?} (meanwhile cancels and follows from other replicas do not reach this one)",
            ear.name
        );
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MOST_PAUSE);
    }
}

/// One connection: listens and hands signals on until it breaks; returns why.
async fn session(ear: &Ear, engine: &Arc<Engine>, pause: &mut Duration) -> String {
    let connecting = tokio::time::timeout(CHECK_WITHIN, ear.config.connect(ear.tls.clone()));
    let (client, mut connection) = match connecting.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return format!("cannot connect: {e}"),
        Err(_) => return format!("cannot connect within {CHECK_WITHIN:?}"),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    // The connection is driven here: its messages are the notifications.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return "stopped".to_string();
                    }
                }
                Ok(_) => {}
                Err(e) => return format!("the connection broke: {e}"),
            }
        }
        "the connection closed".to_string()
    });
    let _stop_driver = AbortOnDrop(driver.abort_handle());
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        return format!("cannot listen: {e}");
    }
    info!("listening for the fleet's signals on {CHANNEL}");
    if let Some(fleet) = &engine.fleet {
        fleet.set_listening(true);
    }
    *pause = FIRST_PAUSE;
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.tick().await;
    loop {
        tokio::select! {
            payload = rx.recv() => match payload {
                Some(payload) => match decode(&payload) {
                    Some(signal) => receive(engine, signal),
                    None => debug!(bytes = payload.len(), "ignored a malformed signal"),
                },
                None => break,
            },
            _ = check.tick() => {
                match tokio::time::timeout(CHECK_WITHIN, client.simple_query("")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("the connection failed a check: {e}"),
                    Err(_) => return "the connection did not answer a check in time".into(),
                }
            }
        }
    }
    driver
        .await
        .unwrap_or_else(|e| format!("the connection's task failed: {e}"))
}

/// Acts on a signal from the fleet (what arrives is data: a run id this replica looks up, a
/// follower's token): cancels a run running here, starts (or keeps alive) a
/// forward of a run in progress here, or hands events to a follower here. Anything else, or a
/// run this replica does not have, is ignored.
pub fn receive(engine: &Arc<Engine>, signal: Signal) {
    let Some(fleet) = engine.fleet.clone() else {
        return;
    };
    match signal {
        Signal::Cancel { run } => {
            let canceller = engine.canceller.clone();
            tokio::spawn(async move {
                if let Err(e) = canceller.cancel_here(&run).await {
                    tracing::warn!(run_id = %run, "cannot cancel the run another replica asked to cancel: {e}");
                }
            });
        }
        // Ours are ULIDs: a long one is not a follower's, and would only fill memory.
        Signal::Follow { token, .. } if token.len() > MOST_TOKEN => {}
        Signal::Follow { run, token } => {
            // A keepalive of a forward under way, else a new one if the run is here.
            if !fleet.kept_alive(&token)
                && engine.in_progress_here(&run)
                && fleet.forward_to(&token)
            {
                tokio::spawn(forward::forward(
                    fleet,
                    engine.followers.clone(),
                    run,
                    token,
                ));
            }
        }
        Signal::Events { ref token, .. } | Signal::End { ref token } => {
            let token = token.clone();
            fleet.deliver(&token, signal);
        }
    }
}

/// Aborts a task when dropped (the connection's, when a session ends or the daemon stops).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
