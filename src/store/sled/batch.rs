//! Concurrent writes applied in batches, one batch at a time.
//!
//! sled serialises every transaction on one process-wide lock, which all other operations then
//! wait on too; a transaction per webhook request and per finished run, from many threads, spent
//! the CPU on that lock's hand-offs. One leader at a time takes every write waiting, applies them
//! together (one transaction, one flush) and hands each caller its own result; writes that
//! arrive meanwhile form the next batch, which the same leader applies, until none waits.
//!
//! Two kinds of caller: a thread that blocks ([`Batcher::submit`]; it leads when no one does)
//! and an async task that queues its write and awaits the result ([`Batcher::enqueue`]), which
//! costs it no thread: the leader of those runs on one blocking thread ([`Batcher::lead`]). A
//! blocked caller that led returns after its own batch, handing the writes that came meanwhile
//! to such a leader, so it does not lead a storm's admissions for as long as the storm lasts.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Writes of type `W` applied in batches, each giving a result `R`.
pub struct Batcher<W, R> {
    state: Mutex<State<W, R>>,
    done: Condvar,
}

/// Who waits for a write's result.
enum Waiter<R> {
    /// A thread blocked in [`Batcher::submit`], by its ticket.
    Blocked(u64),
    /// A task awaiting the receiver [`Batcher::enqueue`] gave it.
    Awaiting(oneshot::Sender<R>),
}

struct State<W, R> {
    next_ticket: u64,
    pending: Vec<(Waiter<R>, W)>,
    finished: HashMap<u64, R>,
    leading: bool,
}

impl<W, R> Default for Batcher<W, R> {
    fn default() -> Self {
        Batcher {
            state: Mutex::new(State {
                next_ticket: 0,
                pending: Vec::new(),
                finished: HashMap::new(),
                leading: false,
            }),
            done: Condvar::new(),
        }
    }
}

impl<W, R> Batcher<W, R> {
    fn lock(&self) -> MutexGuard<'_, State<W, R>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `write` to the current batch (or leads one) and waits for its result. The leader
    /// calls `apply` with every write waiting, in arrival order, and expects one result per
    /// write; a panic inside `apply` (or a missing result) gives every caller of that batch
    /// `failed()` instead, so the lead is never left held. A caller that led and finds writes
    /// waiting after its batch gives the lead to `hand_over` (true when it started a
    /// [`Batcher::lead`] elsewhere), else leads them too. Blocks: call it from a blocking
    /// thread.
    pub fn submit(
        &self,
        write: W,
        apply: impl Fn(Vec<W>) -> Vec<R>,
        failed: impl Fn() -> R,
        hand_over: impl FnOnce() -> bool,
    ) -> R {
        let mut st = self.lock();
        st.next_ticket += 1;
        let ticket = st.next_ticket;
        st.pending.push((Waiter::Blocked(ticket), write));
        let mut hand_over = Some(hand_over);
        loop {
            if let Some(result) = st.finished.remove(&ticket) {
                return result;
            }
            if !st.leading {
                st.leading = true;
                st = self.batch(st, &apply, &failed);
                // Writes that came meanwhile go to a new leader if one starts (the lead is
                // its then, `leading` stays set); else this caller applies them too.
                if st.pending.is_empty() || !hand_over.take().is_some_and(|h| h()) {
                    st = self.drain(st, &apply, &failed);
                }
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Queues `write` for the current or next batch; the receiver gets its result (or is
    /// dropped if the batch's lead was abandoned). When the second value is true no one leads:
    /// the caller must start [`Batcher::lead`] (or call [`Batcher::abandon`]).
    #[must_use]
    pub fn enqueue(&self, write: W) -> (oneshot::Receiver<R>, bool) {
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        st.pending.push((Waiter::Awaiting(tx), write));
        let lead = !std::mem::replace(&mut st.leading, true);
        (rx, lead)
    }

    /// Applies batches until no write waits, then gives up the lead; for the leader that
    /// [`Batcher::enqueue`] or `submit`'s `hand_over` asked for. Blocks.
    pub fn lead(&self, apply: impl Fn(Vec<W>) -> Vec<R>, failed: impl Fn() -> R) {
        let st = self.lock();
        drop(self.drain(st, &apply, &failed));
    }

    /// Gives up a lead that [`Batcher::lead`] will not take (its thread never started): the
    /// queued async writes fail (their receivers are dropped), blocked callers lead their own.
    pub fn abandon(&self) {
        let mut st = self.lock();
        st.pending
            .retain(|(waiter, _)| matches!(waiter, Waiter::Blocked(_)));
        st.leading = false;
        self.done.notify_all();
    }

    /// Batches until none waits, then the lead is free.
    fn drain<'a>(
        &'a self,
        mut st: MutexGuard<'a, State<W, R>>,
        apply: &impl Fn(Vec<W>) -> Vec<R>,
        failed: &impl Fn() -> R,
    ) -> MutexGuard<'a, State<W, R>> {
        while !st.pending.is_empty() {
            st = self.batch(st, apply, failed);
        }
        st.leading = false;
        self.done.notify_all();
        st
    }

    /// Applies every write waiting, as one batch, and hands out the results.
    fn batch<'a>(
        &'a self,
        mut st: MutexGuard<'a, State<W, R>>,
        apply: &impl Fn(Vec<W>) -> Vec<R>,
        failed: &impl Fn() -> R,
    ) -> MutexGuard<'a, State<W, R>> {
        let (waiters, writes): (Vec<Waiter<R>>, Vec<W>) =
            std::mem::take(&mut st.pending).into_iter().unzip();
        drop(st);
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(writes)))
            .unwrap_or_default();
        let mut results = results.into_iter();
        let mut replies = Vec::new();
        let mut st = self.lock();
        for waiter in waiters {
            let result = results.next().unwrap_or_else(failed);
            match waiter {
                Waiter::Blocked(ticket) => {
                    st.finished.insert(ticket, result);
                }
                Waiter::Awaiting(tx) => replies.push((tx, result)),
            }
        }
        self.done.notify_all();
        drop(st);
        // Outside the lock: waking a task may take a syscall, and new writes queue meanwhile.
        for (tx, result) in replies {
            // A caller that stopped waiting (its request went away) is not an error here.
            let _ = tx.send(result);
        }
        self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    #[test]
    fn every_caller_gets_its_own_result_and_writes_share_batches() {
        let b: Arc<Batcher<u32, u32>> = Arc::new(Batcher::default());
        let batches = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16u32)
            .map(|i| {
                let (b, batches) = (b.clone(), batches.clone());
                std::thread::spawn(move || {
                    (0..50u32)
                        .map(|j| {
                            let w = i * 1000 + j;
                            let r = b.submit(
                                w,
                                |ws| {
                                    batches.fetch_add(1, Ordering::SeqCst);
                                    ws.iter().map(|w| w * 2).collect()
                                },
                                || u32::MAX,
                                || false,
                            );
                            assert_eq!(r, w * 2);
                        })
                        .count()
                })
            })
            .collect();
        let done: usize = threads
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .sum();
        assert_eq!(done, 800);
        assert!(batches.load(Ordering::SeqCst) <= 800);
    }

    #[test]
    fn a_panic_inside_a_batch_fails_its_callers_and_frees_the_lead() {
        let b: Batcher<u32, Result<u32, &str>> = Batcher::default();
        let r = b.submit(1, |_| panic!("boom"), || Err("failed"), || false);
        assert_eq!(r, Err("failed"));
        let ok = |ws: Vec<u32>| ws.into_iter().map(Ok).collect();
        let r = b.submit(2, ok, || Err("failed"), || false);
        assert_eq!(r, Ok(2));
        let r = b.submit(3, |_| Vec::new(), || Err("missing"), || false);
        assert_eq!(r, Err("missing"));
        // The same for queued writes: the leader's panic fails them, the next leader works.
        let (rx, lead) = b.enqueue(4);
        assert!(lead);
        b.lead(|_| panic!("boom"), || Err("failed"));
        assert_eq!(rx.blocking_recv(), Ok(Err("failed")));
        let (rx, lead) = b.enqueue(5);
        assert!(lead, "the panicking leader gave the lead up");
        b.lead(ok, || Err("failed"));
        assert_eq!(rx.blocking_recv(), Ok(Ok(5)));
    }

    #[test]
    fn queued_writes_share_one_leader_and_each_gets_its_own_result() {
        let b: Batcher<u32, u32> = Batcher::default();
        let (first, lead) = b.enqueue(1);
        assert!(lead, "the first write finds no leader");
        let queued: Vec<_> = (2..=5).map(|w| b.enqueue(w)).collect();
        assert!(
            queued.iter().all(|(_, lead)| !lead),
            "later ones join the lead already asked for"
        );
        let batches = AtomicUsize::new(0);
        b.lead(
            |ws| {
                batches.fetch_add(1, Ordering::SeqCst);
                ws.iter().map(|w| w * 10).collect()
            },
            || u32::MAX,
        );
        assert_eq!(batches.load(Ordering::SeqCst), 1, "one batch for all five");
        assert_eq!(first.blocking_recv(), Ok(10));
        for (w, (rx, _)) in (2..=5).zip(queued) {
            assert_eq!(rx.blocking_recv(), Ok(w * 10));
        }
        let (_, lead) = b.enqueue(6);
        assert!(lead, "the lead is free once none waits");
    }

    #[test]
    fn a_blocked_leader_hands_writes_that_came_during_its_batch_to_another_leader() {
        let b: Arc<Batcher<u32, u32>> = Arc::new(Batcher::default());
        let (queued, handed) = (Mutex::new(None), AtomicUsize::new(0));
        let r = b.submit(
            1,
            |ws| {
                // An async write arrives while the blocked caller's batch is applied.
                if ws == [1] {
                    *queued.lock().expect("lock") = Some(b.enqueue(2));
                }
                ws.iter().map(|w| w + 100).collect()
            },
            || u32::MAX,
            || {
                handed.fetch_add(1, Ordering::SeqCst);
                true
            },
        );
        assert_eq!(r, 101, "the blocked caller returns after its own batch");
        assert_eq!(handed.load(Ordering::SeqCst), 1);
        let (rx, lead) = queued.lock().expect("lock").take().expect("queued");
        assert!(!lead, "it came while the lead was held");
        // The leader it was handed to applies it.
        b.lead(|ws| ws.iter().map(|w| w + 100).collect(), || u32::MAX);
        assert_eq!(rx.blocking_recv(), Ok(102));

        // Without a leader to hand to, the blocked caller applies them itself.
        let queued = Mutex::new(None);
        let r = b.submit(
            3,
            |ws| {
                if ws == [3] {
                    *queued.lock().expect("lock") = Some(b.enqueue(4));
                }
                ws.iter().map(|w| w + 100).collect()
            },
            || u32::MAX,
            || false,
        );
        assert_eq!(r, 103);
        let (rx, _) = queued.lock().expect("lock").take().expect("queued");
        assert_eq!(rx.blocking_recv(), Ok(104));
    }

    #[test]
    fn an_abandoned_lead_fails_queued_writes_and_frees_the_lead() {
        let b: Batcher<u32, u32> = Batcher::default();
        let (rx, lead) = b.enqueue(1);
        assert!(lead);
        b.abandon();
        assert!(rx.blocking_recv().is_err(), "its receiver is dropped");
        let (_, lead) = b.enqueue(2);
        assert!(lead, "the next write finds the lead free");
    }
}
