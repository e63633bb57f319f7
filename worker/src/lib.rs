//! The moralsweep worker: leases slots from the coordinator, calls the model
//! providers, extracts ratings with the protocol of METHOD.md and reports the
//! results in batches.

pub mod client;
pub mod cost;
pub mod credit;
pub mod inprocess;
pub mod observe;
pub mod paced;
pub mod permits;
pub mod protocol;
pub mod providers;
pub mod runtime;
