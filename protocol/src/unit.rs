//! The key of a unit: the slots of one model in one mode of one sweep,
//! numbered densely (`moralsweep_common::slot::UnitShape`).

use moralsweep_common::Mode;
use serde::{Deserialize, Serialize};

/// (sweep, model key, mode): the unit whose slots are numbered densely. The
/// identity of a unit, the key of its results in the store and on the wire;
/// its geometry is a [`moralsweep_common::slot::UnitShape`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UnitKey {
    pub sweep: String,
    pub model: String,
    pub mode: Mode,
}
