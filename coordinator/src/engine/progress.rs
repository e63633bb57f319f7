//! Where sweeps stand: progress snapshots for status, watchers and the UI.

use moralsweep_protocol::ProgressState;

use super::*;

impl Engine {
    /// Progress of one sweep (with the number of slots currently leased).
    pub async fn progress(&self, sweep: &str) -> EngineResult<SweepProgress> {
        let mut p = self.snapshot_one(sweep)?;
        p.leased = self
            .store
            .leases()
            .await?
            .iter()
            .filter(|l| l.unit.sweep == sweep)
            .map(|l| l.slots.len() as u64)
            .sum();
        p.batches = self.batch_lines(sweep).await?;
        Ok(p)
    }

    /// Progress of every sweep, from memory only (cheap; `leased` is 0).
    pub fn snapshot(&self) -> Vec<SweepProgress> {
        let mut all: Vec<SweepProgress> = {
            let st = self.lock();
            st.sweeps.values().map(progress_of).collect()
        };
        for p in &mut all {
            p.batches = self.batch_seen_lines(&p.sweep);
        }
        all
    }

    pub fn snapshot_one(&self, sweep: &str) -> EngineResult<SweepProgress> {
        let mut p = {
            let st = self.lock();
            st.sweeps
                .get(sweep)
                .map(progress_of)
                .ok_or_else(|| not_found(sweep))?
        };
        p.batches = self.batch_seen_lines(sweep);
        Ok(p)
    }
}

pub(super) fn progress_of(s: &SweepRt) -> SweepProgress {
    let units: Vec<UnitProgress> = s
        .units
        .iter()
        .map(|u| {
            let failed = s.record.unit_failed(&u.key);
            let unwritten = !s
                .record
                .written
                .contains(&unit_label(&u.key.model, u.key.mode));
            let write_failed = s.write_error.as_ref().filter(|_| {
                (u.done >= u.total as u64 || s.stuck.is_some()) && unwritten && failed.is_none()
            });
            let state = if write_failed.is_some() {
                ProgressState::Failed
            } else if u.done >= u.total as u64 {
                ProgressState::Done
            } else if failed.is_some() {
                ProgressState::Failed
            } else if s.record.state == SweepState::Cancelled {
                ProgressState::Cancelled
            } else {
                ProgressState::Running
            };
            UnitProgress {
                model: u.key.model.clone(),
                mode: u.key.mode,
                total: u.total as u64,
                done: u.done.min(u.total as u64),
                state,
                message: match (write_failed, &s.stuck) {
                    (Some(_), Some(e)) => stuck_message(&s.record.spec.name, e),
                    (Some(e), None) => write_failed_message(e),
                    (None, _) => failed.cloned().unwrap_or_default(),
                },
            }
        })
        .collect();
    let mut messages: Vec<String> = s
        .record
        .failed_models
        .iter()
        .map(|(m, msg)| format!("model {m} stopped: {msg}"))
        .collect();
    // A sweep whose files cannot be written is not running any more in any
    // sense a user can wait for: say so (the finisher keeps retrying, and the
    // state returns to running or done once a write succeeds).
    let write_failed = s.write_error.is_some() && s.record.state == SweepState::Running;
    if let Some(e) = s.write_error.as_ref().filter(|_| write_failed) {
        let name = &s.record.spec.name;
        messages.push(format!(
            "sweep {name}: {}",
            match &s.stuck {
                Some(e) => stuck_message(name, e),
                None => write_failed_message(e),
            }
        ));
    }
    SweepProgress {
        sweep: s.record.spec.name.clone(),
        state: if write_failed {
            ProgressState::Failed
        } else {
            s.record.state.progress()
        },
        total: units.iter().map(|u| u.total).sum(),
        done: units.iter().map(|u| u.done).sum(),
        units,
        leased: 0,
        output: s.record.output.clone(),
        messages,
        batches: Vec::new(),
    }
}
