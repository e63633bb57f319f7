//! A tiny in-memory [`Store`] for the engine's unit tests (not durable).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::store::{Lease, Store, StoreResult, UnitKey};

#[derive(Default)]
struct Unit {
    cursor: u32,
    retry: VecDeque<u32>,
    results: BTreeMap<u32, Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    sweeps: BTreeMap<String, Vec<u8>>,
    units: HashMap<UnitKey, Unit>,
    leases: HashMap<String, Lease>,
}

#[derive(Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl MemStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }
}

fn requeue(inner: &mut Inner, lease: &Lease) -> u32 {
    let unit = inner.units.entry(lease.unit.clone()).or_default();
    let mut n = 0;
    for s in &lease.slots {
        if !unit.results.contains_key(s) {
            unit.retry.push_back(*s);
            n += 1;
        }
    }
    n
}

#[async_trait]
impl Store for MemStore {
    async fn create_sweep(&self, sweep: &str, record: &[u8]) -> StoreResult<bool> {
        let mut i = self.lock();
        if i.sweeps.contains_key(sweep) {
            return Ok(false);
        }
        i.sweeps.insert(sweep.into(), record.to_vec());
        Ok(true)
    }
    async fn update_sweep(&self, sweep: &str, record: &[u8]) -> StoreResult<()> {
        self.lock().sweeps.insert(sweep.into(), record.to_vec());
        Ok(())
    }
    async fn load_sweep(&self, sweep: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock().sweeps.get(sweep).cloned())
    }
    async fn sweep_ids(&self) -> StoreResult<Vec<String>> {
        Ok(self.lock().sweeps.keys().cloned().collect())
    }
    async fn delete_sweep(&self, sweep: &str) -> StoreResult<()> {
        let mut i = self.lock();
        i.sweeps.remove(sweep);
        i.units.retain(|k, _| k.sweep != sweep);
        i.leases.retain(|_, l| l.unit.sweep != sweep);
        Ok(())
    }
    async fn grant(
        &self,
        unit: &UnitKey,
        total: u32,
        max: u32,
        lease_id: &str,
        worker: &str,
        deadline_ms: u64,
    ) -> StoreResult<Vec<u32>> {
        let mut i = self.lock();
        let u = i.units.entry(unit.clone()).or_default();
        let mut got = Vec::new();
        while (got.len() as u32) < max {
            if let Some(s) = u.retry.pop_front() {
                if !u.results.contains_key(&s) {
                    got.push(s);
                }
            } else if u.cursor < total {
                let s = u.cursor;
                u.cursor += 1;
                if !u.results.contains_key(&s) {
                    got.push(s);
                }
            } else {
                break;
            }
        }
        if !got.is_empty() {
            i.leases.insert(
                lease_id.into(),
                Lease {
                    id: lease_id.into(),
                    unit: unit.clone(),
                    worker: worker.into(),
                    slots: got.clone(),
                    deadline_ms,
                },
            );
        }
        Ok(got)
    }
    async fn record(
        &self,
        unit: &UnitKey,
        lease_id: Option<&str>,
        results: &[(u32, Vec<u8>)],
    ) -> StoreResult<Vec<bool>> {
        let mut i = self.lock();
        let u = i.units.entry(unit.clone()).or_default();
        let mut flags = Vec::new();
        for (s, b) in results {
            if u.results.contains_key(s) {
                flags.push(false);
            } else {
                u.results.insert(*s, b.clone());
                flags.push(true);
            }
        }
        if let Some(id) = lease_id {
            if let Some(l) = i.leases.get_mut(id) {
                l.slots.retain(|s| !results.iter().any(|(r, _)| r == s));
            }
        }
        Ok(flags)
    }
    async fn extend(&self, lease_id: &str, deadline_ms: u64) -> StoreResult<bool> {
        Ok(match self.lock().leases.get_mut(lease_id) {
            Some(l) => {
                l.deadline_ms = deadline_ms;
                true
            }
            None => false,
        })
    }
    async fn release(&self, lease_id: &str) -> StoreResult<u32> {
        let mut i = self.lock();
        match i.leases.remove(lease_id) {
            Some(l) => Ok(requeue(&mut i, &l)),
            None => Ok(0),
        }
    }
    async fn reclaim_expired(&self, now_ms: u64) -> StoreResult<Vec<Lease>> {
        let mut i = self.lock();
        let ids: Vec<String> = i
            .leases
            .values()
            .filter(|l| l.deadline_ms < now_ms)
            .map(|l| l.id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ids {
            let l = i.leases.remove(&id).unwrap();
            requeue(&mut i, &l);
            out.push(l);
        }
        Ok(out)
    }
    async fn leases(&self) -> StoreResult<Vec<Lease>> {
        Ok(self.lock().leases.values().cloned().collect())
    }
    async fn done_count(&self, unit: &UnitKey) -> StoreResult<u64> {
        Ok(self
            .lock()
            .units
            .get(unit)
            .map_or(0, |u| u.results.len() as u64))
    }
    async fn scan_results(
        &self,
        unit: &UnitKey,
        from: u32,
        limit: u32,
    ) -> StoreResult<Vec<(u32, Vec<u8>)>> {
        Ok(self.lock().units.get(unit).map_or(Vec::new(), |u| {
            u.results
                .range(from..)
                .take(limit as usize)
                .map(|(k, v)| (*k, v.clone()))
                .collect()
        }))
    }
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
