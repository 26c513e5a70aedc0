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
        let _route = Routed {
            fleet: fleet.clone(),
            token: token.clone(),
        };
        Follower {
            fleet,
            store,
            run,
            token,
            out,
        }
        .run(signals)
        .await;
    });
    rx
}

/// Unroutes a follower's token however its task ends.
struct Routed {
    fleet: Arc<Fleet>,
    token: String,
}

impl Drop for Routed {
    fn drop(&mut self) {
        self.fleet.unroute(&self.token);
    }
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
                            // Another replica's number: never trusted not to overflow.
                            let at = seq.saturating_add(i as u64);
                            if at < next {
                                continue;
                            }
                            if at > next {
                                tracing::debug!(run_id = %self.run, missed = at - next, "some of the run's live events did not arrive");
                            }
                            next = at.saturating_add(1);
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

    /// Asks the fleet for a forward (or keeps one alive); not while this replica does not listen
    /// (the answer would be lost, and the history is sent once): the next tick asks again.
    async fn ask(&self) {
        if !self.fleet.listening() {
            tracing::debug!(run_id = %self.run, "not asking the fleet yet: this replica is not listening");
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fleet::Kept;
    use crate::run::status::RunStatus;
    use crate::store::Change;
    use crate::store::sled::testing::with_running_run;

    fn line(text: &str) -> RunEvent {
        RunEvent::Output {
            index: 0,
            stream: "stdout".into(),
            line: text.into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_asks_only_once_its_replica_listens() {
        let (_dir, store, id) = with_running_run().await;
        let kept = Arc::new(Kept::default());
        let fleet = Arc::new(Fleet::new(kept.clone()));
        let _events = follow(fleet.clone(), store.clone(), id.clone());
        let asks = || {
            kept.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|s| matches!(s, Signal::Follow { .. }))
                .count()
        };
        // Its first ask and the one a tick later are not sent: their answer would be lost.
        tokio::time::sleep(ASK_EVERY + Duration::from_millis(200)).await;
        assert_eq!(asks(), 0);
        fleet.set_listening(true);
        let deadline = Instant::now() + ASK_EVERY * 5;
        while asks() == 0 {
            assert!(Instant::now() < deadline, "no ask once listening");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_drops_repeats_and_finishes_from_the_record_when_no_end_comes() {
        let (_dir, store, id) = with_running_run().await;
        let kept = Arc::new(Kept::default());
        let fleet = Arc::new(Fleet::new(kept.clone()));
        fleet.set_listening(true);
        let mut events = follow(fleet.clone(), store.clone(), id.clone());
        // It asks the fleet at once.
        let token = loop {
            let asked = kept.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(Signal::Follow { token, run }) = asked.into_iter().next() {
                assert_eq!(run, id);
                break token;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let batch = |seq, events| Signal::Events {
            token: token.clone(),
            seq,
            events,
        };
        fleet.deliver(&token, batch(0, vec![line("a")]));
        fleet.deliver(&token, batch(0, vec![line("a"), line("b")]));
        assert_eq!(events.recv().await, Some(line("a")));
        assert_eq!(
            events.recv().await,
            Some(line("b")),
            "the repeat is dropped"
        );
        // A number at the end of the range (another replica's, or anyone's who can NOTIFY) is
        // taken without overflowing.
        fleet.deliver(&token, batch(u64::MAX, vec![line("c"), line("d")]));
        assert_eq!(events.recv().await, Some(line("c")));
        assert_eq!(events.recv().await, Some(line("d")));
        // The run ends and no word of it comes (its replica died): the record ends the stream.
        let end: Change = Arc::new(|r: &mut RunRecord| r.status = RunStatus::Interrupted);
        store
            .transition(&id, &[RunStatus::Running], end)
            .await
            .expect("end");
        let last = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("finished in time");
        match last {
            Some(RunEvent::RunFinished { record }) => {
                assert_eq!(record.status, RunStatus::Interrupted)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(events.recv().await, None, "and nothing after");
    }
}
