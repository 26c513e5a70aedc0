//! Where a run's progress goes as the executor reports it: the daemon writes it to the store and
//! to the run's followers, `untoil run` prints it too.

use async_trait::async_trait;

use crate::run::event::RunEvent;

/// Receives a run's events, in order, as they happen. The executor awaits each call, so an
/// implementation keeps it short.
#[async_trait]
pub trait Recorder: Send {
    /// One event.
    async fn record(&mut self, event: RunEvent);
}

/// Drops every event (previews, approval notifications).
pub struct Discard;

#[async_trait]
impl Recorder for Discard {
    async fn record(&mut self, _: RunEvent) {}
}
