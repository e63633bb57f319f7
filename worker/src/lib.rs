//! The moralsweep worker: leases slots from the coordinator, calls the model
//! providers, extracts ratings with the protocol of METHOD.md and reports the
//! results in batches.
//!
//! It owns the providers, the rating protocol, the pacing of its own requests
//! and the cost accounting (a handle in [`runtime::WorkerConfig`], like its
//! metrics); it reaches the coordinator through a
//! [`runtime::Link`] and [`permits::Permits`] (gRPC in [`client`]; the
//! binary's in-process link in one-process mode). Layer: above
//! `moralsweep-common`, `moralsweep-proto`, `moralsweep-protocol`,
//! `moralsweep-telemetry` and (feature `local`, on by default)
//! `moralsweep-local`; never the coordinator, so a worker builds no store
//! (no redis, redb or tempfile).

pub mod client;
pub mod cost;
pub mod credit;
pub mod dry_checks;
pub mod em;
pub mod observe;
pub mod paced;
pub mod permits;
pub mod protocol;
pub mod providers;
pub mod runtime;

/// The batch link lives with the worker loop (`runtime/batch_link.rs`);
/// this path is kept for its users.
pub use runtime::batch_link;
