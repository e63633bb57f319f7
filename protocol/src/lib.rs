//! The protocol between the coordinator and its workers: the domain and wire
//! types both sides speak and nothing else. It owns the unit key, the lease a
//! worker is granted ([`Grant`]), the record of a provider batch
//! ([`BatchRecord`]), the slot reports and their outcomes, the
//! progress of a sweep, the seed of a slot, the bearer token, the message
//! limits, the kinds of failure of a call ([`CallError`], the one mapping to
//! and from gRPC status codes) and the conversions to and from the
//! generated gRPC messages.
//!
//! Layer: it may depend on `moralsweep-common` (items, modes, slot records)
//! and `moralsweep-proto` (the generated gRPC code) only. Both
//! `moralsweep-coordinator` and `moralsweep-worker` depend on it and never on
//! each other, so a worker compiles no store (no redis, redb or tempfile).

pub mod auth;
pub mod batch;
pub mod convert;
pub mod error;
pub mod lease;
pub mod limits;
pub mod progress;
pub mod report;
pub mod seed;
pub mod unit;
pub mod usage;

pub use batch::{BatchRecord, HeldBatch, LostBatch, ProviderState, Submitted};
pub use error::{CallError, ErrorKind};
pub use lease::{now_ms, Grant, Lease, LeaseOutcome};
pub use limits::{LOGPROB_REQUEST_TEMPERATURE, MAX_MESSAGE};
pub use progress::{ProgressState, SweepProgress, UnitProgress, ALREADY_CANCELLED};
pub use report::{Outcome, ReportOutcome, SlotReport};
pub use seed::slot_seed;
pub use unit::UnitKey;
pub use usage::UsageEntry;
