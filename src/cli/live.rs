//! The data of the live view (`moralsweep_telemetry::live`) for a process
//! that runs an engine: the coordinator (`--ops-listen`) and `run --ui`.
//!
//! Progress comes from the engine, limits and 429s from its rate groups,
//! failures from the process's metrics, cost from the process's own
//! accounting when the workers run in it (`run`) and otherwise from the
//! spec's prices over the slots done (marked as an estimate). Rates and ETAs
//! come from how `done` moved over the last minute of polls.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moralsweep_common::Sweep;
use moralsweep_coordinator::engine::Engine;
use moralsweep_telemetry::live::{BoxFuture, LiveSource, LiveView};
use moralsweep_worker::cost::Accounting;
use serde_json::{json, Value};

/// How far back the rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A unit of a sweep: (sweep, model, mode).
type UnitId = (String, String, String);

/// The live view's source for an engine.
pub struct EngineLive {
    engine: Arc<Engine>,
    /// The accounting of the workers run in this process, with their real
    /// usage and cost (`run`); `None`: cost is estimated from the spec.
    accounting: Option<Arc<Accounting>>,
    /// (sweep, model, mode) -> recent (time, done), for rates and ETAs.
    history: Mutex<HashMap<UnitId, VecDeque<(Instant, u64)>>>,
}

impl EngineLive {
    pub fn view(
        engine: Arc<Engine>,
        accounting: Option<Arc<Accounting>>,
        token: Option<String>,
    ) -> LiveView {
        LiveView::new(
            Arc::new(EngineLive {
                engine,
                accounting,
                history: Mutex::new(HashMap::new()),
            }),
            token,
        )
    }

    /// Slots per minute over the window, `None` until two polls apart.
    fn rate(&self, key: UnitId, done: u64, now: Instant) -> Option<f64> {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let q = h.entry(key).or_default();
        q.push_back((now, done));
        while q.len() > 2 && now.duration_since(q[0].0) > RATE_WINDOW {
            q.pop_front();
        }
        let (t0, d0) = q[0];
        let dt = now.duration_since(t0).as_secs_f64();
        (dt >= 0.5).then(|| done.saturating_sub(d0) as f64 * 60.0 / dt)
    }

    fn status_now(&self) -> Value {
        let now = Instant::now();
        let metrics = &self.engine.config().metrics;
        let usage = self.accounting.as_ref().map(|a| a.snapshot());
        let mut sweeps = Vec::new();
        for p in self.engine.snapshot() {
            let record = self.engine.record(&p.sweep).ok();
            let estimate = record.as_ref().map(|r| {
                moralsweep_worker::cost::dry_run(&Sweep {
                    def: r.def.clone(),
                    source: PathBuf::new(),
                    output: r.output.clone(),
                })
            });
            let mut models = Vec::new();
            let mut sweep_cost = 0.0;
            let mut any_cost = false;
            let mut sweep_rate: Option<f64> = None;
            for u in &p.units {
                let spec = record
                    .as_ref()
                    .and_then(|r| r.spec.models.iter().find(|m| m.key == u.model));
                let group = spec.map(|m| m.rate_group().to_string());
                let group_status = group.as_deref().and_then(|g| self.engine.rates().status(g));
                let rate = self.rate(
                    (p.sweep.clone(), u.model.clone(), u.mode.name().to_string()),
                    u.done,
                    now,
                );
                if let Some(r) = rate {
                    *sweep_rate.get_or_insert(0.0) += r;
                }
                let remaining = u.total.saturating_sub(u.done);
                let eta = if remaining == 0 {
                    Some(0.0)
                } else {
                    rate.filter(|r| *r > 0.0)
                        .map(|r| remaining as f64 * 60.0 / r)
                };
                // Cost: the process's real accounting per model (shared by
                // the model's modes, so shown on its first unit only), or
                // the spec's prices over this unit's share of the estimate.
                let first_unit_of_model = p
                    .units
                    .iter()
                    .position(|x| x.model == u.model)
                    .map(|i| std::ptr::eq(&p.units[i], u))
                    .unwrap_or(true);
                let cost = match &usage {
                    Some(usage) if first_unit_of_model => {
                        usage.get(&u.model).and_then(|m| m.cost_usd)
                    }
                    Some(_) => None,
                    None => estimate.as_ref().and_then(|e| {
                        let m = e.models.iter().find(|m| m.key == u.model)?;
                        let all: u64 = p
                            .units
                            .iter()
                            .filter(|x| x.model == u.model)
                            .map(|x| x.total)
                            .sum();
                        m.cost_usd.map(|c| c * u.done as f64 / all.max(1) as f64)
                    }),
                };
                if let Some(c) = cost {
                    sweep_cost += c;
                    any_cost = true;
                }
                let throttled = match &usage {
                    Some(usage) => usage.get(&u.model).map(|m| m.rate_limited).unwrap_or(0),
                    None => group_status.map(|g| g.throttles).unwrap_or(0),
                };
                models.push(json!({
                    "model": u.model,
                    "mode": u.mode.name(),
                    "state": u.state,
                    "message": u.message,
                    "done": u.done,
                    "total": u.total,
                    "rate_per_min": rate,
                    "eta_seconds": eta,
                    "rate_group": group,
                    "rpm_limit": group_status.and_then(|g| g.limits.rpm),
                    "tpm_limit": group_status.and_then(|g| g.limits.tpm),
                    "rate_fraction": group_status.map(|g| g.rate_fraction),
                    "throttled": throttled,
                    "failures": metrics.slots_failed_count(&p.sweep, &u.model),
                    "cost_usd": cost,
                }));
            }
            // The models run side by side: the sweep ends with its slowest
            // unit, so its ETA is the largest of theirs (unknown while an
            // unfinished unit has no rate yet; a failed unit does not count). The total remaining over
            // the summed rate gave less than the slowest model's.
            let eta = models
                .iter()
                .filter(|m| m["state"] != "failed")
                .try_fold(0.0f64, |acc, m| {
                    m["eta_seconds"].as_f64().map(|e| acc.max(e))
                });
            let mdir = moralsweep_report::data::metrics_dir_of(&p.output);
            let has_report = p.finished()
                && (mdir
                    .join(moralsweep_report::data::OVERALL_FILES[0])
                    .is_file()
                    || mdir.join(moralsweep_report::data::CURVE_FILES[0]).is_file());
            sweeps.push(json!({
                "sweep": p.sweep,
                "state": p.state,
                "done": p.done,
                "total": p.total,
                "leased": p.leased,
                "rate_per_min": sweep_rate,
                "eta_seconds": eta,
                "cost_usd": any_cost.then_some(sweep_cost),
                "cost_estimated": self.accounting.is_none(),
                "created_at": record.as_ref().map(|r| r.created_at.clone()),
                "finished_at": record.as_ref().and_then(|r| r.finished_at.clone()),
                "messages": p.messages,
                "batches": p.batches,
                "report": has_report,
                "models": models,
            }));
        }
        json!({
            "generated_at": crate::cli::report::now_rfc3339(),
            "sweeps": sweeps,
        })
    }
}

/// Puts the slots leased now into a status: per sweep (`leased`, "in
/// flight") and per unit (`in_flight`). The engine's snapshot leaves them 0
/// (it reads memory only); the leases are in the store, whoever holds them:
/// a cluster's workers or `run`'s own.
fn with_leases(mut v: Value, leases: &[moralsweep_protocol::lease::Lease]) -> Value {
    for s in v["sweeps"].as_array_mut().into_iter().flatten() {
        let sweep = s["sweep"].as_str().unwrap_or("").to_string();
        let of = |model: Option<&str>, mode: Option<&str>| -> u64 {
            leases
                .iter()
                .filter(|l| l.unit.sweep == sweep)
                .filter(|l| model.is_none_or(|m| l.unit.model == m))
                .filter(|l| mode.is_none_or(|m| l.unit.mode.name() == m))
                .map(|l| l.slots.len() as u64)
                .sum()
        };
        s["leased"] = of(None, None).into();
        for m in s["models"].as_array_mut().into_iter().flatten() {
            let n = of(m["model"].as_str(), m["mode"].as_str());
            m["in_flight"] = n.into();
        }
    }
    v
}

impl LiveSource for EngineLive {
    fn status(&self) -> BoxFuture<Value> {
        let v = self.status_now();
        let engine = self.engine.clone();
        Box::pin(async move {
            match engine.store().leases().await {
                Ok(leases) => with_leases(v, &leases),
                Err(e) => {
                    tracing::warn!("live view: cannot read the leases: {e}");
                    v
                }
            }
        })
    }

    fn report(&self, sweep: String) -> BoxFuture<Option<Result<String, String>>> {
        let p = self.engine.snapshot_one(&sweep).ok();
        Box::pin(async move {
            let p = p.filter(|p| p.finished())?;
            let out = p.output.clone();
            let made =
                tokio::task::spawn_blocking(move || moralsweep_report::render_html(&out, None))
                    .await;
            match made {
                Ok(Ok(html)) => Some(Ok(html)),
                Ok(Err(moralsweep_report::ReportError::NoMetrics(_))) => None,
                Ok(Err(e)) => Some(Err(e.to_string())),
                Err(e) => Some(Err(format!("the report task failed: {e}"))),
            }
        })
    }
}
