//! What a worker keeps per sweep: the definition fetched once from the
//! coordinator, the instrument, and the providers built for its models
//! (paced, retried, behind the circuit breaker).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moralsweep_common::slot::UnitShape;
use moralsweep_common::Mode;

use super::{Link, LinkError, Shared, SweepDef};
use crate::paced::{Paced, RetryPolicy, DEFAULT_UNREACHABLE_TIMEOUT};
use crate::permits::Permits;
use crate::providers;

/// A sweep's definition with the providers built for its models.
pub(super) struct SweepCtx {
    pub(super) def: SweepDef,
    /// The spec's instrument, loaded once.
    pub(super) instrument: Arc<moralsweep_common::Instrument>,
    pub(super) providers: Mutex<HashMap<String, Arc<ProviderSlot>>>,
}

impl SweepCtx {
    /// The slot layout of a questionnaire unit (persona or self) in `mode`.
    pub(super) fn shape(&self, mode: Mode) -> UnitShape {
        UnitShape {
            mode,
            personas: self.def.personas.len() as u32,
            repetitions: self.def.spec.repetitions,
            items: self.instrument.item_count() as u32,
        }
    }

    /// The prompt of questionnaire slot `slot` in `mode` (its persona's,
    /// or the self prompt, for its item).
    pub(super) fn prompt(&self, mode: Mode, slot: u32) -> String {
        let coord = self.shape(mode).coord(slot as u64);
        let item = &self.instrument.items[coord.item as usize - 1];
        match coord.persona {
            Some(p) => self
                .instrument
                .persona_prompt(&self.def.personas[p as usize], item),
            None => self.instrument.self_prompt(item),
        }
    }
}

pub(super) enum ProviderSlot {
    /// Behind permits, retries and a circuit breaker.
    Ready(Box<Paced>),
    /// The provider could not be built here (unknown provider, missing key).
    Broken(String),
}

pub(super) async fn sweep_ctx<L: Link>(
    shared: &Shared<L>,
    sweep: &str,
) -> Result<Arc<SweepCtx>, LinkError> {
    let mut map = shared.sweeps.lock().await;
    if let Some(c) = map.get(sweep) {
        return Ok(c.clone());
    }
    let mut backoff = Duration::from_millis(100);
    let def = loop {
        match shared.link.definition(sweep).await {
            Ok(d) => break d,
            Err(LinkError::Unavailable(m)) if !shared.stopping.load(Ordering::Acquire) => {
                tracing::warn!("fetching sweep {sweep:?} failed (will retry): {m}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    };
    let instrument = def
        .spec
        .instrument()
        .unwrap_or_else(|_| moralsweep_common::Instrument::mfq30());
    let ctx = Arc::new(SweepCtx {
        instrument,
        def,
        providers: Mutex::new(HashMap::new()),
    });
    map.insert(sweep.to_string(), ctx.clone());
    Ok(ctx)
}

/// The provider of `model` in this sweep, built on first use: paced by the
/// worker's permits, stopped by its halt, accounted in its accounting.
pub(super) fn provider_for<L: Link>(
    shared: &Shared<L>,
    ctx: &SweepCtx,
    model: &str,
) -> Arc<ProviderSlot> {
    let (permits, halt, accounting) = (&shared.permits, &shared.halt, &shared.cfg.accounting);
    let mut map = ctx.providers.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(model.to_string())
        .or_insert_with(|| {
            let Some(spec) = ctx.def.spec.model_or_judge(model) else {
                return Arc::new(ProviderSlot::Broken(format!(
                    "the sweep has no model {model:?}"
                )));
            };
            let policy = RetryPolicy {
                unreachable_timeout: spec
                    .unreachable_timeout_secs
                    .map(Duration::from_secs_f64)
                    .unwrap_or(DEFAULT_UNREACHABLE_TIMEOUT),
                ..RetryPolicy::default()
            };
            accounting.register(&ctx.def.spec.name, spec);
            Arc::new(match providers::build(spec) {
                Ok(p) => ProviderSlot::Ready(Box::new(
                    Paced::new(
                        Arc::from(p),
                        permits.clone() as Arc<dyn Permits>,
                        spec.rate_group(),
                        spec.key.clone(),
                    )
                    .with_tokenizer(moralsweep_common::tokens::Tokenizer::for_model(
                        spec.provider,
                        &spec.model,
                    ))
                    .with_policy(policy)
                    .with_accounting(accounting.clone(), &ctx.def.spec.name)
                    .with_metrics(shared.cfg.metrics.clone())
                    .with_stop(halt.subscribe()),
                )),
                Err(e) => ProviderSlot::Broken(e.to_string()),
            })
        })
        .clone()
}
