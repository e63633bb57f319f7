//! Ending sweeps: the finisher task that writes a complete unit's files,
//! cancellation, partial files and deletion.

use super::*;

impl Engine {
    /// Stops handing out a sweep's slots; recorded results stay.
    /// A sweep cancelled before says so in the answer's messages
    /// ([`moralsweep_protocol::ALREADY_CANCELLED`]).
    pub async fn cancel(&self, sweep: &str) -> EngineResult<SweepProgress> {
        let was_cancelled = {
            let mut st = self.lock();
            let s = st.sweeps.get_mut(sweep).ok_or_else(|| not_found(sweep))?;
            let before = s.record.state;
            if s.record.state == SweepState::Running {
                s.record.state = SweepState::Cancelled;
                s.record.finished_at = Some(moralsweep_common::slot::now_timestamp());
            }
            before == SweepState::Cancelled
        };
        self.persist(sweep).await?;
        self.bump();
        let mut p = self.progress(sweep).await?;
        if was_cancelled {
            p.messages.insert(
                0,
                format!(
                    "sweep {sweep} was {}; nothing changed",
                    moralsweep_protocol::ALREADY_CANCELLED
                ),
            );
        }
        Ok(p)
    }

    /// Removes a stopped (done or cancelled) sweep: its record, units,
    /// results and leases leave the store, and the files the coordinator
    /// wrote for it (`<output>/data`, `<output>/metrics`) are removed, so a
    /// new sweep of the same name starts clean. A running sweep must be
    /// cancelled first. Returns the number of files removed.
    pub async fn delete(&self, sweep: &str) -> EngineResult<usize> {
        let output = {
            let st = self.lock();
            let s = st.sweeps.get(sweep).ok_or_else(|| not_found(sweep))?;
            if s.record.state == SweepState::Running {
                return Err(EngineError::FailedPrecondition(format!(
                    "sweep {sweep:?} is running; stop it first with `moralsweep cancel {sweep} --coordinator URL` \
                     (and fetch what it recorded with `moralsweep results`), then delete it"
                )));
            }
            s.record.output.clone()
        };
        let _w = self.record_writes.lock().await;
        let _p = self.partial_writes.lock().await;
        self.store.delete_sweep(sweep).await?;
        self.lock().sweeps.remove(sweep);
        drop(_w);
        let removed = crate::output::remove_files(&output).map_err(|e| {
            EngineError::FailedPrecondition(format!(
                "sweep {sweep:?} was removed from the store, but its files in {} could not all be removed: {e}",
                output.display()
            ))
        })?;
        tracing::info!(sweep, files = removed, "sweep deleted");
        self.bump();
        Ok(removed)
    }

    /// For a cancelled sweep: writes the rating file of every unit that has
    /// recorded results but no complete file (rows of the recorded slots
    /// only, in slot order) and recomputes the metrics where the files
    /// allow. Returns notes for the user (what is partial, why metrics are
    /// missing). Called before the files of a cancelled sweep are sent, so
    /// they hold everything recorded so far, late reports included.
    pub async fn write_partial(&self, sweep: &str) -> EngineResult<Vec<String>> {
        let _p = self.partial_writes.lock().await;
        let (record, units) = {
            let st = self.lock();
            let s = st.sweeps.get(sweep).ok_or_else(|| not_found(sweep))?;
            if s.record.state != SweepState::Cancelled {
                return Ok(Vec::new());
            }
            let units: Vec<(UnitKey, UnitShape)> = s
                .units
                .iter()
                .filter(|u| {
                    !s.record
                        .written
                        .contains(&unit_label(&u.key.model, u.key.mode))
                })
                .map(|u| (u.key.clone(), u.shape))
                .collect();
            (s.record.clone(), units)
        };
        let mut notes = Vec::new();
        let mut partial = Vec::new();
        let mut em_answers = false;
        for (key, shape) in &units {
            let label = unit_label(&key.model, key.mode);
            if key.mode.is_em() {
                // A model's answers and scores so far, in its answers file.
                match crate::em_output::write_answers_file(
                    self.store.as_ref(),
                    &record,
                    &key.model,
                    false,
                )
                .await
                {
                    Ok(0) => notes.push(format!("{label}: nothing was recorded; no file")),
                    Ok(n) => {
                        em_answers = true;
                        notes.push(format!("{label}: {n} of {} slots recorded", shape.len()));
                    }
                    Err(e) => {
                        return Err(EngineError::FailedPrecondition(format!(
                            "writing the recorded answers of {label} of the cancelled sweep {sweep:?} failed: {e:#}"
                        )))
                    }
                }
                continue;
            }
            match crate::output::write_unit_partial(self.store.as_ref(), &record, key, *shape).await
            {
                Ok(None) => notes.push(format!("{label}: nothing was recorded; no file")),
                Ok(Some((rows, n))) => {
                    notes.push(format!("{label}: {n} of {} slots recorded", shape.len()));
                    partial.push(rows);
                }
                Err(e) => {
                    return Err(EngineError::FailedPrecondition(format!(
                        "writing the recorded ratings of {label} of the cancelled sweep {sweep:?} failed: {e:#}"
                    )))
                }
            }
        }
        if (!partial.is_empty() || em_answers) && self.cfg.write_metrics {
            if let Err(e) = self.write_metrics(sweep, partial).await {
                notes.push(format!(
                    "metrics not computed from the partial files: {e:#}"
                ));
            }
        }
        Ok(notes)
    }

    /// Starts the background tasks: the reclaimer and the finisher.
    pub fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        let me = self.clone();
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.cfg.reclaim_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.reclaim().await {
                    tracing::warn!("reclaiming expired leases failed: {e}");
                }
            }
        }));
        let rx = self
            .finish_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut rx) = rx {
            let me = self.clone();
            handles.push(tokio::spawn(async move {
                // Per sweep: the wait before its next retry after a failure
                // (a sweep whose files cannot be written is retried later,
                // never holding up the others), and whether one is queued.
                let mut delays: HashMap<String, Duration> = HashMap::new();
                let queued: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
                while let Some(sweep) = rx.recv().await {
                    // Coalesce bursts of the same sweep.
                    let mut batch = vec![sweep];
                    while let Ok(s) = rx.try_recv() {
                        if !batch.contains(&s) {
                            batch.push(s);
                        }
                    }
                    for s in batch {
                        if me.is_stuck(&s) {
                            continue;
                        }
                        match me.finish(&s).await {
                            Ok(()) => {
                                delays.remove(&s);
                                me.set_write_error(&s, None);
                            }
                            Err(e) if retrying_cannot_fix(&e) => {
                                if me.cfg.one_process {
                                    tracing::debug!(sweep = %s, "writing the sweep's files failed: {e:#}");
                                } else {
                                    tracing::error!(sweep = %s, "writing the sweep's files failed for a reason retrying cannot fix; not retrying: {e:#}");
                                }
                                delays.remove(&s);
                                me.set_stuck(&s, format!("{e:#}"));
                            }
                            Err(e) => {
                                if me.cfg.one_process {
                                    tracing::debug!(sweep = %s, "writing the sweep's files failed: {e:#}");
                                } else {
                                    tracing::warn!(sweep = %s, "writing the sweep's files failed (will retry): {e:#}");
                                }
                                me.set_write_error(&s, Some(format!("{e:#}")));
                                let d = delays
                                    .entry(s.clone())
                                    .or_insert(Duration::from_millis(100));
                                *d = (*d * 2).min(WRITE_RETRY_CAP);
                                let fresh = queued
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(s.clone());
                                if fresh {
                                    let (tx, wait, queued) =
                                        (me.finish_tx.clone(), *d, queued.clone());
                                    tokio::spawn(async move {
                                        tokio::time::sleep(wait).await;
                                        queued.lock().unwrap_or_else(|e| e.into_inner()).remove(&s);
                                        let _ = tx.send(s);
                                    });
                                }
                            }
                        }
                    }
                }
            }));
        }
        handles
    }

    /// Why writing the sweep's files failed last, if it did and no write
    /// succeeded since (`run` names it in its error).
    pub fn write_error(&self, sweep: &str) -> Option<String> {
        self.lock()
            .sweeps
            .get(sweep)
            .and_then(|s| s.write_error.clone())
    }

    /// Whether the sweep's files can never be written (see `SweepRt::stuck`).
    fn is_stuck(&self, sweep: &str) -> bool {
        self.lock()
            .sweeps
            .get(sweep)
            .is_some_and(|s| s.stuck.is_some())
    }

    /// Marks the sweep as one whose files can never be written.
    fn set_stuck(&self, sweep: &str, why: String) {
        if let Some(s) = self.lock().sweeps.get_mut(sweep) {
            s.write_error = Some(why.clone());
            s.stuck = Some(why);
        }
        self.bump();
    }

    /// Records (or clears) why writing a sweep's files failed, for `status`.
    pub(super) fn set_write_error(&self, sweep: &str, error: Option<String>) {
        let changed = {
            let mut st = self.lock();
            match st.sweeps.get_mut(sweep) {
                Some(s) if s.write_error != error => {
                    if error.is_none() {
                        tracing::info!(
                            sweep,
                            "the sweep's files were written after earlier failures"
                        );
                    }
                    s.write_error = error;
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.bump();
        }
    }

    /// Writes the files of every complete unit of `sweep` that has none
    /// yet, the metrics when a model is complete, and the comparison tables
    /// when the sweep is.
    #[tracing::instrument(name = "finish", skip_all, fields(sweep = %sweep))]
    pub async fn finish(&self, sweep: &str) -> Result<(), FinishError> {
        let (to_write, record) = {
            let st = self.lock();
            let Some(s) = st.sweeps.get(sweep) else {
                return Ok(());
            };
            if s.record.state != SweepState::Running {
                return Ok(());
            }
            let v: Vec<(UnitKey, UnitShape)> = s
                .units
                .iter()
                .filter(|u| {
                    u.done >= u.total as u64
                        && s.record.unit_failed(&u.key).is_none()
                        && !s
                            .record
                            .written
                            .contains(&unit_label(&u.key.model, u.key.mode))
                })
                .map(|u| (u.key.clone(), u.shape))
                .collect();
            (v, s.record.clone())
        };
        for (key, shape) in &to_write {
            let rows = crate::output::write_unit(
                self.store.as_ref(),
                &record,
                key,
                *shape,
                self.cfg.write_metrics,
            )
            .await?;
            if let Some(rows) = rows {
                self.keep_rows(sweep, key, rows);
            }
            tracing::info!(sweep, model = %key.model, mode = %key.mode, "rating file written");
            let mut st = self.lock();
            if let Some(s) = st.sweeps.get_mut(sweep) {
                s.record.written.insert(unit_label(&key.model, key.mode));
            }
        }
        let (all_final, model_complete) = {
            let st = self.lock();
            let Some(s) = st.sweeps.get(sweep) else {
                return Ok(());
            };
            // Final means written (or stopped): a unit that completed after
            // `to_write` was taken gets its own turn of the finisher.
            let all_final = s.units.iter().all(|u| {
                s.record.unit_failed(&u.key).is_some()
                    || s.record
                        .written
                        .contains(&unit_label(&u.key.model, u.key.mode))
            });
            // A model whose units are all written just now needs its metrics.
            let complete = to_write.iter().any(|(k, _)| {
                s.units.iter().filter(|u| u.key.model == k.model).all(|u| {
                    s.record
                        .written
                        .contains(&unit_label(&u.key.model, u.key.mode))
                })
            });
            (all_final, complete)
        };
        if !to_write.is_empty() {
            self.persist(sweep).await?;
        }
        if self.cfg.write_metrics && (model_complete || (all_final && !to_write.is_empty())) {
            self.write_metrics(sweep, Vec::new()).await?;
        }
        if all_final {
            if self.cfg.write_metrics && to_write.is_empty() {
                // Restarted after the last file but before the end: make sure
                // the tables reflect every file.
                self.write_metrics(sweep, Vec::new()).await?;
            }
            {
                let mut st = self.lock();
                if let Some(s) = st.sweeps.get_mut(sweep) {
                    s.record.state = SweepState::Done;
                    s.record.finished_at = Some(moralsweep_common::slot::now_timestamp());
                }
            }
            self.persist(sweep).await?;
            tracing::info!(sweep, "sweep done");
        }
        self.bump();
        Ok(())
    }
}

/// The longest wait between two attempts to write a sweep's files after a
/// failure (the first retry comes after 200 ms, then doubling).
pub const WRITE_RETRY_CAP: Duration = Duration::from_secs(10);

/// Whether a failure to write a sweep's files would fail the same way
/// however often it is retried: the system refuses a file name (too long,
/// invalid), which only a different spec could change.
fn retrying_cannot_fix(e: &FinishError) -> bool {
    const EINVAL: i32 = 22;
    const ENAMETOOLONG: i32 = 36;
    let FinishError::Output(e) = e else {
        return false;
    };
    e.causes().into_iter().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(io.raw_os_error(), Some(EINVAL | ENAMETOOLONG))
                || io.kind() == std::io::ErrorKind::InvalidInput
        }) || c
            .downcast_ref::<moralsweep_analysis::analyze::AnalyzeError>()
            .is_some_and(|a| {
                matches!(a, moralsweep_analysis::analyze::AnalyzeError::Io { error, .. }
                    if matches!(error.raw_os_error(), Some(EINVAL | ENAMETOOLONG)))
            })
    })
}

/// What `status` says of a sweep whose files can never be written.
pub(super) fn stuck_message(sweep: &str, e: &str) -> String {
    format!(
        "its files cannot be written: {e}; retrying cannot fix this, so the coordinator stopped trying and hands out no more of its slots. \
         Cancel it (`moralsweep cancel {sweep}`), fetch what it recorded (`moralsweep results {sweep} --out DIR`), \
         then `moralsweep delete {sweep}` and submit a corrected spec"
    )
}

pub(super) fn write_failed_message(e: &str) -> String {
    format!(
        "writing the files failed: {e}; fix the cause (the coordinator retries at least every {} s) or restart the coordinator",
        WRITE_RETRY_CAP.as_secs()
    )
}
