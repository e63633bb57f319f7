//! The moralsweep coordinator: expands sweeps into slots, grants leases to
//! workers, paces each rate group, records every result exactly once in the
//! store and computes the metrics of each finished model.

pub mod auth;
pub mod convert;
pub mod engine;
pub mod observe;
pub mod output;
pub mod pacing;
pub mod service;
pub mod store;
pub mod sweep;
pub mod testsupport;
pub mod tls;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod memstore;
