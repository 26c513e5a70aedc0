//! Alert notifications stored once (tree `notifications`, keyed by the hex SHA-256 of their
//! stored JSON), and what the store remembers of them in memory.
//!
//! A run record is written with `alert.notification_ref` instead of its notification
//! ([`Notes::encode_run`]) and read back complete ([`Notes::rehydrate`]). A notification is
//! written by the batch leader in the same transaction as the first run that refers to it, so a
//! ref never reaches the disk without its target; prune's sweep also runs as the batch leader, so
//! no admission can refer to a notification while it is removed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use crate::run::record::RunRecord;
use crate::store::error::StoreError;
use crate::store::sled::layout::{backend, decode, encode};
use crate::trigger::alert::Notification;

/// A notification's SHA-256.
pub type Hash = [u8; 32];

/// How many notifications' hashes are remembered by allocation before the memo is trimmed.
const HASHED_MAX: usize = 4096;
/// How many bytes of decoded notifications the read cache holds at most (one 900 KB annotation
/// must not pin hundreds of megabytes).
const DECODED_MAX_BYTES: usize = 16 * 1024 * 1024;
/// How many hashes are remembered as stored before the set starts over (checked on disk then).
const KNOWN_MAX: usize = 100_000;

/// Lowercase hex of a hash (the notification's key).
pub fn hex(h: &Hash) -> String {
    use std::fmt::Write;
    h.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The hash a lowercase hex key names.
pub fn parse_hex(s: &str) -> Option<Hash> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The notification a stored record refers to, for the writer to store with it.
#[derive(Clone)]
pub struct Note {
    /// Its hash (key).
    pub hash: Hash,
    /// The notification.
    pub notification: Arc<Notification>,
    /// Its stored JSON, when the encoder had to compute it (a new notification).
    pub json: Option<Arc<Vec<u8>>>,
}

impl Note {
    /// The JSON to store.
    pub fn json(&self) -> Vec<u8> {
        match &self.json {
            Some(j) => j.as_ref().clone(),
            None => encode(&*self.notification),
        }
    }
}

/// A run record as stored, with the notification it refers to.
pub struct Encoded {
    /// The record (JSON, with `notification_ref`).
    pub value: Vec<u8>,
    /// The notification to have stored with it.
    pub note: Option<Note>,
}

/// What the store remembers of notifications.
#[derive(Default)]
pub struct Notes {
    /// Hashes known to be in the tree. Only the batch leader adds (after its transaction) and
    /// removes (prune's sweep) them, so a hash here is never one being removed.
    known: Mutex<HashSet<Hash>>,
    /// Decoded notifications by hash, so a list of runs of one notification decodes it once.
    decoded: Mutex<Decoded>,
    /// The hash of a notification by its allocation: runs sharing one `Arc` are hashed once.
    /// The `Weak` keeps the allocation reserved (and `Arc::get_mut` refused), so an address
    /// found here is that same, unchanged notification.
    hashed: Mutex<HashMap<usize, (Weak<Notification>, Hash)>>,
}

#[derive(Default)]
struct Decoded {
    by_hash: HashMap<Hash, (Arc<Notification>, usize)>,
    bytes: usize,
}

impl Notes {
    /// The hash of `n` and, when it had to be computed, its JSON.
    pub fn hash(&self, n: &Arc<Notification>) -> (Hash, Option<Arc<Vec<u8>>>) {
        let ptr = Arc::as_ptr(n) as usize;
        let hashed = self.hashed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, h)) = hashed.get(&ptr) {
            return (*h, None);
        }
        drop(hashed);
        let json = encode(&**n);
        let h: Hash = Sha256::digest(&json).into();
        self.remember(n, h);
        (h, Some(Arc::new(json)))
    }

    /// Remembers that `n` hashes to `h`.
    fn remember(&self, n: &Arc<Notification>, h: Hash) {
        let mut hashed = self.hashed.lock().unwrap_or_else(|p| p.into_inner());
        if hashed.len() >= HASHED_MAX {
            hashed.retain(|_, (w, _)| w.strong_count() > 0);
            if hashed.len() >= HASHED_MAX {
                hashed.clear();
            }
        }
        hashed.insert(Arc::as_ptr(n) as usize, (Arc::downgrade(n), h));
    }

    /// A run record as stored: its notification replaced by a ref to it.
    pub fn encode_run(&self, run: &RunRecord) -> Encoded {
        let Some(ctx) = run.alert.as_ref().filter(|c| c.notification_ref.is_none()) else {
            return Encoded {
                value: encode(run),
                note: None,
            };
        };
        let (hash, json) = self.hash(&ctx.notification);
        let note = Note {
            hash,
            notification: ctx.notification.clone(),
            json,
        };
        // A copy with the ref set: the notification itself is shared, not copied.
        let mut stored = run.clone();
        if let Some(c) = stored.alert.as_mut() {
            c.notification_ref = Some(hex(&hash));
        }
        Encoded {
            value: encode(&stored),
            note: Some(note),
        }
    }

    /// Puts the stored notification into a record read with a ref; returns the ref's hash (None
    /// for a record with its notification inline, as schema 3 wrote them). A ref to nothing is
    /// [`StoreError::Corrupt`] naming the run.
    pub fn rehydrate(
        &self,
        tree: &sled::Tree,
        path: &Path,
        key: &[u8],
        run: &mut RunRecord,
    ) -> Result<Option<Hash>, StoreError> {
        let Some(hash) = take_ref(key, run)? else {
            return Ok(None);
        };
        let n = match self.cached(&hash) {
            Some(n) => n,
            None => {
                let bytes = tree
                    .get(hex(&hash).as_bytes())
                    .map_err(|e| backend(path, e))?
                    .ok_or_else(|| dangling(key, &hash))?;
                self.decoded(&hash, &bytes)?
            }
        };
        fill(run, n);
        Ok(Some(hash))
    }

    /// A decoded notification from the cache.
    pub fn cached(&self, hash: &Hash) -> Option<Arc<Notification>> {
        self.decoded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_hash
            .get(hash)
            .map(|(n, _)| n.clone())
    }

    /// A stored notification decoded (and cached).
    pub fn decoded(&self, hash: &Hash, bytes: &[u8]) -> Result<Arc<Notification>, StoreError> {
        let key = hex(hash);
        let n: Arc<Notification> =
            Arc::new(decode(format!("notification {key}").as_bytes(), bytes)?);
        self.remember(&n, *hash);
        let mut d = self.decoded.lock().unwrap_or_else(|p| p.into_inner());
        if d.bytes + bytes.len() > DECODED_MAX_BYTES {
            d.by_hash.clear();
            d.bytes = 0;
        }
        d.bytes += bytes.len();
        d.by_hash.insert(*hash, (n.clone(), bytes.len()));
        Ok(n)
    }

    /// Whether `hash` is known to be stored.
    pub fn is_known(&self, hash: &Hash) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(hash)
    }

    /// Records hashes now stored (by the batch leader, after its transaction).
    pub fn mark_known(&self, hashes: impl IntoIterator<Item = Hash>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for h in hashes {
            if known.len() >= KNOWN_MAX {
                known.clear();
            }
            known.insert(h);
        }
    }

    /// Forgets a notification removed from the tree (by the batch leader).
    pub fn forget(&self, hash: &Hash) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
        let mut d = self.decoded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, size)) = d.by_hash.remove(hash) {
            d.bytes = d.bytes.saturating_sub(size);
        }
    }
}

/// Takes the ref out of a record read (None: no alert, or its notification inline as schema 3
/// wrote them); the record then waits for [`fill`].
pub fn take_ref(key: &[u8], run: &mut RunRecord) -> Result<Option<Hash>, StoreError> {
    let Some(r) = run.alert.as_mut().and_then(|c| c.notification_ref.take()) else {
        return Ok(None);
    };
    parse_hex(&r).map(Some).ok_or_else(|| StoreError::Corrupt {
        key: format!("run {}", String::from_utf8_lossy(key)),
        reason: format!("bad notification ref `{r}`"),
    })
}

/// Puts a record's notification back.
pub fn fill(run: &mut RunRecord, n: Arc<Notification>) {
    if let Some(c) = run.alert.as_mut() {
        c.notification = n;
    }
}

/// A record whose notification is not stored.
pub fn dangling(key: &[u8], hash: &Hash) -> StoreError {
    StoreError::Corrupt {
        key: format!("run {}", String::from_utf8_lossy(key)),
        reason: format!("its alert notification {} is not in the store", hex(hash)),
    }
}

/// The notification ref of a stored record, read without building the rest of it (prune's
/// sweep reads every run).
#[derive(serde::Deserialize)]
pub struct RefOnly {
    #[serde(default)]
    alert: Option<AlertRef>,
}

#[derive(serde::Deserialize)]
struct AlertRef {
    #[serde(default)]
    notification_ref: Option<String>,
}

impl RefOnly {
    /// The ref, if the record has one.
    pub fn hash(&self) -> Option<Hash> {
        ref_of(&self.alert)
    }
}

/// The status and notification ref of a stored record, read without the rest of it (a worker's
/// finish checks both before it swaps the record: [`super::tally`]).
#[derive(serde::Deserialize)]
pub struct StatusAndRef {
    /// The run's status.
    pub status: crate::run::status::RunStatus,
    #[serde(default)]
    alert: Option<AlertRef>,
}

impl StatusAndRef {
    /// The ref, if the record has one.
    pub fn hash(&self) -> Option<Hash> {
        ref_of(&self.alert)
    }
}

fn ref_of(alert: &Option<AlertRef>) -> Option<Hash> {
    alert
        .as_ref()?
        .notification_ref
        .as_deref()
        .and_then(parse_hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::cause::AlertContext;

    fn notification(annotation: &str) -> Arc<Notification> {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/alertmanager/firing.json"
        ))
        .expect("the firing fixture");
        let mut n = Notification::from_json(&body).expect("decodes");
        n.common_annotations
            .insert("summary".into(), annotation.into());
        Arc::new(n.without_alerts())
    }

    fn alert_run(n: &Arc<Notification>) -> RunRecord {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/alertmanager/firing.json"
        ))
        .expect("the firing fixture");
        let alert = Notification::from_json(&body).expect("decodes").alerts[0].clone();
        RunRecord {
            alert: Some(AlertContext::new(alert, n.clone())),
            ..RunRecord::synthetic(1)
        }
    }

    #[test]
    fn hex_round_trips_and_rejects_what_is_no_key() {
        let h: Hash = Sha256::digest(b"x").into();
        assert_eq!(parse_hex(&hex(&h)), Some(h));
        assert_eq!(hex(&h).len(), 64);
        assert_eq!(parse_hex(&hex(&h).to_uppercase()), None);
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex(&"é".repeat(32)), None);
    }

    #[test]
    fn a_record_is_stored_with_a_ref_and_read_back_whole() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let tree = db.open_tree("notifications").expect("tree");
        let notes = Notes::default();
        let n = notification("disk");
        let run = alert_run(&n);
        let enc = notes.encode_run(&run);
        let note = enc.note.expect("a note");
        let text = String::from_utf8(enc.value.clone()).expect("utf-8");
        assert!(text.contains(&format!("\"notification_ref\":\"{}\"", hex(&note.hash))));
        assert!(!text.contains("\"notification\""), "{text}");
        // The hash is the stored JSON's; the second encoding of the same Arc is not hashed again.
        assert_eq!(note.hash, <Hash>::from(Sha256::digest(note.json())));
        assert!(notes.encode_run(&run).note.expect("note").json.is_none());

        let mut back: RunRecord = decode(b"r", &enc.value).expect("decodes");
        let key = run.id.0.as_bytes();
        let e = notes
            .rehydrate(&tree, Path::new("test"), key, &mut back)
            .expect_err("dangling");
        assert!(
            matches!(&e, StoreError::Corrupt { key, .. } if key.contains(&run.id.0)),
            "{e}"
        );
        tree.insert(hex(&note.hash), note.json()).expect("insert");
        let mut back: RunRecord = decode(b"r", &enc.value).expect("decodes");
        assert_eq!(
            notes
                .rehydrate(&tree, Path::new("test"), key, &mut back)
                .expect("reads"),
            Some(note.hash)
        );
        assert_eq!(back, run);
        // Read again: the cached copy, shared.
        let mut again: RunRecord = decode(b"r", &enc.value).expect("decodes");
        notes
            .rehydrate(&tree, Path::new("test"), key, &mut again)
            .expect("reads");
        let (a, b) = (back.alert.expect("alert"), again.alert.expect("alert"));
        assert!(Arc::ptr_eq(&a.notification, &b.notification));
        assert_eq!(
            RefOnly::hash(&decode::<RefOnly>(b"r", &enc.value).expect("decodes")),
            Some(note.hash)
        );
    }

    #[test]
    fn different_notifications_have_different_refs_and_runs_without_one_have_none() {
        let notes = Notes::default();
        let a = notes.encode_run(&alert_run(&notification("a")));
        let b = notes.encode_run(&alert_run(&notification("b")));
        assert_ne!(a.note.expect("a").hash, b.note.expect("b").hash);
        assert!(notes.encode_run(&RunRecord::synthetic(1)).note.is_none());
    }
}
