//! The domain of moralsweep, what every part shares: the instruments (MFQ-30,
//! BFI-44, a user's own), the exact prompts, persona files, the sweep spec,
//! slot identities, the model catalog, token estimates, rating extraction
//! and the misalignment check's definition.
//!
//! The analysis (file formats, metrics, `analyze`) is `moralsweep-analysis`,
//! one layer up; the few names both need live here (`float`, `temperature`,
//! `columns`).
//!
//! Layer: the bottom but for `moralsweep-userfs`; every other crate may
//! depend on it.

pub mod catalog;
pub mod columns;
pub mod em;
pub mod extract;
pub mod float;
pub mod hash;
pub mod instrument;
pub mod logspace;
pub mod personas;
pub mod prompt;
pub mod provider;
pub mod slot;
pub mod spec;
pub mod temperature;
pub mod tokens;

pub use instrument::{Foundation, Instrument, Item, ItemKind, ITEMS};
pub use spec::{Mode, ModelSpec, Sweep, SweepDef, SweepSpec};
