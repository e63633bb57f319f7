//! What a worker reports for its slots, and what the report changed.

use moralsweep_common::slot::SlotRecord;

use crate::unit::UnitKey;

/// What a worker found for one slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Record(SlotRecord),
    /// The provider refused for good: the model stops with this message.
    Fatal(String),
}

/// One reported slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotReport {
    pub lease_id: Option<String>,
    pub unit: UnitKey,
    pub slot: u32,
    pub outcome: Outcome,
}

/// What a report changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportOutcome {
    pub recorded: u32,
    pub duplicates: u32,
}
