//! The moralsweep coordinator: expands sweeps into slots, grants leases to
//! workers, paces each rate group, records every result exactly once in the
//! store and computes the metrics of each finished model.

pub mod pacing;
pub mod store;
pub mod testsupport;
