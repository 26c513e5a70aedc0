//! Reading a whole store out, page by page, for `untoil store copy`: every tree that holds what
//! the store promises (runs, dedupe keys, alert episodes, guard states, deliveries, rollups as
//! stored). Read-only: nothing here writes, so a copy can never change its source.
//!
//! Pages are key ranges after the last key of the previous page, so a copy holds one page in
//! memory, not the store. Blocking (sled scans): call from a blocking thread or a CLI.

use crate::ledger::rollup::{Rollup, RollupKey};
use crate::run::id::RunId;
use crate::run::record::RunRecord;
use crate::store::counts::Counts;
use crate::store::error::StoreError;
use crate::store::sled::SledStore;
use crate::store::sled::layout::{decode, parse_rollup_key};
use crate::store::{AlertReceived, Delivery, Result};

/// Which rollup tree to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// By UTC day.
    Daily,
    /// By calendar month (keyed by its first day).
    Monthly,
}

impl SledStore {
    /// Up to `limit` raw (key, value) pairs of `tree` after key `after`, in key order.
    fn page(
        &self,
        tree: &sled::Tree,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(sled::IVec, sled::IVec)>> {
        let inner = &self.inner;
        let iter = match after {
            Some(k) => {
                tree.range::<&[u8], _>((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
            }
            None => tree.iter(),
        };
        iter.take(limit.max(1))
            .map(|item| item.map_err(|e| inner.err(e)))
            .collect()
    }

    /// Up to `limit` runs after run `after`, in id order, complete: notification in, and a
    /// running run's progress applied (as `get_run` gives them).
    pub fn export_runs(&self, after: Option<&RunId>, limit: usize) -> Result<Vec<RunRecord>> {
        let after = after.map(|id| id.0.as_bytes());
        self.page(&self.inner.trees.runs, after, limit)?
            .into_iter()
            .map(|(k, v)| self.inner.read_run(&k, &v).map(|(run, _)| run))
            .collect()
    }

    /// Up to `limit` dedupe entries (encoded key, run id) after key `after`, in key order.
    pub fn export_dedupe(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, RunId)>> {
        Ok(self
            .page(&self.inner.trees.dedupe, after, limit)?
            .into_iter()
            .map(|(k, v)| (k.to_vec(), RunId(String::from_utf8_lossy(&v).to_string())))
            .collect())
    }

    /// Up to `limit` alert episodes after episode key `after` (`fingerprint @ startsAt`), with
    /// their keys, in key order.
    pub fn export_alerts(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, AlertReceived)>> {
        self.page(&self.inner.trees.alerts, after, limit)?
            .into_iter()
            .map(|(k, v)| Ok((k.to_vec(), decode(&k, &v)?)))
            .collect()
    }

    /// Every signed-webhook delivery record, expired or not (prune removes the expired ones on
    /// either side; a copy keeps what the source holds).
    pub fn export_deliveries(&self) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for item in self.inner.trees.deliveries.iter() {
            let (k, v) = item.map_err(|e| self.inner.err(e))?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Every rollup group of `period` as stored (never recomputed from runs: runs may have been
    /// pruned while their rollups stay), in key order.
    pub fn export_rollups(&self, period: Period) -> Result<Vec<(RollupKey, Rollup)>> {
        let tree = match period {
            Period::Daily => &self.inner.trees.rollups,
            Period::Monthly => &self.inner.trees.monthly,
        };
        let mut out = Vec::new();
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| self.inner.err(e))?;
            let Some(key) = parse_rollup_key(&k) else {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).to_string(),
                    reason: "bad rollup key".into(),
                });
            };
            out.push((key, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// How many runs, dedupe keys, alert episodes, guard states and delivery records the store
    /// holds (what a copy's check compares).
    pub fn export_counts(&self) -> Counts {
        let t = &self.inner.trees;
        Counts {
            runs: t.runs.len() as u64,
            dedupe: t.dedupe.len() as u64,
            alerts: t.alerts.len() as u64,
            guards: t.guards.len() as u64,
            deliveries: t.deliveries.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_cover_every_run_once_in_id_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let runs: Vec<RunRecord> = (0..7).map(RunRecord::synthetic).collect();
        store.finish_many(runs.clone()).await.expect("finish");
        let mut want: Vec<RunId> = runs.iter().map(|r| r.id.clone()).collect();
        want.sort();
        let mut got = Vec::new();
        let mut after: Option<RunId> = None;
        loop {
            let page = store.export_runs(after.as_ref(), 3).expect("page");
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            got.extend(page.into_iter().map(|r| r.id));
        }
        assert_eq!(got, want);
        let daily = store.export_rollups(Period::Daily).expect("rollups");
        let counted: u64 = daily.iter().map(|(_, r)| r.runs).sum();
        assert_eq!(counted, 7);
        assert_eq!(store.export_counts().runs, 7);
    }
}
