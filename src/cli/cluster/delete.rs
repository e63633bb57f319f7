//! `moralsweep delete SWEEP`.

use moralsweep_proto::v1 as pb;

use super::DeleteArgs;

/// `moralsweep delete SWEEP`: removes a done or cancelled sweep from the
/// coordinator (its store entries and the files it wrote).
pub fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let r = a.call_sweeps("deleting the sweep failed", |mut c, sweep| async move {
        c.delete_sweep(pb::DeleteSweepRequest { sweep }).await
    })?;
    println!(
        "sweep {} deleted ({} files removed from the coordinator's data directory)",
        a.sweep, r.files_removed
    );
    Ok(())
}
