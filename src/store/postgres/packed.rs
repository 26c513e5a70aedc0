//! Rollup counters as the `packed` column keeps them (schema 4): a compact binary encoding that
//! a report's read decodes far faster than the JSON maps of the `counters` column (a
//! two-year report reads thousands of rows). Every figure is a whole number, so the encoding is
//! exact: the same totals as the JSON and as the sled store.
//!
//! Layout: a format byte ([`FORMAT`]), the 12 counters of [`Rollup`] in a fixed order, then the
//! two histograms (durations, times to remediate), each as its number of buckets followed by
//! (bucket index minus the previous one, count) pairs in bucket order. Every number is an
//! unsigned LEB128 varint.

use crate::ledger::histogram::Histogram;
use crate::ledger::rollup::Rollup;

/// The encoding's version, first byte of every value: a later encoding takes another.
pub const FORMAT: u8 = 1;

/// Why a packed value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// The value ended inside a number, or before its last field.
    #[error("packed rollup ends early, at byte {0}")]
    Truncated(usize),
    /// Bytes after the last field.
    #[error("packed rollup has {0} bytes after its last field")]
    Trailing(usize),
    /// A number that does not fit its field.
    #[error("packed rollup has a number too large for its field at byte {0}")]
    Overflow(usize),
    /// A histogram whose buckets are not in increasing order.
    #[error("packed rollup has a histogram out of bucket order at byte {0}")]
    Order(usize),
    /// An encoding this untoil does not know (written by a newer one).
    #[error("packed rollup is in format {0}, which this untoil does not read (upgrade untoil)")]
    Format(u8),
}

/// The counters in their packed order.
fn counters(r: &Rollup) -> [u64; 12] {
    [
        r.runs,
        r.succeeded,
        r.noop,
        r.failed,
        r.interrupted,
        r.cancelled,
        r.toil_milli_minutes,
        r.remediations,
        r.remediate_ms_sum,
        r.verified,
        r.unverified,
        r.legacy_runs,
    ]
}

/// `r` packed.
pub fn pack(r: &Rollup) -> Vec<u8> {
    let buckets = r.durations.buckets().len() + r.remediate_ms.buckets().len();
    let mut out = Vec::with_capacity(1 + 12 * 2 + 2 + buckets * 4);
    out.push(FORMAT);
    for v in counters(r) {
        put(&mut out, v);
    }
    for h in [&r.durations, &r.remediate_ms] {
        put(&mut out, h.buckets().len() as u64);
        let mut last = 0u64;
        for (b, n) in h.buckets() {
            put(&mut out, u64::from(*b) - last);
            last = u64::from(*b);
            put(&mut out, *n);
        }
    }
    out
}

/// A packed value read back.
pub fn unpack(bytes: &[u8]) -> Result<Rollup, PackError> {
    let mut r = Reader { bytes, at: 0 };
    match bytes.first() {
        Some(&FORMAT) => r.at = 1,
        Some(&other) => return Err(PackError::Format(other)),
        None => return Err(PackError::Truncated(0)),
    }
    let mut c = [0u64; 12];
    for v in &mut c {
        *v = r.next()?;
    }
    let [
        runs,
        succeeded,
        noop,
        failed,
        interrupted,
        cancelled,
        toil_milli_minutes,
        remediations,
        remediate_ms_sum,
        verified,
        unverified,
        legacy_runs,
    ] = c;
    let durations = r.histogram()?;
    let remediate_ms = r.histogram()?;
    if r.at != bytes.len() {
        return Err(PackError::Trailing(bytes.len() - r.at));
    }
    Ok(Rollup {
        runs,
        succeeded,
        noop,
        failed,
        interrupted,
        cancelled,
        toil_milli_minutes,
        durations,
        remediations,
        remediate_ms_sum,
        remediate_ms,
        verified,
        unverified,
        legacy_runs,
    })
}

/// Appends `v` as an unsigned LEB128 varint.
fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    /// The next varint.
    fn next(&mut self) -> Result<u64, PackError> {
        let start = self.at;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err(PackError::Truncated(self.at));
            };
            self.at += 1;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(PackError::Overflow(start));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(PackError::Overflow(start))
    }

    /// The next histogram.
    fn histogram(&mut self) -> Result<Histogram, PackError> {
        let start = self.at;
        let n = self.next()?;
        // Each pair takes two bytes at least: a count beyond that is damage, not a reason to
        // reserve memory.
        let mut buckets = Vec::with_capacity((n as usize).min(self.bytes.len() / 2));
        let mut b = 0u64;
        for _ in 0..n {
            let at = self.at;
            b = b.saturating_add(self.next()?);
            let bucket = u16::try_from(b).map_err(|_| PackError::Overflow(at))?;
            buckets.push((bucket, self.next()?));
        }
        Histogram::from_sorted(buckets).ok_or(PackError::Order(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rollup {
        let mut r = Rollup {
            runs: 7,
            succeeded: 3,
            noop: 1,
            failed: 1,
            interrupted: 1,
            cancelled: 1,
            toil_milli_minutes: u64::MAX,
            remediations: 2,
            remediate_ms_sum: 123_456_789,
            verified: 1,
            unverified: 1,
            legacy_runs: 4,
            ..Rollup::default()
        };
        for ms in [0, 5, 900, 900, 1_000_000, u64::MAX] {
            r.durations.record(ms);
        }
        r.remediate_ms.record(60_000);
        r
    }

    #[test]
    fn packed_rollups_read_back_exactly() {
        for r in [Rollup::default(), sample()] {
            assert_eq!(unpack(&pack(&r)), Ok(r));
        }
        // Far smaller than the JSON it replaces.
        let r = sample();
        assert!(pack(&r).len() * 4 < serde_json::to_string(&r).unwrap_or_default().len());
    }

    #[test]
    fn damaged_or_unknown_values_are_refused_not_misread() {
        let bytes = pack(&sample());
        for cut in 0..bytes.len() {
            assert!(
                matches!(unpack(&bytes[..cut]), Err(PackError::Truncated(_))),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(unpack(&longer), Err(PackError::Trailing(1)));
        let mut newer = bytes;
        newer[0] = FORMAT + 1;
        assert_eq!(unpack(&newer), Err(PackError::Format(FORMAT + 1)));
        let mut huge = vec![FORMAT];
        huge.extend([0xff; 10]);
        assert!(matches!(unpack(&huge), Err(PackError::Overflow(1))));
    }
}
