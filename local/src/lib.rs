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
//! embedding), so the weights are dequantised once at load and a prompt is
//! processed as one batch of positions: every projection becomes a
//! matrix-matrix product. Layer weights are packed once, at load, in half
//! precision, into panels of 32 output columns (`kernels::Packed`, 200 MB
//! for Gemma 3 270M), which the prefill widens to `f32` one panel at a time
//! for a register-blocked micro-kernel (12 x 32 on AVX-512, 6 x 16 on
//! AVX2+FMA, a portable body elsewhere; `kernels::gemm_packed`, split over
//! the cores by panels) and a decoding step reads directly (it only streams
//! the weights, so half the bytes is about half the time). The 262k x 640
//! embedding, which the output head reads whole for every distribution,
//! stays in the file's Q8_0 blocks with a hand-vectorised dot product. The
//! logits agree with llama.cpp run on an f32 copy of the same weights to
//! about 0.009 nats (`tests/llamacpp_fixtures.rs`) and with the earlier
//! all-`f32` engine to 0.003 (`tests/engine_conformance.rs`), more exactly
//! than a quantised-activation path does. Speed: `benches/prefill.rs`.
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
