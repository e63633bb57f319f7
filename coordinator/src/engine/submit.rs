//! Taking sweeps in: submission (and its idempotence), the sweep record,
//! and resuming every sweep of the store after a restart.

use super::*;

impl Engine {
    /// Loads every sweep from the store (after a start or restart) and
    /// queues the finished-but-unwritten units for their files.
    pub async fn resume(&self) -> EngineResult<usize> {
        let ids = self.store.sweep_ids().await?;
        let mut n = 0;
        for id in ids {
            let Some(bytes) = self.store.load_sweep(&id).await? else {
                continue;
            };
            let record = SweepRecord::from_bytes(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("sweep record {id:?} cannot be decoded: {e}"))
            })?;
            self.install(record).await?;
            n += 1;
        }
        Ok(n)
    }

    pub(super) async fn install(&self, record: SweepRecord) -> EngineResult<()> {
        let mut units = build_units(&record);
        for u in &mut units {
            u.done = self.store.done_count(&u.key).await?;
        }
        self.configure_rates(&record);
        let name = record.name().to_string();
        let running = record.state == SweepState::Running;
        // A sweep stored by an older version may hold a spec today's checks
        // refuse (a group label that cannot name a file): its files could
        // never be written, so it runs no further.
        let stuck = match Engine::check_submission(&record.spec, &name, &record.personas) {
            Err(e) if running => {
                tracing::error!(sweep = %name, "the stored sweep fails today's checks and cannot run: {e}");
                Some(format!("its spec fails the checks: {e}"))
            }
            _ => None,
        };
        if running {
            tracing::info!(sweep = %name, "sweep loaded");
        }
        self.lock().sweeps.insert(
            name.clone(),
            SweepRt {
                record,
                units,
                write_error: stuck.clone(),
                stuck,
                metrics: SweepMetrics::default(),
            },
        );
        if running {
            let _ = self.finish_tx.send(name);
        }
        self.bump();
        Ok(())
    }

    /// Checks a spec received over the network: the rules of
    /// [`SweepSpec::validate`] (keys are checked by the workers, which hold
    /// them) and the personas' consistency with the spec.
    pub fn check_submission(
        spec: &SweepSpec,
        spec_name: &str,
        personas: &[String],
    ) -> EngineResult<()> {
        spec.validate(
            std::path::Path::new(spec_name),
            moralsweep_common::spec::KeyCheck::Skip,
        )
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        if personas.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "sweep spec {spec_name}: no personas were sent; the client reads the spec's `personas` file and sends its entries"
            )));
        }
        if let Some(n) = spec.persona_count {
            if personas.len() != n {
                return Err(EngineError::InvalidArgument(format!(
                    "sweep spec {spec_name}: `persona_count` is {n} but {} personas were sent",
                    personas.len()
                )));
            }
        }
        if let Some(i) = personas.iter().position(|p| p.trim().is_empty()) {
            return Err(EngineError::InvalidArgument(format!(
                "sweep spec {spec_name}: persona {i} is empty; every persona needs a description"
            )));
        }
        // One limit on a sweep's size, the same as `run` and `submit` check.
        spec.check_size(std::path::Path::new(spec_name), personas.len())
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        Ok(())
    }

    /// Adds a sweep. Submitting the same sweep again is a no-op (`Ok(false)`);
    /// a different sweep under a known name is refused.
    pub async fn submit(
        &self,
        spec: SweepSpec,
        personas: Vec<String>,
        output: PathBuf,
    ) -> EngineResult<bool> {
        self.submit_source(spec, personas, output, None).await
    }

    /// [`Engine::submit`], keeping the spec's text and hash with a new
    /// sweep (a resubmission keeps the first's). Every submission, whichever
    /// of the two it came through, is one `sweep` span.
    #[tracing::instrument(name = "sweep", skip_all, fields(sweep = %spec.name, models = spec.models.len()))]
    pub async fn submit_source(
        &self,
        spec: SweepSpec,
        personas: Vec<String>,
        output: PathBuf,
        source: Option<crate::sweep::SpecSource>,
    ) -> EngineResult<bool> {
        let name = spec.name.clone();
        if let Some(tp) = moralsweep_telemetry::propagation::current_traceparent() {
            self.sweep_traces
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone(), tp);
        }
        let mut record = SweepRecord::new(spec, personas, output);
        record.source = source;
        let _w = self.record_writes.lock().await;
        if self.store.create_sweep(&name, &record.to_bytes()).await? {
            drop(_w);
            tracing::info!(sweep = %name, slots = record.total_slots(), "sweep submitted");
            self.install(record).await?;
            return Ok(true);
        }
        drop(_w);
        let existing = match self.store.load_sweep(&name).await? {
            Some(b) => SweepRecord::from_bytes(&b).map_err(|e| {
                StoreError::Corrupt(format!("sweep record {name:?} cannot be decoded: {e}"))
            })?,
            None => {
                return Err(EngineError::FailedPrecondition(format!(
                    "sweep {name:?} vanished while being submitted; submit it again"
                )))
            }
        };
        if existing.state == SweepState::Cancelled
            && existing.personas == record.personas
            && operational_only(&existing.spec, &record.spec)
        {
            // The same sweep, stopped by a user: submitting it again does
            // not restart it; say what would.
            return Err(EngineError::FailedPrecondition(format!(
                "sweep {name:?} was cancelled; a cancelled sweep does not run again. Its recorded ratings are kept: \
                 `moralsweep results {name} --coordinator URL --out DIR` fetches them; to run it anew, \
                 `moralsweep delete {name} --coordinator URL`, then submit it again"
            )));
        }
        if existing.spec == record.spec && existing.personas == record.personas {
            if !self.lock().sweeps.contains_key(&name) {
                self.install(existing).await?;
            }
            Ok(false)
        } else if existing.personas == record.personas
            && operational_only(&existing.spec, &record.spec)
        {
            // Only limits or connection details changed: adopt them.
            if !self.lock().sweeps.contains_key(&name) {
                self.install(existing).await?;
            }
            {
                let mut st = self.lock();
                if let Some(s) = st.sweeps.get_mut(&name) {
                    s.record.def.spec = record.spec.clone();
                    for u in &mut s.units {
                        if let Some(m) = record.requester(&u.key) {
                            u.group = m.rate_group().to_string();
                        }
                    }
                }
            }
            self.configure_rates(&record);
            self.persist(&name).await?;
            tracing::info!(sweep = %name, "sweep limits updated");
            Ok(false)
        } else {
            Err(EngineError::AlreadyExists(format!(
                "a different sweep named {name:?} exists; give the new sweep another `name`, or remove the old one: \
                 `moralsweep results {name} --coordinator URL --out DIR` keeps its ratings, then \
                 `moralsweep cancel {name} --coordinator URL` and `moralsweep delete {name} --coordinator URL`"
            )))
        }
    }

    /// The record of a sweep as held in memory.
    pub fn record(&self, sweep: &str) -> EngineResult<SweepRecord> {
        self.lock()
            .sweeps
            .get(sweep)
            .map(|s| s.record.clone())
            .ok_or_else(|| not_found(sweep))
    }

    pub(super) async fn persist(&self, sweep: &str) -> EngineResult<()> {
        let _w = self.record_writes.lock().await;
        let bytes = self.record(sweep)?.to_bytes();
        self.store.update_sweep(sweep, &bytes).await?;
        Ok(())
    }
}

/// Whether two specs differ at most in how requests are sent (limits,
/// endpoints, key locations, timeouts), not in what is asked or recorded.
pub fn operational_only(a: &SweepSpec, b: &SweepSpec) -> bool {
    fn strip(s: &SweepSpec) -> SweepSpec {
        let mut s = s.clone();
        for m in s.models.iter_mut().chain(s.judge.iter_mut()) {
            m.rpm = None;
            m.tpm = None;
            m.rate_group = None;
            m.concurrency = None;
            m.timeout_secs = None;
            m.unreachable_timeout_secs = None;
            m.base_url = None;
            m.api_key_env = None;
            m.api_key_file = None;
            m.headers.clear();
        }
        s.output = PathBuf::new();
        s.personas = PathBuf::new();
        s
    }
    strip(a) == strip(b)
}
