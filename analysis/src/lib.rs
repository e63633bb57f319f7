//! The analysis of moralsweep: the papers' rating and logprob file formats,
//! the metrics engine that turns ratings into moral susceptibility S and
//! moral robustness R, `analyze` (rating files to metric files), and the
//! misalignment check's answer files and summaries.
//!
//! Layer: above `moralsweep-common` (the domain: instruments, the spec,
//! slots). A worker never links it: it asks, the coordinator and the
//! command line analyse.

pub mod analyze;
pub mod em;
pub mod formats;
pub mod metrics;
