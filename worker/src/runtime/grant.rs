//! Starting a grant: its permits and lease bookkeeping, its span, and one
//! task per group of slots (a cell's slots share multi-sample requests;
//! otherwise one slot per task).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use moralsweep_protocol::{Grant, Outcome};
use tokio::sync::{mpsc, Semaphore};

use super::slot::{run_cell, run_slot};
use super::sweeps::sweep_ctx;
use super::{Done, Finished, Link, Shared};

pub(super) async fn start_grant<L: Link>(
    shared: &Arc<Shared<L>>,
    g: Grant,
    sem: &Arc<Semaphore>,
    done_tx: &mpsc::UnboundedSender<Done>,
    held: &Arc<Mutex<HashMap<String, usize>>>,
    outstanding: &Arc<AtomicU64>,
) {
    let n = g.lease.slots.len();
    held.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(g.lease.id.clone(), n);
    let ctx = match sweep_ctx(shared, &g.lease.unit.sweep).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(sweep = %g.lease.unit.sweep, "cannot work on the sweep: {e}");
            None
        }
    };
    let model_spec = ctx.as_ref().and_then(|c| {
        c.def
            .spec
            .models
            .iter()
            .find(|m| m.key == g.lease.unit.model)
            .cloned()
    });
    // Batch mode: the grant waits for its provider batch (its lease held
    // and extended meanwhile), unless the model already refused for good.
    if let (Some(c), Some(m)) = (&ctx, &model_spec) {
        let dead = shared.is_dead(&(g.lease.unit.sweep.clone(), m.key.clone()));
        if m.sends_batches(g.lease.unit.mode) && !dead {
            shared.batch_parked.fetch_add(1, Ordering::AcqRel);
            let parked = super::batch::Parked {
                lease_id: g.lease.id.clone(),
                unit: g.lease.unit.clone(),
                slots: g.lease.slots,
                ctx: c.clone(),
                model: m.clone(),
            };
            if let Err(e) = shared.batch_tx.send(parked) {
                // The collector is gone (stopping): the lease goes back.
                shared.batch_parked.fetch_sub(1, Ordering::AcqRel);
                held.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&e.0.lease_id);
                let _ = shared
                    .link
                    .report(&shared.cfg.name, Vec::new(), vec![e.0.lease_id], None)
                    .await;
            }
            return;
        }
    }
    let prepaid = if g.permits > 0 {
        g.permits as u64
    } else {
        n as u64
    };
    shared.permits.add(&g.rate_group, prepaid);
    outstanding.fetch_add(n as u64, Ordering::AcqRel);
    let span = crate::observe::grant_span(&g, model_spec.as_ref());
    crate::observe::grant_started(&shared.cfg.metrics, &g);
    let lease_id = Arc::new(g.lease.id.clone());
    // Slots of one cell share requests when the model draws several
    // samples per request (and its provider has not refused that);
    // otherwise each slot is its own group.
    let cell = match (&ctx, &model_spec) {
        (Some(c), Some(m)) if shared.samples_per_request(&g.lease.unit.sweep, m) > 1 => {
            c.def.spec.cell_size(m, g.lease.unit.mode)
        }
        _ => 1,
    };
    // What a slot needs beyond the definition (a judge slot's answer).
    let payloads: Arc<HashMap<u32, String>> =
        Arc::new(g.lease.slots.iter().copied().zip(g.payloads).collect());
    let mut groups: Vec<Vec<u32>> = Vec::new();
    for slot in g.lease.slots {
        match groups.last_mut() {
            Some(last) if cell > 1 && last[0] / cell == slot / cell => last.push(slot),
            _ => groups.push(vec![slot]),
        }
    }
    for slots in groups {
        let shared = shared.clone();
        let sem = sem.clone();
        let done_tx = done_tx.clone();
        let ctx = ctx.clone();
        let lease_id = lease_id.clone();
        let unit = g.lease.unit.clone();
        let payload = payloads.get(&slots[0]).cloned();
        // One task per group: a cell's slots from shared requests, or one slot.
        let task = async move {
            let (obs_sweep, obs_model) = (unit.sweep.clone(), unit.model.clone());
            let abandoned = || slots.iter().map(|_| Finished::Abandoned).collect();
            let finished: Vec<Finished> = match ctx {
                None => abandoned(),
                Some(ctx) => {
                    let mut abort = shared.abort.subscribe();
                    let aborted = async move {
                        if abort.wait_for(|a| *a).await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        f = async {
                            let _permit = sem.acquire().await.ok();
                            if slots.len() > 1 {
                                run_cell(&shared, &ctx, &lease_id, unit, &slots).await
                            } else {
                                vec![run_slot(&shared, &ctx, &lease_id, unit, slots[0], payload).await]
                            }
                        } => f,
                        _ = aborted => abandoned(),
                    }
                }
            };
            for f in finished {
                crate::observe::slot_finished(
                    &shared.cfg.metrics,
                    &obs_sweep,
                    &obs_model,
                    match &f {
                        Finished::Report(r) => Some(matches!(r.outcome, Outcome::Record(_))),
                        Finished::Abandoned => None,
                    },
                );
                let _ = done_tx.send(Done {
                    lease_id: lease_id.to_string(),
                    finished: f,
                    traceparent: moralsweep_telemetry::propagation::current_traceparent(),
                });
            }
        };
        tokio::spawn(tracing::Instrument::instrument(task, span.clone()));
    }
}
