//! Asking the slots of one task: one slot (logprob mode, or a model asked
//! one sample per request) or the slots of one cell from shared
//! multi-sample requests. Both go through [`prepare`] (whether to ask at
//! all, the model, the cell's prompt, the provider) and [`failed`] (what a
//! provider error does to the slots and the model).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use moralsweep_common::slot::SlotRecord;
use moralsweep_common::spec::ModelSpec;
use moralsweep_common::Mode;
use moralsweep_protocol::{slot_seed, Outcome, SlotReport, UnitKey, LOGPROB_REQUEST_TEMPERATURE};

use super::sweeps::{provider_for, ProviderSlot, SweepCtx};
use super::{Finished, Link, Shared};
use crate::permits::Permits;
use crate::protocol::{
    rate_logprob, rate_sample_in, rate_samples, CellRequest, SlotRequest,
    DEFAULT_FALLBACK_MAX_TOKENS,
};
use crate::providers::ProviderError;

/// A task's slots, cleared to be asked: the model, the cell's prompt, the
/// provider and the key under which the model is marked dead.
struct Asked<'a> {
    model: &'a ModelSpec,
    /// Who is asked: the model, or the judge for a judge's slot.
    requester: &'a ModelSpec,
    prompt: String,
    provider: Arc<ProviderSlot>,
    dead_key: (String, String),
}

/// The checks and look-ups every task starts with. `None` when its slots
/// are not asked here (they go back with the lease): the worker is
/// stopping, the model refused for good, the sweep has no such model, or a
/// slot lies outside the unit. The slots are of one cell, so they share the
/// prompt of the first.
fn prepare<'a, L: Link>(
    shared: &Shared<L>,
    ctx: &'a SweepCtx,
    unit: &UnitKey,
    slots: &[u32],
) -> Option<Asked<'a>> {
    if shared.stopping.load(Ordering::Acquire) {
        return None;
    }
    let spec = &ctx.def.spec;
    let model = spec.models.iter().find(|m| m.key == unit.model)?;
    // The judge's unit sends the judge's requests; a judge that refused
    // for good is dead for every model it judges, and only for judging.
    let requester = match unit.mode {
        Mode::EmJudge => spec.judge.as_ref()?,
        _ => model,
    };
    let dead_key = (unit.sweep.clone(), requester.key.clone());
    if shared.is_dead(&dead_key) {
        return None;
    }
    let em = matches!(unit.mode, Mode::EmCheck | Mode::EmJudge);
    let shape = match em {
        true => crate::em::unit_shape(unit.mode),
        false => ctx.shape(unit.mode),
    };
    if slots.is_empty() || slots.iter().any(|s| *s as u64 >= shape.len()) {
        return None;
    }
    // The misalignment check builds its own prompts (`crate::em`).
    let prompt = match em {
        true => String::new(),
        false => ctx.prompt(unit.mode, slots[0]),
    };
    let provider = provider_for(shared, ctx, &requester.key);
    Some(Asked {
        model,
        requester,
        prompt,
        provider,
        dead_key,
    })
}

/// The sampling request of one slot of `model` (its seed left to the caller).
fn slot_request(
    ctx: &SweepCtx,
    model: &ModelSpec,
    prompt: String,
    seed: Option<u64>,
) -> SlotRequest {
    let spec = &ctx.def.spec;
    SlotRequest {
        prompt,
        temperature: model.sampling_temperature(spec.temperature),
        max_attempts: spec.max_attempts,
        fallback_max_tokens: model
            .fallback_max_tokens
            .unwrap_or(DEFAULT_FALLBACK_MAX_TOKENS),
        seed,
    }
}

/// What a provider's error does: a refusal for good marks the model dead
/// (said once) and gives the fatal outcome every slot reports; a rate
/// limit throttles the model's group; a retryable or unreachable failure is
/// logged. `None`: the slots are abandoned (asked again elsewhere).
async fn failed<L: Link>(
    shared: &Shared<L>,
    asked: Asked<'_>,
    slots: &[u32],
    error: ProviderError,
) -> Option<String> {
    let model = &asked.dead_key.1;
    match error {
        ProviderError::Fatal(msg) => {
            shared.refused_for_good(&asked.dead_key, &msg);
            Some(format!("worker {}: {msg}", shared.cfg.name))
        }
        ProviderError::RateLimited { retry_after } => {
            shared
                .permits
                .throttled(asked.requester.rate_group(), retry_after)
                .await;
            None
        }
        ProviderError::Retryable(msg) | ProviderError::Unreachable(msg) => {
            if !shared.stopping.load(Ordering::Acquire) {
                match slots {
                    [slot] => {
                        tracing::warn!(model = %model, slot, "request failed; the slot goes back to the queue: {msg}")
                    }
                    _ => {
                        tracing::warn!(model = %model, slots = slots.len(), "request failed; the cell's slots go back to the queue: {msg}")
                    }
                }
            }
            None
        }
    }
}

fn report(lease_id: &str, unit: &UnitKey, slot: u32, outcome: Outcome) -> Finished {
    Finished::Report(Box::new(SlotReport {
        lease_id: Some(lease_id.to_string()),
        unit: unit.clone(),
        slot,
        outcome,
    }))
}

/// Runs one slot: the logprob protocol, or the sampling protocol with one
/// sample per request.
pub(super) async fn run_slot<L: Link>(
    shared: &Shared<L>,
    ctx: &SweepCtx,
    lease_id: &str,
    unit: UnitKey,
    slot: u32,
    payload: Option<String>,
) -> Finished {
    let Some(asked) = prepare(shared, ctx, &unit, &[slot]) else {
        return Finished::Abandoned;
    };
    let spec = &ctx.def.spec;
    let seed = slot_seed(spec.seed.unwrap_or(0), &unit.model, unit.mode, slot);
    let result = match asked.provider.as_ref() {
        ProviderSlot::Broken(msg) => Err(ProviderError::Fatal(msg.clone())),
        ProviderSlot::Ready(p) => {
            let traced = crate::observe::Traced::new(
                p.as_ref(),
                &spec.name,
                asked.requester,
                &shared.cfg.metrics,
            );
            match unit.mode {
                Mode::EmCheck | Mode::EmJudge => {
                    crate::em::run_em_slot(
                        &traced,
                        asked.requester,
                        unit.mode,
                        slot,
                        payload.as_deref(),
                        seed,
                    )
                    .await
                }
                Mode::Logprob => rate_logprob(
                    &traced,
                    &asked.prompt,
                    Some(LOGPROB_REQUEST_TEMPERATURE),
                    spec.top_logprobs,
                    Some(seed),
                )
                .await
                .map(SlotRecord::Logprob),
                Mode::Persona | Mode::SelfMode => rate_sample_in(
                    &ctx.instrument,
                    &traced,
                    &slot_request(ctx, asked.model, asked.prompt.clone(), Some(seed)),
                )
                .await
                .map(SlotRecord::Sample),
            }
        }
    };
    match result {
        Ok(rec) => {
            shared.stats.answered.fetch_add(1, Ordering::Relaxed);
            report(lease_id, &unit, slot, Outcome::Record(rec))
        }
        Err(e) => match failed(shared, asked, &[slot], e).await {
            Some(why) => report(lease_id, &unit, slot, Outcome::Fatal(why)),
            None => Finished::Abandoned,
        },
    }
}

/// Runs the slots of one cell (persona, item) from shared multi-sample
/// requests ([`rate_samples`]); one result per slot, in slot order.
pub(super) async fn run_cell<L: Link>(
    shared: &Shared<L>,
    ctx: &SweepCtx,
    lease_id: &str,
    unit: UnitKey,
    slots: &[u32],
) -> Vec<Finished> {
    let abandoned = || slots.iter().map(|_| Finished::Abandoned).collect();
    let Some(asked) = prepare(shared, ctx, &unit, slots) else {
        return abandoned();
    };
    let spec = &ctx.def.spec;
    let seeds: Vec<u64> = slots
        .iter()
        .map(|s| slot_seed(spec.seed.unwrap_or(0), &unit.model, unit.mode, *s))
        .collect();
    let result = match asked.provider.as_ref() {
        ProviderSlot::Broken(msg) => Err(ProviderError::Fatal(msg.clone())),
        ProviderSlot::Ready(p) => {
            rate_samples(
                &ctx.instrument,
                &crate::observe::Traced::new(
                    p.as_ref(),
                    &spec.name,
                    asked.model,
                    &shared.cfg.metrics,
                ),
                &CellRequest {
                    slot: slot_request(ctx, asked.model, asked.prompt.clone(), None),
                    seeds,
                    max_samples: shared.samples_per_request(&unit.sweep, asked.model),
                },
            )
            .await
        }
    };
    match result {
        Ok(out) => {
            if out.refused_multi_sample {
                shared.refused_multi_sample(&asked.dead_key);
            }
            shared
                .stats
                .answered
                .fetch_add(out.records.len() as u64, Ordering::Relaxed);
            slots
                .iter()
                .zip(out.records)
                .map(|(s, r)| report(lease_id, &unit, *s, Outcome::Record(SlotRecord::Sample(r))))
                .collect()
        }
        Err(e) => match failed(shared, asked, slots, e).await {
            Some(why) => slots
                .iter()
                .map(|s| report(lease_id, &unit, *s, Outcome::Fatal(why.clone())))
                .collect(),
            None => abandoned(),
        },
    }
}
