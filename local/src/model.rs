//! The decoder forward pass, computed in `f32` on the CPU (weights held in
//! half precision), for every architecture [`crate::arch`] describes.
//!
//! Per layer: RMSNorm, fused Q/K/V projection (plus biases where the file has
//! them: Qwen 2), per-head RMSNorm of queries and keys where the architecture
//! has QK-norm (Gemma 3, Qwen 3), rotary embeddings (the architecture's
//! pairing, base and, for Llama 3, per-frequency factors; Gemma's
//! sliding-window layers have their own base), queries scaled, grouped-query
//! attention (causal; a sliding-window layer sees the last `sliding_window`
//! positions; Gemma 2 soft-caps the scores), output projection, post-attention
//! RMSNorm (Gemma) and residual; then RMSNorm, the gated feed-forward layer
//! (GeGLU for Gemma, SwiGLU otherwise), post-FFN RMSNorm (Gemma) and residual.
//! Gemma scales embeddings by `sqrt(hidden)`; the output head is the tied
//! embedding matrix unless the file has `output.weight`; Gemma 2 soft-caps
//! the logits. GGUF stores Gemma's norm weights with the `1 +` already folded
//! in.
//!
//! Prompts are processed as one batch of positions (prefill), so every
//! projection is a matrix-matrix product; [`KvCache`] keeps the keys and values
//! of processed positions so that a shared prefix is computed once.

use std::path::Path;

use crate::arch::Activation;
pub use crate::arch::Config;
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::dequantize;
use crate::rope::RopeTable;
use crate::LocalError;

/// A layer's weight matrix `[out][in]`, packed once, at load, into panels of
/// output columns in half precision ([`crate::kernels::Packed`]): one copy
/// serves the prefill's matrix products and the decoding steps.
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub packed: crate::kernels::Packed,
}

impl Mat {
    /// From row-major `[rows][cols]` values.
    fn new(data: &[f32], rows: usize, cols: usize) -> Mat {
        Mat {
            rows,
            cols,
            packed: crate::kernels::Packed::from_rows(data, rows, cols),
        }
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Q, K and V stacked: `[(n_head + 2 n_head_kv) head_dim][n_embd]`.
    wqkv: Mat,
    /// Q, K and V biases stacked like `wqkv` (Qwen 2).
    qkv_bias: Option<Vec<f32>>,
    /// Per-head RMSNorm weights of queries and keys (QK-norm).
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    wo: Mat,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    /// Gate and up stacked: `[2 n_ff][n_embd]`.
    w_gate_up: Mat,
    w_down: Mat,
    post_ffw_norm: Option<Vec<f32>>,
}

/// A decoder model: layer weights packed in half precision, computed in `f32`.
pub struct Model {
    pub cfg: Config,
    layers: Vec<Layer>,
    /// `[vocab][n_embd]`: input embedding and, unless `output` is set, the
    /// (tied) output head.
    embed: Embedding,
    /// A separate output head (`output.weight`), `[vocab][n_embd]`.
    output: Option<Embedding>,
    output_norm: Vec<f32>,
    /// Llama 3's rope frequency factors (`rope_freqs.weight`, `head_dim/2`).
    rope_freqs: Option<Vec<f32>>,
}

/// The embedding matrix: kept as Q8_0 when the file stores it so (the output
/// head reads all of it for every distribution), else in f32.
enum Embedding {
    /// Row-major `[vocab][n_embd]`.
    F32(Vec<f32>),
    Q8(crate::kernels::Q8Matrix),
}

/// Keys and values of the positions processed so far.
#[derive(Clone, Default)]
pub struct KvCache {
    /// The tokens at positions `0..len`.
    pub tokens: Vec<u32>,
    /// Per layer: `[pos][n_head_kv * head_dim]`.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Keeps the first `n` positions (their keys and values depend on those
    /// tokens only, so a truncated cache is exact).
    pub fn truncate(&mut self, n: usize, kv_dim: usize) {
        if n >= self.tokens.len() {
            return;
        }
        self.tokens.truncate(n);
        for l in self.k.iter_mut().chain(self.v.iter_mut()) {
            l.truncate(n * kv_dim);
        }
    }

    /// A copy of the first `n` positions (copying only those).
    pub fn prefix(&self, n: usize, kv_dim: usize) -> KvCache {
        let n = n.min(self.tokens.len());
        KvCache {
            tokens: self.tokens[..n].to_vec(),
            k: self.k.iter().map(|l| l[..n * kv_dim].to_vec()).collect(),
            v: self.v.iter().map(|l| l[..n * kv_dim].to_vec()).collect(),
        }
    }

    /// Bytes held (allocated).
    pub fn bytes(&self) -> usize {
        self.k
            .iter()
            .chain(self.v.iter())
            .map(|l| l.capacity() * 4)
            .sum()
    }
}

fn load_vec(f: &GgufFile, t: &TensorInfo) -> Result<Vec<f32>, LocalError> {
    let mut out = Vec::with_capacity(t.elements());
    if !dequantize(t.ty, f.tensor_bytes(t), &mut out) {
        return Err(LocalError::Unsupported(format!(
            "{}: tensor {:?} has type {:?}, which this build cannot dequantise",
            f.path.display(),
            t.name,
            t.ty
        )));
    }
    Ok(out)
}

fn load_tensor(f: &GgufFile, name: &str, dims: &[usize]) -> Result<Vec<f32>, LocalError> {
    let t = f.tensor(name)?;
    let got: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    if got != dims {
        return Err(LocalError::Format {
            path: f.path.clone(),
            message: format!("tensor {name:?} has shape {got:?}, expected {dims:?}"),
        });
    }
    load_vec(f, t)
}

/// Tensors of `cols` inputs stacked by rows (`rows[i]` outputs each), as one
/// row-major `[sum rows][cols]` array.
fn load_rows(
    f: &GgufFile,
    names: &[&str],
    cols: usize,
    rows: &[usize],
) -> Result<Vec<f32>, LocalError> {
    let mut data = Vec::with_capacity(cols * rows.iter().sum::<usize>());
    for (n, &r) in names.iter().zip(rows) {
        data.extend(load_tensor(f, n, &[cols, r])?);
    }
    Ok(data)
}

/// [`load_rows`] as a layer [`Mat`]: kept as the file's 8-bit codes where
/// every stacked tensor is a quantised grid (`quant::dequantize_codes`),
/// else packed from `f32`.
fn load_mat(f: &GgufFile, names: &[&str], cols: usize, rows: &[usize]) -> Result<Mat, LocalError> {
    let n: usize = rows.iter().sum();
    if cols.is_multiple_of(crate::quant::CODE_BLOCK) {
        let mut codes = crate::quant::Codes::default();
        let mut all = true;
        for (name, &r) in names.iter().zip(rows) {
            let t = f.tensor(name)?;
            if t.dims != [cols as u64, r as u64]
                || !crate::quant::dequantize_codes(t.ty, f.tensor_bytes(t), &mut codes)
            {
                all = false;
                break;
            }
        }
        if all && codes.q.len() == n * cols {
            return Ok(Mat {
                rows: n,
                cols,
                packed: crate::kernels::Packed::from_codes(&codes, n, cols),
            });
        }
    }
    Ok(Mat::new(&load_rows(f, names, cols, rows)?, n, cols))
}

/// An embedding-shaped matrix `[vocab][n_embd]`: kept in Q8_0 when the file
/// stores it so, else dequantised to f32.
fn load_embedding(
    f: &GgufFile,
    name: &str,
    e: usize,
    vocab: usize,
) -> Result<Embedding, LocalError> {
    let t = f.tensor(name)?;
    Ok(
        if t.ty == crate::gguf::TensorType::Q8_0 && t.dims == [e as u64, vocab as u64] {
            Embedding::Q8(crate::kernels::Q8Matrix::from_q8_0(
                f.tensor_bytes(t),
                vocab,
                e,
            ))
        } else {
            Embedding::F32(load_rows(f, &[name], e, &[vocab])?)
        },
    )
}

/// Tensors some files of a supported architecture carry but this engine
/// does not apply: refuse them rather than compute something else.
fn reject_unused_tensors(f: &GgufFile) -> Result<(), LocalError> {
    const UNUSED: &[&str] = &[
        "attn_output.bias",
        "ffn_gate.bias",
        "ffn_up.bias",
        "ffn_down.bias",
        "attn_qkv.weight",
        "ffn_gate_inp.weight",
    ];
    let found = f.tensors.keys().find(|k| {
        k.as_str() == "output.bias"
            || k.as_str() == "rope_factors_long.weight"
            || UNUSED
                .iter()
                .any(|u| k.starts_with("blk.") && k.ends_with(&format!(".{u}")))
    });
    match found {
        Some(k) => Err(LocalError::Unsupported(format!(
            "{}: tensor {k:?} is not supported by this engine",
            f.path.display()
        ))),
        None => Ok(()),
    }
}

impl Model {
    /// Loads and dequantises every weight of a GGUF file.
    pub fn load(path: &Path) -> Result<Model, LocalError> {
        let f = GgufFile::open(path)?;
        Self::from_gguf(&f)
    }

    pub fn from_gguf(f: &GgufFile) -> Result<Model, LocalError> {
        let cfg = Config::from_gguf(f)?;
        reject_unused_tensors(f)?;
        let (e, hd, ff) = (cfg.n_embd, cfg.head_dim, cfg.n_ff);
        let (qd, kvd) = (cfg.n_head * hd, cfg.n_head_kv * hd);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let bias = |s: &str| format!("blk.{i}.{s}.bias");
            let has_bias = ["attn_q", "attn_k", "attn_v"]
                .iter()
                .any(|s| f.tensors.contains_key(&bias(s)));
            let qkv_bias = if has_bias {
                let mut b = load_tensor(f, &bias("attn_q"), &[qd])?;
                b.extend(load_tensor(f, &bias("attn_k"), &[kvd])?);
                b.extend(load_tensor(f, &bias("attn_v"), &[kvd])?);
                Some(b)
            } else {
                None
            };
            let norm =
                |s: &str, len: usize, present: bool| -> Result<Option<Vec<f32>>, LocalError> {
                    present.then(|| load_tensor(f, &n(s), &[len])).transpose()
                };
            layers.push(Layer {
                attn_norm: load_tensor(f, &n("attn_norm"), &[e])?,
                wqkv: load_mat(
                    f,
                    &[&n("attn_q"), &n("attn_k"), &n("attn_v")],
                    e,
                    &[qd, kvd, kvd],
                )?,
                qkv_bias,
                q_norm: norm("attn_q_norm", hd, cfg.qk_norm)?,
                k_norm: norm("attn_k_norm", hd, cfg.qk_norm)?,
                wo: load_mat(f, &[&n("attn_output")], qd, &[e])?,
                post_attn_norm: norm("post_attention_norm", e, cfg.post_norms)?,
                ffn_norm: load_tensor(f, &n("ffn_norm"), &[e])?,
                w_gate_up: load_mat(f, &[&n("ffn_gate"), &n("ffn_up")], e, &[ff, ff])?,
                w_down: load_mat(f, &[&n("ffn_down")], ff, &[e])?,
                post_ffw_norm: norm("post_ffw_norm", e, cfg.post_norms)?,
            });
        }
        let embed = load_embedding(f, "token_embd.weight", e, cfg.vocab)?;
        let output = if f.tensors.contains_key("output.weight") {
            Some(load_embedding(f, "output.weight", e, cfg.vocab)?)
        } else {
            None
        };
        let rope_freqs = if f.tensors.contains_key("rope_freqs.weight") {
            let v = load_tensor(f, "rope_freqs.weight", &[hd / 2])?;
            if let Some(bad) = v.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                return Err(LocalError::Format {
                    path: f.path.clone(),
                    message: format!(
                        "tensor \"rope_freqs.weight\" holds {bad}: rope factors must be positive"
                    ),
                });
            }
            Some(v)
        } else {
            None
        };
        let output_norm = load_tensor(f, "output_norm.weight", &[e])?;
        Ok(Model {
            cfg,
            layers,
            embed,
            output,
            output_norm,
            rope_freqs,
        })
    }

    pub fn kv_dim(&self) -> usize {
        self.cfg.n_head_kv * self.cfg.head_dim
    }

    /// An empty cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            tokens: vec![],
            k: vec![vec![]; self.cfg.n_layer],
            v: vec![vec![]; self.cfg.n_layer],
        }
    }

    /// Processes `tokens` after the positions already in `cache`, appending
    /// their keys and values, and returns the final hidden state (after the
    /// output norm) of the last position.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, LocalError> {
        let c = &self.cfg;
        let t = tokens.len();
        if t == 0 {
            return Err(LocalError::Input(
                "nothing to process: empty token list".into(),
            ));
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= c.vocab) {
            return Err(LocalError::Input(format!(
                "token id {bad} outside the vocabulary of {}",
                c.vocab
            )));
        }
        if cache.k.len() != c.n_layer {
            *cache = self.new_cache();
        }
        let past = cache.len();
        let (e, hd) = (c.n_embd, c.head_dim);
        let (qd, kvd) = (c.n_head * hd, c.n_head_kv * hd);
        let qkv_w = qd + 2 * kvd;
        let scale = c.embed_scale.unwrap_or(1.0);
        let mut x = vec![0f32; t * e];
        for (i, &id) in tokens.iter().enumerate() {
            let xr = &mut x[i * e..(i + 1) * e];
            match &self.embed {
                Embedding::F32(m) => xr.copy_from_slice(&m[id as usize * e..(id as usize + 1) * e]),
                Embedding::Q8(m) => m.row(id as usize, xr),
            }
            for o in xr.iter_mut() {
                *o *= scale;
            }
        }
        let mut h = vec![0f32; t * e];
        let mut qkv = vec![0f32; t * qkv_w];
        let mut q = vec![0f32; t * qd];
        let mut att = vec![0f32; t * qd];
        let mut o = vec![0f32; t * e];
        let mut gu = vec![0f32; t * 2 * c.n_ff];
        let mut act = vec![0f32; t * c.n_ff];
        let positions: Vec<usize> = (past..past + t).collect();
        let factors = self.rope_freqs.as_deref();
        let rope_local = RopeTable::new(
            &positions,
            hd,
            c.rope_base_local,
            c.rope_scale_local,
            c.rope_style,
            factors,
        );
        let rope_global = RopeTable::new(
            &positions,
            hd,
            c.rope_base_global,
            c.rope_scale_global,
            c.rope_style,
            factors,
        );
        for (li, l) in self.layers.iter().enumerate() {
            rms_norm_rows(&x, &mut h, &l.attn_norm, e, c.eps);
            matmul_wt(&h, &l.wqkv, &mut qkv, t);
            let rope = if c.is_global(li) {
                &rope_global
            } else {
                &rope_local
            };
            let (kc, vc) = (&mut cache.k[li], &mut cache.v[li]);
            // Exactly the new positions: a kept cache holds no slack.
            kc.reserve_exact(t * kvd);
            vc.reserve_exact(t * kvd);
            for i in 0..t {
                let row = &mut qkv[i * qkv_w..(i + 1) * qkv_w];
                if let Some(b) = &l.qkv_bias {
                    for (v, bv) in row.iter_mut().zip(b) {
                        *v += bv;
                    }
                }
                let (qr, rest) = row.split_at_mut(qd);
                let (kr, vr) = rest.split_at_mut(kvd);
                for head in qr.chunks_exact_mut(hd) {
                    if let Some(w) = &l.q_norm {
                        rms_norm_inplace(head, w, c.eps);
                    }
                    rope.apply(head, i);
                    for v in head.iter_mut() {
                        *v *= c.attn_scale;
                    }
                }
                for head in kr.chunks_exact_mut(hd) {
                    if let Some(w) = &l.k_norm {
                        rms_norm_inplace(head, w, c.eps);
                    }
                    rope.apply(head, i);
                }
                q[i * qd..(i + 1) * qd].copy_from_slice(qr);
                kc.extend_from_slice(kr);
                vc.extend_from_slice(vr);
            }
            attention(&q, kc, vc, &mut att, t, past, c, c.window(li));
            matmul_wt(&att, &l.wo, &mut o, t);
            for i in 0..t {
                let (orow, xrow) = (&mut o[i * e..(i + 1) * e], &mut x[i * e..(i + 1) * e]);
                if let Some(w) = &l.post_attn_norm {
                    rms_norm_inplace(orow, w, c.eps);
                }
                for (xv, ov) in xrow.iter_mut().zip(orow.iter()) {
                    *xv += ov;
                }
            }
            rms_norm_rows(&x, &mut h, &l.ffn_norm, e, c.eps);
            matmul_wt(&h, &l.w_gate_up, &mut gu, t);
            let ff = c.n_ff;
            for i in 0..t {
                let row = &gu[i * 2 * ff..(i + 1) * 2 * ff];
                let (g, u) = row.split_at(ff);
                let out = act[i * ff..(i + 1) * ff].iter_mut().zip(g).zip(u);
                match c.activation {
                    Activation::GeluTanh => {
                        for ((a, &gv), &uv) in out {
                            *a = gelu_tanh(gv) * uv;
                        }
                    }
                    Activation::Silu => {
                        for ((a, &gv), &uv) in out {
                            *a = gv / (1.0 + (-gv).exp()) * uv;
                        }
                    }
                }
            }
            matmul_wt(&act, &l.w_down, &mut o, t);
            for i in 0..t {
                let (orow, xrow) = (&mut o[i * e..(i + 1) * e], &mut x[i * e..(i + 1) * e]);
                if let Some(w) = &l.post_ffw_norm {
                    rms_norm_inplace(orow, w, c.eps);
                }
                for (xv, ov) in xrow.iter_mut().zip(orow.iter()) {
                    *xv += ov;
                }
            }
        }
        cache.tokens.extend_from_slice(tokens);
        let mut last = x[(t - 1) * e..t * e].to_vec();
        rms_norm_inplace(&mut last, &self.output_norm, c.eps);
        Ok(last)
    }

    /// The logits of the whole vocabulary for a final hidden state.
    pub fn logits(&self, hidden: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; self.cfg.vocab];
        match self.output.as_ref().unwrap_or(&self.embed) {
            Embedding::F32(m) => crate::kernels::gemv_rows(m, hidden, &mut out),
            Embedding::Q8(m) => m.gemv(hidden, &mut out),
        }
        if let Some(cap) = self.cfg.final_softcap {
            for v in out.iter_mut() {
                *v = cap * (*v / cap).tanh();
            }
        }
        out
    }
}

fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (ss + eps).sqrt();
    for (v, &wv) in x.iter_mut().zip(w) {
        *v = *v * r * wv;
    }
}

fn rms_norm_rows(x: &[f32], out: &mut [f32], w: &[f32], n: usize, eps: f32) {
    out.copy_from_slice(x);
    for row in out.chunks_exact_mut(n) {
        rms_norm_inplace(row, w, eps);
    }
}

fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
                                // tanh(y) = 1 - 2 / (exp(2y) + 1): libm's expf is several times faster
                                // than its tanhf, and exact enough (absolute error ~1e-7).
    let y = C * (x + 0.044_715 * x * x * x);
    let th = 1.0 - 2.0 / ((2.0 * y).exp() + 1.0);
    0.5 * x * (1.0 + th)
}

/// `out[t][rows] = x[t][cols] . w^T`.
fn matmul_wt(x: &[f32], w: &Mat, out: &mut [f32], t: usize) {
    crate::kernels::gemm_packed(t, &x[..t * w.cols], &w.packed, &mut out[..t * w.rows]);
}

/// Causal grouped-query attention of `t` new positions after `past` cached
/// ones; `window` limits how far back a position looks.
#[allow(clippy::too_many_arguments)]
fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    t: usize,
    past: usize,
    c: &Config,
    window: usize,
) {
    let hd = c.head_dim;
    let (qd, kvd) = (c.n_head * hd, c.n_head_kv * hd);
    let total = past + t;
    let group = c.n_head / c.n_head_kv;
    let mut s = vec![0f32; t * total];
    for h in 0..c.n_head {
        let g = h / group;
        // s[t][total] = q_h[t][hd] . k_g[total][hd]^T
        crate::kernels::sgemm(
            t,
            hd,
            total,
            &q[h * hd..],
            (qd as isize, 1),
            &k[g * hd..],
            (1, kvd as isize),
            &mut s,
            (total as isize, 1),
        );
        for i in 0..t {
            let p = past + i;
            let lo = if window == usize::MAX {
                0
            } else {
                (p + 1).saturating_sub(window)
            };
            let row = &mut s[i * total..(i + 1) * total];
            if let Some(cap) = c.attn_softcap {
                for val in row[lo..=p].iter_mut() {
                    *val = cap * (*val / cap).tanh();
                }
            }
            let m = row[lo..=p]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (j, val) in row.iter_mut().enumerate() {
                if j < lo || j > p {
                    *val = 0.0;
                } else {
                    *val = (*val - m).exp();
                    sum += *val;
                }
            }
            let inv = 1.0 / sum;
            for val in row[lo..=p].iter_mut() {
                *val *= inv;
            }
        }
        // out_h[t][hd] = s[t][total] . v_g[total][hd]
        crate::kernels::sgemm(
            t,
            total,
            hd,
            &s,
            (total as isize, 1),
            &v[g * hd..],
            (kvd as isize, 1),
            &mut out[h * hd..],
            (qd as isize, 1),
        );
    }
}
