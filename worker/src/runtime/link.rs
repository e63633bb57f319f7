//! How a worker reaches its coordinator: the [`Link`] trait (gRPC in
//! [`crate::client`], a direct call in the binary's one-process mode), its
//! errors, and the sweep definition it fetches.

use async_trait::async_trait;
use moralsweep_protocol::{CallError, ErrorKind, LeaseOutcome, ReportOutcome, SlotReport};

/// What a worker needs to know about a sweep to ask its slots: its
/// definition, as the coordinator sends it.
pub use moralsweep_common::SweepDef;

/// Why a call to the coordinator failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Worth retrying (coordinator restarting, network, store down).
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
    /// The sweep is gone (deleted): drop its slots.
    #[error("{0}")]
    NotFound(String),
    /// Retrying cannot help (bad token, bad request): stop the worker.
    #[error("{0}")]
    Fatal(String),
}

impl From<CallError> for LinkError {
    /// The worker's decision from the kind: a deleted sweep drops its
    /// slots, a bad request or token stops the worker, anything else is
    /// retried.
    fn from(e: CallError) -> LinkError {
        if e.kind == ErrorKind::NotFound {
            LinkError::NotFound(e.message)
        } else if e.kind.is_fatal() {
            LinkError::Fatal(e.with_code())
        } else {
            LinkError::Unavailable(e.with_code())
        }
    }
}

impl From<tonic::Status> for LinkError {
    fn from(s: tonic::Status) -> LinkError {
        CallError::from(s).into()
    }
}

/// How a worker talks to its coordinator.
#[async_trait]
pub trait Link: Send + Sync + 'static {
    async fn lease(&self, worker: &str, max: u32) -> Result<LeaseOutcome, LinkError>;
    /// Reports results and releases leases; `traceparent` is the trace
    /// context of the slots' span, so the coordinator's handling of the
    /// report joins the lease's trace.
    async fn report(
        &self,
        worker: &str,
        results: Vec<SlotReport>,
        release: Vec<String>,
        traceparent: Option<String>,
    ) -> Result<ReportOutcome, LinkError>;
    /// Extends leases; returns the ids the coordinator no longer knows.
    async fn extend(&self, lease_ids: Vec<String>) -> Result<Vec<String>, LinkError>;
    async fn definition(&self, sweep: &str) -> Result<SweepDef, LinkError>;
}
