//! The simulator's decisions, independent of any wire format: for one
//! request, whether the key's rate limits admit it, whether a fault is
//! injected (decided before any recorded rating is touched, so a fault never
//! consumes one), and otherwise the answer: a rating recalled from the
//! recorded data of the cell the prompt asks about, or from a seeded
//! generator, rendered as text and first-token logprobs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::faults::Fault;
use crate::limits::{KeyLimits, RateInfo, Refusal};
use crate::replay::{CellId, PromptIndex, Replay, ReplayError};
use crate::stats::{KeyStats, Report};
use moralsweep_common::hash::fnv1a_parts;
use moralsweep_common::tokens::Tokenizer;

pub use crate::config::SimConfig;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("--replay needs --personas: the persona file the ratings were collected with (cells are found by the persona text in each prompt)")]
    PersonasNeeded,
    #[error("cannot listen on {addr}: {error}")]
    Listen { addr: String, error: std::io::Error },
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// One request, as every API states it.
#[derive(Debug, Clone)]
pub struct Query {
    /// The model the request names: the replay key.
    pub key: String,
    /// The user message.
    pub prompt: String,
    pub max_tokens: u32,
    /// The temperature the request sent; `None` when it sent none (the
    /// provider's default, [`DEFAULT_TEMPERATURE`], applies).
    pub temperature: Option<f64>,
    pub seed: Option<u64>,
    /// First-token top logprobs asked for.
    pub top_logprobs: Option<u32>,
    /// A fault the request asks for itself (the `x-sim-fault` header), for
    /// tests that need one particular failure.
    pub forced_fault: Option<Fault>,
    /// How the API counts the prompt's tokens (OpenAI's BPE for OpenAI
    /// models, the documented estimate otherwise).
    pub tokenizer: Tokenizer,
    /// The W3C `traceparent` header the request carried.
    pub traceparent: Option<String>,
    /// Independent samples asked for (OpenAI `n`, Gemini `candidateCount`).
    pub n: u32,
}

/// The temperature the real APIs sample at when a request sends none.
pub const DEFAULT_TEMPERATURE: f64 = 1.0;

impl Query {
    /// A request with no temperature, seed, logprobs, fault or trace, whose
    /// tokens are counted with `tokenizer`.
    pub fn new(key: String, prompt: String, max_tokens: u32, tokenizer: Tokenizer) -> Query {
        Query {
            key,
            prompt,
            max_tokens,
            temperature: None,
            seed: None,
            top_logprobs: None,
            forced_fault: None,
            tokenizer,
            traceparent: None,
            n: 1,
        }
    }

    /// The query of choice `i` of a multi-sample request: its own seed
    /// (choice 0 keeps the request's), so seeded choices are distinct draws
    /// and the same request again draws the same ones. The further choices'
    /// seeds are hashed, not offset: in deal mode a seed near a dealt one
    /// is that slot asking again, and a client's next attempt (seed + 1)
    /// must not find the cards of the previous attempt's further choices.
    fn choice(&self, i: u32) -> Query {
        let mix = |s: u64| {
            let mut h = s ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            h ^ (h >> 31)
        };
        Query {
            seed: self.seed.map(|s| if i == 0 { s } else { mix(s) }),
            n: 1,
            ..self.clone()
        }
    }

    /// Input tokens of the request, as the API reports them.
    pub fn input_tokens(&self) -> u64 {
        self.tokenizer.prompt_tokens(&self.prompt)
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    /// The first token with its logprob.
    pub first_token: (String, f64),
    /// The first token's top alternatives, when asked for.
    pub top: Option<Vec<(String, f64)>>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// True when the output allowance cut the text short.
    pub truncated: bool,
    /// The further choices of a multi-sample request (choices 1..n, each
    /// with its own text and output tokens; `input_tokens` of the request
    /// is billed once, on the first).
    pub more: Vec<Answer>,
}

impl Answer {
    /// Every choice of the answer, first to last.
    pub fn choices(&self) -> impl Iterator<Item = &Answer> {
        std::iter::once(self).chain(self.more.iter())
    }

    /// Output tokens of every choice, as the providers bill them.
    pub fn total_output_tokens(&self) -> u64 {
        self.choices().map(|a| a.output_tokens).sum()
    }
}

/// What happens to a request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// An answer, after `delay`.
    Answer {
        answer: Answer,
        delay: Duration,
        info: RateInfo,
    },
    /// An injected fault that carries no answer (500, 503, timeout, drop,
    /// malformed JSON, 429).
    Fault { fault: Fault, info: RateInfo },
    /// Over the key's rate limit.
    Refused(Refusal),
    /// No data for this model key.
    UnknownModel,
}

/// The shared state of a running simulator.
pub struct Sim {
    pub config: SimConfig,
    replay: Option<Replay>,
    index: PromptIndex,
    start: Instant,
    rng: Mutex<ChaCha8Rng>,
    limits: Mutex<HashMap<String, KeyLimits>>,
    stats: Mutex<BTreeMap<String, KeyStats>>,
    ids: AtomicU64,
    /// The provider batches and files created (see [`crate::batch`]).
    pub batches: crate::batch::store::Store,
}

const RATING_WORDS: &[&str] = &[
    "-", "speaking", "as", "this", "persona,", "that", "is", "my", "honest", "rating.",
];
const REFUSAL_WORDS: &[&str] = &[
    "As", "a", "persona", "in", "this", "role", "I", "would", "rather", "not", "put", "a",
    "number", "on", "it.",
];
const FILLERS: &[&str] = &[
    "As",
    "I",
    "The",
    " ",
    "**",
    "Rating",
    "My",
    "In",
    "This",
    "Based",
    "Given",
    "It",
    "While",
    "From",
    "For",
    "Speaking",
    "Answer",
    "Considering",
    "Well",
    "Honestly",
];

/// The first `max_tokens` words of `words`, and whether that cut them.
fn truncate(words: &[&str], max_tokens: u32) -> (String, u64, bool) {
    let n = (max_tokens.max(1) as usize).min(words.len());
    (words[..n].join(" "), n as u64, n < words.len())
}

impl Sim {
    /// Loads the replay data (if any) and sets up an idle simulator.
    pub fn new(config: SimConfig) -> Result<Sim, SimError> {
        let personas = match &config.personas {
            Some(p) => moralsweep_common::personas::load_personas(p).map_err(ReplayError::from)?,
            None => Vec::new(),
        };
        let replay = match &config.replay {
            Some(dir) => {
                if config.personas.is_none() {
                    return Err(SimError::PersonasNeeded);
                }
                Some(Replay::load(
                    dir,
                    personas.len(),
                    config.replay_mode,
                    config.seed,
                )?)
            }
            None => None,
        };
        Ok(Sim {
            index: PromptIndex::new(&personas),
            replay,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed)),
            config,
            start: Instant::now(),
            limits: Mutex::new(HashMap::new()),
            stats: Mutex::new(BTreeMap::new()),
            ids: AtomicU64::new(1),
            batches: crate::batch::store::Store::default(),
        })
    }

    /// Since the simulator started.
    pub fn uptime(&self) -> Duration {
        self.start.elapsed()
    }

    /// A fresh id for a response object.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// The model keys with recorded data.
    pub fn replay_keys(&self) -> Vec<String> {
        self.replay.as_ref().map(|r| r.keys()).unwrap_or_default()
    }

    /// Whether a request carrying `given` as its key may proceed.
    pub fn key_ok(&self, given: Option<&str>) -> bool {
        match &self.config.api_key {
            None => true,
            Some(k) => given == Some(k.as_str()),
        }
    }

    fn uniform(&self) -> (f64, f64) {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        (rng.random::<f64>(), rng.random::<f64>())
    }

    fn with_stats<T>(&self, key: &str, f: impl FnOnce(&mut KeyStats) -> T) -> T {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        match s.get_mut(key) {
            Some(k) => f(k),
            None => f(s.entry(key.to_string()).or_default()),
        }
    }

    /// The stats document of `GET /_sim/stats`.
    pub fn report(&self) -> Report {
        let batches = self.batches.report();
        let s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        Report::new(self.uptime(), &s, batches)
    }

    /// Counts one token-counting request of `key`.
    pub fn counted(&self, key: &str) {
        self.with_stats(key, |s| s.token_counts += 1);
    }

    /// Notes the output tokens of an answered batch line of `key`.
    pub fn batch_output(&self, key: &str, output_tokens: u64) {
        self.with_stats(key, |s| s.batch_output_tokens += output_tokens);
    }

    /// Forgets the stats (not the rate-limit windows, the decks or the
    /// batches themselves).
    pub fn reset_stats(&self) {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.batches.reset_counters();
    }

    /// Whether the simulator answers model key `key` (it has recorded data
    /// for it, generates unknown keys, or replays nothing).
    pub fn knows(&self, key: &str) -> bool {
        match &self.replay {
            Some(r) => r.knows(key) || self.config.generate_unknown,
            None => true,
        }
    }

    /// Decides what happens to one request.
    pub fn decide(&self, q: &Query) -> Outcome {
        if !self.knows(&q.key) {
            return Outcome::UnknownModel;
        }
        let now = self.uptime();
        self.with_stats(&q.key, |s| {
            s.received(now);
            s.request_shape(q.temperature.is_some(), q.traceparent.as_deref());
        });
        let info = match self.admit(q, now) {
            Ok(info) => info,
            Err(refusal) => return Outcome::Refused(refusal),
        };
        self.decide_admitted(q, info)
    }

    /// Decides one line of a provider batch: answered by the same engine
    /// as an interactive request (replay, deal, faults, `n`), but outside
    /// the interactive rate limits, as the providers queue batches apart,
    /// and counted as a batch line rather than a request.
    pub fn decide_batch_line(&self, q: &Query) -> Outcome {
        if !self.knows(&q.key) {
            return Outcome::UnknownModel;
        }
        self.with_stats(&q.key, |s| {
            s.batch_line(q.input_tokens());
            s.request_shape(q.temperature.is_some(), q.traceparent.as_deref());
        });
        self.decide_admitted(q, RateInfo::default())
    }

    /// Whether the key's rate limits admit a request now.
    fn admit(&self, q: &Query, now: Duration) -> Result<RateInfo, Refusal> {
        let input_tokens = q.input_tokens();
        let admitted = {
            let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
            let kl = limits.entry(q.key.clone()).or_insert_with(|| {
                let (rpm, tpm) = self
                    .config
                    .key_limits
                    .get(&q.key)
                    .copied()
                    .unwrap_or((self.config.rpm, self.config.tpm));
                KeyLimits::new(rpm, tpm)
            });
            kl.admit(now, input_tokens + q.max_tokens as u64 * q.n.max(1) as u64)
        };
        match admitted {
            Ok(info) => {
                self.with_stats(&q.key, |s| s.admitted(now, input_tokens));
                Ok(info)
            }
            Err(refusal) => {
                self.with_stats(&q.key, |s| s.rate_limited += 1);
                Err(refusal)
            }
        }
    }

    /// What happens to a request past the rate limits: a fault, or the
    /// answer of each of its choices.
    fn decide_admitted(&self, q: &Query, info: RateInfo) -> Outcome {
        // The fault is decided before any rating is recalled.
        let (u, v) = self.uniform();
        let fault = match q.forced_fault {
            Some(f) => Some(f),
            None if self.config.faults_one_token_only && q.max_tokens > 1 => None,
            None => self.config.faults.decide(u, v),
        };
        if let Some(f) = fault {
            if !matches!(f, Fault::NonDigit | Fault::Empty | Fault::Slow) {
                self.with_stats(&q.key, |s| s.fault(f));
                return Outcome::Fault { fault: f, info };
            }
        }
        let mut out = self.answer_choice(q, fault, info);
        if q.n > 1 {
            if let Outcome::Answer { answer, .. } = &mut out {
                for i in 1..q.n {
                    // Each further choice draws its own content fault
                    // (non-digit or empty); request-level faults were
                    // decided above, once.
                    let (u, v) = self.uniform();
                    let f = match self.config.faults_one_token_only && q.max_tokens > 1 {
                        true => None,
                        false => self
                            .config
                            .faults
                            .decide(u, v)
                            .filter(|f| matches!(f, Fault::NonDigit | Fault::Empty)),
                    };
                    if let Outcome::Answer { answer: a, .. } =
                        self.answer_choice(&q.choice(i), f, info)
                    {
                        answer.more.push(a);
                    }
                }
            }
        }
        out
    }

    /// One choice's answer, given its content fault (non-digit, empty,
    /// slow) if any.
    fn answer_choice(&self, q: &Query, fault: Option<Fault>, info: RateInfo) -> Outcome {
        if let Some(req) = crate::em::classify(&q.prompt) {
            return self.answer_em(q, req, fault, info);
        }
        if let Some(f) = fault {
            self.with_stats(&q.key, |s| s.fault(f));
            match f {
                Fault::NonDigit => {
                    let (text, n, truncated) = truncate(REFUSAL_WORDS, q.max_tokens);
                    // The sampled token is not a digit, but the top logprobs
                    // still show the model's distribution over the answers,
                    // as a real API's do.
                    let distribution = q.top_logprobs.is_some().then(|| self.distribution_of(q));
                    return self.answer_text(q, text, n, truncated, distribution, info);
                }
                Fault::Empty => {
                    return self.answer_text(q, String::new(), 0, false, None, info);
                }
                Fault::Slow => {}
                other => return Outcome::Fault { fault: other, info },
            }
        }
        let (rating, distribution) = self.rate(q);
        let (text, n, truncated) = if q.max_tokens <= 1 {
            (rating.to_string(), 1, false)
        } else {
            let (rest, n, truncated) = truncate(RATING_WORDS, q.max_tokens - 1);
            (format!("{rating} {rest}"), n + 1, truncated)
        };
        let mut out = self.answer_text(q, text, n, truncated, Some(distribution), info);
        if let (Some(Fault::Slow), Outcome::Answer { delay, .. }) = (fault, &mut out) {
            *delay += self.config.slow;
        }
        out
    }

    /// A free-form answer or a judge's reply (`crate::em`); of the content
    /// faults only `empty` (an empty text) and `slow` apply.
    fn answer_em(
        &self,
        q: &Query,
        req: crate::em::EmRequest,
        fault: Option<Fault>,
        info: RateInfo,
    ) -> Outcome {
        if let Some(f) = fault {
            self.with_stats(&q.key, |s| s.fault(f));
        }
        let (u, v) = match q.seed {
            Some(seed) => crate::em::draws(self.config.seed, &q.key, &q.prompt, seed),
            None => self.uniform(),
        };
        self.with_stats(&q.key, |s| match req {
            crate::em::EmRequest::Answer(_) => s.em_answers += 1,
            crate::em::EmRequest::Judge(_) => s.em_judged += 1,
        });
        let text = match fault {
            Some(Fault::Empty) => String::new(),
            _ => self.config.em.reply(&q.key, req, u, v),
        };
        let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
        let (text, n, truncated) = if words.len() > q.max_tokens.max(1) as usize {
            let (t, n, cut) = truncate(&words, q.max_tokens);
            (t, n, cut)
        } else {
            (text.clone(), words.len() as u64, false)
        };
        let mut out = self.answer_text(q, text, n, truncated, None, info);
        if let (Some(Fault::Slow), Outcome::Answer { delay, .. }) = (fault, &mut out) {
            *delay += self.config.slow;
        }
        out
    }

    /// A rating for the request and the distribution it came from.
    fn rate(&self, q: &Query) -> (u8, [f64; 6]) {
        let cell = self.index.locate(&q.prompt);
        if let (Some(replay), Some(cell)) = (&self.replay, cell) {
            let temperature = q.temperature.unwrap_or(DEFAULT_TEMPERATURE);
            let recalled = replay.recall(&q.key, temperature, cell, q.seed, |n| {
                let (u, _) = self.uniform();
                ((u * n as f64) as usize).min(n - 1)
            });
            if let Some(r) = recalled {
                self.with_stats(&q.key, |s| {
                    s.rated += 1;
                    s.replayed += 1;
                    if r.repeated {
                        s.repeated += 1;
                    }
                });
                return (r.rating, r.distribution);
            }
        }
        self.with_stats(&q.key, |s| {
            s.rated += 1;
            if self.replay.is_some() {
                s.unmatched += 1;
            }
        });
        self.generate(q, cell)
    }

    /// The distribution a request's answer is drawn from (the cell's
    /// recorded ratings, or the generator's), without drawing: no rating is
    /// consumed and nothing is counted.
    fn distribution_of(&self, q: &Query) -> [f64; 6] {
        let cell = self.index.locate(&q.prompt);
        if let (Some(replay), Some(cell)) = (&self.replay, cell) {
            if let Some(d) =
                replay.distribution(&q.key, q.temperature.unwrap_or(DEFAULT_TEMPERATURE), cell)
            {
                return d;
            }
        }
        self.generator_distribution(q, cell).1
    }

    /// The generator's anchor of a request's cell and the distribution it
    /// prefers.
    fn generator_distribution(&self, q: &Query, cell: Option<CellId>) -> (u64, [f64; 6]) {
        let anchor = match cell {
            Some(c) => fnv1a_parts(&[
                q.key.as_bytes(),
                &c.persona.map(|p| p as i64).unwrap_or(-1).to_le_bytes(),
                &[c.item],
            ]),
            None => fnv1a_parts(&[q.key.as_bytes(), q.prompt.as_bytes()]),
        };
        let centre = (anchor % 6) as f64;
        let weights: Vec<f64> = (0..6)
            .map(|d| (-(d as f64 - centre).abs() * 1.5).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut dist = [0.0; 6];
        for (i, w) in weights.iter().enumerate() {
            dist[i] = w / total;
        }
        (anchor, dist)
    }

    /// The seeded generator: each (key, cell) prefers one rating; a request
    /// with a seed gets an answer that is a pure function of its key,
    /// prompt and seed.
    fn generate(&self, q: &Query, cell: Option<CellId>) -> (u8, [f64; 6]) {
        let (anchor, dist) = self.generator_distribution(q, cell);
        let u = match q.seed {
            Some(s) => {
                let h = fnv1a_parts(&[
                    &anchor.to_le_bytes(),
                    &s.to_le_bytes(),
                    &self.config.seed.to_le_bytes(),
                ]);
                (h >> 11) as f64 / (1u64 << 53) as f64
            }
            None => self.uniform().0,
        };
        let mut acc = 0.0;
        let mut rating = 5u8;
        for (d, p) in dist.iter().enumerate() {
            acc += p;
            if u < acc {
                rating = d as u8;
                break;
            }
        }
        (rating, dist)
    }

    fn answer_text(
        &self,
        q: &Query,
        text: String,
        output_tokens: u64,
        truncated: bool,
        distribution: Option<[f64; 6]>,
        info: RateInfo,
    ) -> Outcome {
        let input_tokens = q.input_tokens();
        self.with_stats(&q.key, |s| s.output_tokens += output_tokens);
        let first = text.split(' ').next().unwrap_or("").to_string();
        // Digits carry their recorded share of the probability; the other
        // tokens share a small remainder.
        const OTHER: f64 = 1e-4;
        let mut top: Vec<(String, f64)> = Vec::new();
        match distribution {
            Some(dist) => {
                for (d, p) in dist.iter().enumerate() {
                    if *p > 0.0 {
                        top.push((d.to_string(), (p * (1.0 - OTHER)).ln()));
                    }
                }
                for (i, f) in FILLERS.iter().enumerate() {
                    top.push((f.to_string(), (OTHER / 2f64.powi(i as i32 + 1)).ln()));
                }
            }
            None => {
                // A non-digit answer: the text's first word dominates.
                top.push((first.clone(), (0.9f64).ln()));
                for (i, f) in FILLERS.iter().enumerate().filter(|(_, f)| **f != first) {
                    top.push((f.to_string(), (0.05 / 2f64.powi(i as i32 + 1)).ln()));
                }
                for d in 0..6 {
                    top.push((d.to_string(), (1e-6f64).ln() - d as f64));
                }
            }
        }
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let first_lp = top
            .iter()
            .find(|(t, _)| *t == first)
            .map(|(_, l)| *l)
            .unwrap_or(-9999.0);
        let top = q.top_logprobs.map(|k| {
            top.truncate(k as usize);
            top
        });
        Outcome::Answer {
            answer: Answer {
                text,
                first_token: (first, first_lp),
                top,
                input_tokens,
                output_tokens,
                truncated,
                more: Vec::new(),
            },
            delay: self.config.latency,
            info,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultPlan;

    fn q(seed: Option<u64>) -> Query {
        Query {
            temperature: Some(0.1),
            seed,
            top_logprobs: Some(20),
            ..Query::new("m".into(), "a prompt".into(), 1, Tokenizer::Estimate)
        }
    }

    fn text(o: Outcome) -> String {
        match o {
            Outcome::Answer { answer, .. } => answer.text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seeded_requests_repeat_and_logprobs_sum_below_one() {
        let sim = Sim::new(SimConfig::default()).unwrap();
        for s in 0..10 {
            assert_eq!(text(sim.decide(&q(Some(s)))), text(sim.decide(&q(Some(s)))));
        }
        let Outcome::Answer { answer, .. } = sim.decide(&q(Some(1))) else {
            panic!()
        };
        let top = answer.top.unwrap();
        assert_eq!(top.len(), 20);
        let total: f64 = top.iter().map(|(_, l)| l.exp()).sum();
        assert!(total <= 1.0 + 1e-9, "{total}");
        assert!(answer.first_token.1 > -20.0);
    }

    #[test]
    fn a_non_digit_answer_still_shows_the_digit_distribution_in_its_logprobs() {
        let plain = Sim::new(SimConfig::default()).unwrap();
        let faulty = Sim::new(SimConfig {
            faults: FaultPlan {
                rate: 1.0,
                kinds: vec![Fault::NonDigit],
            },
            ..SimConfig::default()
        })
        .unwrap();
        let digits = |o: Outcome| -> (String, Vec<(String, f64)>) {
            let Outcome::Answer { answer, .. } = o else {
                panic!("{o:?}")
            };
            let top = answer.top.unwrap();
            (
                answer.text,
                top.into_iter()
                    .filter(|(t, _)| t.len() == 1 && t.as_bytes()[0].is_ascii_digit())
                    .collect(),
            )
        };
        let (text, want) = digits(plain.decide(&q(Some(4))));
        let (fault_text, got) = digits(faulty.decide(&q(Some(4))));
        assert!(text.starts_with(|c: char| c.is_ascii_digit()));
        assert_eq!(fault_text, "As");
        assert_eq!(got, want);
        let mass: f64 = got.iter().map(|(_, l)| l.exp()).sum();
        assert!(mass > 0.99, "{mass}");
    }

    #[test]
    fn faults_consume_no_answer_and_limits_refuse() {
        let sim = Sim::new(SimConfig {
            rpm: Some(3),
            faults: FaultPlan {
                rate: 1.0,
                kinds: vec![Fault::NonDigit],
            },
            ..SimConfig::default()
        })
        .unwrap();
        assert_eq!(text(sim.decide(&q(None))), "As");
        let mut long = q(None);
        long.max_tokens = 64;
        assert!(text(sim.decide(&long)).starts_with("As a persona"));
        let _ = sim.decide(&q(None));
        assert!(matches!(sim.decide(&q(None)), Outcome::Refused(_)));
        let r = sim.report();
        let k = &r.keys["m"];
        assert_eq!(
            (k.stats.requests, k.stats.admitted, k.stats.rate_limited),
            (4, 3, 1)
        );
        assert_eq!(k.stats.faults["nondigit"], 3);
        assert_eq!(k.stats.rated, 0);
    }
}
