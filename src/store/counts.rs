//! How many items of each kind a store holds: what `untoil store copy` compares between its
//! source and its target after copying.

/// Items a store holds, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Run records.
    pub runs: u64,
    /// Dedupe keys.
    pub dedupe: u64,
    /// Alert episodes.
    pub alerts: u64,
    /// Guard states.
    pub guards: u64,
    /// Signed-webhook delivery records.
    pub deliveries: u64,
}
