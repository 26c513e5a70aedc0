//! Following from here a run in progress on another replica: a fresh token routed here, and
//! `follow` sent every second until the first events arrive (the run may still be queued
//! there), then every few seconds while following (else the forward stops). The record is read
//! every second too: a run that ends without its `end` reaching here (the replica running it
//! died, or a notification was lost) is finished from its record, so a follower never hangs.
//! When this replica stops, its followers of runs elsewhere end (without the run's end).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::engine::fleet::Fleet;
use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::run::replay::replay;
use crate::store::Store;
use crate::store::signals::Signal;

/// How often the follower asks for a forward until the first events arrive, and reads the
/// record.
pub const ASK_EVERY: Duration = Duration::from_secs(1);

/// How often it asks again once events arrive (well within
/// [`crate::engine::forward::ABANDONED_AFTER`]).
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);

/// Events buffered for the follower.
const BUFFER: usize = 1024;

/// Follows run `run` (in progress elsewhere): its events as they arrive, ending with
/// `RunFinished` carrying the final record. Following stops when the receiver is dropped.
pub fn follow(fleet: Arc<Fleet>, store: Arc<dyn Store>, run: RunId) -> mpsc::Receiver<RunEvent> {
    let (out, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let token = ulid::Ulid::new().to_string();
        let signals = fleet.route(&token);
        Follower {
            fleet: fleet.clone(),
            store,
            run,
            token: token.clone(),
            out,
        }
        .run(signals)
        .await;
        fleet.unroute(&token);
    });
    rx
}

struct Follower {
    fleet: Arc<Fleet>,
    store: Arc<dyn Store>,
    run: RunId,
    token: String,
    out: mpsc::Sender<RunEvent>,
}

impl Follower {
    async fn run(&self, mut signals: mpsc::Receiver<Signal>) {
        let mut next = 0u64;
        let mut started = false;
        let mut asked = Instant::now();
        self.ask().await;
        let mut tick = tokio::time::interval(ASK_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        // Seen final by the previous read: the end (or the last events) may be on their way,
        // so the stream is finished from the record only if it is still final a read later.
        let mut final_once = false;
        loop {
            tokio::select! {
                () = self.out.closed() => return,
                // This replica stops: the follower may follow again through another.
                () = self.fleet.closed() => return,
                signal = signals.recv() => match signal {
                    Some(Signal::Events { seq, events, .. }) => {
                        started = true;
                        for (i, event) in events.into_iter().enumerate() {
                            let at = seq + i as u64;
                            if at < next {
                                continue;
                            }
                            if at > next {
                                tracing::debug!(run_id = %self.run, missed = at - next, "some of the run's live events did not arrive");
                            }
                            next = at + 1;
                            if self.out.send(event).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Signal::End { .. }) => {
                        if let Some(record) = self.final_record().await {
                            return self.finish(record, started).await;
                        }
                    }
                    Some(_) => {}
                    None => return,
                },
                _ = tick.tick() => {
                    let every = if started { KEEPALIVE_EVERY } else { ASK_EVERY };
                    if asked.elapsed() + Duration::from_millis(50) >= every {
                        self.ask().await;
                        asked = Instant::now();
                    }
                    match self.final_record().await {
                        Some(record) if final_once => return self.finish(record, started).await,
                        Some(_) => final_once = true,
                        None => final_once = false,
                    }
                }
            }
        }
    }

    /// Asks the fleet for a forward (or keeps one alive).
    async fn ask(&self) {
        let follow = Signal::Follow {
            run: self.run.clone(),
            token: self.token.clone(),
        };
        if let Err(e) = self.fleet.send(&follow).await {
            tracing::debug!(run_id = %self.run, "cannot ask the fleet for the run's events: {e}");
        }
    }

    /// The run's record, when it is final.
    async fn final_record(&self) -> Option<RunRecord> {
        match self.store.get_run(&self.run).await {
            Ok(Some(r)) if r.status.is_final() => Some(r),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(run_id = %self.run, "cannot read the followed run: {e}");
                None
            }
        }
    }

    /// Ends the stream with the final record; replayed from it first when no live event came
    /// (the run ran to its end before a forward started).
    async fn finish(&self, record: RunRecord, started: bool) {
        let mut events = if started { Vec::new() } else { replay(&record) };
        events.push(RunEvent::RunFinished {
            record: Box::new(record),
        });
        for event in events {
            if self.out.send(event).await.is_err() {
                return;
            }
        }
    }
}
