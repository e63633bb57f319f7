//! `openai-compatible`: any server speaking OpenAI's Chat Completions, with
//! presets for the common ones (base URL, key variable, attribution headers,
//! how many top logprobs they return), and `sim`: the same wire format
//! pointed at `moralsweep sim`.
//!
//! | preset | base URL | key variable |
//! | --- | --- | --- |
//! | `openrouter` | `https://openrouter.ai/api/v1` | `OPENROUTER_API_KEY` |
//! | `deepseek` | `https://api.deepseek.com/v1` | `DEEPSEEK_API_KEY` |
//! | `xai` | `https://api.x.ai/v1` | `XAI_API_KEY` |
//! | `together` | `https://api.together.xyz/v1` | `TOGETHER_API_KEY` |
//! | `fireworks` | `https://api.fireworks.ai/inference/v1` | `FIREWORKS_API_KEY` |
//! | `groq` | `https://api.groq.com/openai/v1` | `GROQ_API_KEY` |
//! | `vllm` | `http://localhost:8000/v1` | `VLLM_API_KEY` (optional) |
//! | `llamacpp` | `http://localhost:8080/v1` | `LLAMACPP_API_KEY` (optional) |
//! | `ollama` | `http://localhost:11434/v1` | none |
//!
//! OpenRouter gets its attribution headers (`HTTP-Referer`, `X-Title`); the
//! spec's `headers` override them. A spec's `base_url` overrides a preset's.

use moralsweep_common::ModelSpec;

use super::http::KeyPolicy;
use super::openai::{Flavor, OpenAi};
use super::ProviderError;

/// Where the simulator listens by default (`moralsweep sim`).
pub const SIM_BASE: &str = "http://127.0.0.1:8089/v1";

/// One preset of `openai-compatible`.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub base_url: &'static str,
    pub key_env: Option<&'static str>,
    pub key_required: bool,
    pub headers: &'static [(&'static str, &'static str)],
    pub max_top_logprobs: u32,
}

/// The presets, by name.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        key_env: Some("OPENROUTER_API_KEY"),
        key_required: true,
        headers: &[
            ("HTTP-Referer", "https://github.com/moralsweep/moralsweep"),
            ("X-Title", "moralsweep"),
        ],
        max_top_logprobs: 20,
    },
    Preset {
        name: "deepseek",
        base_url: "https://api.deepseek.com/v1",
        key_env: Some("DEEPSEEK_API_KEY"),
        key_required: true,
        headers: &[],
        max_top_logprobs: 20,
    },
    Preset {
        name: "xai",
        base_url: "https://api.x.ai/v1",
        key_env: Some("XAI_API_KEY"),
        key_required: true,
        headers: &[],
        max_top_logprobs: 8,
    },
    Preset {
        name: "together",
        base_url: "https://api.together.xyz/v1",
        key_env: Some("TOGETHER_API_KEY"),
        key_required: true,
        headers: &[],
        max_top_logprobs: 20,
    },
    Preset {
        name: "fireworks",
        base_url: "https://api.fireworks.ai/inference/v1",
        key_env: Some("FIREWORKS_API_KEY"),
        key_required: true,
        headers: &[],
        max_top_logprobs: 5,
    },
    Preset {
        name: "groq",
        base_url: "https://api.groq.com/openai/v1",
        key_env: Some("GROQ_API_KEY"),
        key_required: true,
        headers: &[],
        max_top_logprobs: 20,
    },
    Preset {
        name: "vllm",
        base_url: "http://localhost:8000/v1",
        key_env: Some("VLLM_API_KEY"),
        key_required: false,
        headers: &[],
        max_top_logprobs: 20,
    },
    Preset {
        name: "llamacpp",
        base_url: "http://localhost:8080/v1",
        key_env: Some("LLAMACPP_API_KEY"),
        key_required: false,
        headers: &[],
        max_top_logprobs: 20,
    },
    Preset {
        name: "ollama",
        base_url: "http://localhost:11434/v1",
        key_env: None,
        key_required: false,
        headers: &[],
        max_top_logprobs: 20,
    },
];

/// The preset of a name.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// An `openai-compatible` model.
pub fn build(spec: &ModelSpec) -> Result<OpenAi, ProviderError> {
    let flavor = match spec.preset.as_deref() {
        Some(name) => {
            let p = preset(name).ok_or_else(|| {
                ProviderError::Fatal(format!(
                    "model {:?}: preset {name:?} is unknown; expected one of {}",
                    spec.key,
                    PRESETS
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            Flavor {
                default_base: Some(p.base_url),
                key: KeyPolicy {
                    default_env: p.key_env,
                    required: p.key_required,
                },
                headers: p.headers.to_vec(),
                max_top_logprobs: p.max_top_logprobs,
                seed: true,
                responses: false,
                detect_reasoning: false,
            }
        }
        None => Flavor {
            default_base: None,
            key: KeyPolicy {
                default_env: None,
                required: false,
            },
            headers: vec![],
            max_top_logprobs: 20,
            seed: true,
            responses: false,
            detect_reasoning: false,
        },
    };
    OpenAi::new(spec, flavor)
}

/// A `sim` model: OpenAI's wire format against `moralsweep sim` (default
/// `http://127.0.0.1:8089/v1`; a `base_url` without a path gets `/v1`).
pub fn build_sim(spec: &ModelSpec) -> Result<OpenAi, ProviderError> {
    let mut spec = spec.clone();
    if let Some(base) = &spec.base_url {
        let trimmed = base.trim_end_matches('/');
        let has_path = trimmed
            .split_once("://")
            .map(|(_, rest)| rest.contains('/'))
            .unwrap_or(false);
        if !has_path {
            spec.base_url = Some(format!("{trimmed}/v1"));
        }
    }
    OpenAi::new(
        &spec,
        Flavor {
            default_base: Some(SIM_BASE),
            key: KeyPolicy {
                default_env: Some("MORALSWEEP_SIM_KEY"),
                required: false,
            },
            headers: vec![],
            max_top_logprobs: 20,
            seed: true,
            responses: true,
            detect_reasoning: false,
        },
    )
}
