//! Provider batches: slots a worker answers through a provider's batch API.
//! The engine names each batch, keeps its record in the store (which owns
//! its slots from before the worker submits it until it closes), lets the
//! holder extend it like a lease and hands a batch whose holder stopped
//! extending it to another worker, to poll, never to submit again. Results
//! come back through [`Engine::report`] without a lease; closing a batch
//! puts its unanswered slots back in the queue.

use super::*;
use moralsweep_protocol::BatchRecord;

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

    /// Moves the deadlines of the batches `worker` holds; returns those it
    /// no longer holds and the new deadline.
    pub async fn extend_batches(
        &self,
        worker: &str,
        batches: &[(String, String)],
    ) -> EngineResult<(Vec<(String, String)>, u64)> {
        let deadline = now_ms() + self.cfg.lease_ttl.as_millis() as u64;
        let mut lost = Vec::new();
        for (sweep, id) in batches {
            if !self.store.extend_batch(sweep, id, worker, deadline).await? {
                lost.push((sweep.clone(), id.clone()));
            }
        }
        Ok((lost, deadline))
    }

    /// Hands up to `max` batches whose holder stopped extending them to
    /// `worker`.
    pub async fn claim_batches(&self, worker: &str, max: u32) -> EngineResult<Vec<BatchRecord>> {
        let now = now_ms();
        let deadline = now + self.cfg.lease_ttl.as_millis() as u64;
        let claimed = self.store.claim_batches(worker, now, deadline, max).await?;
        for b in &claimed {
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
        if requeued > 0 {
            self.wake_units();
        }
        self.bump();
        Ok(requeued)
    }

    /// Every open batch (status).
    pub async fn batches(&self) -> EngineResult<Vec<BatchRecord>> {
        Ok(self.store.batches().await?)
    }
}
