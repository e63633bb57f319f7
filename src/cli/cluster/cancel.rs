//! `moralsweep cancel SWEEP`.

use moralsweep_proto::v1 as pb;

use super::CancelArgs;

/// `moralsweep cancel SWEEP`: stops handing out the sweep's slots; what it
/// recorded stays, and `results` fetches it.
pub fn cancel(a: CancelArgs) -> anyhow::Result<()> {
    let r = a.call_sweeps("cancelling the sweep failed", |mut c, sweep| async move {
        c.cancel_sweep(pb::CancelSweepRequest { sweep }).await
    })?;
    let st = r.status.unwrap_or_default();
    let again = st
        .messages
        .iter()
        .any(|m| m.contains(moralsweep_protocol::ALREADY_CANCELLED));
    match st.state.as_str() {
        "cancelled" if again => println!(
            "sweep {} was already cancelled ({} of {} slots recorded); nothing changed. `moralsweep results {} --out DIR` fetches them, \
             `moralsweep delete {}` removes the sweep",
            a.sweep, st.done, st.total, a.sweep, a.sweep
        ),
        "cancelled" => println!(
            "sweep {} cancelled with {} of {} slots recorded; `moralsweep results {} --out DIR` fetches them, \
             `moralsweep delete {}` removes the sweep",
            a.sweep, st.done, st.total, a.sweep, a.sweep
        ),
        other => println!(
            "sweep {} is already {other} ({} of {} slots); nothing changed",
            a.sweep, st.done, st.total
        ),
    }
    Ok(())
}
