//! Log-scaled duration histogram kept in rollups, so percentiles cost one pass over the groups
//! of a report instead of one over every run. Buckets are 1/16 of a power of two wide, so an
//! estimated percentile is within about 3% of the true value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counts of durations (milliseconds) per bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bucket index -> count.
    pub buckets: BTreeMap<u16, u64>,
}

const SUB: u64 = 16;

/// The bucket of a value: exact below 16, then 16 sub-buckets per power of two.
pub fn bucket(v: u64) -> u16 {
    if v < SUB {
        return v as u16;
    }
    let exp = 63 - v.leading_zeros() as u64; // >= 4
    let mantissa = (v >> (exp - 4)) & (SUB - 1);
    (SUB + (exp - 4) * SUB + mantissa) as u16
}

/// The range of values a bucket holds, [low, high).
pub fn bounds(b: u16) -> (u64, u64) {
    let b = b as u64;
    if b < SUB {
        return (b, b + 1);
    }
    let exp = (b - SUB) / SUB + 4;
    let mantissa = (b - SUB) % SUB;
    let width = 1u64 << (exp - 4);
    let low = (1u64 << exp) + mantissa * width;
    (low, low + width)
}

impl Histogram {
    /// Adds one value.
    pub fn record(&mut self, v: u64) {
        *self.buckets.entry(bucket(v)).or_default() += 1;
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (b, n) in &other.buckets {
            *self.buckets.entry(*b).or_default() += n;
        }
    }

    /// Removes another histogram's counts (saturating; empty buckets are dropped).
    pub fn subtract(&mut self, other: &Histogram) {
        for (b, n) in &other.buckets {
            if let Some(c) = self.buckets.get_mut(b) {
                *c = c.saturating_sub(*n);
                if *c == 0 {
                    self.buckets.remove(b);
                }
            }
        }
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// Estimated value at quantile `q` (0..=1): the midpoint of the bucket holding it.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let (low, high) = bounds(*b);
                return Some(low + (high - low - 1) / 2);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_without_gaps() {
        for v in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            100,
            1000,
            123_456,
            u32::MAX as u64,
        ] {
            let (low, high) = bounds(bucket(v));
            assert!(low <= v && v < high, "{v} not in [{low}, {high})");
        }
        for b in 0..400u16 {
            assert_eq!(bounds(b).1, bounds(b + 1).0, "gap after bucket {b}");
        }
    }

    #[test]
    fn quantiles_are_within_a_few_percent() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let median = h.quantile(0.5).unwrap_or(0) as f64;
        let p95 = h.quantile(0.95).unwrap_or(0) as f64;
        assert!((median - 500.0).abs() / 500.0 < 0.04, "{median}");
        assert!((p95 - 950.0).abs() / 950.0 < 0.04, "{p95}");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
