//! Batch mode (`batch = true`): a model's persona and self slots answered
//! through its provider's batch API instead of one call each.
//!
//! - **Parking.** A grant of such a model is not run: its leases are held
//!   (and extended) while the collector gathers the unit's cells, until no
//!   more arrive for [`WorkerConfig::batch_linger`] or the batch is full.
//! - **Opening.** The collector asks the coordinator to open a batch for
//!   those slots ([`BatchLink::open_batch`]): from then on they belong to
//!   the batch record, not to a lease, and are never handed out again while
//!   it is open.
//! - **Running.** A job per batch record runs the rating protocol over
//!   provider batches ("generations"): the first asks every cell (one
//!   request of `n` samples per cell, or one per slot where the provider
//!   draws one sample per request); each follow-up asks again the samples
//!   that came back without a digit, then the longer fallback, as
//!   METHOD.md's protocol does call by call. Before each generation is
//!   submitted its requests are stored in the record ([`ProviderState`]),
//!   and the provider's batch right after it accepted it, so a worker that
//!   takes the record over after a crash polls that batch, or looks it up at
//!   the provider, and never submits it twice. Results are reported without
//!   a lease (recording is exactly once); closing the record puts the slots
//!   without a result (errored, expired lines) back in the queue.
//! - **Keeping.** A task extends the records the jobs hold (with what they
//!   saw at the provider, for `status`), stops a job whose record another
//!   worker claimed, cancels the provider batch of a job whose sweep was
//!   cancelled, and claims the records of workers that stopped extending.
//!
//! [`WorkerConfig::batch_linger`]: super::WorkerConfig::batch_linger

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moralsweep_common::hash::fnv1a_parts;
use moralsweep_common::provider::ProviderKind;
use moralsweep_common::slot::SlotRecord;
use moralsweep_common::spec::ModelSpec;
use moralsweep_protocol::{
    now_ms, slot_seed, BatchRecord, HeldBatch, Outcome, ProviderState, SlotReport, UnitKey,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::sweeps::{sweep_ctx, SweepCtx};
use super::{LinkError, Shared};
use crate::batch_link::BatchLink;
use crate::protocol::{fallback_record, one_token_record, DEFAULT_FALLBACK_MAX_TOKENS};
use crate::providers::batch::{self as api, BatchClient, BatchItem, Found, ItemResult};
use crate::providers::{refuses_multi_sample, CompletionRequest, ProviderError, Usage};

/// A grant of a batch-mode model, parked until its batch opens.
pub(super) struct Parked {
    pub(super) lease_id: String,
    pub(super) unit: UnitKey,
    pub(super) slots: Vec<u32>,
    pub(super) ctx: Arc<SweepCtx>,
    pub(super) model: ModelSpec,
}

/// The batch jobs of one worker: each record's stop signal and what its
/// job last saw at the provider.
#[derive(Default)]
pub(super) struct Jobs {
    map: Mutex<HashMap<(String, String), Job>>,
}

struct Job {
    /// Turns `Some(stopped)` when the record is lost: `true` when its sweep
    /// stopped (cancel at the provider), `false` when another worker took it.
    /// A lost job stays listed (not extended) until it has wound down, so
    /// that a claim of the same record never runs beside it.
    lost: watch::Sender<Option<bool>>,
    seen: Option<String>,
}

impl Jobs {
    fn start(&self, rec: &BatchRecord) -> Option<watch::Receiver<Option<bool>>> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (rec.unit.sweep.clone(), rec.id.clone());
        if m.contains_key(&key) {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        m.insert(
            key,
            Job {
                lost: tx,
                seen: None,
            },
        );
        Some(rx)
    }

    fn end(&self, rec: &BatchRecord) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(rec.unit.sweep.clone(), rec.id.clone()));
    }

    fn saw(&self, rec: &BatchRecord, seen: String) {
        if let Some(j) = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&(rec.unit.sweep.clone(), rec.id.clone()))
        {
            j.seen = Some(seen);
        }
    }

    fn held(&self) -> Vec<HeldBatch> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, j)| j.lost.borrow().is_none())
            .map(|((sweep, id), j)| HeldBatch {
                sweep: sweep.clone(),
                id: id.clone(),
                seen: j.seen.clone(),
            })
            .collect()
    }

    fn lose(&self, sweep: &str, id: &str, stopped: bool) {
        if let Some(j) = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(sweep.to_string(), id.to_string()))
        {
            j.lost.send_replace(Some(stopped));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One request of a generation: slots of one cell (`base` and the bits of
/// `mask` above it) at one attempt of the protocol (`attempt` one-token
/// attempts failed before; at `max_attempts` it is the fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Req {
    base: u32,
    mask: u128,
    attempt: u32,
}

impl Req {
    fn slots(&self) -> Vec<u32> {
        (0..128u32)
            .filter(|i| self.mask >> i & 1 == 1)
            .map(|i| self.base + i)
            .collect()
    }

    /// `{tag hash}-s{base}-m{mask}-a{attempt}`: unique within a provider
    /// batch, at most 64 characters of `[a-zA-Z0-9_-]` (Anthropic's rule),
    /// and it carries the generation's tag, by which a lookup recognises a
    /// batch that has no name at the provider.
    fn custom_id(&self, short: &str) -> String {
        format!("{short}-s{}-m{:x}-a{}", self.base, self.mask, self.attempt)
    }

    fn parse(id: &str) -> Option<Req> {
        let mut parts = id.split('-').skip(1);
        let base = parts.next()?.strip_prefix('s')?.parse().ok()?;
        let mask = u128::from_str_radix(parts.next()?.strip_prefix('m')?, 16).ok()?;
        let attempt = parts.next()?.strip_prefix('a')?.parse().ok()?;
        (mask != 0).then_some(Req {
            base,
            mask,
            attempt,
        })
    }
}

/// The slots a batch's items ask.
fn slots_of(items: &[BatchItem]) -> Vec<u32> {
    items
        .iter()
        .filter_map(|i| Req::parse(&i.custom_id))
        .flat_map(|r| r.slots())
        .collect()
}

/// The requests asking `slots` at `attempt`: one per cell (slots sharing
/// `slot / cell`), split so none holds more than `per_request` samples or
/// spans more than 128 slots; one per slot when `per_request` is 1.
fn requests(slots: &[u32], cell: u32, per_request: u32, attempt: u32) -> Vec<Req> {
    let mut out: Vec<Req> = Vec::new();
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    for s in sorted {
        let joins = out.last().is_some_and(|r: &Req| {
            per_request > 1
                && r.base / cell.max(1) == s / cell.max(1)
                && s - r.base < 128
                && r.mask.count_ones() < per_request
        });
        match out.last_mut() {
            Some(r) if joins => r.mask |= 1 << (s - r.base),
            _ => out.push(Req {
                base: s,
                mask: 1,
                attempt,
            }),
        }
    }
    out
}

/// The 8-hex-digit form of a generation's tag carried by its custom ids.
fn short_tag(tag: &str) -> String {
    format!("{:08x}", fnv1a_parts(&[tag.as_bytes()]) as u32)
}

/// Gathers parked grants per unit and opens a batch for each unit once no
/// more arrive for the linger time (or it is full); returns when the
/// worker stops, handing back what is still parked.
pub(super) async fn collector<L: BatchLink>(
    shared: Arc<Shared<L>>,
    mut rx: mpsc::UnboundedReceiver<Parked>,
    held: Arc<Mutex<HashMap<String, usize>>>,
) {
    struct Pending {
        ctx: Arc<SweepCtx>,
        model: ModelSpec,
        leases: Vec<String>,
        slots: Vec<u32>,
        first: Instant,
        last: Instant,
    }
    let linger = shared.cfg.batch_linger;
    let longest = linger * 10;
    let mut pending: BTreeMap<UnitKey, Pending> = BTreeMap::new();
    let mut halt = shared.halt.subscribe();
    loop {
        let due = pending
            .values()
            .map(|p| (p.last + linger).min(p.first + longest))
            .min();
        let full: Option<UnitKey> = tokio::select! {
            p = rx.recv() => match p {
                None => break,
                Some(p) => {
                    let now = Instant::now();
                    // Full: as many requests as one provider batch takes.
                    let cap = max_requests(&shared, &p.model);
                    let per_cell = requests_per_cell(&shared, &p.ctx, &p.model, &p.unit);
                    let cell = p.ctx.def.spec.cell_size(&p.model, p.unit.mode).max(1) as usize;
                    let e = pending.entry(p.unit.clone()).or_insert_with(|| Pending {
                        ctx: p.ctx.clone(),
                        model: p.model.clone(),
                        leases: Vec::new(),
                        slots: Vec::new(),
                        first: now,
                        last: now,
                    });
                    e.leases.push(p.lease_id);
                    e.slots.extend(p.slots);
                    e.last = now;
                    (e.slots.len().div_ceil(cell) * per_cell >= cap).then_some(p.unit)
                }
            },
            _ = async {
                match due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => None,
            _ = halt.wait_for(|h| *h) => break,
        };
        let now = Instant::now();
        let ready: Vec<UnitKey> = pending
            .iter()
            .filter(|(k, p)| {
                Some(*k) == full.as_ref() || now >= (p.last + linger).min(p.first + longest)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for unit in ready {
            let Some(p) = pending.remove(&unit) else {
                continue;
            };
            let n = p.leases.len() as u64;
            open(&shared, &held, p.ctx, p.model, unit, p.leases, p.slots).await;
            shared.batch_parked.fetch_sub(n, Ordering::AcqRel);
        }
    }
    // Stopping: what is still parked goes back with its leases.
    let mut release = Vec::new();
    while let Ok(p) = rx.try_recv() {
        release.push(p.lease_id);
        shared.batch_parked.fetch_sub(1, Ordering::AcqRel);
    }
    for p in pending.into_values() {
        shared
            .batch_parked
            .fetch_sub(p.leases.len() as u64, Ordering::AcqRel);
        release.extend(p.leases);
    }
    if !release.is_empty() {
        {
            let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
            for id in &release {
                h.remove(id);
            }
        }
        let _ = shared
            .link
            .report(&shared.cfg.name, Vec::new(), release, None)
            .await;
    }
}

/// The provider's limits on one batch of `model`.
fn limits_of(model: &ModelSpec) -> api::Limits {
    match model.provider {
        ProviderKind::Anthropic => api::anthropic::LIMITS,
        ProviderKind::Gemini => api::gemini::LIMITS,
        _ => api::openai::LIMITS,
    }
}

/// The most requests one provider batch of `model` takes (the provider's
/// limit, or the worker's `--batch-max-requests`).
fn max_requests<L: BatchLink>(shared: &Shared<L>, model: &ModelSpec) -> usize {
    let cap = limits_of(model).max_items.max(1);
    shared
        .cfg
        .batch_max_requests
        .map_or(cap, |m| m.clamp(1, cap))
}

/// An upper bound of the bytes one request of `prompt` adds to a batch:
/// the prompt (escaped at most a tenth longer) and the body around it
/// (model, settings, custom id and the line's envelope, well under 1 KB).
fn request_bytes(prompt: &str) -> usize {
    prompt.len() + prompt.len() / 10 + 1024
}

/// Requests the first generation of a cell of `model` takes.
fn requests_per_cell<L: BatchLink>(
    shared: &Shared<L>,
    ctx: &SweepCtx,
    model: &ModelSpec,
    unit: &UnitKey,
) -> usize {
    let cell = ctx.def.spec.cell_size(model, unit.mode).max(1);
    cell.div_ceil(shared.samples_per_request(&unit.sweep, model)) as usize
}

/// Opens batches for parked slots, each within the provider's limit on
/// one batch, and starts their jobs.
async fn open<L: BatchLink>(
    shared: &Arc<Shared<L>>,
    held: &Mutex<HashMap<String, usize>>,
    ctx: Arc<SweepCtx>,
    model: ModelSpec,
    unit: UnitKey,
    leases: Vec<String>,
    mut slots: Vec<u32>,
) {
    slots.sort_unstable();
    let cell = ctx.def.spec.cell_size(&model, unit.mode).max(1);
    let per_cell = requests_per_cell(shared, &ctx, &model, &unit);
    let (max_items, max_bytes) = (max_requests(shared, &model), limits_of(&model).max_bytes);
    // Whole cells per batch, within the provider's count and size limits.
    let mut chunks: Vec<Vec<u32>> = Vec::new();
    let (mut requests, mut bytes) = (0usize, 0usize);
    for s in slots {
        let same_cell = chunks
            .last()
            .and_then(|c| c.last())
            .is_some_and(|l| l / cell == s / cell);
        if same_cell {
            if let Some(c) = chunks.last_mut() {
                c.push(s);
            }
            continue;
        }
        let cell_bytes = per_cell * request_bytes(&ctx.prompt(unit.mode, s));
        let fits = requests + per_cell <= max_items && bytes + cell_bytes <= max_bytes;
        match chunks.last_mut() {
            Some(c) if fits => {
                c.push(s);
                requests += per_cell;
                bytes += cell_bytes;
            }
            _ => {
                chunks.push(vec![s]);
                requests = per_cell;
                bytes = cell_bytes;
            }
        }
    }
    let mut refused = false;
    for chunk in chunks {
        let rec = retry(shared, || {
            shared
                .link
                .open_batch(&shared.cfg.name, leases.clone(), unit.clone(), chunk.clone())
        })
        .await
        .inspect_err(|e| {
            tracing::warn!(model = %unit.model, "cannot open a batch; its slots go back with their leases: {e}")
        })
        .ok();
        match rec {
            Some(rec) if !rec.slots.is_empty() => {
                tracing::info!(model = %unit.model, batch = %rec.id, slots = rec.slots.len(), "batch opened");
                start_job(shared, ctx.clone(), model.clone(), rec);
            }
            Some(_) => {}
            None => {
                refused = true;
                break;
            }
        }
    }
    {
        let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
        for id in &leases {
            h.remove(id);
        }
    }
    // The opens emptied the leases (their slots are the batches' now, or
    // were recorded or lost meanwhile); after a refusal what is left of
    // them goes back.
    if refused {
        let _ = shared
            .link
            .report(&shared.cfg.name, Vec::new(), leases, None)
            .await;
    }
}

fn start_job<L: BatchLink>(
    shared: &Arc<Shared<L>>,
    ctx: Arc<SweepCtx>,
    model: ModelSpec,
    rec: BatchRecord,
) {
    let Some(lost) = shared.batch_jobs.start(&rec) else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        match run_job(&shared, &ctx, &model, &rec, lost).await {
            Ok(()) => {}
            Err(e @ (JobStop::Stopping | JobStop::Taken | JobStop::Cancelled)) => {
                tracing::info!(model = %rec.unit.model, batch = %rec.id, "the batch job stopped: {e}")
            }
            Err(e) => {
                tracing::warn!(model = %rec.unit.model, batch = %rec.id, "the batch job stopped: {e}")
            }
        }
        shared.batch_jobs.end(&rec);
    });
}

/// Extends the records the jobs hold, acts on those lost, and claims the
/// records of workers that stopped extending theirs.
pub(super) async fn keeper<L: BatchLink>(shared: Arc<Shared<L>>) {
    let mut tick = tokio::time::interval(shared.cfg.extend_every);
    loop {
        tick.tick().await;
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let held = shared.batch_jobs.held();
        if !held.is_empty() {
            match shared.link.extend_batches(&shared.cfg.name, held).await {
                Ok(lost) => {
                    for b in lost {
                        shared.batch_jobs.lose(&b.sweep, &b.id, b.stopped);
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = %shared.cfg.name, "extending batches failed: {e}")
                }
            }
        }
        match shared.link.claim_batches(&shared.cfg.name, 16).await {
            Ok(claimed) => {
                for rec in claimed {
                    tracing::info!(model = %rec.unit.model, batch = %rec.id, "took over a batch whose worker stopped");
                    match sweep_ctx(&shared, &rec.unit.sweep).await {
                        Ok(ctx) => {
                            match ctx.def.spec.models.iter().find(|m| m.key == rec.unit.model) {
                                Some(m) => {
                                    let m = m.clone();
                                    start_job(&shared, ctx, m, rec);
                                }
                                None => {
                                    tracing::warn!(batch = %rec.id, "the sweep has no model {:?}", rec.unit.model)
                                }
                            }
                        }
                        Err(e) => tracing::warn!(batch = %rec.id, "cannot work on the sweep: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!(worker = %shared.cfg.name, "claiming batches failed: {e}"),
        }
    }
}

/// Why a job gave up its record without closing it.
#[derive(Debug, thiserror::Error)]
enum JobStop {
    #[error("the worker is stopping; another worker or the next run takes the batch over")]
    Stopping,
    #[error("another worker took the batch over")]
    Taken,
    #[error("its sweep no longer runs; the provider's batch was cancelled")]
    Cancelled,
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("{0}")]
    Broken(String),
}

/// The batch's record says what it is on; these are the worker's own
/// steps from there.
struct Run<'a, L: BatchLink> {
    shared: &'a Arc<Shared<L>>,
    ctx: &'a SweepCtx,
    model: &'a ModelSpec,
    rec: &'a BatchRecord,
    client: Box<dyn BatchClient>,
    lost: watch::Receiver<Option<bool>>,
}

async fn run_job<L: BatchLink>(
    shared: &Arc<Shared<L>>,
    ctx: &SweepCtx,
    model: &ModelSpec,
    rec: &BatchRecord,
    lost: watch::Receiver<Option<bool>>,
) -> Result<(), JobStop> {
    let holder = Holder { shared, model, rec };
    let client = match api::build(model) {
        Ok(c) => c,
        // No batch API here (a missing key, say): refused for good.
        Err(e) => {
            holder
                .fail(&rec.slots, &format!("worker {}: {e}", shared.cfg.name))
                .await?;
            return holder.close().await;
        }
    };
    shared.cfg.accounting.register(&ctx.def.spec.name, model);
    let mut run = Run {
        shared,
        ctx,
        model,
        rec,
        client,
        lost,
    };
    let state = match ProviderState::parse(rec.provider_id.as_deref()) {
        Ok(s) => s,
        // Not written by a worker: nothing to poll or look up. Its slots go
        // back to the queue rather than stay with the record for ever.
        Err(e) => {
            tracing::warn!(batch = %rec.id, "{e}; closing the record, its slots go back to the queue");
            holder.close().await?;
            return Err(JobStop::Broken(e));
        }
    };
    // Where the record stands: nothing submitted yet, a generation about
    // to be submitted (look it up first), or one the provider accepted.
    let (mut generation, mut reqs, mut submitted, mut look_up_from) = match state {
        None => (0, run.first_requests(), None, None),
        Some(st) => {
            let reqs: Vec<Req> = st.items.iter().filter_map(|i| Req::parse(i)).collect();
            if reqs.len() != st.items.len() {
                return Err(JobStop::Broken(format!(
                    "batch {}: its stored requests are not this worker's custom ids",
                    rec.id
                )));
            }
            let from = st.submitted.is_none().then_some(st.at_ms);
            (st.generation, reqs, st.submitted, from)
        }
    };
    let cap = max_requests(shared, model);
    while !reqs.is_empty() {
        // A generation holds what one provider batch may; the rest waits
        // for the next (only follow-ups split into single samples can be
        // larger than the first).
        let later = reqs.split_off(reqs.len().min(cap));
        let tag = ProviderState::tag(&rec.id, generation);
        let items = run.items(&tag, &reqs);
        let batch = match submitted.take() {
            Some(b) => b,
            None => {
                run.submit(generation, &tag, &items, look_up_from.take())
                    .await?
            }
        };
        let results = match run.wait(&batch, &items).await? {
            Some(r) => r,
            // The provider failed the batch for its queue's limit (nothing
            // billed): the same requests go again as the next generation.
            None => {
                reqs.extend(later);
                generation += 1;
                continue;
            }
        };
        reqs = run.record(&reqs, &items, results).await?;
        reqs.extend(later);
        reqs.sort();
        generation += 1;
    }
    holder.close().await
}

impl<L: BatchLink> Run<'_, L> {
    fn holder(&self) -> Holder<'_, L> {
        Holder {
            shared: self.shared,
            model: self.model,
            rec: self.rec,
        }
    }

    fn stopping(&self) -> Result<(), JobStop> {
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(JobStop::Stopping);
        }
        match *self.lost.borrow() {
            Some(true) => Err(JobStop::Cancelled),
            Some(false) => Err(JobStop::Taken),
            None => Ok(()),
        }
    }

    /// Samples one request may carry (1 once the provider refused `n`).
    fn per_request(&self) -> u32 {
        self.shared
            .samples_per_request(&self.rec.unit.sweep, self.model)
    }

    fn cell(&self) -> u32 {
        self.ctx
            .def
            .spec
            .cell_size(self.model, self.rec.unit.mode)
            .max(1)
    }

    fn first_requests(&self) -> Vec<Req> {
        requests(&self.rec.slots, self.cell(), self.per_request(), 0)
    }

    /// The provider requests of `reqs`, named for generation `tag`.
    fn items(&self, tag: &str, reqs: &[Req]) -> Vec<BatchItem> {
        let spec = &self.ctx.def.spec;
        let unit = &self.rec.unit;
        let short = short_tag(tag);
        reqs.iter()
            .map(|r| {
                let prompt = self.ctx.prompt(unit.mode, r.base);
                let fallback = r.attempt >= spec.max_attempts;
                let seed = slot_seed(spec.seed.unwrap_or(0), &unit.model, unit.mode, r.base)
                    .wrapping_add(r.attempt as u64);
                BatchItem {
                    custom_id: r.custom_id(&short),
                    req: CompletionRequest {
                        prompt,
                        max_tokens: if fallback {
                            self.model
                                .fallback_max_tokens
                                .unwrap_or(DEFAULT_FALLBACK_MAX_TOKENS)
                        } else {
                            1
                        },
                        temperature: self.model.sampling_temperature(spec.temperature),
                        seed: Some(seed),
                        top_logprobs: None,
                    },
                    n: r.mask.count_ones(),
                }
            })
            .collect()
    }

    /// Stores the generation's requests, then submits it (or finds it at
    /// the provider, when a worker before this one may have submitted it
    /// after storing them), then stores the provider's batch.
    async fn submit(
        &mut self,
        generation: u32,
        tag: &str,
        items: &[BatchItem],
        look_up_from: Option<u64>,
    ) -> Result<api::Submitted, JobStop> {
        let at_ms = match look_up_from {
            Some(at) => at,
            None => {
                let at = now_ms();
                let intent = ProviderState {
                    generation,
                    items: items.iter().map(|i| i.custom_id.clone()).collect(),
                    submitted: None,
                    at_ms: at,
                };
                self.store_state(&intent).await?;
                at
            }
        };
        let mut backoff = Duration::from_millis(250);
        let mut look = look_up_from.is_some();
        let batch = loop {
            self.stopping()?;
            let attempt = if look {
                match self.client.find(tag, items, at_ms).await {
                    Ok(Found::Batch(b)) => {
                        tracing::info!(batch = %self.rec.id, provider_batch = %b.id, "found the batch at the provider; polling it instead of submitting it again");
                        Ok(b)
                    }
                    Ok(Found::Absent) => {
                        look = false;
                        continue;
                    }
                    Ok(Found::NotYet) => Err(ProviderError::Retryable(
                        "the provider cannot tell yet whether it holds the batch".into(),
                    )),
                    Err(e) => Err(e),
                }
            } else {
                self.client.submit(tag, items).await
            };
            match attempt {
                Ok(b) => break b,
                Err(ProviderError::Fatal(m)) => {
                    let why = format!("worker {}: {m}", self.shared.cfg.name);
                    self.holder().fail(&slots_of(items), &why).await?;
                    self.holder().close().await?;
                    return Err(JobStop::Broken(why));
                }
                Err(e) => {
                    tracing::warn!(batch = %self.rec.id, "submitting the batch failed (will retry): {e}");
                    // A submission that failed in transit may still have
                    // been accepted: look before sending it again.
                    look = !matches!(e, ProviderError::RateLimited { .. });
                    self.pause(backoff).await?;
                    backoff = (backoff * 2).min(self.shared.cfg.batch_poll);
                }
            }
        };
        let accepted = ProviderState {
            generation,
            items: items.iter().map(|i| i.custom_id.clone()).collect(),
            submitted: Some(batch.clone()),
            at_ms,
        };
        self.store_state(&accepted).await?;
        Ok(batch)
    }

    async fn store_state(&self, state: &ProviderState) -> Result<(), JobStop> {
        let json = state.to_json();
        let open = retry(self.shared, || {
            self.shared
                .link
                .batch_submitted(&self.rec.unit.sweep, &self.rec.id, &json)
        })
        .await?;
        if open {
            Ok(())
        } else {
            Err(JobStop::Taken)
        }
    }

    /// Sleeps, unless the job must stop.
    async fn pause(&mut self, d: Duration) -> Result<(), JobStop> {
        let mut halt = self.shared.halt.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = halt.wait_for(|h| *h) => {}
            _ = self.lost.changed() => {}
        }
        self.stopping()
    }

    /// Polls until the batch ended and reads its results; `None` when the
    /// provider failed it for its queue's limit (submit it again later).
    async fn wait(
        &mut self,
        batch: &api::Submitted,
        items: &[BatchItem],
    ) -> Result<Option<HashMap<String, ItemResult>>, JobStop> {
        let mut every = Duration::from_millis(200);
        loop {
            if let Err(e) = self.stopping() {
                if matches!(e, JobStop::Cancelled) {
                    match self.client.cancel(batch).await {
                        Ok(()) => {
                            tracing::info!(batch = %self.rec.id, provider_batch = %batch.id, "cancelled the provider's batch (its sweep was cancelled)")
                        }
                        Err(c) => {
                            tracing::warn!(batch = %self.rec.id, provider_batch = %batch.id, "cancelling the provider's batch failed: {c}")
                        }
                    }
                }
                return Err(e);
            }
            match self.client.poll(batch).await {
                Ok(p) => {
                    let mut seen = format!(
                        "{}, {} answered, {} failed, {} pending",
                        p.status, p.succeeded, p.failed, p.pending
                    );
                    if let Some(t) = p.expires_at.filter(|_| !p.ended) {
                        seen.push_str(&format!(", ends by {}", unix_time(t)));
                    }
                    self.shared.batch_jobs.saw(self.rec, seen);
                    if p.ended {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(batch = %self.rec.id, "polling the batch failed (will retry): {e}")
                }
            }
            let _ = self.pause(every).await;
            every = (every * 2).min(self.shared.cfg.batch_poll);
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.client.results(batch, items).await {
                Ok(r) => return Ok(Some(r)),
                Err(ProviderError::RateLimited { .. }) => {
                    tracing::warn!(batch = %self.rec.id, "the provider failed the batch for its queue's token limit; it goes again shortly");
                    self.pause(self.shared.cfg.batch_poll).await?;
                    return Ok(None);
                }
                // The provider failed the whole batch for good: each of its
                // requests is refused, as a refused line would be.
                Err(ProviderError::Fatal(m)) => {
                    return Ok(Some(
                        items
                            .iter()
                            .map(|i| {
                                let refused = ProviderError::Fatal(m.clone());
                                (i.custom_id.clone(), ItemResult::Failed(refused))
                            })
                            .collect(),
                    ))
                }
                Err(e) => {
                    tracing::warn!(batch = %self.rec.id, "reading the batch's results failed (will retry): {e}");
                    self.pause(backoff).await?;
                    backoff = (backoff * 2).min(self.shared.cfg.batch_poll);
                }
            }
        }
    }

    /// Applies the protocol to a generation's results: reports the samples
    /// it rated, returns the requests of the next generation (the samples
    /// to ask again, or the fallback). Failed, expired and cancelled
    /// requests leave their slots unrecorded: closing the record requeues
    /// them.
    async fn record(
        &self,
        reqs: &[Req],
        items: &[BatchItem],
        mut results: HashMap<String, ItemResult>,
    ) -> Result<Vec<Req>, JobStop> {
        let spec = &self.ctx.def.spec;
        let max_attempts = spec.max_attempts;
        let mut reports = Vec::new();
        let mut again: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut single: Vec<Req> = Vec::new();
        let mut unanswered = 0usize;
        let mut fatal: Vec<(u32, String)> = Vec::new();
        for (r, item) in reqs.iter().zip(items) {
            let slots = r.slots();
            match results.remove(&item.custom_id) {
                Some(ItemResult::Answered(samples)) => {
                    let usage = samples.iter().fold(Usage::default(), |u, c| Usage {
                        input_tokens: u.input_tokens + c.usage.input_tokens,
                        output_tokens: u.output_tokens + c.usage.output_tokens,
                    });
                    self.shared.cfg.accounting.record_batch(
                        &self.ctx.def.spec.name,
                        &self.model.key,
                        usage,
                    );
                    self.shared
                        .stats
                        .answered
                        .fetch_add(samples.len().min(slots.len()) as u64, Ordering::Relaxed);
                    let mut texts = samples.into_iter().map(|c| c.text);
                    for slot in slots {
                        let text = texts.next();
                        let rec = match (&text, r.attempt >= max_attempts) {
                            (None, _) => None,
                            (Some(t), false) => {
                                one_token_record(&self.ctx.instrument, t, r.attempt)
                            }
                            (Some(_), true) => Some(fallback_record(
                                &self.ctx.instrument,
                                text.clone().unwrap_or_default(),
                                r.attempt,
                                String::new(),
                            )),
                        };
                        match rec {
                            Some(rec) => reports.push(
                                self.holder()
                                    .report(slot, Outcome::Record(SlotRecord::Sample(rec))),
                            ),
                            // Without a digit (or a sample short): the next attempt.
                            None => again.entry(r.attempt + 1).or_default().push(slot),
                        }
                    }
                }
                Some(ItemResult::Failed(e))
                    if r.mask.count_ones() > 1 && refuses_multi_sample(&e) =>
                {
                    self.shared.refused_multi_sample(&self.holder().key());
                    single.extend(requests(&slots, 1, 1, r.attempt));
                }
                Some(ItemResult::Failed(ProviderError::Fatal(m))) => {
                    fatal.extend(slots.into_iter().map(|s| (s, m.clone())));
                }
                _ => unanswered += slots.len(),
            }
        }
        if unanswered > 0 {
            tracing::warn!(batch = %self.rec.id, slots = unanswered, "requests of the batch failed, expired or were cancelled; their slots go back to the queue when it closes");
        }
        if let Some((_, m)) = fatal.first() {
            self.shared.refused_for_good(&self.holder().key(), m);
            let name = &self.shared.cfg.name;
            reports.extend(fatal.iter().map(|(s, m)| {
                self.holder()
                    .report(*s, Outcome::Fatal(format!("worker {name}: {m}")))
            }));
        }
        self.holder().send(reports).await?;
        let per = self.per_request();
        let mut next = single;
        for (attempt, slots) in again {
            next.extend(requests(
                &slots,
                self.cell(),
                per,
                attempt.min(max_attempts),
            ));
        }
        next.sort();
        Ok(next)
    }
}

/// A job's dealings with its record at the coordinator, which need no
/// provider: reporting results, stopping the model, closing.
struct Holder<'a, L: BatchLink> {
    shared: &'a Arc<Shared<L>>,
    model: &'a ModelSpec,
    rec: &'a BatchRecord,
}

impl<L: BatchLink> Holder<'_, L> {
    /// The key under which the model's refusals are remembered.
    fn key(&self) -> super::ModelKey {
        (self.rec.unit.sweep.clone(), self.model.key.clone())
    }

    fn report(&self, slot: u32, outcome: Outcome) -> SlotReport {
        SlotReport {
            lease_id: None,
            unit: self.rec.unit.clone(),
            slot,
            outcome,
        }
    }

    /// Reports results without a lease, retrying until the coordinator
    /// takes them (recording is idempotent).
    async fn send(&self, reports: Vec<SlotReport>) -> Result<(), JobStop> {
        for chunk in reports.chunks(self.shared.cfg.report_batch.max(1)) {
            retry(self.shared, || {
                self.shared
                    .link
                    .report(&self.shared.cfg.name, chunk.to_vec(), Vec::new(), None)
            })
            .await?;
            self.shared
                .stats
                .reported
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Reports a fatal refusal for `slots` (the model stops).
    async fn fail(&self, slots: &[u32], why: &str) -> Result<(), JobStop> {
        self.shared.refused_for_good(&self.key(), why);
        self.send(
            slots
                .iter()
                .map(|s| self.report(*s, Outcome::Fatal(why.to_string())))
                .collect(),
        )
        .await
    }

    async fn close(&self) -> Result<(), JobStop> {
        let requeued = retry(self.shared, || {
            self.shared
                .link
                .close_batch(&self.rec.unit.sweep, &self.rec.id)
        })
        .await?;
        tracing::info!(model = %self.model.key, batch = %self.rec.id, requeued, "batch closed");
        Ok(())
    }
}

/// Calls the coordinator until it answers (or the worker stops).
async fn retry<L: BatchLink, T, F, Fut>(shared: &Shared<L>, mut call: F) -> Result<T, JobStop>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LinkError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(LinkError::Unavailable(m)) => {
                if shared.stopping.load(Ordering::Acquire) {
                    return Err(JobStop::Stopping);
                }
                tracing::warn!(worker = %shared.cfg.name, "the coordinator did not answer (will retry): {m}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(JobStop::Link(e)),
        }
    }
}

fn unix_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_round_trip_within_anthropic_rules() {
        let r = Req {
            base: 4_000_000_000,
            mask: u128::MAX,
            attempt: 10,
        };
        let id = r.custom_id(&short_tag("msb-18c3f2a9b0d-ffff-g12"));
        assert!(id.len() <= 64, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert_eq!(Req::parse(&id), Some(r));
        assert_eq!(Req::parse("abc-s1-m0-a0"), None, "no slot");
        assert_eq!(Req::parse("abc-x"), None);
    }

    #[test]
    fn a_lost_job_blocks_a_second_job_on_its_record_until_it_ends() {
        let rec = BatchRecord {
            id: "msb-1-2".into(),
            unit: UnitKey {
                sweep: "s".into(),
                model: "m".into(),
                mode: moralsweep_common::Mode::Persona,
            },
            slots: vec![0, 1],
            provider_id: None,
            worker: "w".into(),
            deadline_ms: 0,
            created_ms: 0,
        };
        let jobs = Jobs::default();
        let lost = jobs.start(&rec).expect("a first job starts");
        assert_eq!(jobs.held().len(), 1);
        jobs.lose("s", "msb-1-2", false);
        assert_eq!(*lost.borrow(), Some(false), "the job is told");
        assert!(jobs.held().is_empty(), "a lost record is not extended");
        assert!(
            jobs.start(&rec).is_none(),
            "no second job while it winds down"
        );
        jobs.end(&rec);
        assert!(jobs.start(&rec).is_some(), "a later claim starts a job");
    }

    #[test]
    fn requests_group_cells_and_respect_the_cap() {
        // Two cells of 10 (slots 0..10 and 10..20), a few slots missing.
        let slots: Vec<u32> = (0..20).filter(|s| *s != 3 && *s != 15).collect();
        let reqs = requests(&slots, 10, 10, 0);
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            reqs[0].slots(),
            (0..10).filter(|s| *s != 3).collect::<Vec<_>>()
        );
        assert_eq!(
            reqs[1].slots(),
            (10..20).filter(|s| *s != 15).collect::<Vec<_>>()
        );
        // A cap of 4 samples per request splits each cell.
        let capped = requests(&slots, 10, 4, 2);
        assert_eq!(capped.iter().map(|r| r.mask.count_ones()).sum::<u32>(), 18);
        assert!(capped
            .iter()
            .all(|r| r.mask.count_ones() <= 4 && r.attempt == 2));
        // One sample per request: one request per slot.
        assert_eq!(requests(&slots, 10, 1, 0).len(), 18);
    }
}
