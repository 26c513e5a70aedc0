//! Concurrent writes applied in batches, one batch at a time.
//!
//! sled serialises every transaction on one process-wide lock, which all other operations then
//! wait on too; a transaction per webhook request and per finished run, from many threads, spent
//! the CPU on that lock's hand-offs. Whoever finds no batch in progress leads: it takes every
//! write waiting, applies them together (one transaction, one flush) and hands each caller its
//! own result. Callers that arrive meanwhile form the next batch.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

/// Writes of type `W` applied in batches, each giving a result `R`.
pub struct Batcher<W, R> {
    state: Mutex<State<W, R>>,
    done: Condvar,
}

struct State<W, R> {
    next_ticket: u64,
    pending: Vec<(u64, W)>,
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
    /// Hands `write` to the current batch (or leads one) and waits for its result. The leader
    /// calls `apply` with every write waiting, in arrival order, and expects one result per
    /// write; a panic inside `apply` (or a missing result) gives every caller of that batch
    /// `failed()` instead, so the lead is never left held. Blocks: call it from a blocking
    /// thread.
    pub fn submit(
        &self,
        write: W,
        apply: impl FnOnce(Vec<W>) -> Vec<R>,
        failed: impl Fn() -> R,
    ) -> R {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.next_ticket += 1;
        let ticket = st.next_ticket;
        st.pending.push((ticket, write));
        let mut apply = Some(apply);
        loop {
            if let Some(result) = st.finished.remove(&ticket) {
                return result;
            }
            if !st.leading
                && let Some(apply) = apply.take()
            {
                st.leading = true;
                let (tickets, writes): (Vec<u64>, Vec<W>) =
                    std::mem::take(&mut st.pending).into_iter().unzip();
                drop(st);
                let results =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(writes)))
                        .unwrap_or_default();
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.leading = false;
                let mut results = results.into_iter();
                for t in tickets {
                    let r = results.next().unwrap_or_else(&failed);
                    st.finished.insert(t, r);
                }
                self.done.notify_all();
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
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        let r = b.submit(1, |_| panic!("boom"), || Err("failed"));
        assert_eq!(r, Err("failed"));
        let r = b.submit(2, |ws| ws.into_iter().map(Ok).collect(), || Err("failed"));
        assert_eq!(r, Ok(2));
        let r = b.submit(3, |_| Vec::new(), || Err("missing"));
        assert_eq!(r, Err("missing"));
    }
}
