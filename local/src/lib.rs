//! `moralsweep-local`: a language model computed in-process on the CPU, for
//! offline sweeps and for logprob mode with the exact next-token distribution.
//!
//! The pieces: [`gguf`] reads a GGUF file (metadata and tensor directory),
//! [`quant`] dequantises its tensors, [`tokenizer`] rebuilds the
//! SentencePiece tokenizer from the file's metadata, [`model`] runs the
//! Gemma 3 decoder, [`engine`] adds prefix caching, sampling and the digit
//! distribution the rating protocol needs.
//!
//! # Why our own implementation, in `f32`
//!
//! Two ways were open: bindings to llama.cpp (a registry crate compiling its
//! C++ sources) or a Rust implementation. Bindings need cmake and a C++
//! toolchain on every machine and add minutes of C++ compilation to every fresh
//! build on two cores; candle's quantized CPU path was measured at about 40
//! prompt tokens/s on this model, far too slow. The model is small (about
//! 100M parameters outside the embedding), so every weight is dequantised to
//! `f32` once at load (about 1.1 GB in memory) and a prompt is processed as
//! one batch of positions: each projection becomes a matrix-matrix product
//! that a packed, vectorised SGEMM runs near the cores' peak. That keeps the
//! whole model in a few hundred lines of plain Rust with one small
//! dependency (`matrixmultiply`), computes logits more exactly than a
//! quantised-activation path does, and reaches hundreds of prompt tokens per
//! second (see `benches/prefill.rs`).

pub mod engine;
pub mod gguf;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod tokenizer;
pub mod weights;

use std::path::PathBuf;

pub use engine::{Engine, EngineOptions, NextToken};
pub use model::{Config, KvCache, Model};
pub use tokenizer::Tokenizer;

/// What can go wrong loading or running a local model.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Input(String),
}
