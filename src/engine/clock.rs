//! Time as the engine sees it, passed in: the system clock in the daemon, a manual clock in
//! tests of schedules, cooldowns and approval expiry, which then run in no time and the same way
//! every time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

/// A future that completes at an instant.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What time it is, and waiting for an instant.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Completes once [`Clock::now`] is at or past `at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep;
}

/// The system's clock, with tokio's timers.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to; sleepers wake when it passes their instant.
pub struct ManualClock {
    state: Mutex<Manual>,
}

struct Manual {
    now: DateTime<Utc>,
    sleepers: Vec<(DateTime<Utc>, oneshot::Sender<()>)>,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: DateTime<Utc>) -> ManualClock {
        ManualClock {
            state: Mutex::new(Manual {
                now,
                sleepers: Vec::new(),
            }),
        }
    }

    /// Moves the clock forward by `by` and wakes every sleeper whose instant has come.
    pub fn advance(&self, by: chrono::Duration) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.now += by;
        let now = st.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut st.sleepers)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        st.sleepers = later;
        drop(st);
        for (_, tx) in due {
            let _ = tx.send(());
        }
    }

    /// How many sleepers wait (so a test can tell that a timer is armed before it advances).
    pub fn sleepers(&self) -> usize {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.sleepers.iter().filter(|(_, tx)| !tx.is_closed()).count()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).now
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if at <= st.now {
            return Box::pin(std::future::ready(()));
        }
        let (tx, rx) = oneshot::channel();
        st.sleepers.push((at, tx));
        Box::pin(async move {
            // A dropped clock never wakes its sleepers.
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_it_passes_their_instant() {
        let t0 = Utc::now();
        let clock = ManualClock::new(t0);
        let early = clock.sleep_until(t0 + chrono::Duration::seconds(10));
        let late = clock.sleep_until(t0 + chrono::Duration::seconds(60));
        let mut early = tokio::spawn(early);
        let mut late = tokio::spawn(late);
        assert_eq!(clock.sleepers(), 2);
        clock.advance(chrono::Duration::seconds(10));
        (&mut early).await.expect("woke");
        assert!(!late.is_finished());
        assert_eq!(clock.sleepers(), 1);
        clock.advance(chrono::Duration::seconds(50));
        (&mut late).await.expect("woke");
        assert_eq!(clock.now(), t0 + chrono::Duration::seconds(60));
        clock.sleep_until(t0).await;
    }
}
