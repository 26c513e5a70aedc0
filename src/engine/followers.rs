//! Followers of runs in progress (`untoil run`, the API's event stream): a run's events so far,
//! so that a follower who joins late sees it from the start, and a channel for the rest.
//!
//! Entries are made lazily (by the first event or the first follower) and end with the run:
//! [`Followers::close`] sends the final record unless it was sent, and forgets the run.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::broadcast;

use crate::run::event::RunEvent;
use crate::run::id::RunId;
use crate::run::record::RunRecord;

/// Events kept per run for late followers (output lines beyond it are only live).
const HISTORY: usize = 2000;

/// Live events buffered per follower.
const LIVE: usize = 1024;

struct Followed {
    history: Vec<RunEvent>,
    /// Made by the first follower: a channel allocates all its slots up front (tens of KB),
    /// and most runs (every alert run of a storm) are never followed.
    live: Option<broadcast::Sender<RunEvent>>,
}

impl Followed {
    fn new() -> Followed {
        Followed {
            history: Vec::new(),
            live: None,
        }
    }

    /// Sends to the followers, if any.
    fn send(&self, event: RunEvent) {
        if let Some(live) = &self.live {
            let _ = live.send(event);
        }
    }
}

/// The followers of every run in progress here.
#[derive(Default)]
pub struct Followers {
    runs: Mutex<HashMap<RunId, Followed>>,
}

/// A subscription: the events so far and a receiver for the rest.
pub type Subscription = (Vec<RunEvent>, broadcast::Receiver<RunEvent>);

impl Followers {
    fn lock(&self) -> MutexGuard<'_, HashMap<RunId, Followed>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to a run's events. The caller checks afterwards that the run has not ended
    /// (else it calls [`Followers::forget`]): a run that ends after this call reaches the
    /// subscriber through [`Followers::close`].
    pub fn subscribe(&self, id: &RunId) -> Subscription {
        let mut runs = self.lock();
        let entry = runs.entry(id.clone()).or_insert_with(Followed::new);
        let live = entry
            .live
            .get_or_insert_with(|| broadcast::channel(LIVE).0)
            .subscribe();
        (entry.history.clone(), live)
    }

    /// Sends an event to the run's followers, and keeps it for later ones.
    pub fn publish(&self, id: &RunId, event: RunEvent) {
        let mut runs = self.lock();
        let entry = runs.entry(id.clone()).or_insert_with(Followed::new);
        if entry.history.len() < HISTORY || matches!(event, RunEvent::RunFinished { .. }) {
            entry.history.push(event.clone());
        }
        entry.send(event);
    }

    /// The run ended: its followers get its final record (unless they had it) and it is
    /// forgotten.
    pub fn close(&self, id: &RunId, record: &RunRecord) {
        let entry = self.lock().remove(id);
        // Unfollowed: nobody to send the (cloned) record to.
        if let Some(entry) = entry
            && entry.live.is_some()
            && !entry
                .history
                .iter()
                .any(|e| matches!(e, RunEvent::RunFinished { .. }))
        {
            entry.send(RunEvent::RunFinished {
                record: Box::new(record.clone()),
            });
        }
    }

    /// Drops a subscriber that found the run ended (or not in progress here), and forgets the
    /// run unless it has events or other subscribers (a follower here of a run still queued).
    pub fn forget(&self, id: &RunId, live: broadcast::Receiver<RunEvent>) {
        drop(live);
        let mut runs = self.lock();
        let unused = runs.get(id).is_some_and(|e| {
            e.history.is_empty() && e.live.as_ref().is_none_or(|l| l.receiver_count() == 0)
        });
        if unused {
            runs.remove(id);
        }
    }

    /// Whether a run has published events (it started and has not been closed).
    pub fn has_events(&self, id: &RunId) -> bool {
        self.lock().get(id).is_some_and(|e| !e.history.is_empty())
    }

    /// Runs with followers or events kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no run has followers or events kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(id: &RunId) -> RunEvent {
        RunEvent::RunStarted {
            id: id.clone(),
            runbook: "r".into(),
            steps: 1,
        }
    }

    #[tokio::test]
    async fn a_late_follower_sees_the_run_from_the_start_and_its_end() {
        let f = Followers::default();
        let id = RunId::new();
        f.publish(&id, started(&id));
        let (history, mut rx) = f.subscribe(&id);
        assert_eq!(history, vec![started(&id)]);
        let record = crate::run::record::RunRecord::synthetic(1);
        f.close(&id, &record);
        match rx.recv().await.expect("the final record") {
            RunEvent::RunFinished { record: r } => assert_eq!(r.id, record.id),
            other => panic!("{other:?}"),
        }
        assert!(f.is_empty());
    }

    #[test]
    fn a_subscriber_of_an_ended_run_leaves_nothing_behind() {
        let f = Followers::default();
        let id = RunId::new();
        let (_, live) = f.subscribe(&id);
        f.forget(&id, live);
        assert!(f.is_empty());
    }

    #[tokio::test]
    async fn a_subscriber_leaving_a_queued_run_keeps_the_others_subscription() {
        let f = Followers::default();
        let id = RunId::new();
        let (_, mut kept) = f.subscribe(&id);
        let (_, left) = f.subscribe(&id);
        f.forget(&id, left);
        f.publish(&id, started(&id));
        assert_eq!(kept.recv().await.expect("still followed"), started(&id));
    }

    #[tokio::test]
    async fn an_unfollowed_run_gets_no_channel_and_a_follower_joining_later_misses_nothing() {
        let f = Followers::default();
        let id = RunId::new();
        f.publish(&id, started(&id));
        assert!(f.lock().get(&id).is_some_and(|e| e.live.is_none()));
        let (history, mut rx) = f.subscribe(&id);
        assert_eq!(history, vec![started(&id)]);
        f.publish(&id, started(&id));
        assert_eq!(rx.recv().await.expect("live"), started(&id));
        f.close(&id, &crate::run::record::RunRecord::synthetic(1));
        assert!(matches!(
            rx.recv().await.expect("the end"),
            RunEvent::RunFinished { .. }
        ));
    }
}
