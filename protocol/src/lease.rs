//! Leases: slots of one unit a worker holds until a deadline, as the store
//! keeps them and as a worker is granted them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::unit::UnitKey;

/// A lease: slots of one unit a worker holds until a deadline. The store
/// keeps it (the coordinator's `Store`); a [`Grant`] hands it to the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Unique id chosen by the coordinator.
    pub id: String,
    pub unit: UnitKey,
    /// The worker that holds it (for status and logs).
    pub worker: String,
    /// Slot indices still owned by the lease (recorded slots leave it).
    pub slots: Vec<u32>,
    /// Milliseconds since the Unix epoch after which the lease may be
    /// reclaimed.
    pub deadline_ms: u64,
}

/// A lease as a worker is granted it (the proto `Lease`): with the rate
/// group its slots are paced under, the permits taken for them and what a
/// slot needs beyond the sweep's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub lease: Lease,
    pub rate_group: String,
    /// Request permits of `rate_group` the coordinator took for these slots
    /// (one per slot, or one per cell when a cell's samples come from one
    /// request); the worker's first requests spend them before asking for
    /// more. 0 from a coordinator that predates the field: one per slot.
    pub permits: u32,
    /// Per slot (same order as the lease's slots) what the worker needs
    /// beyond the sweep's definition: the answer a judge slot scores. Empty
    /// when no slot needs one.
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

/// Milliseconds since the Unix epoch: the clock of lease and batch
/// deadlines.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
