//! `moralsweep-local`: a language model computed in-process on the CPU, for
//! offline sweeps and for logprob mode with the exact next-token distribution.
//!
//! The pieces: [`gguf`] reads a GGUF file (metadata and tensor directory),
//! [`quant`] dequantises its tensors, [`tokenizer`] rebuilds the
//! SentencePiece or byte-level BPE tokenizer from the file's metadata,
//! [`arch`] describes the supported architectures (Gemma 3, Gemma 2, Llama
//! 3.x and Mistral, Qwen 2.5, Qwen 3) by what differs between them, [`model`]
//! runs the decoder, [`engine`] adds prefix caching, sampling, the chat
//! templates and the digit distribution the rating protocol needs.
//!
//! # Why our own implementation, computing in `f32`
//!
//! Two ways were open: bindings to llama.cpp (a registry crate compiling its
//! C++ sources) or a Rust implementation. Bindings need cmake and a C++
//! toolchain on every machine and add minutes of C++ compilation to every
//! fresh build on two cores (and llama.cpp's native build crashed on this
//! machine's AMX-capable Xeon while recording the fixtures); candle's
//! quantized CPU path was measured at about 40 prompt tokens/s on this model,
//! far too slow. The model is small (about 100M parameters outside the
//! embedding), so a prompt is processed as one batch of positions: every
//! projection becomes a matrix-matrix product. Layer weights are packed once,
//! at load, into panels of 32 output columns (`kernels::Packed`): as the
//! file's own 8-bit codes with a scale and an offset per 16 values where the
//! tensor is a quantised grid (every ggml block type: the file's values
//! exactly, about 1.5 bytes a weight, 150 MB for Gemma 3 270M), else in half
//! precision. The prefill widens one panel at a time to `f32` for a
//! register-blocked micro-kernel (12 x 32 on AVX-512, 6 x 16 on AVX2+FMA, a
//! portable body elsewhere; `kernels::gemm_packed`, split over the cores by
//! panels), and a decoding step reads the codes directly (it only streams
//! the weights, so fewer bytes is less time). The 262k x 640 embedding,
//! which the output head reads whole for every distribution, stays in the
//! file's Q8_0 blocks; the head multiplies them as integers with the hidden
//! state quantised to 16 bits per 32-value block (`kernels::Q8Matrix`). The
//! logits agree with llama.cpp run on an f32 copy of the same weights
//! (`tests/llamacpp_fixtures.rs`) and with the earlier all-`f32` engine
//! (`tests/engine_conformance.rs`) within 0.02 nats; llama.cpp's own
//! quantised-activation path is further off. Speed: `benches/prefill.rs`,
//! side by side with llama.cpp.
//!
//! Layer: above `moralsweep-common` (its only workspace dependency); the
//! worker uses it behind its default feature `local`.

pub mod arch;
pub mod engine;
pub mod gguf;
pub mod kernels;
pub mod model;
pub mod quant;
mod rope;
pub mod tokenizer;
pub mod weights;

use std::path::PathBuf;

pub use engine::{Engine, EngineOptions, NextToken};
pub use model::{Config, KvCache, Model};
pub use tokenizer::Tokenizer;

/// What can go wrong loading or running a local model.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The io error's text is in the message (not a `source()`), so a
    /// printed chain shows it once.
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Input(String),
}
