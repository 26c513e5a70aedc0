//! A run's id.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A run's id: a ULID, so ids sort by creation time; within this process they are strictly
/// increasing, so runs created in the same millisecond keep their order too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl RunId {
    /// A new id for now, greater than every id this process made before.
    pub fn new() -> RunId {
        static IDS: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
        let mut ids = IDS.lock().unwrap_or_else(|p| p.into_inner());
        let id = ids
            .get_or_insert_with(ulid::Generator::new)
            .generate()
            // Only after 2^80 ids in one millisecond: a fresh random one is still unique.
            .unwrap_or_else(|_| ulid::Ulid::new());
        RunId(id.to_string())
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_one_after_another_sort_in_that_order() {
        let ids: Vec<RunId> = (0..1000).map(|_| RunId::new()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
