//! Bounded capture of a stream: the first and last part of what was written, with a marker
//! saying how much was left out, so a step printing gigabytes cannot exhaust memory. What is
//! pushed is already redacted ([`redact_stream`](crate::exec::redact_stream)): the cuts cannot
//! leave part of a secret in the head or the tail.

/// Bytes kept from the start of a stream.
pub const HEAD: usize = 32 * 1024;
/// Bytes kept from the end of a stream.
pub const TAIL: usize = 32 * 1024;

/// Keeps the first [`HEAD`] and last [`TAIL`] bytes written.
#[derive(Debug, Clone)]
pub struct Capture {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl Default for Capture {
    fn default() -> Self {
        Capture::with_limits(HEAD, TAIL)
    }
}

impl Capture {
    /// A capture keeping `head` and `tail` bytes.
    pub fn with_limits(head: usize, tail: usize) -> Capture {
        Capture {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            head_cap: head,
            tail_cap: tail,
            total: 0,
        }
    }

    /// Appends bytes.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.head.len() < self.head_cap {
            let n = (self.head_cap - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if bytes.is_empty() || self.tail_cap == 0 {
            return;
        }
        if bytes.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(bytes);
        }
    }

    /// Total bytes written.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether bytes were left out.
    pub fn truncated(&self) -> bool {
        self.total > (self.head.len() + self.tail.len()) as u64
    }

    /// The captured text (lossy UTF-8), with a marker where bytes were left out.
    pub fn text(&self) -> String {
        let mut out = String::from_utf8_lossy(&self.head).to_string();
        if self.truncated() {
            let omitted = self.total - (self.head.len() + self.tail.len()) as u64;
            out.push_str(&format!("\n[... {omitted} bytes truncated ...]\n"));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut c = Capture::with_limits(4, 4);
        c.push(b"abc");
        c.push(b"def");
        assert_eq!(c.text(), "abcdef");
        assert!(!c.truncated());
    }

    #[test]
    fn large_output_keeps_head_and_tail_with_a_marker() {
        let mut c = Capture::with_limits(4, 4);
        for chunk in [&b"0123"[..], b"45", b"6789abcdef"] {
            c.push(chunk);
        }
        assert_eq!(c.total(), 16);
        assert_eq!(c.text(), "0123\n[... 8 bytes truncated ...]\ncdef");
    }
}
