//! Alert notifications stored once (table `notifications`, keyed by the hex SHA-256 of their
//! stored JSON), as the sled store keeps them: a run's record holds `alert.notification_ref`,
//! and every record given out has its notification back.
//!
//! `runs.note` is a foreign key to the notification, so a ref can never outlive its target; a
//! writer takes a `FOR KEY SHARE` lock on the notification before writing a run that refers to
//! it, and prune's sweep (a `DELETE` of the notifications no run refers to) waits for it. The
//! lock is skipped for a notification a run row the transaction locked refers to: that row keeps
//! it, and writing another row with it (or changing the locked row's ref) makes PostgreSQL's own
//! foreign key check take the same lock.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};

use crate::run::record::RunRecord;
use crate::store::postgres::rows::{decode, encode};
use crate::store::postgres::tx::{Fail, LOCK_TRIES, corrupt};
use crate::trigger::alert::Notification;

/// How many bytes of decoded notifications the read cache holds at most.
const CACHE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// A run record as stored, with the notification it refers to.
pub struct Encoded {
    /// The record (JSON, with `notification_ref` instead of the notification).
    pub record: String,
    /// The notification's key and JSON, for the writer to store with the record.
    pub note: Option<(String, Arc<String>)>,
}

/// Hashes of the notifications one write encodes, by allocation: runs sharing one `Arc` (the
/// runs of one delivery) are serialized and hashed once. Lives for one call only, while the
/// `Arc`s it saw are alive, so an address is never reused for another notification.
#[derive(Default)]
pub struct Hashing(HashMap<usize, (String, Arc<String>)>);

impl Hashing {
    /// The record as stored.
    pub fn encode_run(&mut self, run: &RunRecord) -> Encoded {
        let Some(ctx) = run.alert.as_ref().filter(|c| c.notification_ref.is_none()) else {
            return Encoded {
                record: encode(run),
                note: None,
            };
        };
        let ptr = Arc::as_ptr(&ctx.notification) as usize;
        let (hash, json) = self
            .0
            .entry(ptr)
            .or_insert_with(|| {
                let json = encode(&*ctx.notification);
                (hex(&Sha256::digest(json.as_bytes())), Arc::new(json))
            })
            .clone();
        let mut stored = run.clone();
        if let Some(c) = stored.alert.as_mut() {
            c.notification_ref = Some(hash.clone());
        }
        Encoded {
            record: encode(&stored),
            note: Some((hash, json)),
        }
    }
}

/// Lowercase hex of a digest.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Makes sure notification `hash` is stored and stays so until the transaction ends: locks it
/// (`FOR KEY SHARE`, which a concurrent sweep's `DELETE` waits for), or inserts it when it is
/// missing. `done` holds what this transaction already secured.
pub async fn secure(
    tx: &impl GenericClient,
    hash: &str,
    json: &str,
    done: &mut HashSet<String>,
) -> Result<(), Fail> {
    if done.contains(hash) {
        return Ok(());
    }
    let lock = tx
        .prepare_cached("SELECT 1 FROM notifications WHERE hash = $1 FOR KEY SHARE")
        .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO notifications (hash, body) VALUES ($1, $2::text::json) \
             ON CONFLICT (hash) DO NOTHING RETURNING 1",
        )
        .await?;
    // Either the lock finds it, or the insert adds it; a sweep removing it between the two
    // makes the next round insert it again.
    for _ in 0..LOCK_TRIES {
        if tx.query_opt(&lock, &[&hash]).await?.is_some()
            || tx.query_opt(&insert, &[&hash, &json]).await?.is_some()
        {
            done.insert(hash.to_string());
            return Ok(());
        }
    }
    Err(Fail::Contended(format!("notification {hash}")))
}

/// Decoded notifications by hash: they never change (a hash names one content), so a cached one
/// is always right, and reads of many runs of one notification share one copy.
#[derive(Default)]
pub struct Notes {
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    by_hash: HashMap<String, Arc<Notification>>,
    bytes: usize,
}

impl Notes {
    /// Puts the stored notification back into a record read with a ref (`key` names the run in
    /// errors). A ref to nothing is corrupt.
    pub async fn rehydrate(
        &self,
        c: &impl GenericClient,
        key: &str,
        run: &mut RunRecord,
    ) -> Result<(), Fail> {
        let Some(hash) = run.alert.as_mut().and_then(|a| a.notification_ref.take()) else {
            return Ok(());
        };
        let n = match self.cached(&hash) {
            Some(n) => n,
            None => {
                let st = c
                    .prepare_cached("SELECT body::text FROM notifications WHERE hash = $1")
                    .await?;
                let Some(row) = c.query_opt(&st, &[&hash]).await? else {
                    return Err(corrupt(
                        format!("run {key}"),
                        format!("its alert notification {hash} is not in the store"),
                    ));
                };
                let body: String = row.try_get(0)?;
                let n: Arc<Notification> =
                    Arc::new(decode(&format!("notification {hash}"), &body)?);
                self.remember(&hash, &n, body.len());
                n
            }
        };
        if let Some(a) = run.alert.as_mut() {
            a.notification = n;
        }
        Ok(())
    }

    fn cached(&self, hash: &str) -> Option<Arc<Notification>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_hash
            .get(hash)
            .cloned()
    }

    fn remember(&self, hash: &str, n: &Arc<Notification>, size: usize) {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.bytes + size > CACHE_MAX_BYTES {
            c.by_hash.clear();
            c.bytes = 0;
        }
        c.bytes += size;
        c.by_hash.insert(hash.to_string(), n.clone());
    }
}
