//! The coordinator's side of observability: the gauges that are read off
//! the engine and the store (slots per model, slots in flight, workers seen)
//! and the ops endpoints (`/metrics`, `/healthz`, `/readyz`; ready when the
//! store answers).
//!
//! The counters (slots recorded, failed, leases granted and reclaimed) are
//! counted where they happen, in the engine; everything here is refreshed
//! every [`REFRESH_EVERY`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use moralsweep_telemetry::ops::OpsServer;
use moralsweep_telemetry::TelemetryError;

use crate::engine::seen::workers_active;
use crate::engine::Engine;
use moralsweep_protocol::ProgressState;

/// How often the gauges are recomputed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Recomputes the gauges: slots per (sweep, model), slots leased per
/// (sweep, model), workers seen within three lease lifetimes.
pub async fn refresh(engine: &Engine) {
    let m = &engine.config().metrics;
    let mut totals: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut remaining: BTreeMap<(String, String), u64> = BTreeMap::new();
    for p in engine.snapshot() {
        for u in &p.units {
            *totals
                .entry((p.sweep.clone(), u.model.clone()))
                .or_default() += u.total;
            // A stopped (failed or cancelled) unit waits for nothing.
            let left = if u.state == ProgressState::Running {
                u.total.saturating_sub(u.done)
            } else {
                0
            };
            *remaining
                .entry((p.sweep.clone(), u.model.clone()))
                .or_default() += left;
        }
    }
    m.set_store_ready(
        tokio::time::timeout(Duration::from_secs(3), engine.store().ping())
            .await
            .is_ok_and(|r| r.is_ok()),
    );
    let mut leased: BTreeMap<(String, String), u64> = BTreeMap::new();
    if let Ok(leases) = engine.store().leases().await {
        for l in leases {
            *leased
                .entry((l.unit.sweep.clone(), l.unit.model.clone()))
                .or_default() += l.slots.len() as u64;
        }
    }
    for ((sweep, model), total) in &totals {
        m.set_slots_total(sweep, model, *total);
        m.set_slots_remaining(
            sweep,
            model,
            remaining
                .get(&(sweep.clone(), model.clone()))
                .copied()
                .unwrap_or(0),
        );
        let n = leased
            .get(&(sweep.clone(), model.clone()))
            .copied()
            .unwrap_or(0);
        m.set_in_flight(sweep, model, n as i64);
    }
    let window = engine.config().lease_ttl * 3;
    m.set_workers(workers_active(window) as i64);
}

/// Starts the gauge refresher and, with `ops_listen`, the ops endpoints.
/// Both run until the runtime stops.
pub async fn start(
    engine: Arc<Engine>,
    ops_listen: Option<&str>,
) -> Result<Option<OpsServer>, TelemetryError> {
    start_with_live(engine, ops_listen, None, None).await
}

/// [`start`], with the live view of the sweeps served beside the ops
/// endpoints when `live` is given, and `/metrics` behind `token` when one
/// is given (the coordinator's own; see `moralsweep_telemetry::access`).
pub async fn start_with_live(
    engine: Arc<Engine>,
    ops_listen: Option<&str>,
    live: Option<moralsweep_telemetry::live::LiveView>,
    token: Option<String>,
) -> Result<Option<OpsServer>, TelemetryError> {
    let Some(addr) = ops_listen else {
        return Ok(None);
    };
    let e = engine.clone();
    tokio::spawn(async move {
        loop {
            refresh(&e).await;
            tokio::time::sleep(REFRESH_EVERY).await;
        }
    });
    let store = engine.store().clone();
    let server = moralsweep_telemetry::spawn_ops_guarded(
        addr,
        engine.config().metrics.clone(),
        move || {
            let store = store.clone();
            async move { store.ping().await.is_ok() }
        },
        live.map(|l| l.router()).unwrap_or_default(),
        token,
        (
            "the coordinator's token",
            "drop --no-auth and give the coordinator MORALSWEEP_TOKEN or --token-file",
        ),
        std::future::pending::<()>(),
    )
    .await?;
    if let Some(w) = &server.warning {
        tracing::warn!("--ops-listen: {w}");
    }
    Ok(Some(server))
}
