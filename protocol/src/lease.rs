//! What a worker is granted: slots of one unit until a deadline.

use std::time::Duration;

use crate::unit::UnitKey;

/// Slots of one unit granted to a worker (the proto `Lease`).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub lease_id: String,
    pub unit: UnitKey,
    pub slots: Vec<u32>,
    pub deadline_ms: u64,
    pub rate_group: String,
    /// Request permits of `rate_group` the coordinator took for these slots
    /// (one per slot, or one per cell when a cell's samples come from one
    /// request); the worker's first requests spend them before asking for
    /// more. 0 from a coordinator that predates the field: one per slot.
    pub permits: u32,
    /// Per slot (same order as `slots`) what the worker needs beyond the
    /// sweep's definition: the answer a judge slot scores. Empty when no
    /// slot needs one.
    pub payloads: Vec<String>,
}

impl Grant {
    /// The payload of the `i`-th granted slot, if any.
    pub fn payload(&self, i: usize) -> Option<&str> {
        self.payloads.get(i).map(String::as_str)
    }
}

/// The answer to a lease call.
#[derive(Debug, Clone, Default)]
pub struct LeaseOutcome {
    pub grants: Vec<Grant>,
    /// When nothing was granted: how long to wait before asking again.
    pub retry_after: Duration,
    /// The W3C trace context of the coordinator's span that granted the
    /// slots (the Lease reply's `traceparent` metadata): the worker's spans
    /// of the lease continue its trace. `None` in process or without export.
    pub traceparent: Option<String>,
}
