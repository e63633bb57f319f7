//! The dry run: a whole sweep priced before anything is spent (requests,
//! tokens, cost, and the time the rate limits allow), with the tokens
//! counted locally or by the providers' counting endpoints.

use std::collections::BTreeMap;
use std::fmt;

use moralsweep_common::tokens::Tokenizer;
use moralsweep_common::{Instrument, Mode, Sweep};
use serde::Serialize;

use super::Prices;
use crate::providers::ProviderError;

/// The dry-run figures of one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEstimate {
    pub key: String,
    pub provider: moralsweep_common::provider::ProviderKind,
    pub model: String,
    pub rate_group: String,
    /// Requests as the spec configures them (`samples_per_request`; failed
    /// attempts add more).
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    /// How the input tokens were counted: `o200k_base`, `cl100k_base`,
    /// `estimate`, or `count_tokens` (the provider's endpoint).
    pub counted_by: String,
    /// Samples per request the run will use for a full cell (1: one
    /// request per sample).
    pub samples_per_request: u32,
    /// The same work done each way the model allows, so a user sees what
    /// `samples_per_request` and `batch` would save.
    pub choices: Vec<ChoiceEstimate>,
}

/// The requests, tokens, cost and time of one execution choice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChoiceEstimate {
    /// `one request per sample`, `multi-sample`, `batch + multi-sample`.
    pub choice: &'static str,
    /// Samples per request for a full cell.
    pub samples_per_request: u32,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// At the interactive prices, or the batch prices for a batch choice.
    pub cost_usd: Option<f64>,
    /// Minutes at the model's own limits (as if its rate group were its
    /// alone); for a batch choice, the provider's completion window.
    pub minutes: Option<f64>,
    /// Whether the model can be run this way (catalog or spec).
    pub available: bool,
}

/// The provider's completion window of a batch: 24 hours.
pub const BATCH_WINDOW_MINUTES: f64 = 24.0 * 60.0;

/// Input tokens of one question of the misalignment check (the longest of
/// the eight is about 30).
const EM_QUESTION_TOKENS: u64 = 30;

/// Requests, input tokens and output tokens of one model when a cell's `n`
/// samples are drawn `k` per request (`k` = 1: one request per sample).
/// Logprob mode is one request per cell whatever `k` is.
fn work(sweep: &Sweep, (persona_tokens, self_tokens): (u64, u64), k: u32) -> (u64, u64, u64) {
    let spec = &sweep.spec;
    let n = spec.repetitions as u64;
    let per_cell = n.div_ceil(k.max(1) as u64);
    let (mut requests, mut input, mut output) = (0u64, 0u64, 0u64);
    for mode in &spec.modes {
        let slots = sweep.slots_per_model(*mode);
        let (req, inp) = match mode {
            Mode::Persona => (
                (slots / n.max(1)).saturating_mul(per_cell),
                persona_tokens.saturating_mul(per_cell),
            ),
            Mode::SelfMode => (
                (slots / n.max(1)).saturating_mul(per_cell),
                self_tokens.saturating_mul(per_cell),
            ),
            Mode::Logprob => (slots, persona_tokens),
            // The check's questions are short (some 30 tokens each); its
            // answers may use their whole allowance. The judge's requests
            // are the judge's, not this model's.
            Mode::EmCheck => (slots, slots.saturating_mul(EM_QUESTION_TOKENS)),
            Mode::EmJudge => (0, 0),
        };
        requests = requests.saturating_add(req);
        input = input.saturating_add(inp);
        // One output token per sample, as billed; an answer of the
        // misalignment check at most its allowance.
        output = output.saturating_add(match mode {
            Mode::EmCheck => slots
                .saturating_mul(moralsweep_common::em::EmCheck::builtin().answer.max_tokens as u64),
            _ => slots,
        });
    }
    (requests, input, output)
}

/// The dry-run figures of one rate group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupEstimate {
    pub group: String,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub requests: u64,
    /// Tokens as the limits count them (prompt plus output allowance).
    pub paced_tokens: u64,
    /// Minutes the limits need for the group's requests; `None` when the
    /// group has no limit (then latency and concurrency decide).
    pub minutes: Option<f64>,
    /// Which limit binds: "rpm", "tpm" or "none".
    pub binding: &'static str,
}

/// What a sweep will cost before anything is spent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRun {
    pub sweep: String,
    pub models: Vec<ModelEstimate>,
    pub groups: Vec<GroupEstimate>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Sum over the models with prices; `None` if no model has a price.
    pub cost_usd: Option<f64>,
    /// Models without prices (their cost is not in `cost_usd`).
    pub unpriced: Vec<String>,
    /// Rate groups run in parallel: the slowest group's minutes.
    pub minutes: Option<f64>,
    /// Token-counting requests the dry run sent (models with
    /// `count_tokens = true`); nothing else is ever sent.
    pub counting_requests: u64,
    /// Per model getting one sample per request, why
    /// ([`crate::dry_checks::single_sample_reason`]).
    pub single_sample: Vec<(String, String)>,
    /// What would get in the run's way: models the catalog lacks, API keys
    /// not set ([`crate::dry_checks::warnings`]; filled by [`dry_run_for`]).
    pub warnings: Vec<String>,
}

/// Prompt tokens of one pass over every (persona, item), and over the items
/// alone, as `count` counts them.
fn pass_tokens(sweep: &Sweep, count: &dyn Fn(&str) -> u64) -> (u64, u64) {
    let inst = instrument_of(sweep);
    let persona: u64 = sweep
        .personas
        .iter()
        .flat_map(|p| inst.items.iter().map(|it| inst.persona_prompt(p, it)))
        .map(|p| count(&p))
        .sum();
    let own: u64 = inst
        .items
        .iter()
        .map(|it| count(&inst.self_prompt(it)))
        .sum();
    (persona, own)
}

/// Prices a sweep: requests, tokens, cost and time at the configured limits.
/// Each model's prompts are counted with its tokenizer
/// ([`Tokenizer::for_model`]); nothing is sent.
pub fn dry_run(sweep: &Sweep) -> DryRun {
    let mut passes: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let counts: Vec<((u64, u64), String)> = sweep
        .spec
        .models
        .iter()
        .map(|m| {
            let t = Tokenizer::for_model(m.provider, &m.model);
            let pass = *passes
                .entry(t.name())
                .or_insert_with(|| pass_tokens(sweep, &|p| t.prompt_tokens(p)));
            (pass, t.name().to_string())
        })
        .collect();
    price(sweep, counts)
}

/// Prompts whose provider counts calibrate a model's estimate in
/// [`dry_run_counted`]: the first persona's 30 prompts and the 30 self prompts.
fn calibration_prompts(sweep: &Sweep) -> Vec<String> {
    let inst = instrument_of(sweep);
    let mut v: Vec<String> = inst.items.iter().map(|it| inst.self_prompt(it)).collect();
    if let Some(p) = sweep.personas.first() {
        v.extend(inst.items.iter().map(|it| inst.persona_prompt(p, it)));
    }
    v
}

/// The sweep's instrument (the spec was validated, so it loads; MFQ-30 otherwise).
fn instrument_of(sweep: &Sweep) -> std::sync::Arc<Instrument> {
    sweep
        .spec
        .instrument()
        .unwrap_or_else(|_| Instrument::mfq30())
}

/// [`dry_run`], but a model whose spec says `count_tokens = true` and whose
/// provider counts exactly (Anthropic `count_tokens`, Gemini `countTokens`,
/// OpenAI's BPE) has its prompts counted by the provider: the 60
/// [`calibration_prompts`] are counted there and the model's estimate is
/// scaled by counted / estimated over them (prompts differ only in their
/// persona text, so the ratio carries over). These are the only requests a
/// dry run sends; they cost nothing.
pub async fn dry_run_counted(sweep: &Sweep) -> Result<DryRun, ProviderError> {
    let sample = calibration_prompts(sweep);
    let mut counts = Vec::new();
    let mut sent = 0u64;
    for m in &sweep.spec.models {
        let t = Tokenizer::for_model(m.provider, &m.model);
        let pass = pass_tokens(sweep, &|p| t.prompt_tokens(p));
        if m.count_tokens != Some(true) || t.exact() {
            counts.push((pass, t.name().to_string()));
            continue;
        }
        let provider = crate::providers::build(m)?;
        let mut counted = 0u64;
        let mut estimated = 0u64;
        for p in &sample {
            sent += 1;
            let Some(n) = provider.count_tokens(p).await? else {
                break;
            };
            counted += n;
            estimated += t.prompt_tokens(p);
        }
        if estimated == 0 {
            counts.push((pass, t.name().to_string()));
            continue;
        }
        let scale = |x: u64| (x as f64 * counted as f64 / estimated as f64).round() as u64;
        counts.push(((scale(pass.0), scale(pass.1)), "count_tokens".to_string()));
    }
    let mut d = price(sweep, counts);
    d.counting_requests = sent;
    Ok(d)
}

/// The dry run the CLI prints: [`dry_run`], or [`dry_run_counted`] (on a
/// runtime of its own) when a model's spec says `count_tokens = true`.
/// Either way with its warnings ([`crate::dry_checks::warnings`]).
pub fn dry_run_for(sweep: &Sweep) -> Result<DryRun, ProviderError> {
    let mut d = if !sweep
        .spec
        .models
        .iter()
        .any(|m| m.count_tokens == Some(true))
    {
        dry_run(sweep)
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                ProviderError::Fatal(format!("cannot start a runtime for the token counts: {e}"))
            })?
            .block_on(dry_run_counted(sweep))?
    };
    d.warnings = crate::dry_checks::warnings(sweep);
    Ok(d)
}

/// The judge's share of a misalignment check (`em-check` with a `[judge]`):
/// two requests per answer of every model, each prompt counted with the
/// judge's tokenizer around an answer of the full allowance (an upper
/// bound), ten output tokens each.
fn judge_estimate(sweep: &Sweep) -> Option<ModelEstimate> {
    let spec = &sweep.spec;
    let judge = spec.judge.as_ref()?;
    if !spec.modes.contains(&Mode::EmCheck) {
        return None;
    }
    let check = moralsweep_common::em::EmCheck::builtin();
    let t = Tokenizer::for_model(judge.provider, &judge.model);
    let answer = check.answer.max_tokens as u64;
    let per_model: u64 = check
        .questions
        .iter()
        .flat_map(|q| {
            moralsweep_common::em::JudgeKind::ALL
                .map(|k| t.prompt_tokens(&check.judge_prompt(k, q, "")) + answer)
        })
        .sum::<u64>()
        .saturating_mul(check.answer.samples_per_question as u64);
    let models = spec.models.len() as u64;
    let requests = (check.judge_slots() as u64).saturating_mul(models);
    let input = per_model.saturating_mul(models);
    let output = requests.saturating_mul(check.judge.max_tokens as u64);
    let cost = Prices::of(judge).cost(input, output);
    let minutes = match (
        judge.rpm.map(|r| requests as f64 / r as f64),
        judge.tpm.map(|x| (input + output) as f64 / x as f64),
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    Some(ModelEstimate {
        key: judge.key.clone(),
        provider: judge.provider,
        model: judge.model.clone(),
        rate_group: judge.rate_group().to_string(),
        requests,
        input_tokens: input,
        output_tokens: output,
        cost_usd: cost,
        counted_by: t.name().to_string(),
        samples_per_request: 1,
        choices: vec![ChoiceEstimate {
            choice: "judge: one request per score",
            samples_per_request: 1,
            requests,
            input_tokens: input,
            output_tokens: output,
            cost_usd: cost,
            minutes,
            available: true,
        }],
    })
}

/// The dry run of a sweep whose models' prompt tokens per pass (persona
/// pass, self pass) and counting method are `counts`, in model order.
fn price(sweep: &Sweep, counts: Vec<((u64, u64), String)>) -> DryRun {
    let spec = &sweep.spec;
    let mut models = Vec::new();
    let mut groups: BTreeMap<String, GroupEstimate> = BTreeMap::new();
    for (m, (pass, counted_by)) in spec.models.iter().zip(counts) {
        let profile = m.profile();
        let k = profile.samples_for(spec.repetitions);
        let k_max = 1u32.max(profile.max_samples.min(spec.repetitions));
        // 64-bit and saturating: a total never wraps (the spec's slot limit
        // keeps real figures far below u64::MAX).
        let (requests, input, output) = work(sweep, pass, k);
        let minutes_of = |requests: u64, tokens: u64| {
            let by_rpm = m.rpm.map(|r| requests as f64 / r as f64);
            let by_tpm = m.tpm.map(|t| tokens as f64 / t as f64);
            match (by_rpm, by_tpm) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        };
        let choice = |name, k: u32, batch: bool| {
            let (r, i, o) = work(sweep, pass, k);
            let prices = if batch {
                Prices::batch_of(m)
            } else {
                Prices::of(m)
            };
            ChoiceEstimate {
                choice: name,
                samples_per_request: k,
                requests: r,
                input_tokens: i,
                output_tokens: o,
                cost_usd: prices.cost(i, o),
                minutes: if batch {
                    Some(BATCH_WINDOW_MINUTES)
                } else {
                    minutes_of(r, i.saturating_add(o))
                },
                available: match (batch, k) {
                    (true, _) => profile.batch_supported == Some(true),
                    (false, 1) => true,
                    (false, _) => profile.max_samples > 1,
                },
            }
        };
        let choices = vec![
            choice("one request per sample", 1, false),
            choice("multi-sample", k_max, false),
            choice("batch + multi-sample", k_max, true),
        ];
        let est = ModelEstimate {
            key: m.key.clone(),
            provider: m.provider,
            model: m.model.clone(),
            rate_group: m.rate_group().to_string(),
            requests,
            input_tokens: input,
            output_tokens: output,
            cost_usd: Prices::of(m).cost(input, output),
            counted_by,
            samples_per_request: k,
            choices,
        };
        let g = groups
            .entry(est.rate_group.clone())
            .or_insert_with(|| GroupEstimate {
                group: est.rate_group.clone(),
                rpm: None,
                tpm: None,
                requests: 0,
                paced_tokens: 0,
                minutes: None,
                binding: "none",
            });
        g.rpm = g.rpm.or(m.rpm);
        g.tpm = g.tpm.or(m.tpm);
        g.requests = g.requests.saturating_add(requests);
        g.paced_tokens = g.paced_tokens.saturating_add(input.saturating_add(output));
        models.push(est);
    }
    if let Some(est) = judge_estimate(sweep) {
        let m = spec.judge.as_ref().expect("a judge estimate has a judge");
        let g = groups
            .entry(est.rate_group.clone())
            .or_insert_with(|| GroupEstimate {
                group: est.rate_group.clone(),
                rpm: None,
                tpm: None,
                requests: 0,
                paced_tokens: 0,
                minutes: None,
                binding: "none",
            });
        g.rpm = g.rpm.or(m.rpm);
        g.tpm = g.tpm.or(m.tpm);
        g.requests = g.requests.saturating_add(est.requests);
        g.paced_tokens = g
            .paced_tokens
            .saturating_add(est.input_tokens.saturating_add(est.output_tokens));
        models.push(est);
    }
    for g in groups.values_mut() {
        let by_rpm = g.rpm.map(|r| g.requests as f64 / r as f64);
        let by_tpm = g.tpm.map(|t| g.paced_tokens as f64 / t as f64);
        (g.minutes, g.binding) = match (by_rpm, by_tpm) {
            (Some(a), Some(b)) if b > a => (Some(b), "tpm"),
            (Some(a), _) => (Some(a), "rpm"),
            (None, Some(b)) => (Some(b), "tpm"),
            (None, None) => (None, "none"),
        };
    }
    let priced: Vec<f64> = models.iter().filter_map(|m| m.cost_usd).collect();
    let minutes = groups
        .values()
        .filter_map(|g| g.minutes)
        .fold(None, |acc: Option<f64>, m| {
            Some(acc.map_or(m, |a| a.max(m)))
        });
    DryRun {
        sweep: spec.name.clone(),
        requests: models.iter().fold(0, |a, m| a.saturating_add(m.requests)),
        input_tokens: models
            .iter()
            .fold(0, |a, m| a.saturating_add(m.input_tokens)),
        output_tokens: models
            .iter()
            .fold(0, |a, m| a.saturating_add(m.output_tokens)),
        cost_usd: (!priced.is_empty()).then(|| priced.iter().sum()),
        unpriced: models
            .iter()
            .filter(|m| m.cost_usd.is_none())
            .map(|m| m.key.clone())
            .collect(),
        minutes,
        models,
        groups: groups.into_values().collect(),
        counting_requests: 0,
        single_sample: crate::dry_checks::single_sample_notes(sweep),
        warnings: Vec::new(),
    }
}

fn fmt_minutes(m: Option<f64>) -> String {
    match m {
        None => "no limit".into(),
        Some(m) if m < 1.0 => format!("{:.0} s", m * 60.0),
        Some(m) if m < 120.0 => format!("{m:.1} min"),
        Some(m) => format!("{:.1} h", m / 60.0),
    }
}

pub(super) fn fmt_cost(c: Option<f64>) -> String {
    c.map(|c| format!("${c:.2}"))
        .unwrap_or_else(|| "no price".into())
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.counting_requests == 0 {
            writeln!(f, "dry run of sweep {:?} (nothing is sent)", self.sweep)?;
        } else {
            writeln!(
                f,
                "dry run of sweep {:?} (only {} token-counting requests were sent)",
                self.sweep, self.counting_requests
            )?;
        }
        writeln!(
            f,
            "{:<28} {:<18} {:>10} {:>14} {:>10} {:>10}  tokens counted by",
            "model", "rate group", "requests", "input tokens", "output", "cost"
        )?;
        for m in &self.models {
            writeln!(
                f,
                "{:<28} {:<18} {:>10} {:>14} {:>10} {:>10}  {}",
                m.key,
                m.rate_group,
                m.requests,
                m.input_tokens,
                m.output_tokens,
                fmt_cost(m.cost_usd),
                m.counted_by
            )?;
        }
        writeln!(
            f,
            "{:<28} {:<18} {:>10} {:>14} {:>10} {:>10}",
            "total",
            "",
            self.requests,
            self.input_tokens,
            self.output_tokens,
            fmt_cost(self.cost_usd)
        )?;
        if !self.unpriced.is_empty() {
            let n = self.unpriced.len();
            let models = if n == 1 { "model" } else { "models" };
            match self.cost_usd {
                Some(c) => writeln!(f, "cost: at least ${c:.2}, {n} {models} unpriced")?,
                None => writeln!(f, "cost: unknown, {n} {models} unpriced")?,
            }
            writeln!(
                f,
                "(no price for {}: set input_price_per_mtok / output_price_per_mtok)",
                self.unpriced.join(", ")
            )?;
        }
        writeln!(
            f,
            "execution choices per model (the same ratings; `samples_per_request` and `batch` choose):"
        )?;
        for m in &self.models {
            for c in &m.choices {
                let minutes = match (c.choice, c.minutes) {
                    ("batch + multi-sample", _) => "within 24 h".to_string(),
                    (_, m) => fmt_minutes(m),
                };
                writeln!(
                    f,
                    "  {:<26} {:<22} {:>3}/request {:>10} requests {:>14} input {:>10} output {:>10} {:>12}{}",
                    m.key,
                    c.choice,
                    c.samples_per_request,
                    c.requests,
                    c.input_tokens,
                    c.output_tokens,
                    fmt_cost(c.cost_usd),
                    minutes,
                    if c.available {
                        ""
                    } else {
                        "  (not offered for this model)"
                    }
                )?;
            }
        }
        if !self.single_sample.is_empty() {
            writeln!(f, "one sample per request:")?;
            for (key, why) in &self.single_sample {
                writeln!(f, "  {key}: {why}")?;
            }
        }
        writeln!(f, "rate groups (run in parallel):")?;
        for g in &self.groups {
            let limits = match (g.rpm, g.tpm) {
                (None, None) => "no limits".to_string(),
                (r, t) => format!(
                    "rpm {}, tpm {}",
                    r.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                    t.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
                ),
            };
            writeln!(
                f,
                "  {:<24} {limits:<28} {:>10} requests  {:>10} ({} binds)",
                g.group,
                g.requests,
                fmt_minutes(g.minutes),
                g.binding
            )?;
        }
        write!(
            f,
            "time at the configured limits: {} (requests as configured; failed attempts add more)",
            fmt_minutes(self.minutes)
        )?;
        for w in &self.warnings {
            write!(f, "\nwarning: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moralsweep_common::spec::KeyCheck;

    #[test]
    fn the_judge_of_a_check_is_in_the_dry_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.json"), r#"["a nurse"]"#).unwrap();
        let spec = r#"
name = "t"
personas = "p.json"
output = "out"
modes = ["em-check"]
[judge]
key = "j"
provider = "synthetic"
model = "judge"
rpm = 480
input_price_per_mtok = 2.5
output_price_per_mtok = 10.0
[[model]]
key = "a"
provider = "synthetic"
model = "x"
[[model]]
key = "b"
provider = "synthetic"
model = "y"
"#;
        let sweep = Sweep::from_text(spec, &dir.path().join("s.toml"), KeyCheck::Skip).unwrap();
        let d = dry_run(&sweep);
        // Each model answers 8 x 30; the judge scores each answer twice.
        assert_eq!(d.models[0].requests, 240);
        assert_eq!(d.models[0].output_tokens, 240 * 512);
        let j = d.models.iter().find(|m| m.key == "j").unwrap();
        assert_eq!((j.requests, j.output_tokens), (2 * 480, 2 * 480 * 10));
        // Every judge prompt holds at least the answer's allowance.
        assert!(j.input_tokens > 2 * 480 * 512, "{}", j.input_tokens);
        let expect = j.input_tokens as f64 * 2.5e-6 + j.output_tokens as f64 * 1e-5;
        assert!((j.cost_usd.unwrap() - expect).abs() < 1e-12);
        let g = d.groups.iter().find(|g| g.group == "j").unwrap();
        assert_eq!((g.requests, g.minutes, g.binding), (960, Some(2.0), "rpm"));
        assert_eq!(d.requests, 2 * 240 + 960);
    }

    #[test]
    fn dry_run_counts_and_prices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.json"), r#"["a nurse", "a pilot"]"#).unwrap();
        let spec = r#"
name = "t"
personas = "p.json"
output = "out"
modes = ["persona", "self"]
[[model]]
key = "a"
provider = "synthetic"
model = "x"
rpm = 100
input_price_per_mtok = 2.5
output_price_per_mtok = 10.0
[[model]]
key = "b"
provider = "synthetic"
model = "y"
rate_group = "g"
tpm = 10000
"#;
        let sweep = Sweep::from_text(spec, &dir.path().join("s.toml"), KeyCheck::Skip).unwrap();
        let d = dry_run(&sweep);
        assert_eq!(d.models[0].requests, 2 * 30 * 10 + 30 * 10);
        assert_eq!(d.requests, 2 * 900);
        let a = &d.models[0];
        let expect = a.input_tokens as f64 * 2.5e-6 + a.output_tokens as f64 * 1e-5;
        assert!((a.cost_usd.unwrap() - expect).abs() < 1e-12);
        assert_eq!(d.unpriced, vec!["b".to_string()]);
        let ga = d.groups.iter().find(|g| g.group == "a").unwrap();
        assert_eq!(ga.minutes, Some(9.0));
        assert_eq!(ga.binding, "rpm");
        let gb = d.groups.iter().find(|g| g.group == "g").unwrap();
        assert_eq!(gb.binding, "tpm");
        assert!(gb.minutes.unwrap() > 9.0);
        assert_eq!(d.minutes, gb.minutes);
        let text = d.to_string();
        assert!(
            text.contains("total") && text.contains("tpm binds"),
            "{text}"
        );
    }
}
