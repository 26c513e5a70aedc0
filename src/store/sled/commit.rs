//! Group commit: concurrent writers that each need their writes on disk share one flush.
//!
//! A thread that needs a flush blocks ([`GroupCommit::durable_to`]): it flushes itself when no
//! one does, else waits for the flush in progress or the next. An async task queues a waiter
//! instead ([`GroupCommit::wait`]) and awaits it, costing it no thread; the first to find no
//! flush in progress asks for a leader, which flushes on a blocking thread for as long as
//! waiters are left ([`GroupCommit::lead`]). Every flush, whoever made it, answers every waiter
//! it covers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Shares flushes between concurrent writers; `E` is a failed flush's error.
pub struct GroupCommit<E> {
    state: Mutex<CommitState<E>>,
    done: Condvar,
    flushes: AtomicU64,
}

struct CommitState<E> {
    requested: u64,
    completed: u64,
    flushing: bool,
    /// Async waiters: the mark each waits for, and where its flush's result goes.
    waiters: Vec<(u64, oneshot::Sender<Result<(), E>>)>,
}

impl<E> Default for GroupCommit<E> {
    fn default() -> Self {
        GroupCommit {
            state: Mutex::new(CommitState {
                requested: 0,
                completed: 0,
                flushing: false,
                waiters: Vec::new(),
            }),
            done: Condvar::new(),
            flushes: AtomicU64::new(0),
        }
    }
}

/// What [`GroupCommit::wait`] found.
#[must_use]
pub enum Wait<E> {
    /// The mark was reached already.
    Reached,
    /// A flush in progress (or the next) answers the receiver.
    Queued(oneshot::Receiver<Result<(), E>>),
    /// No flush is in progress: the caller must start [`GroupCommit::lead`] (or call
    /// [`GroupCommit::abandon`]); the leader answers the receiver.
    Lead(oneshot::Receiver<Result<(), E>>),
}

impl<E: Clone> GroupCommit<E> {
    fn lock(&self) -> MutexGuard<'_, CommitState<E>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many flushes were made.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Returns once everything written before the call is on disk: either a flush that started
    /// after the call completed, or this caller ran `flush` itself. A failed flush is returned to
    /// the caller that ran it; the others wait for the next one. Blocks.
    pub fn durable(&self, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let ticket = self.mark();
        self.durable_to(ticket, flush, || false)
    }

    /// A mark of everything written before the call: it is on disk once a flush that started
    /// after this call completed ([`GroupCommit::reached`]).
    pub fn mark(&self) -> u64 {
        let mut st = self.lock();
        st.requested += 1;
        st.requested
    }

    /// Whether what was written before `mark` was taken is on disk.
    pub fn reached(&self, mark: u64) -> bool {
        self.lock().completed >= mark
    }

    /// [`GroupCommit::durable`] for what was written before `ticket` ([`GroupCommit::mark`]) was
    /// taken: returns at once when a flush since did it. A caller that flushed and leaves async
    /// waiters its flush did not cover gives the flushing to `hand_over` (true when it started a
    /// [`GroupCommit::lead`] elsewhere), else flushes for them too. Blocks.
    pub fn durable_to(
        &self,
        ticket: u64,
        flush: impl Fn() -> Result<(), E>,
        hand_over: impl FnOnce() -> bool,
    ) -> Result<(), E> {
        let mut st = self.lock();
        let mut hand_over = Some(hand_over);
        loop {
            if st.completed >= ticket {
                return Ok(());
            }
            if !st.flushing {
                st.flushing = true;
                let (next, result) = self.flush_once(st, &flush);
                st = next;
                // Async waiters its flush did not cover go to a new leader if one starts (the
                // flushing is its then); else this caller flushes for them too.
                if st.waiters.is_empty() || !hand_over.take().is_some_and(|h| h()) {
                    st = self.drain(st, &flush);
                }
                result?;
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Queues an async waiter for `mark` (see [`Wait`]).
    pub fn wait(&self, mark: u64) -> Wait<E> {
        let mut st = self.lock();
        if st.completed >= mark {
            return Wait::Reached;
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.push((mark, tx));
        if std::mem::replace(&mut st.flushing, true) {
            Wait::Queued(rx)
        } else {
            Wait::Lead(rx)
        }
    }

    /// Flushes until no async waiter is left, then lets the next caller flush; for the leader
    /// [`Wait::Lead`] or `durable_to`'s `hand_over` asked for. Blocks.
    pub fn lead(&self, flush: impl Fn() -> Result<(), E>) {
        let st = self.lock();
        drop(self.drain(st, &flush));
    }

    /// Gives up a lead that [`GroupCommit::lead`] will not take (its thread never started):
    /// the async waiters' receivers are dropped, blocked callers flush for themselves.
    pub fn abandon(&self) {
        let mut st = self.lock();
        st.waiters.clear();
        st.flushing = false;
        self.done.notify_all();
    }

    /// Flushes while async waiters are left, then the flushing is free.
    fn drain<'a>(
        &'a self,
        mut st: MutexGuard<'a, CommitState<E>>,
        flush: &impl Fn() -> Result<(), E>,
    ) -> MutexGuard<'a, CommitState<E>> {
        while !st.waiters.is_empty() {
            st = self.flush_once(st, flush).0;
        }
        st.flushing = false;
        // After clearing `flushing`: a blocked caller no flush covered, woken earlier, saw it
        // set and waits again; it flushes next.
        self.done.notify_all();
        st
    }

    /// One flush (`flushing` is set by the caller), and the answers to everyone it covers.
    fn flush_once<'a>(
        &'a self,
        mut st: MutexGuard<'a, CommitState<E>>,
        flush: &impl Fn() -> Result<(), E>,
    ) -> (MutexGuard<'a, CommitState<E>>, Result<(), E>) {
        let target = st.requested;
        drop(st);
        let result = flush();
        self.flushes.fetch_add(1, Ordering::Relaxed);
        st = self.lock();
        if result.is_ok() {
            st.completed = st.completed.max(target);
        }
        // Covered: every waiter for a mark taken before this flush started (failed or not).
        let (covered, left) = std::mem::take(&mut st.waiters)
            .into_iter()
            .partition(|(mark, _)| *mark <= target);
        st.waiters = left;
        self.done.notify_all();
        drop(st);
        // Outside the lock: waking a task may take a syscall, and new waiters queue meanwhile.
        for (_, tx) in covered {
            // A caller that stopped waiting is not an error here.
            let _ = tx.send(result.clone());
        }
        (self.lock(), result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_writers_share_flushes_and_each_returns_after_one_that_followed_its_call() {
        let c = Arc::new(GroupCommit::default());
        let flushed_upto = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, flushed_upto, written) = (c.clone(), flushed_upto.clone(), written.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        c.durable(|| {
                            let w = written.load(Ordering::SeqCst);
                            std::thread::yield_now();
                            flushed_upto.fetch_max(w, Ordering::SeqCst);
                            Ok::<(), ()>(())
                        })
                        .expect("flushes succeed");
                        assert!(flushed_upto.load(Ordering::SeqCst) >= mine);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert!(c.flushes() <= 800);
    }

    #[test]
    fn a_failed_flush_is_returned_and_the_next_caller_flushes_again() {
        let c = GroupCommit::default();
        assert_eq!(c.durable(|| Err::<(), _>("disk full")), Err("disk full"));
        assert_eq!(c.durable(|| Ok::<(), &str>(())), Ok(()));
        assert_eq!(c.flushes(), 2);
    }

    #[test]
    fn a_mark_is_reached_by_the_next_flush_anyone_makes_and_not_by_one_in_progress() {
        let c = GroupCommit::default();
        let mark = c.mark();
        assert!(!c.reached(mark));
        // A mark taken while a flush runs is not reached by that flush.
        let during = std::cell::Cell::new(0);
        c.durable(|| {
            during.set(c.mark());
            Ok::<(), ()>(())
        })
        .expect("flushed");
        assert!(c.reached(mark));
        assert!(!c.reached(during.get()));
        // Another writer's later flush reaches it; waiting for a reached mark flushes nothing.
        c.durable(|| Ok::<(), ()>(())).expect("flushed");
        assert!(c.reached(during.get()));
        assert_eq!(c.flushes(), 2);
        c.durable_to(mark, || panic!("must not flush again"), || false)
            .expect("reached without a flush");
        assert_eq!(c.flushes(), 2);
    }

    #[test]
    fn async_waiters_share_a_leaders_flushes_and_each_gets_the_one_that_covered_it() {
        let c: GroupCommit<&str> = GroupCommit::default();
        let first = c.mark();
        let Wait::Lead(led) = c.wait(first) else {
            panic!("no flush in progress: the first waiter asks for a leader");
        };
        let second = c.mark();
        let Wait::Queued(queued) = c.wait(second) else {
            panic!("a leader was asked for: the second waits for it");
        };
        // The leader's flush covers both (both marks were taken before it started).
        c.lead(|| Ok(()));
        assert_eq!(c.flushes(), 1);
        assert_eq!(led.blocking_recv(), Ok(Ok(())));
        assert_eq!(queued.blocking_recv(), Ok(Ok(())));
        assert!(matches!(c.wait(second), Wait::Reached));
        // A failed flush fails the waiters it covered; the next waiter asks for a new leader.
        let third = c.mark();
        let Wait::Lead(failed) = c.wait(third) else {
            panic!("the lead is free once no waiter is left");
        };
        c.lead(|| Err("disk full"));
        assert_eq!(failed.blocking_recv(), Ok(Err("disk full")));
        assert!(!c.reached(third));
        assert!(matches!(c.wait(third), Wait::Lead(_)));
        c.abandon();
        assert!(
            matches!(c.wait(third), Wait::Lead(_)),
            "an abandoned lead is free"
        );
    }

    /// A blocked flush during which an async waiter comes (for a mark taken during it, so not
    /// covered by it); `hand_over` answers as given. The waiter's mark and receiver.
    fn flush_with_a_late_waiter(
        c: &GroupCommit<()>,
        hand_over: bool,
    ) -> (u64, oneshot::Receiver<Result<(), ()>>) {
        let late = std::cell::RefCell::new(None);
        let handed = std::cell::Cell::new(false);
        c.durable_to(
            c.mark(),
            || {
                if late.borrow().is_none() {
                    let m = c.mark();
                    *late.borrow_mut() = Some((m, c.wait(m)));
                }
                Ok(())
            },
            || {
                handed.set(true);
                hand_over
            },
        )
        .expect("flushed");
        assert!(handed.get(), "the blocked flusher offered its waiter");
        match late.take() {
            Some((m, Wait::Queued(rx))) => (m, rx),
            _ => panic!("it came during a flush: queued for it"),
        }
    }

    #[test]
    fn a_blocked_flusher_hands_waiters_its_flush_did_not_cover_to_another_leader() {
        let c: GroupCommit<()> = GroupCommit::default();
        let (m, rx) = flush_with_a_late_waiter(&c, true);
        assert!(
            !c.reached(m),
            "the blocked flusher returned without flushing for it"
        );
        c.lead(|| Ok(()));
        assert_eq!(rx.blocking_recv(), Ok(Ok(())));
        assert!(c.reached(m));

        // With no leader to hand to, the blocked flusher flushes for it itself.
        let (m, mut rx) = flush_with_a_late_waiter(&c, false);
        assert!(c.reached(m));
        assert_eq!(
            rx.try_recv(),
            Ok(Ok(())),
            "answered before durable_to returned"
        );
    }

    #[test]
    fn blocked_flushers_and_async_waiters_mixed_all_return_after_a_flush_that_covered_them() {
        type Shared = (Arc<GroupCommit<()>>, Arc<AtomicU64>, Arc<AtomicU64>);
        let c = Arc::new(GroupCommit::<()>::default());
        let (flushed_upto, written) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        fn flush((_, flushed_upto, written): &Shared) -> Result<(), ()> {
            let w = written.load(Ordering::SeqCst);
            std::thread::yield_now();
            flushed_upto.fetch_max(w, Ordering::SeqCst);
            Ok(())
        }
        // A leader started on a thread of its own, as the store starts one on a blocking thread.
        fn start(shared: Shared) {
            std::thread::spawn(move || shared.0.lead(|| flush(&shared)));
        }
        let shared = || (c.clone(), flushed_upto.clone(), written.clone());
        let blocked: Vec<_> = (0..4)
            .map(|_| {
                let s = shared();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let mine = s.2.fetch_add(1, Ordering::SeqCst) + 1;
                        let mark = s.0.mark();
                        s.0.durable_to(
                            mark,
                            || flush(&s),
                            || {
                                start(s.clone());
                                true
                            },
                        )
                        .expect("flushed");
                        assert!(s.1.load(Ordering::SeqCst) >= mine);
                    }
                })
            })
            .collect();
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let s = shared();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let mine = s.2.fetch_add(1, Ordering::SeqCst) + 1;
                        let rx = match s.0.wait(s.0.mark()) {
                            // A flush that started after the mark was taken ended already.
                            Wait::Reached => {
                                assert!(s.1.load(Ordering::SeqCst) >= mine);
                                continue;
                            }
                            Wait::Queued(rx) => rx,
                            Wait::Lead(rx) => {
                                start(s.clone());
                                rx
                            }
                        };
                        assert_eq!(rx.blocking_recv(), Ok(Ok(())));
                        assert!(s.1.load(Ordering::SeqCst) >= mine);
                    }
                })
            })
            .collect();
        for t in blocked.into_iter().chain(waiting) {
            t.join().expect("no panic");
        }
        assert!(c.flushes() <= 800);
    }
}
