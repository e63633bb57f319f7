//! Tokenizers built once per identity and shared between models: a
//! fine-tune's checkpoints carry their base model's vocabulary, so a sweep
//! over them builds it once ([`crate::Engine::load_shared`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::Tokenizer;
use crate::gguf::{GgufFile, Value};
use crate::LocalError;

/// What a file's tokenizer is made of: the SHA-256 of every
/// `tokenizer.ggml.*` metadata entry (the only keys
/// [`Tokenizer::from_gguf`] reads), keys and values, in key order.
pub fn identity(f: &GgufFile) -> [u8; 32] {
    let mut h = Sha256::new();
    for (k, v) in f.metadata.range("tokenizer.ggml.".to_string()..) {
        if !k.starts_with("tokenizer.ggml.") {
            break;
        }
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        feed(&mut h, v);
    }
    h.finalize().into()
}

/// A value into the hash, with its type and lengths, so that no two values
/// feed the same bytes.
fn feed(h: &mut Sha256, v: &Value) {
    let (tag, bytes): (u8, Vec<u8>) = match v {
        Value::U8(x) => (0, x.to_le_bytes().to_vec()),
        Value::I8(x) => (1, x.to_le_bytes().to_vec()),
        Value::U16(x) => (2, x.to_le_bytes().to_vec()),
        Value::I16(x) => (3, x.to_le_bytes().to_vec()),
        Value::U32(x) => (4, x.to_le_bytes().to_vec()),
        Value::I32(x) => (5, x.to_le_bytes().to_vec()),
        Value::U64(x) => (6, x.to_le_bytes().to_vec()),
        Value::I64(x) => (7, x.to_le_bytes().to_vec()),
        Value::F32(x) => (8, x.to_le_bytes().to_vec()),
        Value::F64(x) => (9, x.to_le_bytes().to_vec()),
        Value::Bool(x) => (10, vec![*x as u8]),
        Value::Str(s) => {
            h.update([11]);
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
            return;
        }
        Value::Array(items) => {
            h.update([12]);
            h.update((items.len() as u64).to_le_bytes());
            for item in items {
                feed(h, item);
            }
            return;
        }
    };
    h.update([tag]);
    h.update(bytes);
}

/// Tokenizers by [`identity`], each built once.
#[derive(Default)]
pub struct SharedTokenizers {
    known: Mutex<HashMap<[u8; 32], Arc<Tokenizer>>>,
    built: AtomicUsize,
}

impl SharedTokenizers {
    /// The tokenizer of `f`: one built before for the same identity, else
    /// built now and kept.
    pub fn get(&self, f: &GgufFile) -> Result<Arc<Tokenizer>, LocalError> {
        let id = identity(f);
        if let Some(t) = self.lock().get(&id) {
            return Ok(t.clone());
        }
        let t = Arc::new(Tokenizer::from_gguf(f)?);
        self.built.fetch_add(1, Ordering::Relaxed);
        Ok(self.lock().entry(id).or_insert(t).clone())
    }

    /// Tokenizers built so far.
    pub fn built(&self) -> usize {
        self.built.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Tokenizer>>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}
