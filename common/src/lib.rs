//! What every part of moralsweep shares: the MFQ-30 instrument, the exact
//! prompts, persona files, the sweep spec, slot identities, rating
//! extraction, the papers' file formats and the metrics engine that turns
//! ratings into moral susceptibility S and moral robustness R.
//!
//! Layer: the bottom. It depends on no workspace crate; every other crate
//! may depend on it.

pub mod analyze;
pub mod catalog;
pub mod checkpoints;
pub mod em;
pub mod extract;
pub mod formats;
pub mod hash;
pub mod instrument;
pub mod logspace;
pub mod metrics;
pub mod personas;
pub mod prompt;
pub mod provider;
pub mod slot;
pub mod spec;
pub mod tokens;

pub use instrument::{Foundation, Instrument, Item, ItemKind, ITEMS};
pub use spec::{Mode, ModelSpec, Sweep, SweepDef, SweepSpec};
