//! Log-scaled duration histogram kept in rollups, so percentiles cost one pass over the groups
//! of a report instead of one over every run. Buckets are 1/16 of a power of two wide, so an
//! estimated percentile is within about 3% of the true value.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Counts of durations (milliseconds) per bucket.
///
/// Kept as (bucket, count) pairs in bucket order, not a map: reports merge thousands of
/// histograms, and merging two sorted runs is a single pass without a node per bucket. Stored
/// as a map of bucket to count, as it always was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    buckets: Vec<(u16, u64)>,
}

impl Serialize for Histogram {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename = "Histogram")]
        struct Stored<'a> {
            buckets: Map<'a>,
        }
        struct Map<'a>(&'a [(u16, u64)]);
        impl Serialize for Map<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(b, n)| (b, n)))
            }
        }
        Stored {
            buckets: Map(&self.buckets),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Histogram {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "Histogram")]
        struct Stored {
            buckets: BTreeMap<u16, u64>,
        }
        let stored = Stored::deserialize(d)?;
        Ok(Histogram {
            buckets: stored.buckets.into_iter().collect(),
        })
    }
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
    /// A histogram of (bucket, count) pairs given in strictly increasing bucket order, or None
    /// when they are not.
    pub fn from_sorted(buckets: Vec<(u16, u64)>) -> Option<Histogram> {
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0)
            .then_some(Histogram { buckets })
    }

    /// The (bucket, count) pairs, in bucket order.
    pub fn buckets(&self) -> &[(u16, u64)] {
        &self.buckets
    }

    /// Adds one value.
    pub fn record(&mut self, v: u64) {
        let b = bucket(v);
        match self.buckets.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => self.buckets[i].1 += 1,
            Err(i) => self.buckets.insert(i, (b, 1)),
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        if other.buckets.is_empty() {
            return;
        }
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
            return;
        }
        let (a, b) = (&self.buckets, &other.buckets);
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                std::cmp::Ordering::Less => {
                    out.push(a[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push((a[i].0, a[i].1 + b[j].1));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        self.buckets = out;
    }

    /// Removes another histogram's counts (saturating; empty buckets are dropped).
    pub fn subtract(&mut self, other: &Histogram) {
        for (b, n) in &other.buckets {
            if let Ok(i) = self.buckets.binary_search_by_key(b, |(k, _)| *k) {
                let c = &mut self.buckets[i].1;
                *c = c.saturating_sub(*n);
                if *c == 0 {
                    self.buckets.remove(i);
                }
            }
        }
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
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

    #[test]
    fn merging_and_subtracting_keep_buckets_in_order_and_stored_as_a_map() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for v in [900, 5, 70_000, 5] {
            a.record(v);
        }
        for v in [5, 1_000_000, 0] {
            b.record(v);
        }
        let mut sum = a.clone();
        sum.merge(&b);
        assert_eq!(sum.count(), 7);
        assert!(sum.buckets().windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(sum.buckets()[1], (5, 3));
        sum.subtract(&b);
        assert_eq!(sum, a);
        let json = serde_json::to_string(&a).unwrap_or_default();
        assert_eq!(json, r#"{"buckets":{"5":2,"108":1,"209":1}}"#);
        assert_eq!(
            serde_json::from_str::<Histogram>(&json).ok(),
            Some(a.clone())
        );
        assert_eq!(Histogram::from_sorted(vec![(3, 1), (3, 1)]), None);
        assert_eq!(Histogram::from_sorted(a.buckets().to_vec()), Some(a));
    }
}
