//! Group commit: concurrent writers that each need their writes on disk share one flush.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

/// Shares flushes between concurrent writers.
#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<CommitState>,
    done: Condvar,
    flushes: AtomicU64,
}

#[derive(Default)]
struct CommitState {
    requested: u64,
    completed: u64,
    flushing: bool,
}

impl GroupCommit {
    /// How many flushes were made.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Returns once everything written before the call is on disk: either a flush that started
    /// after the call completed, or this caller ran `flush` itself. A failed flush is returned to
    /// the caller that ran it; the others wait for the next one. Blocks.
    pub fn durable<E>(&self, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let ticket = self.mark();
        self.durable_to(ticket, flush)
    }

    /// A mark of everything written before the call: it is on disk once a flush that started
    /// after this call completed ([`GroupCommit::reached`]).
    pub fn mark(&self) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.requested += 1;
        st.requested
    }

    /// Whether what was written before `mark` was taken is on disk.
    pub fn reached(&self, mark: u64) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .completed
            >= mark
    }

    /// [`GroupCommit::durable`] for what was written before `ticket` ([`GroupCommit::mark`]) was
    /// taken: returns at once when a flush since did it.
    pub fn durable_to<E>(&self, ticket: u64, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if st.completed >= ticket {
                return Ok(());
            }
            if !st.flushing {
                st.flushing = true;
                let target = st.requested;
                drop(st);
                let result = flush();
                self.flushes.fetch_add(1, Ordering::Relaxed);
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.flushing = false;
                if result.is_ok() {
                    st.completed = st.completed.max(target);
                }
                self.done.notify_all();
                result?;
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
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
        c.durable_to(mark, || Err::<(), _>("must not flush again"))
            .expect("reached without a flush");
        assert_eq!(c.flushes(), 2);
    }
}
