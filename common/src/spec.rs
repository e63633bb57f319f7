//! The sweep spec: a TOML file naming the personas, the modes, the models and
//! their rate limits. It is parsed and validated completely before anything
//! runs; every problem is reported with the file, the key and what would be
//! right.

pub mod checkpoints;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::instrument::{builtin_names, clip, clip_words, Instrument, InstrumentError};
use crate::personas::{load_personas, PersonaError};
use std::sync::Arc;

pub use crate::provider::ProviderKind;

/// What a sweep asks of each model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Role-play: personas x items x repetitions, one sampled rating each.
    Persona,
    /// No persona: items x repetitions.
    #[serde(rename = "self")]
    SelfMode,
    /// One first-token logprob request per (persona, item).
    Logprob,
    /// The misalignment check's answers: each free-form question asked
    /// alone, many times (`crate::em`).
    #[serde(rename = "em-check")]
    EmCheck,
    /// The judge's scores of the check's answers: never named in a spec,
    /// its unit comes with `em-check`, and its slots are created as the
    /// answers are recorded.
    #[serde(rename = "em-judge")]
    EmJudge,
}

impl Mode {
    /// The rating modes (persona, self, logprob).
    pub const ALL: [Mode; 3] = [Mode::Persona, Mode::SelfMode, Mode::Logprob];
    /// The misalignment check's two units.
    pub const EM: [Mode; 2] = [Mode::EmCheck, Mode::EmJudge];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Persona => "persona",
            Mode::SelfMode => "self",
            Mode::Logprob => "logprob",
            Mode::EmCheck => "em-check",
            Mode::EmJudge => "em-judge",
        }
    }

    /// Whether the mode belongs to the misalignment check.
    pub fn is_em(self) -> bool {
        matches!(self, Mode::EmCheck | Mode::EmJudge)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .chain(Mode::EM)
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown mode {s:?}; expected persona, self, logprob or em-check")
            })
    }
}

fn default_repetitions() -> u32 {
    10
}
fn default_temperature() -> f64 {
    0.1
}
fn default_modes() -> Vec<Mode> {
    vec![Mode::Persona, Mode::SelfMode]
}
fn default_max_attempts() -> u32 {
    10
}
fn default_top_logprobs() -> u32 {
    20
}

/// A sweep spec as written in its TOML file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Sweep id: letters, digits, '-', '_', '.'.
    pub name: String,
    /// JSON array of persona strings; relative paths are relative to the spec file.
    pub personas: PathBuf,
    /// The first N personas (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona_count: Option<usize>,
    /// Repetitions n per (persona, item).
    #[serde(default = "default_repetitions")]
    pub repetitions: u32,
    /// Sampling temperature of persona and self modes.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default = "default_modes")]
    pub modes: Vec<Mode>,
    /// Where data, metrics and reports go; relative paths are relative to the spec file.
    pub output: PathBuf,
    /// Attempts with a one-token answer before the longer fallback (METHOD.md: 10).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Top logprobs asked for in logprob mode (20 where the provider allows).
    #[serde(default = "default_top_logprobs")]
    pub top_logprobs: u32,
    /// Temperatures at which logprob-mode metrics are reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob_temperatures: Option<Vec<f64>>,
    /// Persona bootstrap draws for the metrics (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<u32>,
    /// Rerun bootstrap draws for the metrics (default 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_bootstrap: Option<u32>,
    /// Seed of the bootstraps and of seeded provider requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The questionnaire: a built-in name (`mfq-30`, `bfi-44`) or the path
    /// of an instrument file (relative to the spec file). Default MFQ-30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instrument: Option<String>,
    /// The text of the instrument file `instrument` names, read where the
    /// spec was read (`Sweep::from_text`, and `submit` sends it with the
    /// spec): the coordinator and the workers use this definition, so a
    /// user's instrument needs no copy on their machines. Not written in
    /// spec files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instrument_definition: Option<String>,
    #[serde(rename = "model", default)]
    pub models: Vec<ModelSpec>,
    /// The model that scores the misalignment check's answers (`em-check`
    /// mode): a `[judge]` table like a `[[model]]` entry. It answers no
    /// questionnaire; its requests pace under its own rate group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<ModelSpec>,
}

/// One model of a sweep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Names the model's files: data/<key>_temp01.csv ...
    pub key: String,
    /// The provider the model is asked through.
    pub provider: ProviderKind,
    /// The provider's model id (for `local`: the GGUF path or `default`).
    /// Absent only next to `checkpoints`.
    #[serde(default)]
    pub model: String,
    /// Where the provider lives (default: the provider's public endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// A preset of `openai-compatible` (openrouter, deepseek, xai, together, fireworks, groq, vllm, llamacpp, ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The AWS region of a `bedrock` model (`us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The Google Cloud project of a `vertex` model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The Vertex AI location of a `vertex` model (`us-central1`, `global`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The `api-version` of an `azure-openai` model reached through its
    /// deployments route (absent: the resource's v1 API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The environment variable holding the API key; the key never goes in a spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// A file holding the API key (e.g. a mounted Kubernetes secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// Groups models for comparisons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// "base" is the reference of its family's deltas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// A checkpoint's training step: the family's variants with a step
    /// form a trajectory of S, R and sigma-bar against step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// A fine-tune's GGUF checkpoints (provider `local`), `[{ step, path }]`:
    /// the entry stands for one model per checkpoint, expanded at parse
    /// (`crate::checkpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<Vec<checkpoints::Checkpoint>>,
    /// Models sharing one account's limits (default: the model key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_group: Option<String>,
    /// Requests per minute, summed over all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens per minute, summed over all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once for this model (default: the worker's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Per-request timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Seconds a provider that has never answered (connection refused, DNS
    /// failure, connect timeout) is retried before the model stops with an
    /// error naming its base_url (default 120). A provider that answered
    /// once and then goes away is retried patiently instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_timeout_secs: Option<f64>,
    /// Output allowance of the longer fallback request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_max_tokens: Option<u32>,
    /// Use `max_completion_tokens` (OpenAI reasoning models) instead of `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<bool>,
    /// Reasoning effort for the OpenAI Responses API (minimal, low, medium, high).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Use the OpenAI Responses API instead of Chat Completions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Gemini thinking budget in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<i64>,
    /// Price in US dollars per million input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_price_per_mtok: Option<f64>,
    /// Price in US dollars per million output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_price_per_mtok: Option<f64>,
    /// Extra request fields passed through to the provider as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Extra HTTP headers sent with every request (never secrets: use api_key_env).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `"provider-default"`: send no temperature and let the provider sample
    /// at its own default (required of models that take no temperature:
    /// Anthropic's current API, OpenAI's reasoning models). The files then
    /// say `tempdefault` instead of the sweep's temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<TemperatureSetting>,
    /// Let the dry run ask the provider's token-counting endpoint
    /// (Anthropic `count_tokens`, Gemini `countTokens`) instead of estimating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_tokens: Option<bool>,
    /// The model catalog entry (`provider/id`) this model inherits prices
    /// and capabilities from, when its provider and id do not name one
    /// (the simulator, a compatible server serving a known model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    /// Samples drawn from one request (OpenAI `n`, Gemini
    /// `candidateCount`): `"auto"` (the default: as many as the cell needs,
    /// within the model's cap) or a number (1: one request per sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_per_request: Option<crate::catalog::SamplesPerRequest>,
    /// The most samples the provider returns from one request (overrides
    /// the catalog's cap; 1 where the provider has no multi-sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples_per_request: Option<u32>,
    /// Send the model's requests through the provider's batch API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<bool>,
    /// Batch API price in US dollars per million input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_input_price_per_mtok: Option<f64>,
    /// Batch API price in US dollars per million output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_output_price_per_mtok: Option<f64>,
}

/// A model's own temperature setting (the model entry's `temperature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TemperatureSetting {
    /// No temperature is sent; the provider samples at its default.
    #[serde(rename = "provider-default")]
    ProviderDefault,
}

impl<'de> Deserialize<'de> for TemperatureSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EXPECTED: &str = "\"provider-default\" (a model entry's `temperature` only says that the model samples at its provider's default; the sweep's `temperature` applies to every other model)";
        impl serde::de::Visitor<'_> for V {
            type Value = TemperatureSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "provider-default" => Ok(TemperatureSetting::ProviderDefault),
                    other => Err(E::custom(format!(
                        "temperature = {other:?}; expected {EXPECTED}"
                    ))),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!("temperature = {v}; expected {EXPECTED}")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a model id names one of OpenAI's reasoning models (o1, o3, o4,
/// gpt-5 families, fine-tuned ones included), which take no temperature.
pub fn is_openai_reasoning_model(model: &str) -> bool {
    // Fine-tuned ids: ft:<base>:<org>:<suffix>:<id>.
    let base = model.strip_prefix("ft:").unwrap_or(model);
    let base = base.split(':').next().unwrap_or(base);
    let base = base.rsplit('/').next().unwrap_or(base);
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| base == *p || base.starts_with(&format!("{p}-")))
}

impl ModelSpec {
    /// The rate group this model's requests count against.
    pub fn rate_group(&self) -> &str {
        self.rate_group.as_deref().unwrap_or(&self.key)
    }

    /// Whether the model's entry says `temperature = "provider-default"`.
    pub fn provider_default_temperature(&self) -> bool {
        self.temperature == Some(TemperatureSetting::ProviderDefault)
    }

    /// Whether this model's slots in `mode` go through the provider's batch
    /// API (`batch = true`): its questionnaire modes (persona, self). Its
    /// logprob and misalignment-check slots are asked one call each.
    pub fn sends_batches(&self, mode: Mode) -> bool {
        self.batch == Some(true) && matches!(mode, Mode::Persona | Mode::SelfMode)
    }

    /// The temperature this model's persona and self requests are sent with:
    /// the sweep's, or `None` (nothing sent) for a provider-default model.
    pub fn sampling_temperature(&self, sweep_temperature: f64) -> Option<f64> {
        (!self.provider_default_temperature()).then_some(sweep_temperature)
    }

    /// The temperature this model's rating files are named and analysed
    /// with: the sweep's, or [`crate::temperature::PROVIDER_DEFAULT`]
    /// (`<key>_tempdefault.csv`).
    pub fn file_temperature(&self, sweep_temperature: f64) -> f64 {
        self.sampling_temperature(sweep_temperature)
            .unwrap_or(crate::temperature::PROVIDER_DEFAULT)
    }

    /// Why this model cannot take a sampling temperature, if it cannot:
    /// Anthropic's current Messages API has no `temperature` (the official
    /// SDK no longer offers it), and OpenAI's reasoning models accept only
    /// their default.
    pub fn temperature_unsupported(&self) -> Option<&'static str> {
        match self.provider {
            ProviderKind::Anthropic => {
                Some("Anthropic's current Messages API takes no temperature")
            }
            ProviderKind::OpenAi
            | ProviderKind::OpenAiCompatible
            | ProviderKind::Sim
            | ProviderKind::AzureOpenAi => {
                let reasoning = self.reasoning.unwrap_or_else(|| {
                    (matches!(
                        self.provider,
                        ProviderKind::OpenAi | ProviderKind::AzureOpenAi
                    ) && is_openai_reasoning_model(&self.model))
                        || self.reasoning_effort.is_some()
                });
                reasoning
                    .then_some("OpenAI's reasoning models accept only their default temperature")
            }
            _ => None,
        }
    }
}

/// A spec problem: which file, which key, what is wrong and what would be right.
///
/// Each message holds its whole cause (an io error's text, a persona file's
/// problem) and no variant reports a `source()`, so a printed chain
/// (`{e:#}`) shows every cause once.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read sweep spec {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("sweep spec {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("sweep spec {path}: `{key}` {problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("sweep spec {path}: `personas`: {error}")]
    Personas { path: PathBuf, error: PersonaError },
}

/// Whether validation checks that each `api_key_env` is set in this process's
/// environment (true where this process makes the calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    Check,
    Skip,
}

/// What defines a sweep: its validated spec and the personas it selects,
/// in id order. A sweep read from its file ([`Sweep`]), the coordinator's
/// record of it and what a worker is sent of it all hold one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepDef {
    /// The validated spec; it holds no secret (keys stay in the workers'
    /// environment).
    pub spec: SweepSpec,
    /// The first `persona_count` personas.
    pub personas: Vec<String>,
}

/// A sweep read from its spec file: its definition, with the file it came
/// from and its output folder resolved.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub def: SweepDef,
    /// The spec file it came from, for messages.
    pub source: PathBuf,
    /// `output` resolved against the spec's directory.
    pub output: PathBuf,
}

impl std::ops::Deref for Sweep {
    type Target = SweepDef;
    fn deref(&self) -> &SweepDef {
        &self.def
    }
}

/// A sweep id or model key: it names folders and files, so it starts with a
/// letter or digit (no `.hidden`, `.`, `..` or `...`) and holds only letters,
/// digits, '-', '_' and '.'.
fn valid_name(s: &str) -> bool {
    s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The highest price per million tokens a spec may give: a thousand times
/// the dearest real model, and low enough that a cost total over any
/// 64-bit token count stays a finite number.
pub const MAX_PRICE_PER_MTOK: f64 = 1_000_000.0;

/// The most slots one sweep may have, over all its models and modes: a
/// hundred times the largest real sweeps (dozens of models at 30,300 slots
/// each, about a million). Every slot count is 64-bit; this limit also keeps
/// each (model, mode) unit far inside the stores' 32-bit slot indices.
pub const MAX_SWEEP_SLOTS: u64 = 100_000_000;

/// `n` with thousands separators: 100000000 -> "100,000,000".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    // A separator goes before every digit whose distance from the end is a
    // multiple of three.
    let lead = digits.len() % 3;
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && i % 3 == lead {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Checks that a `base_url` is an http(s) URL with a host and no credentials.
fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url.trim()).map_err(|e| {
        format!("is {url:?}, which is not a URL ({e}); give the provider's http(s) address, e.g. \"https://api.example.com/v1\"")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "is {url:?}, a {}: URL; give the provider's http(s) address, e.g. \"https://api.example.com/v1\"",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "is {url:?}, which names no host; give the provider's http(s) address, e.g. \"http://127.0.0.1:8000/v1\""
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("holds a user name or password; credentials never go in a spec: give the http(s) address alone, and the key through `api_key_env` or `api_key_file`".to_string());
    }
    Ok(())
}

impl SweepSpec {
    /// Parses spec TOML text; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<SweepSpec, SpecError> {
        let fail = |e: toml::de::Error, key: Option<String>| {
            // A long key or value is cut, not echoed whole.
            let mut message = match key {
                Some(key) => clip_words(&format!("`{key}` {}", e.message())),
                None => clip_words(e.message()),
            };
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                message = format!("line {line}: {message}");
            }
            SpecError::Parse {
                path: path.to_path_buf(),
                message,
            }
        };
        let document = toml::de::Deserializer::parse(text).map_err(|e| fail(e, None))?;
        let mut spec: SweepSpec = serde_path_to_error::deserialize(document).map_err(|e| {
            // The key path (`model[0].provider`) of a value refused by its
            // type; none for a problem of the document as a whole.
            let key = e.path().to_string();
            let key = (key != "." && !key.is_empty()).then_some(key);
            fail(e.into_inner(), key)
        })?;
        checkpoints::expand(&mut spec.models, spec.judge.as_ref()).map_err(|(key, problem)| {
            SpecError::Invalid {
                path: path.to_path_buf(),
                key,
                problem,
            }
        })?;
        Ok(spec)
    }

    /// Checks every rule that needs no file system access. `path` names the
    /// source in errors.
    pub fn validate(&self, path: &Path, keys: KeyCheck) -> Result<(), SpecError> {
        let bad = |key: &str, problem: String| SpecError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem,
        };
        if !valid_name(&self.name) {
            return Err(bad(
                "name",
                format!(
                    "is {}; a sweep id starts with a letter or digit and uses only letters, digits, '-', '_' and '.' (1-128 characters)",
                    clip(&self.name)
                ),
            ));
        }
        match self.instrument() {
            Ok(i) if i.name != crate::instrument::DEFAULT_INSTRUMENT
                && self.modes.contains(&Mode::Logprob) =>
            {
                return Err(bad(
                    "modes",
                    format!(
                        "includes \"logprob\", but logprob mode reads the MFQ-30's digits 0-5 and the instrument is {}; drop \"logprob\" or use instrument = \"mfq-30\"",
                        i.name
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(bad(
                "instrument",
                match e {
                    InstrumentError::Unknown(name, why) => format!(
                        "is {name:?}, which is neither a built-in instrument ({}) nor a readable instrument file ({why}); give a built-in name or the path of an instrument file",
                        builtin_names().join(", ")
                    ),
                    other => other.to_string(),
                },
            )),
        }
        if self.repetitions == 0 {
            return Err(bad(
                "repetitions",
                "is 0; it must be at least 1 (the papers use 10)".into(),
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) || !self.temperature.is_finite() {
            return Err(bad(
                "temperature",
                format!(
                    "is {}; it must lie in [0, 2] (the papers use 0.1)",
                    self.temperature
                ),
            ));
        }
        if self.modes.is_empty() {
            return Err(bad(
                "modes",
                "is empty; name at least one of \"persona\", \"self\", \"logprob\", \"em-check\""
                    .into(),
            ));
        }
        if let Some((i, m)) = self
            .modes
            .iter()
            .enumerate()
            .find(|(i, m)| self.modes[..*i].contains(m))
        {
            return Err(bad(
                "modes",
                format!(
                    "names {:?} twice (again as entry {}); name each mode once",
                    m.name(),
                    i + 1
                ),
            ));
        }
        if self.max_attempts == 0 {
            return Err(bad(
                "max_attempts",
                "is 0; it must be at least 1 (METHOD.md uses 10)".into(),
            ));
        }
        if self.top_logprobs == 0 || self.top_logprobs > 20 {
            return Err(bad(
                "top_logprobs",
                format!("is {}; it must be between 1 and 20", self.top_logprobs),
            ));
        }
        if let Some(ts) = &self.logprob_temperatures {
            if let Some(t) = ts.iter().find(|t| !(**t > 0.0 && t.is_finite())) {
                return Err(bad(
                    "logprob_temperatures",
                    format!("holds {t}; every temperature must be a positive number"),
                ));
            }
        }
        if self.persona_count == Some(0) {
            return Err(bad("persona_count", "is 0; it must be at least 1".into()));
        }
        if self.models.is_empty() {
            return Err(bad(
                "model",
                "is missing; add at least one [[model]] table with key, provider and model".into(),
            ));
        }
        if let Some(m) = self.modes.iter().find(|m| **m == Mode::EmJudge) {
            return Err(bad(
                "modes",
                format!(
                    "includes {:?}; the judge's unit comes with \"em-check\", name that instead",
                    m.name()
                ),
            ));
        }
        if self.modes.contains(&Mode::EmCheck) && self.judge.is_none() {
            return Err(bad(
                "judge",
                "is missing, but `modes` includes \"em-check\", whose answers a judge model scores; add a [judge] table like a [[model]] entry (key, provider, model), e.g. the paper's gpt-4o-2024-08-06".into(),
            ));
        }
        let mut seen = HashMap::new();
        let mut groups: HashMap<&str, (Option<u32>, Option<u64>, &str)> = HashMap::new();
        let entries = self
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("model[{i}]"), m))
            .chain(self.judge.iter().map(|m| ("judge".to_string(), m)));
        for (entry, m) in entries {
            let at = |k: &str| format!("{entry}.{k}");
            if !valid_name(&m.key) {
                return Err(bad(
                    &at("key"),
                    format!(
                        "is {}; a model key starts with a letter or digit and uses only letters, digits, '-', '_' and '.' (1-128 characters)",
                        clip(&m.key)
                    ),
                ));
            }
            if let Some(j) = seen.insert(m.key.as_str(), entry.clone()) {
                return Err(bad(
                    &at("key"),
                    format!(
                        "repeats {:?} of {j}; every model key must be unique (it names the model's files)",
                        m.key
                    ),
                ));
            }
            if m.model.trim().is_empty() {
                return Err(bad(
                    &at("model"),
                    "is empty; name the provider's model id".into(),
                ));
            }
            if let Some(url) = &m.base_url {
                check_base_url(url).map_err(|problem| bad(&at("base_url"), problem))?;
            }
            crate::provider::check_placement(&crate::provider::Placement {
                provider: m.provider,
                base_url: &m.base_url,
                region: &m.region,
                project: &m.project,
                location: &m.location,
                api_version: &m.api_version,
            })
            .map_err(|(k, problem)| bad(&at(k), problem))?;
            if m.rpm == Some(0) {
                return Err(bad(
                    &at("rpm"),
                    "is 0; leave it out for no limit, or give a positive number".into(),
                ));
            }
            if m.tpm == Some(0) {
                return Err(bad(
                    &at("tpm"),
                    "is 0; leave it out for no limit, or give a positive number".into(),
                ));
            }
            if m.concurrency == Some(0) {
                return Err(bad(
                    &at("concurrency"),
                    "is 0; it must be at least 1".into(),
                ));
            }
            for (k, t) in [
                ("timeout_secs", m.timeout_secs),
                ("unreachable_timeout_secs", m.unreachable_timeout_secs),
            ] {
                if let Some(t) = t {
                    if !(t > 0.0 && t.is_finite()) {
                        return Err(bad(
                            &at(k),
                            format!("is {t}; it must be a positive number of seconds"),
                        ));
                    }
                }
            }
            for (k, p) in [
                ("input_price_per_mtok", m.input_price_per_mtok),
                ("output_price_per_mtok", m.output_price_per_mtok),
                ("batch_input_price_per_mtok", m.batch_input_price_per_mtok),
                ("batch_output_price_per_mtok", m.batch_output_price_per_mtok),
            ] {
                if let Some(p) = p {
                    if !(0.0..=MAX_PRICE_PER_MTOK).contains(&p) {
                        return Err(bad(
                            &at(k),
                            format!(
                                "is {p}; a price is US dollars per million tokens, from 0 to {MAX_PRICE_PER_MTOK:.0} (real prices are below 1000; a larger one would make the cost totals overflow)"
                            ),
                        ));
                    }
                }
            }
            self.validate_cost_settings(m)
                .map_err(|(k, problem)| bad(&at(k), problem))?;
            if let Some(env) = &m.api_key_env {
                if env.is_empty() || env.contains('=') {
                    return Err(bad(
                        &at("api_key_env"),
                        format!("is {env:?}; give the name of an environment variable"),
                    ));
                }
                if keys == KeyCheck::Check
                    && std::env::var(env).map(|v| v.is_empty()).unwrap_or(true)
                {
                    return Err(bad(
                        &at("api_key_env"),
                        format!("names {env}, which is not set in the environment; export {env}=<your key> (the key itself never goes in a spec)"),
                    ));
                }
            }
            let samples = self.modes.iter().any(|m| *m != Mode::Logprob);
            if let (Some(why), false, true) = (
                m.temperature_unsupported(),
                m.provider_default_temperature(),
                samples,
            ) {
                return Err(bad(
                    &at("temperature"),
                    format!(
                        "is not set, but model {:?} ({} {:?}) cannot sample at the sweep's temperature {}: {why}. \
                         Add temperature = \"provider-default\" to this [[model]] entry to sample at the provider's default \
                         (its files are then named {}_tempdefault.csv and its metrics say provider-default), \
                         or choose a model that takes a temperature",
                        m.key, m.provider, m.model, self.temperature, m.key
                    ),
                ));
            }
            if let Some(group) = m.rate_group.as_deref() {
                if let Some((rpm, tpm, first)) = groups.get(group) {
                    let conflicting = (m.rpm.is_some() && rpm.is_some() && m.rpm != *rpm)
                        || (m.tpm.is_some() && tpm.is_some() && m.tpm != *tpm);
                    if conflicting {
                        return Err(bad(
                            &at("rate_group"),
                            format!("{group:?} is shared with model {first:?}, but their rpm/tpm differ; models of one rate group share one account's limits, so give them the same rpm and tpm"),
                        ));
                    }
                }
                let e = groups.entry(group).or_insert((None, None, m.key.as_str()));
                e.0 = e.0.or(m.rpm);
                e.1 = e.1.or(m.tpm);
            }
        }
        Ok(())
    }
}

impl SweepSpec {
    /// The instrument the spec names (MFQ-30 when it names none). A path is
    /// taken as given; [`Sweep::from_text`] makes it absolute.
    pub fn instrument(&self) -> Result<Arc<Instrument>, InstrumentError> {
        match (&self.instrument, &self.instrument_definition) {
            (None, _) => Ok(Instrument::mfq30()),
            (Some(name), Some(text)) => Ok(Arc::new(Instrument::parse(text, name)?)),
            (Some(name), None) => Instrument::resolve(name),
        }
    }

    /// How many consecutive slots of `model`'s unit in `mode` one request
    /// answers: a persona's (or the self) repetitions of one item when the
    /// model draws several samples per request (`samples_per_request`,
    /// within the catalog's cap), else 1. The coordinator grants such units
    /// in whole cells with one request permit per cell; a worker asks each
    /// cell's samples together.
    pub fn cell_size(&self, model: &ModelSpec, mode: Mode) -> u32 {
        let reps = self.repetitions.max(1);
        match mode {
            Mode::Persona | Mode::SelfMode if model.profile().samples_for(reps) > 1 => reps,
            _ => 1,
        }
    }

    /// Items per persona and repetition: the instrument's item count (the
    /// MFQ-30's 30 when the instrument cannot be loaded; validation names
    /// that error).
    pub fn item_count(&self) -> usize {
        self.instrument()
            .map(|i| i.item_count())
            .unwrap_or(crate::instrument::ITEM_COUNT)
    }

    /// Checks a model's catalog name, multi-sample and batch settings;
    /// the error is the key (within the model) and what is wrong.
    fn validate_cost_settings(&self, m: &ModelSpec) -> Result<(), (&'static str, String)> {
        use crate::catalog::SamplesPerRequest;
        let catalog = crate::catalog::builtin().map_err(|e| ("catalog", e.to_string()))?;
        let entry = catalog.entry_for(m).map_err(|p| ("catalog", p))?;
        if m.max_samples_per_request == Some(0) {
            return Err((
                "max_samples_per_request",
                "is 0; it must be at least 1 (1: the provider has no multi-sample)".into(),
            ));
        }
        if let Some(SamplesPerRequest::Fixed(k)) = m.samples_per_request {
            let cap = m.max_samples_per_request.or(entry.map(|e| e.max_samples));
            if let Some(cap) = cap.filter(|c| k > *c) {
                let whose = match (m.max_samples_per_request, entry) {
                    (Some(_), _) => "max_samples_per_request".to_string(),
                    (None, Some(e)) => format!("the model catalog's cap for {}", e.name()),
                    (None, None) => String::new(),
                };
                return Err((
                    "samples_per_request",
                    format!(
                        "is {k}, above {whose} ({cap}); use \"auto\" or at most {cap}{}",
                        if cap == 1 {
                            " (this provider returns one sample per request)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        if m.batch == Some(true) {
            if !m.provider.has_batch_api() {
                return Err((
                    "batch",
                    format!(
                        "is true, but provider \"{}\" has no batch API here ({} have one); remove `batch` or use one of those",
                        m.provider,
                        ProviderKind::with_batch_api()
                            .iter()
                            .map(|k| k.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if entry.is_some_and(|e| !e.batch) {
                return Err((
                    "batch",
                    format!(
                        "is true, but the catalog says the provider's batch API does not serve {:?}; remove `batch`",
                        m.model
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Slots of one model in `mode` when the sweep has `personas` personas
    /// (64-bit; saturates instead of wrapping).
    pub fn unit_slots(&self, mode: Mode, personas: u64) -> u64 {
        let q = self.item_count() as u64;
        let n = self.repetitions as u64;
        match mode {
            Mode::Persona => personas.saturating_mul(q).saturating_mul(n),
            Mode::SelfMode => q.saturating_mul(n),
            Mode::Logprob => personas.saturating_mul(q),
            Mode::EmCheck => crate::em::EmCheck::builtin().answers() as u64,
            Mode::EmJudge => crate::em::EmCheck::builtin().judge_slots() as u64,
        }
    }

    /// The units of one model: its modes, and the judge's unit after
    /// `em-check`.
    pub fn unit_modes(&self) -> Vec<Mode> {
        let mut v = self.modes.clone();
        if v.contains(&Mode::EmCheck) {
            v.push(Mode::EmJudge);
        }
        v
    }

    /// The model a key names: one of `models`, or the judge.
    pub fn model_or_judge(&self, key: &str) -> Option<&ModelSpec> {
        self.models
            .iter()
            .chain(self.judge.as_ref())
            .find(|m| m.key == key)
    }

    /// Slots of the whole sweep (every model in every mode) when it has
    /// `personas` personas (64-bit; saturates instead of wrapping).
    pub fn total_slots(&self, personas: u64) -> u64 {
        let per_model = self.unit_modes().iter().fold(0u64, |acc, &m| {
            acc.saturating_add(self.unit_slots(m, personas))
        });
        per_model.saturating_mul(self.models.len() as u64)
    }

    /// Refuses a sweep of more than [`MAX_SWEEP_SLOTS`] slots. The error names
    /// the key furthest above the papers' scale (10 repetitions, 100
    /// personas, a few dozen models). `run`, `run --dry-run`, `submit` and the
    /// coordinator all check this, with the same message.
    pub fn check_size(&self, path: &Path, personas: usize) -> Result<(), SpecError> {
        let p = personas as u64;
        let total = self.total_slots(p);
        if total <= MAX_SWEEP_SLOTS {
            return Ok(());
        }
        let persona_key = if self.persona_count.is_some() {
            "persona_count"
        } else {
            "personas"
        };
        let candidates = [
            ("repetitions", self.repetitions as f64 / 10.0),
            (persona_key, p as f64 / 100.0),
            ("model", self.models.len() as f64 / 50.0),
        ];
        let key = candidates
            .iter()
            .fold(candidates[0], |a, b| if b.1 > a.1 { *b } else { a })
            .0;
        let what = match key {
            "repetitions" => format!("is {}", grouped(self.repetitions as u64)),
            "model" => format!("lists {} models", self.models.len()),
            "persona_count" => format!("is {}", grouped(p)),
            _ => format!("selects {} personas", grouped(p)),
        };
        let parts: Vec<String> = self
            .unit_modes()
            .iter()
            .map(|&m| format!("{} in {m} mode", grouped(self.unit_slots(m, p))))
            .collect();
        let total_text = if total == u64::MAX {
            "more than 18 quintillion".to_string()
        } else {
            grouped(total)
        };
        Err(SpecError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem: format!(
                "{what}: the sweep would have {total_text} slots ({} model(s) x ({})), but a sweep may have at most {} slots (a hundred times the largest real sweeps, which have about a million); lower `repetitions` or `persona_count`, drop modes or models, or split it into several sweeps",
                self.models.len(),
                parts.join(" + "),
                grouped(MAX_SWEEP_SLOTS)
            ),
        })
    }
}

impl Sweep {
    /// Reads, parses and validates a spec file and loads its personas.
    pub fn load(path: &Path, keys: KeyCheck) -> Result<Sweep, SpecError> {
        let text = moralsweep_userfs::read_to_string_bounded(path, moralsweep_userfs::SPEC_LIMIT)
            .map_err(|error| SpecError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Sweep::from_text(&text, path, keys)
    }

    /// Parses and validates spec text whose relative paths are relative to
    /// `path`'s directory.
    pub fn from_text(text: &str, path: &Path, keys: KeyCheck) -> Result<Sweep, SpecError> {
        let mut spec = SweepSpec::parse(text, path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        // An instrument file is relative to the spec file, like `personas`.
        if let Some(name) = &spec.instrument {
            if Instrument::builtin(name).is_none() && Path::new(name).is_relative() {
                spec.instrument = Some(dir.join(name).to_string_lossy().into_owned());
            }
        }
        // A user's instrument travels with the spec (validation names the
        // file if it cannot be read).
        if let Some(name) = &spec.instrument {
            if Instrument::builtin(name).is_none() {
                spec.instrument_definition = moralsweep_userfs::read_to_string_bounded(
                    Path::new(name),
                    moralsweep_userfs::INSTRUMENT_LIMIT,
                )
                .ok();
            }
        }
        spec.validate(path, keys)?;
        let personas_path = dir.join(&spec.personas);
        let mut personas = load_personas(&personas_path).map_err(|error| SpecError::Personas {
            path: path.to_path_buf(),
            error,
        })?;
        if let Some(n) = spec.persona_count {
            if n > personas.len() {
                return Err(SpecError::Invalid {
                    path: path.to_path_buf(),
                    key: "persona_count".into(),
                    problem: format!(
                        "is {n}, but {} holds only {} personas; use at most {}",
                        personas_path.display(),
                        personas.len(),
                        personas.len()
                    ),
                });
            }
            personas.truncate(n);
        }
        spec.check_size(path, personas.len())?;
        let output = dir.join(&spec.output);
        Ok(Sweep {
            def: SweepDef { spec, personas },
            source: path.to_path_buf(),
            output,
        })
    }

    /// Slots of one model in one mode.
    pub fn slots_per_model(&self, mode: Mode) -> u64 {
        self.spec.unit_slots(mode, self.personas.len() as u64)
    }

    /// Slots of the whole sweep.
    pub fn total_slots(&self) -> u64 {
        self.spec.total_slots(self.personas.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
personas = "p.json"
output = "out"
[[model]]
key = "m"
provider = "synthetic"
model = "x"
"#;

    fn err(text: &str) -> String {
        let spec = match SweepSpec::parse(text, Path::new("s.toml")) {
            Ok(s) => s,
            Err(e) => return e.to_string(),
        };
        spec.validate(Path::new("s.toml"), KeyCheck::Check)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn instrument_key() {
        let s = SweepSpec::parse(MINIMAL, Path::new("s.toml")).unwrap();
        assert_eq!(s.instrument().unwrap().name, "mfq-30");
        assert_eq!(s.unit_slots(Mode::Persona, 100), 30_000);
        let bfi = MINIMAL.replace(
            "output = \"out\"",
            "output = \"out\"\ninstrument = \"bfi-44\"",
        );
        let s = SweepSpec::parse(&bfi, Path::new("s.toml")).unwrap();
        s.validate(Path::new("s.toml"), KeyCheck::Check).unwrap();
        assert_eq!(s.instrument().unwrap().name, "bfi-44");
        assert_eq!(s.unit_slots(Mode::Persona, 100), 44_000);
        assert_eq!(s.unit_slots(Mode::SelfMode, 100), 440);
        let e = err(&MINIMAL.replace(
            "output = \"out\"",
            "output = \"out\"\ninstrument = \"bfi-45\"",
        ));
        assert!(
            e.contains("`instrument`") && e.contains("bfi-45") && e.contains("mfq-30, bfi-44"),
            "{e}"
        );
        // Logprob mode reads the MFQ-30's digits only.
        let e = err(&MINIMAL.replace(
            "output = \"out\"",
            "output = \"out\"\ninstrument = \"bfi-44\"\nmodes = [\"logprob\"]",
        ));
        assert!(e.contains("`modes`") && e.contains("bfi-44"), "{e}");
        // A file relative to the spec's directory.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.json"), r#"["a","b"]"#).unwrap();
        std::fs::write(
            dir.path().join("mine.json"),
            include_str!("../instruments/bfi-44.json").replace("\"bfi-44\"", "\"mine\""),
        )
        .unwrap();
        let text = MINIMAL.replace(
            "output = \"out\"",
            "output = \"out\"\ninstrument = \"mine.json\"",
        );
        let sweep = Sweep::from_text(&text, &dir.path().join("s.toml"), KeyCheck::Check).unwrap();
        assert_eq!(sweep.spec.instrument().unwrap().name, "mine");
        assert_eq!(sweep.slots_per_model(Mode::SelfMode), 440);
    }

    #[test]
    fn em_check_needs_a_judge() {
        let em = MINIMAL.replace("name = \"t\"", "name = \"t\"\nmodes = [\"em-check\"]");
        let e = err(&em);
        assert!(e.contains("`judge`") && e.contains("em-check"), "{e}");
        let judged = format!("{em}[judge]\nkey = \"j\"\nprovider = \"synthetic\"\nmodel = \"y\"\n");
        let s = SweepSpec::parse(&judged, Path::new("s.toml")).unwrap();
        s.validate(Path::new("s.toml"), KeyCheck::Check).unwrap();
        assert_eq!(s.unit_modes(), vec![Mode::EmCheck, Mode::EmJudge]);
        assert_eq!(s.total_slots(100), 240 + 480);
        assert_eq!(s.model_or_judge("j").unwrap().model, "y");
        let e = err(&judged.replace("key = \"j\"", "key = \"m\""));
        assert!(e.contains("judge.key") && e.contains("model[0]"), "{e}");
        let e = err(&judged.replace(
            "provider = \"synthetic\"\nmodel = \"y\"",
            "provider = \"nope\"\nmodel = \"y\"",
        ));
        assert!(e.contains("judge.provider"), "{e}");
        let e = err(&MINIMAL.replace("name = \"t\"", "name = \"t\"\nmodes = [\"em-judge\"]"));
        assert!(e.contains("`modes`") && e.contains("em-check"), "{e}");
    }

    #[test]
    fn defaults() {
        let s = SweepSpec::parse(MINIMAL, Path::new("s.toml")).unwrap();
        s.validate(Path::new("s.toml"), KeyCheck::Check).unwrap();
        assert_eq!(s.repetitions, 10);
        assert_eq!(s.temperature, 0.1);
        assert_eq!(s.modes, vec![Mode::Persona, Mode::SelfMode]);
        assert_eq!(s.models[0].rate_group(), "m");
    }

    #[test]
    fn bad_specs_name_the_key() {
        let e = err(&MINIMAL.replace("output", "outptu"));
        assert!(e.contains("s.toml") && e.contains("outptu"), "{e}");
        let e = err(&MINIMAL.replace("name = \"t\"", "name = \"t\"\nrepetitions = 0"));
        assert!(e.contains("`repetitions`"), "{e}");
        let e = err(&MINIMAL.replace("name = \"t\"", "name = \"t\"\ntemperature = 2.5"));
        assert!(e.contains("`temperature`") && e.contains("[0, 2]"), "{e}");
        let e = err(&MINIMAL.replace("synthetic", "openia"));
        assert!(
            e.contains("model[0].provider") && e.contains("openai"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}rpm = 0\n"));
        assert!(e.contains("model[0].rpm"), "{e}");
        let e = err(&format!("{MINIMAL}tpm = 0\n"));
        assert!(e.contains("model[0].tpm"), "{e}");
        let e = err(&format!(
            "{MINIMAL}[[model]]\nkey = \"m\"\nprovider = \"sim\"\nmodel = \"y\"\n"
        ));
        assert!(e.contains("model[1].key") && e.contains("unique"), "{e}");
        let e = err(&format!(
            "{MINIMAL}api_key_env = \"MORALSWEEP_TEST_SURELY_UNSET\"\n"
        ));
        assert!(
            e.contains("model[0].api_key_env") && e.contains("MORALSWEEP_TEST_SURELY_UNSET"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("name = \"t\"", "name = \"a b\""));
        assert!(e.contains("`name`"), "{e}");
    }

    #[test]
    fn models_without_a_temperature_need_provider_default() {
        let anthropic = MINIMAL
            .replace("synthetic", "anthropic")
            .replace("model = \"x\"", "model = \"claude-sonnet-4-5\"");
        let e = err(&anthropic);
        assert!(
            e.contains("model[0].temperature")
                && e.contains("\"m\"")
                && e.contains("0.1")
                && e.contains("provider-default")
                && e.contains("m_tempdefault.csv"),
            "{e}"
        );
        let ok = format!("{anthropic}temperature = \"provider-default\"\n");
        let s = SweepSpec::parse(&ok, Path::new("s.toml")).unwrap();
        s.validate(Path::new("s.toml"), KeyCheck::Skip).unwrap();
        assert_eq!(s.models[0].sampling_temperature(0.1), None);
        // OpenAI reasoning models, by id, by flag, through presets.
        for (provider, model, extra) in [
            ("openai", "o3-mini", ""),
            ("openai", "gpt-5-mini", ""),
            ("openai", "ft:o4-mini-2025-04-16:org::x", ""),
            ("openai", "my-model", "reasoning = true\n"),
            (
                "openai-compatible",
                "openai/o3",
                "reasoning_effort = \"low\"\n",
            ),
        ] {
            let text = MINIMAL
                .replace("synthetic", provider)
                .replace("model = \"x\"", &format!("model = \"{model}\""));
            let e = err(&format!("{text}{extra}"));
            assert!(
                e.contains("model[0].temperature") && e.contains("reasoning"),
                "{model}: {e}"
            );
        }
        // Models that take a temperature keep it; logprob-only sweeps sample nothing.
        let gpt = MINIMAL
            .replace("synthetic", "openai")
            .replace("model = \"x\"", "model = \"gpt-4o\"");
        let s = SweepSpec::parse(&gpt, Path::new("s.toml")).unwrap();
        s.validate(Path::new("s.toml"), KeyCheck::Skip).unwrap();
        assert_eq!(s.models[0].sampling_temperature(0.1), Some(0.1));
        let lp = anthropic.replace("name = \"t\"", "name = \"t\"\nmodes = [\"logprob\"]");
        SweepSpec::parse(&lp, Path::new("s.toml"))
            .unwrap()
            .validate(Path::new("s.toml"), KeyCheck::Skip)
            .unwrap();
        let e = err(&format!("{gpt}temperature = 0.5\n"));
        assert!(
            e.contains("temperature") && e.contains("provider-default"),
            "{e}"
        );
    }

    #[test]
    fn missing_personas_and_count_beyond_file() {
        let dir = tempfile::tempdir().unwrap();
        let spec_path = dir.path().join("s.toml");
        let e = Sweep::from_text(MINIMAL, &spec_path, KeyCheck::Check)
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.json") && e.contains("personas"), "{e}");
        std::fs::write(dir.path().join("p.json"), r#"["a","b"]"#).unwrap();
        let e = Sweep::from_text(
            &MINIMAL.replace("name = \"t\"", "name = \"t\"\npersona_count = 3"),
            &spec_path,
            KeyCheck::Check,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("persona_count") && e.contains("only 2"), "{e}");
        let s = Sweep::from_text(MINIMAL, &spec_path, KeyCheck::Check).unwrap();
        assert_eq!(s.personas.len(), 2);
        assert_eq!(s.slots_per_model(Mode::Persona), 2 * 30 * 10);
        assert_eq!(s.output, dir.path().join("out"));
    }
}
