//! Admission: runs admitted unless their dedupe key was seen before, each with its guard
//! decision, alert episodes merged, and a signed webhook's delivery recorded, in the caller's
//! transaction.
//!
//! A dedupe key is taken by `INSERT ... ON CONFLICT DO NOTHING RETURNING`: a concurrent
//! transaction inserting the same key waits for the first to end, then sees the conflict. Keys
//! are stored in their encoded form ([`DedupeKey::encode`]), as the sled store keeps them.

use deadpool_postgres::GenericClient;

use crate::run::id::RunId;
use crate::run::status::RunStatus;
use crate::store::postgres::rows::{decode, encode, nanos};
use crate::store::postgres::tx::{Fail, LOCK_TRIES};
use crate::store::postgres::write::{Writer, lock_guard, put_guard};
use crate::store::rules::{Earlier, received_again};
use crate::store::{Admitted, AlertReceived, Candidate, Delivery};
use crate::trigger::key::stamp;

/// Records `delivery` unless a record of its (source, id) still refuses it at its receipt:
/// false (nothing written) then. The record's row stays locked until the transaction ends, so
/// concurrent identical deliveries admit once.
pub async fn claim_delivery(tx: &impl GenericClient, d: &Delivery) -> Result<bool, Fail> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (source, id, expires_ns, record) \
             VALUES ($1, $2, $3, $4::text::json) ON CONFLICT DO NOTHING RETURNING 1",
        )
        .await?;
    let select = tx
        .prepare_cached(
            "SELECT record::text FROM deliveries WHERE source = $1 AND id = $2 FOR UPDATE",
        )
        .await?;
    let update = tx
        .prepare_cached(
            "UPDATE deliveries SET expires_ns = $3, record = $4::text::json \
             WHERE source = $1 AND id = $2",
        )
        .await?;
    let record = encode(d);
    let expires = nanos(d.expires_at);
    let id = d.id.as_bytes();
    // A record pruned between the insert's conflict and the lock is inserted again.
    for _ in 0..LOCK_TRIES {
        if tx
            .query_opt(&insert, &[&d.source, &id, &expires, &record])
            .await?
            .is_some()
        {
            return Ok(true);
        }
        if let Some(row) = tx.query_opt(&select, &[&d.source, &id]).await? {
            let text: String = row.try_get(0)?;
            let earlier: Delivery = decode(&format!("delivery {}/{}", d.source, d.id), &text)?;
            if earlier.refuses_at(d.received_at) {
                return Ok(false);
            }
            tx.execute(&update, &[&d.source, &id, &expires, &record])
                .await?;
            return Ok(true);
        }
    }
    Err(Fail::Contended(format!("delivery {}/{}", d.source, d.id)))
}

/// Merges an alert episode into the store: a new one is inserted, a known one counts another
/// receipt (and keeps its first receipt, which `alerts` lists it by).
pub async fn put_alert(tx: &impl GenericClient, alert: &AlertReceived) -> Result<(), Fail> {
    let at = stamp(alert.starts_at);
    let fp = alert.fingerprint.as_bytes();
    let insert = tx
        .prepare_cached(
            "INSERT INTO alerts (fingerprint, stamp, received_ns, record) \
             VALUES ($1, $2, $3, $4::text::json) ON CONFLICT DO NOTHING RETURNING 1",
        )
        .await?;
    let select = tx
        .prepare_cached(
            "SELECT record::text FROM alerts WHERE fingerprint = $1 AND stamp = $2 FOR UPDATE",
        )
        .await?;
    let update = tx
        .prepare_cached(
            "UPDATE alerts SET record = $3::text::json WHERE fingerprint = $1 AND stamp = $2",
        )
        .await?;
    for _ in 0..LOCK_TRIES {
        if let Some(row) = tx.query_opt(&select, &[&fp, &at]).await? {
            let text: String = row.try_get(0)?;
            let mut old: AlertReceived = decode(&format!("alert {}", alert.episode()), &text)?;
            received_again(&mut old, alert);
            tx.execute(&update, &[&fp, &at, &encode(&old)]).await?;
            return Ok(());
        }
        let inserted = tx
            .query_opt(
                &insert,
                &[&fp, &at, &nanos(alert.received_at), &encode(alert)],
            )
            .await?;
        if inserted.is_some() {
            return Ok(());
        }
    }
    Err(Fail::Contended(format!(
        "alert episode {}",
        alert.episode()
    )))
}

/// The run an alert episode's dedupe entry points to, when a guard skipped it: the episode may
/// run on a re-send. A run admitted to run, or skipped by a person's denial or an expired
/// approval, keeps the key taken; so do keys of other triggers, never sent again.
async fn guard_skipped(
    tx: &impl GenericClient,
    key: &str,
    id: &str,
) -> Result<Option<RunId>, Fail> {
    if !key.starts_with("alert:") {
        return Ok(None);
    }
    let st = tx
        .prepare_cached("SELECT record::text FROM runs WHERE id = $1")
        .await?;
    // A pruned run is one from long ago: its episode is over.
    let Some(row) = tx.query_opt(&st, &[&id]).await? else {
        return Ok(None);
    };
    let text: String = row.try_get(0)?;
    let earlier: Earlier = decode(&format!("run {id}"), &text)?;
    Ok(earlier.guard_skipped().then(|| RunId(id.to_string())))
}

/// Admits `candidates` in order (one result each), as the sled store decides them.
pub async fn admit(
    tx: &impl GenericClient,
    w: &mut Writer<'_>,
    candidates: &[Candidate],
) -> Result<Vec<Admitted>, Fail> {
    let take = tx
        .prepare_cached(
            "INSERT INTO dedupe (key, run_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
        )
        .await?;
    let held = tx
        .prepare_cached("SELECT run_id FROM dedupe WHERE key = $1 FOR UPDATE")
        .await?;
    let repoint = tx
        .prepare_cached("UPDATE dedupe SET run_id = $2 WHERE key = $1")
        .await?;
    let mut out = Vec::with_capacity(candidates.len());
    for c in candidates {
        let key = c.key.encode();
        let kb = key.as_bytes();
        let id = &c.run.id.0;
        // Sees this transaction's own earlier inserts: two candidates with one key admit one.
        let retry_of = if tx.query_opt(&take, &[&kb, id]).await?.is_some() {
            None
        } else {
            let earlier = match tx.query_opt(&held, &[&kb]).await? {
                Some(row) => row.try_get::<_, String>(0)?,
                // Only a delete could remove it, and nothing deletes dedupe keys.
                None => {
                    out.push(Admitted::Duplicate);
                    continue;
                }
            };
            match guard_skipped(tx, &key, &earlier).await? {
                Some(run) => Some(run),
                None => {
                    out.push(Admitted::Duplicate);
                    continue;
                }
            }
        };
        let again = retry_of.is_some();
        let Some(gate) = &c.gate else {
            let mut run = c.run.clone();
            if again {
                run.retry_of = retry_of;
                tx.execute(&repoint, &[&kb, id]).await?;
            }
            w.put_run(tx, &run, Some(true), None).await?;
            out.push(Admitted::New {
                run: Box::new(run),
                guard: None,
            });
            continue;
        };
        let state = lock_guard(tx, &gate.runbook, &gate.key).await?;
        let mut run = c.run.clone();
        run.retry_of = retry_of;
        let next = (gate.apply)(&state, &mut run);
        // A re-send the guards still refuse is a duplicate: one skipped record per episode,
        // and the guard state stays as it was.
        if again && run.status == RunStatus::Skipped {
            out.push(Admitted::Duplicate);
            continue;
        }
        if again {
            tx.execute(&repoint, &[&kb, id]).await?;
        }
        if next != state {
            put_guard(tx, &gate.runbook, &gate.key, &next).await?;
        }
        if run.status.is_final() {
            w.finish(tx, &run).await?;
        } else {
            w.put_run(tx, &run, Some(true), None).await?;
        }
        out.push(Admitted::New {
            run: Box::new(run),
            guard: Some(next),
        });
    }
    Ok(out)
}
