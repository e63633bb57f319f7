//! The decoder architectures the engine runs, described by what differs
//! between them, and the model shape read from a GGUF file's `<arch>.*`
//! metadata.
//!
//! Every supported architecture is a pre-norm transformer with RMSNorm,
//! grouped-query attention, rotary position embeddings and a gated
//! feed-forward layer; they differ in a handful of switches ([`Config`]):
//!
//! | GGUF `general.architecture` | models | what differs |
//! | --- | --- | --- |
//! | `gemma3` | Gemma 3 | embeddings scaled by `sqrt(hidden)`, QK-norm, post-attention and post-FFN norms, GeGLU, every 6th layer global (others a sliding window, rope base 10 000) |
//! | `gemma2` | Gemma 2 | as Gemma 3 without QK-norm; attention and final logit soft-capping (`tanh`), every 2nd layer global |
//! | `llama` | Llama 2/3.x, Mistral | SwiGLU, rope on adjacent pairs (GGUF permutes Q/K for it), Llama 3's per-frequency rope factors (`rope_freqs.weight`), optional untied output head |
//! | `qwen2` | Qwen 2 / 2.5 | SwiGLU, NeoX rope, Q/K/V biases |
//! | `qwen3` | Qwen 3 | SwiGLU, NeoX rope, QK-norm, no biases |
//!
//! Which tensors a layer has (biases, QK-norm weights, post norms) follows
//! from the architecture; [`crate::model`] loads and runs them.

use crate::gguf::{GgufFile, Value};
use crate::LocalError;

/// A supported decoder architecture (GGUF `general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Gemma3,
    Gemma2,
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    /// The GGUF names of the supported architectures.
    pub const SUPPORTED: &'static [&'static str] = &["gemma3", "gemma2", "llama", "qwen2", "qwen3"];

    pub fn from_name(name: &str) -> Option<Arch> {
        Some(match name {
            "gemma3" => Arch::Gemma3,
            "gemma2" => Arch::Gemma2,
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Gemma3 => "gemma3",
            Arch::Gemma2 => "gemma2",
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// The architecture of a GGUF file, or an error naming it and the
    /// supported ones.
    pub fn of(f: &GgufFile) -> Result<Arch, LocalError> {
        let name = f.get_str("general.architecture")?;
        Arch::from_name(name).ok_or_else(|| {
            LocalError::Unsupported(format!(
                "{}: general.architecture is {name:?}, which this build cannot run; supported architectures: {}",
                f.path.display(),
                Arch::SUPPORTED.join(", ")
            ))
        })
    }

    fn is_gemma(self) -> bool {
        matches!(self, Arch::Gemma2 | Arch::Gemma3)
    }
}

/// How rotary embeddings pair the values of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Value `i` with value `i + head_dim/2` (GPT-NeoX; Gemma, Qwen).
    Neox,
    /// Value `2i` with value `2i + 1` (Llama; GGUF permutes Q and K for it).
    Adjacent,
}

/// The gate's activation in the gated feed-forward layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GeGLU with the tanh approximation of GELU (Gemma).
    GeluTanh,
    /// SwiGLU (Llama, Mistral, Qwen).
    Silu,
}

/// The model's shape and the switches of its architecture, read from the
/// `<arch>.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub eps: f32,
    pub rope_style: RopeStyle,
    /// Rope base of the global (full-attention) layers.
    pub rope_base_global: f64,
    /// Rope base of the sliding-window layers.
    pub rope_base_local: f64,
    /// Position scale of the global layers (1 / `rope.scaling.factor`).
    pub rope_scale_global: f64,
    /// Position scale of the sliding-window layers.
    pub rope_scale_local: f64,
    pub sliding_window: usize,
    /// Per layer: whether it attends only to the last `sliding_window`
    /// positions.
    pub swa_layers: Vec<bool>,
    /// Queries are multiplied by this before attention.
    pub attn_scale: f32,
    pub activation: Activation,
    /// Embeddings are multiplied by this (Gemma: `sqrt(n_embd)`).
    pub embed_scale: Option<f32>,
    /// Per-head RMSNorm of queries and keys before rope.
    pub qk_norm: bool,
    /// RMSNorm of the attention and feed-forward outputs before the residual.
    pub post_norms: bool,
    /// `c * tanh(score / c)` of the attention scores (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// `c * tanh(logit / c)` of the output logits (Gemma 2).
    pub final_softcap: Option<f32>,
    pub vocab: usize,
    pub context_length: usize,
}

impl Config {
    pub fn from_gguf(f: &GgufFile) -> Result<Config, LocalError> {
        let arch = Arch::of(f)?;
        let name = arch.name();
        let key = |k: &str| format!("{name}.{k}");
        let u = |k: &str| f.get_u64(&key(k)).map(|v| v as usize);
        let opt_u = |k: &str| f.metadata.get(&key(k)).and_then(Value::as_u64);
        let opt_f = |k: &str| f.metadata.get(&key(k)).and_then(Value::as_f64);
        let n_embd = u("embedding_length")?;
        let n_head = u("attention.head_count")?;
        let n_layer = u("block_count")?;
        let head_dim = opt_u("attention.key_length").map_or(n_embd / n_head.max(1), |v| v as usize);
        let n_head_kv = opt_u("attention.head_count_kv").map_or(n_head, |v| v as usize);
        let bad =
            |message: String| LocalError::Unsupported(format!("{}: {message}", f.path.display()));
        if let Some(v) = opt_u("attention.value_length") {
            if v as usize != head_dim {
                return Err(bad(format!(
                    "value_length {v} differs from key_length {head_dim}"
                )));
            }
        }
        if let Some(v) = opt_u("rope.dimension_count") {
            if v as usize != head_dim {
                return Err(bad(format!(
                    "{} is {v}: rotary embeddings over part of a head (head size {head_dim}) are not supported",
                    key("rope.dimension_count")
                )));
            }
        }
        if opt_u("expert_count").is_some_and(|n| n > 0) {
            return Err(bad(format!(
                "{} is set: mixture-of-experts models are not supported",
                key("expert_count")
            )));
        }
        let embd = f.tensor("token_embd.weight")?;
        let vocab = *embd.dims.get(1).unwrap_or(&0) as usize;
        let rope_base = opt_f("rope.freq_base");
        let rope_scale = opt_f("rope.scaling.factor")
            .or_else(|| opt_f("rope.scale_linear"))
            .map_or(1.0, |s| if s > 0.0 { 1.0 / s } else { 1.0 });
        if let Some(Value::Str(t)) = f.metadata.get(&key("rope.scaling.type")) {
            if !matches!(t.as_str(), "none" | "linear") {
                return Err(bad(format!(
                    "{} is {t:?}: only \"none\" and \"linear\" rope scaling are supported",
                    key("rope.scaling.type")
                )));
            }
        }
        let sliding_window = opt_u("attention.sliding_window").map(|v| v as usize);
        // Which layers use the sliding window: an explicit per-layer array,
        // else every `pattern`-th layer is global (llama.cpp's convention).
        let swa_layers = |default_pattern: usize| -> Result<Vec<bool>, LocalError> {
            match f.metadata.get(&key("attention.sliding_window_pattern")) {
                Some(Value::Array(a)) if a.len() == n_layer => {
                    Ok(a.iter().map(|v| v.as_bool().unwrap_or(false)).collect())
                }
                Some(Value::Array(a)) => Err(bad(format!(
                    "{} has {} entries for {n_layer} layers",
                    key("attention.sliding_window_pattern"),
                    a.len()
                ))),
                other => {
                    let p = other
                        .and_then(Value::as_u64)
                        .map_or(default_pattern, |v| v as usize);
                    Ok((0..n_layer).map(|l| p != 0 && l % p < p - 1).collect())
                }
            }
        };
        let eps = opt_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-6) as f32;
        let mut cfg = Config {
            arch,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff: u("feed_forward_length")?,
            eps,
            rope_style: RopeStyle::Neox,
            rope_base_global: rope_base.unwrap_or(10_000.0),
            rope_base_local: rope_base.unwrap_or(10_000.0),
            rope_scale_global: rope_scale,
            rope_scale_local: rope_scale,
            sliding_window: sliding_window.unwrap_or(usize::MAX),
            swa_layers: vec![false; n_layer],
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            activation: Activation::Silu,
            embed_scale: None,
            qk_norm: false,
            post_norms: false,
            attn_softcap: None,
            final_softcap: None,
            vocab,
            context_length: u("context_length").unwrap_or(32768),
        };
        if arch.is_gemma() {
            cfg.activation = Activation::GeluTanh;
            cfg.embed_scale = Some((n_embd as f32).sqrt());
            cfg.post_norms = true;
        }
        match arch {
            Arch::Gemma3 => {
                cfg.qk_norm = true;
                cfg.rope_base_global = rope_base.unwrap_or(1e6);
                cfg.rope_base_local = 10_000.0;
                cfg.rope_scale_local = 1.0;
                cfg.sliding_window = sliding_window.unwrap_or(512);
                cfg.swa_layers = swa_layers(6)?;
                if n_layer == 62 {
                    cfg.attn_scale = 1.0 / ((n_embd / n_head.max(1)) as f32).sqrt();
                }
            }
            Arch::Gemma2 => {
                cfg.rope_base_local = opt_f("rope.freq_base_swa").unwrap_or(cfg.rope_base_global);
                cfg.sliding_window = sliding_window.unwrap_or(4096);
                cfg.swa_layers = swa_layers(2)?;
                cfg.attn_softcap = Some(opt_f("attn_logit_softcapping").unwrap_or(50.0) as f32);
                cfg.final_softcap = Some(opt_f("final_logit_softcapping").unwrap_or(30.0) as f32);
                // Gemma 2 27B (46 layers) scales queries by the hidden size
                // per head rather than the head size (as llama.cpp does).
                if n_layer == 46 {
                    cfg.attn_scale = 1.0 / ((n_embd / n_head.max(1)) as f32).sqrt();
                }
            }
            Arch::Llama => {
                cfg.rope_style = RopeStyle::Adjacent;
                // Mistral's sliding window is not applied by llama.cpp's
                // `llama` graph either: every layer attends globally.
                cfg.sliding_window = usize::MAX;
                if let Some(s) = opt_f("attention.scale").filter(|&s| s != 0.0) {
                    cfg.attn_scale = s as f32;
                }
            }
            Arch::Qwen2 => {
                cfg.sliding_window = usize::MAX;
            }
            Arch::Qwen3 => {
                cfg.qk_norm = true;
                cfg.sliding_window = usize::MAX;
            }
        }
        if cfg.n_head == 0
            || cfg.n_head_kv == 0
            || !cfg.n_head.is_multiple_of(cfg.n_head_kv)
            || !head_dim.is_multiple_of(2)
            || head_dim == 0
        {
            return Err(bad(format!(
                "head counts {}/{} with head size {head_dim} are not supported",
                cfg.n_head, cfg.n_head_kv
            )));
        }
        if cfg.sliding_window == 0 {
            return Err(bad(format!("{} is 0", key("attention.sliding_window"))));
        }
        Ok(cfg)
    }

    /// Whether `layer` attends to every earlier position (else to the last
    /// `sliding_window`).
    pub fn is_global(&self, layer: usize) -> bool {
        !self.swa_layers.get(layer).copied().unwrap_or(false)
    }

    /// Positions layer `layer` looks back over (`usize::MAX`: all).
    pub fn window(&self, layer: usize) -> usize {
        if self.is_global(layer) {
            usize::MAX
        } else {
            self.sliding_window
        }
    }
}
