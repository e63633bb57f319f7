//! Taking results back: each slot recorded exactly once, and models stopped
//! by a fatal provider error.

use super::*;

impl Engine {
    /// Records reported results (each slot at most once, whoever reports it
    /// and however late) and releases the leases the worker is done with.
    pub async fn report(
        &self,
        reports: Vec<SlotReport>,
        release: &[String],
    ) -> EngineResult<ReportOutcome> {
        type Batch = Vec<(u32, Vec<u8>)>;
        let mut groups: HashMap<(UnitKey, Option<String>), Batch> = HashMap::new();
        let mut fatal: Vec<(UnitKey, String)> = Vec::new();
        let mut out = ReportOutcome::default();
        {
            let st = self.lock();
            for r in reports {
                let Some(s) = st.sweeps.get(&r.unit.sweep) else {
                    return Err(not_found(&r.unit.sweep));
                };
                let Some(u) = s.units.iter().find(|u| u.key == r.unit) else {
                    return Err(EngineError::InvalidArgument(format!(
                        "sweep {:?} has no unit {}",
                        r.unit.sweep,
                        unit_label(&r.unit.model, r.unit.mode)
                    )));
                };
                if r.slot >= u.total {
                    return Err(EngineError::InvalidArgument(format!(
                        "slot {} is out of range for {} of sweep {:?} ({} slots)",
                        r.slot,
                        unit_label(&r.unit.model, r.unit.mode),
                        r.unit.sweep,
                        u.total
                    )));
                }
                match r.outcome {
                    Outcome::Record(rec) => {
                        if !rec.fits(r.unit.mode) {
                            return Err(EngineError::InvalidArgument(format!(
                                "slot {} of {}: a {} unit takes {} results",
                                r.slot,
                                unit_label(&r.unit.model, r.unit.mode),
                                r.unit.mode,
                                match r.unit.mode {
                                    Mode::Logprob => "logprob",
                                    Mode::EmCheck => "answer",
                                    Mode::EmJudge => "judge",
                                    Mode::Persona | Mode::SelfMode => "sample",
                                }
                            )));
                        }
                        let bytes = serde_json::to_vec(&rec).expect("records serialise");
                        groups
                            .entry((r.unit, r.lease_id))
                            .or_default()
                            .push((r.slot, bytes));
                    }
                    Outcome::Fatal(msg) => fatal.push((r.unit, msg)),
                }
            }
        }
        let mut finished = Vec::new();
        for ((key, lease), results) in groups {
            // A recorded answer creates its two judge slots, in the same
            // atomic step.
            let judge = (key.mode == Mode::EmCheck).then(|| UnitKey {
                mode: Mode::EmJudge,
                ..key.clone()
            });
            let flags = match &judge {
                Some(j) => {
                    self.store
                        .record_spawning(
                            &key,
                            lease.as_deref(),
                            &results,
                            j,
                            moralsweep_common::em::JUDGE_FANOUT,
                        )
                        .await?
                }
                None => self.store.record(&key, lease.as_deref(), &results).await?,
            };
            let newly = flags.iter().filter(|f| **f).count() as u64;
            if let (Some(j), true) = (&judge, newly > 0) {
                self.wake_unit(j);
            }
            out.recorded += newly as u32;
            out.duplicates += (flags.len() as u64 - newly) as u32;
            if newly > 0 {
                self.cfg.metrics.slots_done(&key.sweep, &key.model, newly);
                let mut st = self.lock();
                if let Some(u) = find_unit_mut(&mut st, &key) {
                    u.done += newly;
                    if u.done >= u.total as u64 {
                        finished.push(key.sweep.clone());
                    }
                }
            }
        }
        for (key, msg) in fatal {
            self.cfg.metrics.slot_failed(&key.sweep, &key.model);
            // The judge's refusal stops the judge, not the model it judges.
            let who = {
                let st = self.lock();
                st.sweeps
                    .get(&key.sweep)
                    .map(|s| s.record.failure_key(&key).to_string())
            }
            .unwrap_or_else(|| key.model.clone());
            self.fail_model(&key.sweep, &who, &msg).await?;
            finished.push(key.sweep.clone());
        }
        let mut requeued = 0;
        for id in release {
            requeued += self.store.release(id).await?;
        }
        if requeued > 0 {
            self.wake_units();
        }
        finished.dedup();
        for s in finished {
            let _ = self.finish_tx.send(s);
        }
        if out.recorded > 0 {
            self.bump();
        }
        Ok(out)
    }

    /// Stops a model (or the judge, named by its key) after a fatal
    /// provider error; the rest of the sweep goes on.
    pub async fn fail_model(&self, sweep: &str, model: &str, message: &str) -> EngineResult<()> {
        let changed = {
            let mut st = self.lock();
            match st.sweeps.get_mut(sweep) {
                // A fatal report for a finished model or a stopped sweep
                // changes nothing (it may be late, repeated or garbage).
                Some(s)
                    if s.record.state == SweepState::Running
                        && !s.record.failed_models.contains_key(model)
                        && s.units.iter().any(|u| {
                            s.record.failure_key(&u.key) == model && u.done < u.total as u64
                        }) =>
                {
                    s.record
                        .failed_models
                        .insert(model.to_string(), message.to_string());
                    true
                }
                _ => false,
            }
        };
        if changed {
            tracing::error!(sweep, model, "model stopped: {message}");
            self.persist(sweep).await?;
            self.bump();
        }
        Ok(())
    }
}
