//! The moralsweep coordinator: expands sweeps into slots, grants leases to
//! workers, paces each rate group, records every result exactly once in the
//! store and computes the metrics of each finished model.
//!
//! It owns the engine (submit, lease, report, finish, progress), the rate
//! groups that pace every worker, the stores (Redis for the cluster, an
//! embedded file for one process), the gRPC services and the sweep's files
//! and metrics (each unit's rows go to the metrics core in memory).
//! Layer: above `moralsweep-common`, `moralsweep-proto`,
//! `moralsweep-protocol` and `moralsweep-telemetry`; it never depends on the
//! worker, and nothing but the binary depends on it.

pub mod em_output;
pub mod engine;
mod layout;
pub mod observe;
pub mod output;
mod output_error;
pub mod pacing;
pub mod service;
pub mod store;
pub mod sweep;
pub mod tls;
