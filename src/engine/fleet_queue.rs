//! The fleet's queue bound: on a store that a fleet of daemons shares, the queue is the
//! database, so `--queue-capacity` bounds the runs queued there, not only this replica's
//! in-memory queue (which still bounds its own memory).
//!
//! Admissions come by the thousand a second, so the database's count is not read for each: it
//! is kept for [`FRESH_FOR`] and what this replica reserves since is added to it. The bound is
//! approximate by what the other replicas admit within that window, and errs on the full side
//! for this replica's own admissions (runs it queued and that started since still count until
//! the next read).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::Result;

/// How long one count of the fleet's queued runs is used.
pub const FRESH_FOR: Duration = Duration::from_millis(200);

/// The fleet's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetFull {
    /// Runs queued in the fleet, as last counted plus this replica's admissions since.
    pub queued: u64,
    /// The bound (`--queue-capacity`).
    pub capacity: u64,
}

#[derive(Default)]
struct Count {
    /// The store counts no fleet's queue (sled, or a store that did not join a fleet).
    alone: bool,
    /// Queued runs at the last count.
    queued: u64,
    /// When that count was taken (None: never).
    at: Option<Instant>,
    /// Places reserved since that count (by admissions in flight at it, and after).
    added: u64,
    /// Places held by admissions in flight.
    pending: u64,
}

/// The fleet-wide bound on queued runs.
pub struct FleetQueue {
    capacity: u64,
    fresh_for: Duration,
    count: Mutex<Count>,
    /// One count at a time: admissions that find it stale wait for the one being taken.
    counting: tokio::sync::Mutex<()>,
}

/// Places taken in the fleet's queue ahead of a store write; those the write did not queue a
/// run in are given back when it is dropped.
pub struct FleetReservation<'a> {
    fleet: &'a FleetQueue,
    left: u64,
    held: u64,
}

impl FleetReservation<'_> {
    /// Marks `n` of the places as used by runs the store queued.
    pub fn used(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n as u64);
    }
}

impl Drop for FleetReservation<'_> {
    fn drop(&mut self) {
        let mut c = self.fleet.lock();
        c.pending = c.pending.saturating_sub(self.held);
        c.added = c.added.saturating_sub(self.left);
    }
}

impl FleetQueue {
    /// A bound of `capacity` queued runs, each count used for `fresh_for`.
    pub fn new(capacity: usize, fresh_for: Duration) -> FleetQueue {
        FleetQueue {
            capacity: capacity.max(1) as u64,
            fresh_for,
            count: Mutex::new(Count::default()),
            counting: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Count> {
        self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self, c: &Count) -> bool {
        c.alone || c.at.is_some_and(|at| at.elapsed() < self.fresh_for)
    }

    /// Takes `n` places in the fleet's queue (None when the store keeps no fleet's queue),
    /// counting its queued runs again with `count` ([`crate::store::Store::fleet_queued`]) first
    /// when the last count is stale. A store that cannot count fails the admission, as its write
    /// would.
    pub async fn reserve<F, Fut>(
        &self,
        n: usize,
        count: F,
    ) -> Result<std::result::Result<Option<FleetReservation<'_>>, FleetFull>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<u64>>>,
    {
        if !self.fresh(&self.lock()) {
            let _one = self.counting.lock().await;
            if !self.fresh(&self.lock()) {
                let counted = count().await?;
                let mut c = self.lock();
                match counted {
                    None => c.alone = true,
                    Some(queued) => {
                        c.queued = queued;
                        c.at = Some(Instant::now());
                        // Admissions in flight may commit after the count: they still count.
                        c.added = c.pending;
                    }
                }
            }
        }
        let mut c = self.lock();
        if c.alone {
            return Ok(Ok(None));
        }
        let n = n as u64;
        let queued = c.queued + c.added;
        if queued + n > self.capacity {
            return Ok(Err(FleetFull {
                queued,
                capacity: self.capacity,
            }));
        }
        c.added += n;
        c.pending += n;
        Ok(Ok(Some(FleetReservation {
            fleet: self,
            left: n,
            held: n,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// A fleet holding `queued` runs, counting how often it was counted.
    #[derive(Default)]
    struct Fleet {
        queued: AtomicU64,
        asked: AtomicUsize,
    }

    impl Fleet {
        async fn count(&self) -> Result<Option<u64>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Ok(Some(self.queued.load(Ordering::SeqCst)))
        }
    }

    /// Makes the last count stale, as [`FRESH_FOR`] passing would.
    fn expire(q: &FleetQueue) {
        q.lock().at = None;
    }

    /// Reserves `n` places, counting `fleet`: Some(reservation) or the refusal.
    async fn take<'a>(
        q: &'a FleetQueue,
        fleet: &Fleet,
        n: usize,
    ) -> std::result::Result<FleetReservation<'a>, FleetFull> {
        let r = q.reserve(n, || fleet.count()).await.expect("counted");
        r.map(|r| r.expect("a fleet's store"))
    }

    #[tokio::test]
    async fn refuses_past_the_fleets_count_and_counts_its_own_admissions_until_the_next_count() {
        let fleet = Fleet::default();
        fleet.queued.store(2, Ordering::SeqCst);
        let q = FleetQueue::new(3, FRESH_FOR);
        let mut one = take(&q, &fleet, 1).await.expect("room");
        one.used(1);
        drop(one);
        // 2 counted + 1 admitted here: full until counted again.
        let full = take(&q, &fleet, 1).await.err();
        assert_eq!(
            full,
            Some(FleetFull {
                queued: 3,
                capacity: 3
            })
        );
        assert_eq!(
            fleet.asked.load(Ordering::SeqCst),
            1,
            "one count while fresh"
        );
        // The fleet ran two of them meanwhile: the next count sees room.
        fleet.queued.store(1, Ordering::SeqCst);
        expire(&q);
        assert!(take(&q, &fleet, 2).await.is_ok());
        assert_eq!(fleet.asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn places_not_used_are_given_back_and_in_flight_ones_survive_a_count() {
        let fleet = Fleet::default();
        let q = FleetQueue::new(3, FRESH_FOR);
        // A write that queued nothing (duplicates, or it failed) gives its places back.
        drop(take(&q, &fleet, 3).await.expect("room"));
        let held = take(&q, &fleet, 2).await.expect("room");
        // Counted again while those two are being written (not in the count yet): they still
        // hold their places.
        expire(&q);
        let full = take(&q, &fleet, 2).await.err();
        assert_eq!(full.map(|f| f.queued), Some(2));
        assert_eq!(fleet.asked.load(Ordering::SeqCst), 2);
        drop(held);
        assert!(take(&q, &fleet, 3).await.is_ok());
    }

    #[tokio::test]
    async fn a_store_of_one_daemon_is_never_bounded_here() {
        let q = FleetQueue::new(1, FRESH_FOR);
        let asked = AtomicUsize::new(0);
        for _ in 0..3 {
            let r = q
                .reserve(5, || async {
                    asked.fetch_add(1, Ordering::SeqCst);
                    Ok(None)
                })
                .await;
            assert!(matches!(r, Ok(Ok(None))));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1, "asked once");
    }
}
