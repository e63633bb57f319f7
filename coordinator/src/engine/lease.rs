//! Handing out slots: leases paced by the rate groups, their extension and
//! the reclaiming of expired ones.

use super::*;

/// The most slots of a batched unit one grant holds.
pub const BATCH_LEASE_SLOTS: u32 = 200_000;

impl Engine {
    pub(super) fn next_lease_id(&self) -> String {
        let n = self.lease_seq.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{:x}", self.boot, n)
    }

    /// The trace context of a sweep's submission span, when this process
    /// took the submission and spans are exported.
    pub fn sweep_trace(&self, sweep: &str) -> Option<String> {
        self.sweep_traces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sweep)
            .cloned()
    }

    /// Grants up to `max` slots (of one or more units) to `worker`, each
    /// with one permit of its rate group (a batched unit's grant may hold
    /// up to [`BATCH_LEASE_SLOTS`] and takes no permits).
    pub async fn lease(&self, worker: &str, max: u32) -> EngineResult<LeaseOutcome> {
        super::seen::worker_seen(worker);
        let mut left = max.min(self.cfg.max_lease_slots);
        let mut out = LeaseOutcome::default();
        let mut tried = 0usize;
        let mut wait: Option<Duration> = None;
        while left > 0 {
            // Pick the next runnable unit (round robin) and take its permits.
            let pick = {
                let mut st = self.lock();
                let flat: Vec<(String, usize)> = st
                    .sweeps
                    .iter()
                    .flat_map(|(name, s)| (0..s.units.len()).map(move |i| (name.clone(), i)))
                    .collect();
                if flat.is_empty() || tried >= flat.len() {
                    None
                } else {
                    let mut found = None;
                    let now = Instant::now();
                    while tried < flat.len() {
                        let (name, i) = &flat[st.cursor % flat.len()];
                        st.cursor = st.cursor.wrapping_add(1);
                        tried += 1;
                        let s = &st.sweeps[name];
                        let u = &s.units[*i];
                        if !s.unit_runnable(u) || u.idle_until.is_some_and(|t| now < t) {
                            continue;
                        }
                        // Whole cells, one permit each, where a cell's
                        // samples come from one request: at least one cell
                        // even when less room is left (a grant may exceed
                        // `max` by less than a cell, never split one),
                        // unless cells are larger than a lease may be.
                        let (cell, tokens) = if u.cell > 1 && u.cell <= self.cfg.max_lease_slots {
                            (u.cell, u.tokens_cell)
                        } else {
                            (1, u.tokens_each)
                        };
                        // A batched unit goes out whole (up to a bound):
                        // one worker gathers it into as few provider
                        // batches as the provider allows.
                        let permits = if u.batched {
                            BATCH_LEASE_SLOTS / cell
                        } else {
                            self.rates.take(&u.group, (left / cell).max(1), tokens)
                        };
                        if permits == 0 {
                            let w = self.rates.next_ready(&u.group);
                            wait = Some(wait.map_or(w, |x| x.min(w)));
                            continue;
                        }
                        found = Some((
                            u.key.clone(),
                            u.total,
                            permits,
                            cell,
                            u.group.clone(),
                            u.batched,
                        ));
                        break;
                    }
                    found
                }
            };
            let Some((key, total, permits, cell, group, batched)) = pick else {
                break;
            };
            let lease_id = self.next_lease_id();
            let deadline_ms = now_ms() + self.cfg.lease_ttl.as_millis() as u64;
            let want = permits * cell;
            // The judge's slots exist only once their answers do: they are
            // granted from the queue the answers' records fill.
            let slots = if key.mode == Mode::EmJudge {
                self.store
                    .grant_queued(&key, total, want, &lease_id, worker, deadline_ms)
                    .await?
            } else {
                self.store
                    .grant_cells(&key, total, want, cell, &lease_id, worker, deadline_ms)
                    .await?
            };
            if (slots.len() as u32) < want {
                // Nothing more to hand out until leases come back.
                let mut st = self.lock();
                if let Some(u) = find_unit_mut(&mut st, &key) {
                    u.idle_until = Some(Instant::now() + Duration::from_millis(500));
                }
            }
            if slots.is_empty() {
                continue;
            }
            left = left.saturating_sub(slots.len() as u32);
            if batched {
                left = 0;
            }
            // The permits the granted slots used (retried slots of a cell may
            // come without the rest of it).
            // A batched unit's grants prepay nothing.
            let used = if batched {
                0
            } else {
                permits.min((slots.len() as u32).div_ceil(cell))
            };
            self.cfg.metrics.lease_granted(1);
            let payloads = if key.mode == Mode::EmJudge {
                self.judged_answers(&key, &slots).await?
            } else {
                Vec::new()
            };
            out.grants.push(Grant {
                lease: Lease {
                    id: lease_id,
                    unit: key,
                    worker: worker.to_string(),
                    slots,
                    deadline_ms,
                },
                rate_group: group,
                permits: used,
                payloads,
            });
        }
        if out.grants.is_empty() {
            out.retry_after = wait
                .unwrap_or(Duration::from_millis(250))
                .clamp(Duration::from_millis(20), Duration::from_secs(2));
        }
        Ok(out)
    }

    /// The answers the judge slots of `unit` score, one per slot, read from
    /// the answers' records (the lease carries them to the worker).
    async fn judged_answers(&self, unit: &UnitKey, slots: &[u32]) -> EngineResult<Vec<String>> {
        let answers = UnitKey {
            mode: Mode::EmCheck,
            ..unit.clone()
        };
        let mut texts: HashMap<u32, String> = HashMap::new();
        let mut out = Vec::with_capacity(slots.len());
        for &slot in slots {
            let (a, _) = moralsweep_common::em::judge_of(slot);
            if let std::collections::hash_map::Entry::Vacant(slot_text) = texts.entry(a) {
                let got = self.store.scan_results(&answers, a, 1).await?;
                let text = match got.first() {
                    Some((i, bytes)) if *i == a => match serde_json::from_slice(bytes) {
                        Ok(SlotRecord::Answer(r)) => r.text,
                        _ => {
                            return Err(StoreError::Corrupt(format!(
                                "answer {a} of {}/em-check in sweep {:?} is not an answer record",
                                unit.model, unit.sweep
                            ))
                            .into())
                        }
                    },
                    _ => {
                        return Err(StoreError::Corrupt(format!(
                            "judge slot {slot} of {} in sweep {:?} was queued, but answer {a} is not recorded",
                            unit.model, unit.sweep
                        ))
                        .into())
                    }
                };
                slot_text.insert(text);
            }
            out.push(texts[&a].clone());
        }
        Ok(out)
    }

    /// Makes a unit's slots grantable again at once (slots came back or
    /// were created).
    pub(super) fn wake_unit(&self, key: &UnitKey) {
        let mut st = self.lock();
        if let Some(u) = find_unit_mut(&mut st, key) {
            u.idle_until = None;
        }
    }

    pub(super) fn wake_units(&self) {
        let mut st = self.lock();
        for s in st.sweeps.values_mut() {
            for u in &mut s.units {
                u.idle_until = None;
            }
        }
    }

    /// Moves the deadlines of the given leases; returns the ids that no
    /// longer exist and the new deadline.
    pub async fn extend(&self, lease_ids: &[String]) -> EngineResult<(Vec<String>, u64)> {
        let deadline = now_ms() + self.cfg.lease_ttl.as_millis() as u64;
        let mut lost = Vec::new();
        for id in lease_ids {
            if !self.store.extend(id, deadline).await? {
                lost.push(id.clone());
            }
        }
        Ok((lost, deadline))
    }

    /// Takes back expired leases (their slots go to the retry queue).
    pub async fn reclaim(&self) -> EngineResult<usize> {
        let leases = self.store.reclaim_expired(now_ms()).await?;
        if !leases.is_empty() {
            let span = moralsweep_telemetry::spans::reclaim_span();
            let _entered = span.enter();
            moralsweep_telemetry::spans::record_reclaims(
                &span,
                leases.len() as u64,
                &self.cfg.metrics,
            );
            let slots: usize = leases.iter().map(|l| l.slots.len()).sum();
            tracing::info!(leases = leases.len(), slots, "took back expired leases");
            self.wake_units();
        }
        Ok(leases.len())
    }
}
