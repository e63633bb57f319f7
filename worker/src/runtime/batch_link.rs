//! What a worker asks of the coordinator to run provider batches (issue
//! 13's batch mode): the batch record that owns a batch's slots from before
//! it is submitted until its results are recorded. Implemented by the gRPC
//! link in the cluster and by direct engine calls in the one-process mode;
//! the results themselves go through [`Link::report`] without a lease.
//!
//! [`Link::report`]: super::Link::report

use async_trait::async_trait;
use moralsweep_protocol::{BatchRecord, HeldBatch, LostBatch, UnitKey};

use super::link::{Link, LinkError};

/// The coordinator's side of provider batches.
#[async_trait]
pub trait BatchLink: Link {
    /// Opens a batch for `slots` of `unit` held under `lease_ids`; the
    /// record holds the id to give the provider and the slots the batch
    /// kept (submit exactly those; none when the leases were lost).
    async fn open_batch(
        &self,
        worker: &str,
        lease_ids: Vec<String>,
        unit: UnitKey,
        slots: Vec<u32>,
    ) -> Result<BatchRecord, LinkError>;
    /// The provider accepted batch `id`: its provider id, stored before the
    /// worker waits on it. `false` when the batch is no longer open.
    async fn batch_submitted(
        &self,
        sweep: &str,
        id: &str,
        provider_id: &str,
    ) -> Result<bool, LinkError>;
    /// Extends the batches `worker` polls (with what it saw of each);
    /// returns those it lost, saying which belong to a stopped sweep.
    async fn extend_batches(
        &self,
        worker: &str,
        batches: Vec<HeldBatch>,
    ) -> Result<Vec<LostBatch>, LinkError>;
    /// Batches whose worker stopped polling, now this worker's to poll.
    async fn claim_batches(&self, worker: &str, max: u32) -> Result<Vec<BatchRecord>, LinkError>;
    /// Closes a batch whose results were reported; returns the number of
    /// slots without a result that went back to the queue.
    async fn close_batch(&self, sweep: &str, id: &str) -> Result<u32, LinkError>;
}
