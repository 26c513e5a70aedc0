//! Redaction of a stream read in chunks (a step process's output, an HTTP response body),
//! before anything splits it: a secret split over two reads is still masked whole, and what
//! comes out can be cut anywhere (into lines, into the stored head and tail) without leaving
//! part of a secret at the cut.
//!
//! Bytes that may begin a secret not yet complete are held until the next chunk tells, at most
//! the length of the longest form; a chunk that ends elsewhere (typically after a newline) is
//! passed on whole, so output lines are not delayed.

use std::borrow::Cow;

use crate::exec::redact::{Redactor, mask};

/// Redacts a stream chunk by chunk.
#[derive(Default)]
pub struct StreamRedactor {
    redactor: Redactor,
    held: Vec<u8>,
}

impl std::fmt::Debug for StreamRedactor {
    // Not what is held: it may be the start of a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamRedactor({} bytes held)", self.held.len())
    }
}

impl StreamRedactor {
    /// A stream redactor masking what `redactor` masks.
    pub fn new(redactor: Redactor) -> StreamRedactor {
        StreamRedactor {
            redactor,
            held: Vec::new(),
        }
    }

    /// The next chunk, redacted, minus what may be the start of a secret (held for the next).
    pub fn push<'a>(&mut self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if self.redactor.is_empty() {
            return Cow::Borrowed(bytes);
        }
        self.held.extend_from_slice(bytes);
        let scan = self.redactor.scan(&self.held);
        let mut cut = scan.open_from.unwrap_or(self.held.len());
        // A whole occurrence that an open one begins inside of is held with it: the open one
        // may complete into a longer secret that the two are masked as.
        if let Some(m) = scan.masks.iter().find(|m| m.start < cut && cut < m.end) {
            cut = m.start;
        }
        let masks: Vec<_> = scan.masks.into_iter().filter(|m| m.end <= cut).collect();
        let out = mask(&self.held[..cut], &masks);
        self.held.drain(..cut);
        Cow::Owned(out)
    }

    /// The end of the stream: what was held, redacted. What is still open here is not a
    /// secret, only the start of one that the stream ended before (the process printed it so,
    /// or was killed while printing): it is passed on as is, like any text that is not a secret.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        self.redactor.redact_bytes(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(r: &Redactor, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut s = StreamRedactor::new(r.clone());
        let mut parts: Vec<Vec<u8>> = chunks.iter().map(|c| s.push(c).into_owned()).collect();
        parts.push(s.finish());
        let all = parts.concat();
        (parts, all)
    }

    #[test]
    fn a_secret_split_over_chunks_is_masked_whole() {
        let secret = "it's$FILE\"pw w0rd/42";
        let r = Redactor::new([secret.to_string()]);
        let text = format!(
            "head {secret} mid {} tail\n",
            "it%27s%24FILE%22pw+w0rd%2F42"
        );
        let bytes = text.as_bytes();
        for split in 1..bytes.len() {
            for second in split..bytes.len() {
                let (_, all) = through(
                    &r,
                    &[&bytes[..split], &bytes[split..second], &bytes[second..]],
                );
                assert_eq!(
                    String::from_utf8_lossy(&all),
                    "head *** mid *** tail\n",
                    "split at {split} and {second}"
                );
            }
        }
    }

    #[test]
    fn chunks_that_cannot_begin_a_secret_pass_at_once() {
        let r = Redactor::new(["secret".to_string()]);
        let (parts, _) = through(&r, &[b"line one\n", b"the sec", b"ret\n", b"a sec"]);
        assert_eq!(parts[0], b"line one\n");
        assert_eq!(parts[1], b"the ");
        assert_eq!(parts[2], b"***\n");
        assert_eq!(parts[3], b"a ");
        // The stream ended inside what could have been a secret: it was not one.
        assert_eq!(parts[4], b"sec");
    }

    #[test]
    fn no_secret_means_no_copy_and_nothing_held() {
        let mut s = StreamRedactor::new(Redactor::new([String::new()]));
        assert!(matches!(s.push(b"abc"), Cow::Borrowed(_)));
        assert!(s.finish().is_empty());
    }
}
