//! The run queue and concurrency slots: every run admitted here and not yet ended, in one state
//! under one lock.
//!
//! A run is `ready` (waiting for a worker), `taken` (a worker has it and is claiming a slot),
//! `running` (it holds a slot of its (runbook, guard key)) or `parked` (its key's slots are all
//! taken and its runbook says `overlap: queue`; it becomes ready again when one frees). Because
//! one lock covers all of it, a cancel can never fall between two phases, and a slot that frees
//! always finds the runs parked for it.
//!
//! The queue holds no other lock while its own is held, and calls nothing outside itself then.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::guard::{self, OverlapAction};
use crate::run::id::RunId;
use crate::runbook::model::Runbook;

/// Concurrency slots are per (runbook, guard key).
pub type SlotKey = (String, String);

/// What [`Queue::try_next`] found.
pub enum Next {
    /// A run to work on.
    Ready(Ticket),
    /// No run ready now.
    Empty,
    /// The queue is closed.
    Closed,
}

/// A run a worker took from the queue.
#[derive(Clone)]
pub struct Ticket {
    /// The run.
    pub id: RunId,
    /// The runbook version it was admitted with.
    pub runbook: Arc<Runbook>,
    /// Its slot key.
    pub key: SlotKey,
    /// Cancels it (API cancel, `cancel_previous`, resolve, shutdown).
    pub cancel: CancellationToken,
}

/// What a taken run may do now, per its runbook's `concurrency` and `overlap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// It holds a slot: run it.
    Run,
    /// It holds a slot; the runs that held the others were told to stop.
    RunCancelledOthers,
    /// Parked until a slot frees: the worker leaves it.
    Parked,
    /// `overlap: skip`: record it skipped.
    Skip,
    /// It was cancelled before it started: record it cancelled.
    Cancelled,
}

/// What [`Queue::cancel`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// It had not started: it is out of the queue; record it cancelled.
    Unstarted,
    /// It is running: its token is cancelled, and it ends as cancelled.
    Signalled,
    /// Not queued or running here.
    NotHere,
}

/// The queue is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// Runs waiting.
    pub waiting: usize,
}

enum Phase {
    Ready,
    Parked,
    Taken(CancellationToken),
    Running(CancellationToken),
}

struct Entry {
    runbook: Arc<Runbook>,
    key: SlotKey,
    phase: Phase,
}

#[derive(Default)]
struct Slots {
    running: Vec<RunId>,
    waiting: VecDeque<RunId>,
}

#[derive(Default)]
struct State {
    ready: VecDeque<RunId>,
    runs: HashMap<RunId, Entry>,
    slots: HashMap<SlotKey, Slots>,
    reserved: usize,
    closed: bool,
}

/// The bounded run queue with its concurrency slots.
pub struct Queue {
    state: Mutex<State>,
    ready: Notify,
    capacity: usize,
}

/// Places in the queue taken ahead of a store write, so that a run the store admits always
/// finds room; places not used are given back when it is dropped.
pub struct Reservation<'a> {
    queue: &'a Queue,
    left: usize,
}

impl Reservation<'_> {
    /// Queues an admitted run in one of the reserved places.
    pub fn push(&mut self, id: RunId, runbook: Arc<Runbook>, key: SlotKey) {
        let mut st = self.queue.lock();
        if self.left > 0 {
            self.left -= 1;
            st.reserved -= 1;
        }
        Queue::enqueue(&mut st, id, runbook, key);
        drop(st);
        self.queue.ready.notify_one();
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.left > 0 {
            let mut st = self.queue.lock();
            st.reserved -= self.left;
        }
    }
}

impl Queue {
    /// A queue of at most `capacity` waiting runs.
    pub fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue(st: &mut State, id: RunId, runbook: Arc<Runbook>, key: SlotKey) {
        st.ready.push_back(id.clone());
        st.runs.insert(
            id,
            Entry {
                runbook,
                key,
                phase: Phase::Ready,
            },
        );
    }

    /// The most runs that may wait.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes `n` places, or none when they are not free.
    pub fn reserve(&self, n: usize) -> Result<Reservation<'_>, Full> {
        let mut st = self.lock();
        let waiting = st.ready.len() + st.reserved;
        if waiting + n > self.capacity {
            return Err(Full { waiting });
        }
        st.reserved += n;
        Ok(Reservation {
            queue: self,
            left: n,
        })
    }

    /// Queues a run found queued at start-up (capacity was sized for them).
    pub fn resume(&self, id: RunId, runbook: Arc<Runbook>, key: SlotKey) {
        Queue::enqueue(&mut self.lock(), id, runbook, key);
        self.ready.notify_one();
    }

    /// The next ready run, once there is one; None once the queue is closed.
    pub async fn next(&self) -> Option<Ticket> {
        loop {
            let notified = self.ready.notified();
            match self.try_next() {
                Next::Ready(ticket) => return Some(ticket),
                Next::Closed => return None,
                Next::Empty => notified.await,
            }
        }
    }

    /// The next ready run if there is one now.
    pub fn try_next(&self) -> Next {
        let mut st = self.lock();
        if st.closed {
            return Next::Closed;
        }
        while let Some(id) = st.ready.pop_front() {
            let Some(entry) = st.runs.get_mut(&id) else {
                continue;
            };
            let cancel = CancellationToken::new();
            entry.phase = Phase::Taken(cancel.clone());
            let ticket = Ticket {
                id,
                runbook: entry.runbook.clone(),
                key: entry.key.clone(),
                cancel,
            };
            let more = !st.ready.is_empty();
            drop(st);
            if more {
                // Another worker may be waiting: pass the wake-up on.
                self.ready.notify_one();
            }
            return Next::Ready(ticket);
        }
        Next::Empty
    }

    /// Takes a concurrency slot of the ticket's key for it, per its runbook's `concurrency` and
    /// `overlap` (or finds it cancelled). For [`Slot::Skip`] and [`Slot::Cancelled`] the run
    /// leaves the queue; for [`Slot::Parked`] it waits for a slot.
    pub fn claim_slot(&self, ticket: &Ticket) -> Slot {
        let mut st = self.lock();
        if ticket.cancel.is_cancelled() {
            st.runs.remove(&ticket.id);
            return Slot::Cancelled;
        }
        let running = st.slots.get(&ticket.key).map_or(0, |s| s.running.len());
        let action = guard::overlap(&ticket.runbook.guards, running);
        match action {
            OverlapAction::Run | OverlapAction::CancelPrevious => {
                if action == OverlapAction::CancelPrevious {
                    let others: Vec<RunId> = st
                        .slots
                        .get(&ticket.key)
                        .map(|s| s.running.clone())
                        .unwrap_or_default();
                    for other in others {
                        if let Some(Entry {
                            phase: Phase::Running(t) | Phase::Taken(t),
                            ..
                        }) = st.runs.get(&other)
                        {
                            t.cancel();
                        }
                    }
                }
                st.slots
                    .entry(ticket.key.clone())
                    .or_default()
                    .running
                    .push(ticket.id.clone());
                if let Some(e) = st.runs.get_mut(&ticket.id) {
                    e.phase = Phase::Running(ticket.cancel.clone());
                }
                if action == OverlapAction::CancelPrevious {
                    Slot::RunCancelledOthers
                } else {
                    Slot::Run
                }
            }
            OverlapAction::Wait => {
                st.slots
                    .entry(ticket.key.clone())
                    .or_default()
                    .waiting
                    .push_back(ticket.id.clone());
                if let Some(e) = st.runs.get_mut(&ticket.id) {
                    e.phase = Phase::Parked;
                }
                Slot::Parked
            }
            OverlapAction::Skip => {
                st.runs.remove(&ticket.id);
                Slot::Skip
            }
        }
    }

    /// A run that held a slot ended (or gave up its claim): it leaves the queue, and the first
    /// run parked for its key becomes ready (it claims a slot again).
    pub fn finished(&self, id: &RunId) {
        let mut st = self.lock();
        let Some(entry) = st.runs.remove(id) else {
            return;
        };
        let mut woken = None;
        if let Some(slots) = st.slots.get_mut(&entry.key) {
            slots.running.retain(|r| r != id);
            woken = slots.waiting.pop_front();
            if slots.running.is_empty() && slots.waiting.is_empty() {
                st.slots.remove(&entry.key);
            }
        }
        if let Some(next) = woken {
            if let Some(e) = st.runs.get_mut(&next) {
                e.phase = Phase::Ready;
            }
            st.ready.push_back(next);
            drop(st);
            self.ready.notify_one();
        }
    }

    /// Cancels a run queued or running here.
    pub fn cancel(&self, id: &RunId) -> Cancel {
        let mut st = self.lock();
        let (phase_ready, key) = match st.runs.get(id) {
            None => return Cancel::NotHere,
            Some(Entry {
                phase: Phase::Taken(t) | Phase::Running(t),
                ..
            }) => {
                t.cancel();
                return Cancel::Signalled;
            }
            Some(e) => (matches!(e.phase, Phase::Ready), e.key.clone()),
        };
        st.runs.remove(id);
        if phase_ready {
            st.ready.retain(|r| r != id);
        } else if let Some(slots) = st.slots.get_mut(&key) {
            slots.waiting.retain(|r| r != id);
        }
        Cancel::Unstarted
    }

    /// Cancels every run that is taken or running (shutdown after the grace period).
    pub fn cancel_running(&self) {
        let st = self.lock();
        for e in st.runs.values() {
            if let Phase::Taken(t) | Phase::Running(t) = &e.phase {
                t.cancel();
            }
        }
    }

    /// Stops handing out runs: workers waiting in [`Queue::next`] get None. Queued runs stay
    /// queued in the store for the next start.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Runs waiting for a worker.
    pub fn depth(&self) -> usize {
        self.lock().ready.len()
    }

    /// Runs taken or running.
    pub fn running(&self) -> usize {
        self.lock()
            .runs
            .values()
            .filter(|e| matches!(e.phase, Phase::Taken(_) | Phase::Running(_)))
            .count()
    }

    /// Runs holding a slot of `key` now (what the overlap policy counts).
    pub fn running_of(&self, key: &SlotKey) -> usize {
        self.lock().slots.get(key).map_or(0, |s| s.running.len())
    }

    /// Whether a run is queued, parked, taken or running here.
    pub fn knows(&self, id: &RunId) -> bool {
        self.lock().runs.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook(concurrency: Option<u32>, overlap: &str) -> Arc<Runbook> {
        let guards = match concurrency {
            Some(c) => format!("guards: {{concurrency: {c}, overlap: {overlap}}}\n"),
            None => String::new(),
        };
        let text = format!(
            "name: r\nowner: t\ntoil: {{manual_minutes: 1}}\ntriggers: [{{schedule: '* * * * *'}}]\n{guards}steps: [{{name: a, run: 'true'}}]\n"
        );
        crate::runbook::catalog::one(&text, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn key() -> SlotKey {
        ("r".into(), "r".into())
    }

    async fn take(q: &Queue) -> Ticket {
        q.next().await.expect("a ready run")
    }

    #[tokio::test]
    async fn reservations_bound_the_queue_and_give_back_what_they_did_not_use() {
        let q = Queue::new(3);
        let rb = runbook(None, "queue");
        {
            let mut r = q.reserve(2).expect("room");
            assert_eq!(q.reserve(2).err(), Some(Full { waiting: 2 }));
            r.push(RunId::new(), rb.clone(), key());
        }
        assert_eq!(q.depth(), 1);
        let r = q.reserve(2).expect("the unused place came back");
        drop(r);
        let _ = take(&q).await;
        assert_eq!(q.depth(), 0);
        assert_eq!(q.running(), 1);
    }

    #[tokio::test]
    async fn a_full_slot_parks_the_next_run_until_the_first_ends() {
        let q = Queue::new(10);
        let rb = runbook(Some(1), "queue");
        let (a, b) = (RunId::new(), RunId::new());
        let mut r = q.reserve(2).expect("room");
        r.push(a.clone(), rb.clone(), key());
        r.push(b.clone(), rb.clone(), key());
        let ta = take(&q).await;
        let tb = take(&q).await;
        assert_eq!(q.claim_slot(&ta), Slot::Run);
        assert_eq!(q.claim_slot(&tb), Slot::Parked);
        assert!(q.knows(&b));
        q.finished(&a);
        let again = take(&q).await;
        assert_eq!(again.id, b);
        assert_eq!(q.claim_slot(&again), Slot::Run);
        q.finished(&b);
        assert!(!q.knows(&b));
    }

    #[tokio::test]
    async fn skip_and_cancel_previous_follow_the_runbook() {
        let q = Queue::new(10);
        let skip = runbook(Some(1), "skip");
        let mut r = q.reserve(2).expect("room");
        r.push(RunId::new(), skip.clone(), key());
        r.push(RunId::new(), skip.clone(), key());
        let first = take(&q).await;
        let second = take(&q).await;
        assert_eq!(q.claim_slot(&first), Slot::Run);
        assert_eq!(q.claim_slot(&second), Slot::Skip);
        assert!(!q.knows(&second.id));
        q.finished(&first.id);

        let cancel = runbook(Some(1), "cancel_previous");
        let mut r = q.reserve(2).expect("room");
        r.push(RunId::new(), cancel.clone(), key());
        r.push(RunId::new(), cancel.clone(), key());
        let first = take(&q).await;
        let second = take(&q).await;
        assert_eq!(q.claim_slot(&first), Slot::Run);
        assert_eq!(q.claim_slot(&second), Slot::RunCancelledOthers);
        assert!(first.cancel.is_cancelled());
        assert!(!second.cancel.is_cancelled());
    }

    #[tokio::test]
    async fn a_cancel_is_never_lost_whatever_phase_the_run_is_in() {
        let q = Queue::new(10);
        let rb = runbook(Some(1), "queue");
        let ids: Vec<RunId> = (0..3).map(|_| RunId::new()).collect();
        let mut r = q.reserve(3).expect("room");
        for id in &ids {
            r.push(id.clone(), rb.clone(), key());
        }
        // Ready: taken out of the queue at once.
        assert_eq!(q.cancel(&ids[2]), Cancel::Unstarted);
        let first = take(&q).await;
        let second = take(&q).await;
        assert_eq!(q.depth(), 0);
        // Taken, before it claims a slot: its claim finds it cancelled.
        assert_eq!(q.cancel(&second.id), Cancel::Signalled);
        assert_eq!(q.claim_slot(&first), Slot::Run);
        assert_eq!(q.claim_slot(&second), Slot::Cancelled);
        // Running: signalled.
        assert_eq!(q.cancel(&first.id), Cancel::Signalled);
        assert!(first.cancel.is_cancelled());
        q.finished(&first.id);
        assert_eq!(q.cancel(&first.id), Cancel::NotHere);
    }

    #[tokio::test]
    async fn a_parked_run_cancelled_leaves_its_key_and_the_next_one_is_woken() {
        let q = Queue::new(10);
        let rb = runbook(Some(1), "queue");
        let ids: Vec<RunId> = (0..3).map(|_| RunId::new()).collect();
        let mut r = q.reserve(3).expect("room");
        for id in &ids {
            r.push(id.clone(), rb.clone(), key());
        }
        let t: Vec<Ticket> = vec![take(&q).await, take(&q).await, take(&q).await];
        assert_eq!(q.claim_slot(&t[0]), Slot::Run);
        assert_eq!(q.claim_slot(&t[1]), Slot::Parked);
        assert_eq!(q.claim_slot(&t[2]), Slot::Parked);
        assert_eq!(q.cancel(&ids[1]), Cancel::Unstarted);
        q.finished(&ids[0]);
        let woken = take(&q).await;
        assert_eq!(woken.id, ids[2]);
    }

    #[tokio::test]
    async fn closing_the_queue_releases_waiting_workers() {
        let q = Arc::new(Queue::new(10));
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await.is_none() })
        };
        tokio::task::yield_now().await;
        q.close();
        assert!(waiter.await.expect("joined"));
        assert!(q.is_closed());
    }
}
