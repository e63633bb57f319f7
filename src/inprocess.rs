//! The one-process mode's link between the worker and the coordinator:
//! direct calls into the engine, and rate-group permits taken straight from
//! its `RateGroups`. It lives in the binary because it is the one place that
//! needs both sides (the worker crate never depends on the coordinator).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moralsweep_coordinator::engine::{Engine, EngineError};
use moralsweep_coordinator::pacing::RateGroups;

use moralsweep_protocol::{
    BatchRecord, CallError, HeldBatch, LeaseOutcome, LostBatch, ReportOutcome, SlotReport, UnitKey,
};
use moralsweep_worker::batch_link::BatchLink;
use moralsweep_worker::permits::Permits;
use moralsweep_worker::runtime::{Link, LinkError, SweepDef};

/// Calls the engine of this process.
pub struct InProcessLink {
    pub engine: Arc<Engine>,
}

/// An engine error as the worker takes it, through the one classification
/// ([`CallError`]) the gRPC link uses too.
fn link_error(e: EngineError) -> LinkError {
    CallError::from(e).into()
}

#[async_trait]
impl Link for InProcessLink {
    async fn lease(&self, worker: &str, max: u32) -> Result<LeaseOutcome, LinkError> {
        self.engine.lease(worker, max).await.map_err(link_error)
    }

    async fn report(
        &self,
        _worker: &str,
        results: Vec<SlotReport>,
        release: Vec<String>,
        _traceparent: Option<String>,
    ) -> Result<ReportOutcome, LinkError> {
        self.engine
            .report(results, &release)
            .await
            .map_err(link_error)
    }

    async fn extend(&self, lease_ids: Vec<String>) -> Result<Vec<String>, LinkError> {
        self.engine
            .extend(&lease_ids)
            .await
            .map(|(lost, _)| lost)
            .map_err(link_error)
    }

    async fn definition(&self, sweep: &str) -> Result<SweepDef, LinkError> {
        Ok(self.engine.record(sweep).map_err(link_error)?.def)
    }
}

#[async_trait]
impl BatchLink for InProcessLink {
    async fn open_batch(
        &self,
        worker: &str,
        lease_ids: Vec<String>,
        unit: UnitKey,
        slots: Vec<u32>,
    ) -> Result<BatchRecord, LinkError> {
        self.engine
            .open_batch(worker, &lease_ids, unit, slots)
            .await
            .map_err(link_error)
    }

    async fn batch_submitted(
        &self,
        sweep: &str,
        id: &str,
        provider_id: &str,
    ) -> Result<bool, LinkError> {
        self.engine
            .batch_submitted(sweep, id, provider_id)
            .await
            .map_err(link_error)
    }

    async fn extend_batches(
        &self,
        worker: &str,
        batches: Vec<HeldBatch>,
    ) -> Result<Vec<LostBatch>, LinkError> {
        self.engine
            .extend_batches(worker, &batches)
            .await
            .map(|(lost, _)| lost)
            .map_err(link_error)
    }

    async fn claim_batches(&self, worker: &str, max: u32) -> Result<Vec<BatchRecord>, LinkError> {
        self.engine
            .claim_batches(worker, max)
            .await
            .map_err(link_error)
    }

    async fn close_batch(&self, sweep: &str, id: &str) -> Result<u32, LinkError> {
        self.engine.close_batch(sweep, id).await.map_err(link_error)
    }
}

/// Permits straight from the coordinator's rate groups.
pub struct InProcessPermits {
    pub rates: Arc<RateGroups>,
}

#[async_trait]
impl Permits for InProcessPermits {
    async fn acquire(&self, group: &str, n: u32, tokens_each: u64) {
        let mut left = n;
        while left > 0 {
            let got = self.rates.take(group, left, tokens_each);
            left -= got.min(left);
            if left > 0 {
                let wait = self
                    .rates
                    .next_ready(group)
                    .clamp(Duration::from_millis(5), Duration::from_secs(5));
                tokio::time::sleep(wait).await;
            }
        }
    }

    async fn throttled(&self, group: &str, retry_after: Option<Duration>) {
        self.rates.throttled(group, retry_after);
    }

    async fn usage(&self, group: &str, estimated_tokens: u64, actual_tokens: u64) {
        self.rates
            .record_usage(group, estimated_tokens, actual_tokens);
    }
}
