//! The results of the emergent-misalignment check: the answers files with
//! their scores, the summaries (`verification_scores.json`), and which
//! summary belongs to which model of the metric files. The check itself
//! (questions, judge prompts, slots) is the domain's
//! (`moralsweep_common::em`).

pub mod file;
pub mod join;
pub mod summary;

pub use summary::{summarize, Summary, Verdict};
