//! Provider batches: slots a worker answers through a provider's batch API.
//! The engine names each batch, keeps its record in the store (which owns
//! its slots from before the worker submits it until it closes), lets the
//! holder extend it like a lease and hands a batch whose holder stopped
//! extending it to another worker, to poll, never to submit again. Results
//! come back through [`Engine::report`] without a lease; closing a batch
//! puts its unanswered slots back in the queue.

use super::*;
use moralsweep_protocol::{BatchRecord, HeldBatch, LostBatch};

impl Engine {
    /// Opens a batch for `slots` of `unit` that `worker` holds under
    /// `lease_ids`; returns the record as stored: its id (to give the
    /// provider) and the slots it kept (those still held and not recorded;
    /// none when the leases were lost meanwhile).
    pub async fn open_batch(
        &self,
        worker: &str,
        lease_ids: &[String],
        unit: UnitKey,
        slots: Vec<u32>,
    ) -> EngineResult<BatchRecord> {
        {
            let st = self.lock();
            let Some(s) = st.sweeps.get(&unit.sweep) else {
                return Err(not_found(&unit.sweep));
            };
            let Some(u) = s.units.iter().find(|u| u.key == unit) else {
                return Err(EngineError::InvalidArgument(format!(
                    "sweep {:?} has no unit {}",
                    unit.sweep,
                    unit_label(&unit.model, unit.mode)
                )));
            };
            if let Some(bad) = slots.iter().find(|&&s| s >= u.total) {
                return Err(EngineError::InvalidArgument(format!(
                    "slot {bad} is out of range for {} of sweep {:?} ({} slots)",
                    unit_label(&unit.model, unit.mode),
                    unit.sweep,
                    u.total
                )));
            }
        }
        let now = now_ms();
        let batch = BatchRecord {
            id: format!(
                "msb-{:x}-{:x}",
                self.boot,
                self.lease_seq.fetch_add(1, Ordering::Relaxed)
            ),
            unit,
            slots,
            provider_id: None,
            worker: worker.to_string(),
            deadline_ms: now + self.cfg.lease_ttl.as_millis() as u64,
            created_ms: now,
        };
        let stored = self.store.open_batch(lease_ids, &batch).await?;
        if !stored.slots.is_empty() {
            self.batch_known(&stored);
        }
        self.bump();
        Ok(stored)
    }

    /// Notes the provider's id of an open batch; `false` if it is not open.
    pub async fn batch_submitted(
        &self,
        sweep: &str,
        id: &str,
        provider_id: &str,
    ) -> EngineResult<bool> {
        if provider_id.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "batch {id} of sweep {sweep:?}: the provider's batch id is empty"
            )));
        }
        let open = self.store.batch_submitted(sweep, id, provider_id).await?;
        self.bump();
        Ok(open)
    }

    /// Moves the deadlines of the batches `worker` holds and keeps what it
    /// saw of them; returns those it no longer holds (`stopped` when their
    /// sweep no longer runs: then the record is closed here and the worker
    /// cancels the provider's batch) and the new deadline.
    pub async fn extend_batches(
        &self,
        worker: &str,
        batches: &[HeldBatch],
    ) -> EngineResult<(Vec<LostBatch>, u64)> {
        let deadline = now_ms() + self.cfg.lease_ttl.as_millis() as u64;
        let mut lost = Vec::new();
        let mut learnt = false;
        for b in batches {
            // A deleted or cancelled sweep's batches stop.
            let running = {
                let st = self.lock();
                st.sweeps
                    .get(&b.sweep)
                    .is_some_and(|s| s.record.state != SweepState::Cancelled)
            };
            let key = (b.sweep.clone(), b.id.clone());
            if !running {
                self.store.close_batch(&b.sweep, &b.id).await?;
                self.batch_seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                lost.push(LostBatch {
                    sweep: b.sweep.clone(),
                    id: b.id.clone(),
                    stopped: true,
                });
            } else if !self
                .store
                .extend_batch(&b.sweep, &b.id, worker, deadline)
                .await?
            {
                lost.push(LostBatch {
                    sweep: b.sweep.clone(),
                    id: b.id.clone(),
                    stopped: false,
                });
            } else if let Some(seen) = &b.seen {
                let unknown = !self
                    .batch_seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(&key);
                if unknown && !learnt {
                    // Opened before this process started: learn the open
                    // batches' units from the store (once per call).
                    for r in self.store.batches().await? {
                        self.batch_known(&r);
                    }
                    learnt = true;
                }
                let mut known = self.batch_seen.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(entry) = known.get_mut(&key) {
                    if entry.1.as_ref() != Some(seen) {
                        entry.1 = Some(seen.clone());
                        drop(known);
                        self.bump();
                    }
                }
            }
        }
        Ok((lost, deadline))
    }

    /// One line per open batch of `sweep` (its model, slots, provider batch
    /// and what its worker last saw), for `status`.
    pub(super) async fn batch_lines(&self, sweep: &str) -> EngineResult<Vec<String>> {
        let open = self.store.batches().await?;
        let seen = self.batch_seen.lock().unwrap_or_else(|e| e.into_inner());
        Ok(open
            .iter()
            .filter(|b| b.unit.sweep == sweep)
            .map(|b| {
                b.describe(
                    seen.get(&(b.unit.sweep.clone(), b.id.clone()))
                        .and_then(|(_, s)| s.as_deref()),
                )
            })
            .collect())
    }

    /// Hands up to `max` batches whose holder stopped extending them to
    /// `worker`.
    pub async fn claim_batches(&self, worker: &str, max: u32) -> EngineResult<Vec<BatchRecord>> {
        let now = now_ms();
        let deadline = now + self.cfg.lease_ttl.as_millis() as u64;
        let claimed = self.store.claim_batches(worker, now, deadline, max).await?;
        for b in &claimed {
            self.batch_known(b);
            tracing::info!(sweep = %b.unit.sweep, model = %b.unit.model, batch = %b.id,
                provider_batch = b.provider_id.as_deref().unwrap_or("-"), %worker,
                "a batch whose worker stopped polling goes to another worker");
        }
        Ok(claimed)
    }

    /// Closes a batch whose results are reported: its slots without a
    /// recorded result go back to the queue. Returns how many.
    pub async fn close_batch(&self, sweep: &str, id: &str) -> EngineResult<u32> {
        let requeued = self.store.close_batch(sweep, id).await?;
        self.batch_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(sweep.to_string(), id.to_string()));
        if requeued > 0 {
            self.wake_units();
        }
        self.bump();
        Ok(requeued)
    }

    /// What the workers last saw of `sweep`'s open batches, one line each,
    /// from memory (the progress display).
    pub(super) fn batch_seen_lines(&self, sweep: &str) -> Vec<String> {
        let seen = self.batch_seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines: Vec<String> = seen
            .iter()
            .filter(|((s, _), _)| s == sweep)
            .map(|((_, id), (unit, words))| {
                format!(
                    "batch {id} of {} {}: {}",
                    unit.model,
                    unit.mode.name(),
                    words.as_deref().unwrap_or("submitting")
                )
            })
            .collect();
        lines.sort();
        lines
    }

    fn batch_known(&self, b: &BatchRecord) {
        self.batch_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((b.unit.sweep.clone(), b.id.clone()))
            .or_insert_with(|| (b.unit.clone(), None));
    }

    /// Every open batch (status).
    pub async fn batches(&self) -> EngineResult<Vec<BatchRecord>> {
        Ok(self.store.batches().await?)
    }
}
