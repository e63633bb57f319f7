//! How far a sweep and each of its units got, as the coordinator reports it
//! (the proto `SweepStatus`).

use std::fmt;
use std::path::PathBuf;

use moralsweep_common::Mode;

/// What the answer to cancelling an already cancelled sweep says in its
/// messages (`sweep X was already cancelled; nothing changed`), so that
/// `cancel` can tell the user.
pub const ALREADY_CANCELLED: &str = "already cancelled";

/// Where a unit or a sweep stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressState {
    /// Slots are being handed out or files written.
    Running,
    /// Every slot is recorded (and, for a sweep, its files are written).
    Done,
    /// Stopped by a fatal provider error, or its files cannot be written.
    Failed,
    /// Stopped by a user; recorded results stay.
    Cancelled,
}

impl ProgressState {
    /// The name used on the wire, in messages and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            ProgressState::Running => "running",
            ProgressState::Done => "done",
            ProgressState::Failed => "failed",
            ProgressState::Cancelled => "cancelled",
        }
    }

    /// The state a wire name stands for; an unknown name (a newer
    /// coordinator's) reads as running, the state that promises nothing.
    pub fn from_name(name: &str) -> ProgressState {
        match name {
            "done" => ProgressState::Done,
            "failed" => ProgressState::Failed,
            "cancelled" => ProgressState::Cancelled,
            _ => ProgressState::Running,
        }
    }
}

impl fmt::Display for ProgressState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl PartialEq<&str> for ProgressState {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// Progress of one unit, as `status`, the live view and `run` show it: a
/// read-only view built from the engine's counters (its identity is the
/// [`crate::UnitKey`] fields, its size the [`moralsweep_common::slot::UnitShape`]'s
/// slot count).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UnitProgress {
    pub model: String,
    pub mode: Mode,
    pub total: u64,
    pub done: u64,
    pub state: ProgressState,
    pub message: String,
}

/// Progress of one sweep.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SweepProgress {
    pub sweep: String,
    pub state: ProgressState,
    pub units: Vec<UnitProgress>,
    pub total: u64,
    pub done: u64,
    pub leased: u64,
    pub output: PathBuf,
    pub messages: Vec<String>,
    /// Its open provider batches, one line each (`status` shows them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<String>,
}

impl SweepProgress {
    /// Every unit is final (done or failed) or the sweep was cancelled.
    pub fn finished(&self) -> bool {
        self.state != ProgressState::Running
    }
}
