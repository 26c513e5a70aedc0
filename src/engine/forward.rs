//! A run in progress here forwarded to a follower on another replica: the events so far, then
//! live ones as they come, in batches of what is available, sent one after the other from one
//! task so that their order holds. It ends with the run (`end`; the follower reads the final
//! record from the store) or when the follower stopped asking for it, so a follower that went
//! away does not cost a notification per output line forever. Runs nobody follows from
//! elsewhere are never forwarded.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::engine::fleet::Fleet;
use crate::engine::followers::Followers;
use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::store::signals::Signal;

/// How long a forward goes on without its follower asking again (it asks every few seconds).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// How often a forward waiting for events checks that its follower still asks.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Most events sent in one batch (the wire splits a batch further to fit its payloads).
const BATCH: usize = 256;

/// Forwards run `run`'s events to the follower `token` until the run ends or the follower
/// stops asking.
pub async fn forward(fleet: Arc<Fleet>, followers: Arc<Followers>, run: RunId, token: String) {
    let (history, mut live) = followers.subscribe(&run);
    let mut seq = 0u64;
    let mut batch = history;
    let mut ended = false;
    let mut missed = 0u64;
    loop {
        let finished = batch
            .iter()
            .position(|e| matches!(e, RunEvent::RunFinished { .. }));
        if let Some(at) = finished {
            batch.truncate(at);
            ended = true;
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            let events = Signal::Events {
                token: token.clone(),
                seq,
                events: std::mem::take(&mut batch),
            };
            if let Err(e) = fleet.send(&events).await {
                tracing::debug!(run_id = %run, "cannot forward the run's events: {e}");
            }
            seq = seq.saturating_add(n);
        }
        // The events lost to a full channel: the follower sees the gap in `seq`.
        seq = seq.saturating_add(std::mem::take(&mut missed));
        if ended {
            if let Err(e) = fleet
                .send(&Signal::End {
                    token: token.clone(),
                })
                .await
            {
                tracing::debug!(run_id = %run, "cannot tell a follower the run ended: {e}");
            }
            break;
        }
        let abandoned = fleet
            .last_asked(&token)
            .is_none_or(|at| at.elapsed() > ABANDONED_AFTER);
        if abandoned {
            break;
        }
        match tokio::time::timeout(CHECK_EVERY, live.recv()).await {
            Ok(Ok(event)) => batch.push(event),
            // Missed some (the follower notices the gap); go on with what comes.
            Ok(Err(RecvError::Lagged(n))) => {
                seq = seq.saturating_add(n);
                continue;
            }
            // Forgotten here without an end (abandoned by a lost lease): the follower finishes
            // from the record.
            Ok(Err(RecvError::Closed)) => ended = true,
            Err(_) => continue,
        }
        // And whatever else is already there, in the same batch (up to a gap: the events of a
        // batch are consecutive).
        while batch.len() < BATCH && !ended && missed == 0 {
            match live.try_recv() {
                Ok(event) => batch.push(event),
                Err(TryRecvError::Lagged(n)) => missed = n,
                Err(TryRecvError::Closed) => ended = true,
                Err(TryRecvError::Empty) => break,
            }
        }
    }
    fleet.forwarded(&token);
    // Subscribed to a run that never started here (it ran elsewhere): leave nothing behind,
    // but a follower here of the same run keeps its subscription.
    followers.forget(&run, live);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fleet::Kept;

    fn line(i: usize) -> RunEvent {
        RunEvent::Output {
            index: 0,
            stream: "stdout".into(),
            line: i.to_string(),
        }
    }

    /// The forwarded events as (seq, line), from the signals kept.
    fn forwarded(kept: &Kept) -> Vec<(u64, String)> {
        let signals = kept.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for s in signals.iter() {
            if let Signal::Events { seq, events, .. } = s {
                for (i, e) in events.iter().enumerate() {
                    if let RunEvent::Output { line, .. } = e {
                        out.push((seq + i as u64, line.clone()));
                    }
                }
            }
        }
        out
    }

    // One thread: the forward cannot run while the test publishes, so its channel overflows.
    #[tokio::test]
    async fn events_a_forward_lost_to_a_full_channel_leave_a_gap_in_its_numbers() {
        let kept = Arc::new(Kept::default());
        let fleet = Arc::new(Fleet::new(kept.clone()));
        let followers = Arc::new(Followers::default());
        let run = RunId::new();
        followers.publish(&run, line(0));
        assert!(fleet.forward_to("t"));
        let forward = tokio::spawn(forward(
            fleet.clone(),
            followers.clone(),
            run.clone(),
            "t".into(),
        ));
        while forwarded(&kept).is_empty() {
            tokio::task::yield_now().await;
        }
        // More than the channel holds, published while the forward waits.
        let published = 1100;
        for i in 1..=published {
            followers.publish(&run, line(i));
        }
        followers.close(&run, &crate::run::record::RunRecord::synthetic(0));
        forward.await.expect("the forward ends with the run");
        let got = forwarded(&kept);
        assert!(got.len() < published, "some were lost: {}", got.len());
        // Every event forwarded carries its own position: the line published i-th is at i.
        for (seq, text) in &got {
            assert_eq!(seq.to_string(), *text);
        }
        assert!(
            kept.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|s| matches!(s, Signal::End { .. })),
            "it ended with the run"
        );
    }
}
