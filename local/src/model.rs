//! The Gemma 3 decoder, computed in `f32` on the CPU (weights held in half precision).
//!
//! Per layer: RMSNorm, fused Q/K/V projection, per-head RMSNorm of queries and
//! keys (QK-norm), NeoX rotary embeddings (base 10 000 on the sliding-window
//! layers, `gemma3.rope.freq_base` on the global ones), queries scaled by
//! `1/sqrt(head_dim)`, grouped-query attention (causal; a local layer sees the
//! last `gemma3.attention.sliding_window` positions), output projection,
//! post-attention RMSNorm and residual; then RMSNorm, GeGLU (tanh GELU of the
//! gate times the up projection), down projection, post-FFN RMSNorm and
//! residual. Every sixth layer is global. Embeddings are scaled by
//! `sqrt(hidden)`; the output head is the (tied) embedding matrix. GGUF
//! stores Gemma's norm weights with the `1 +` already folded in.
//!
//! Prompts are processed as one batch of positions (prefill), so every
//! projection is a matrix-matrix product; [`KvCache`] keeps the keys and values
//! of processed positions so that a shared prefix is computed once.

use std::path::Path;

use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::dequantize;
use crate::LocalError;

/// The model's shape, read from the `gemma3.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub eps: f32,
    pub rope_base_global: f64,
    pub rope_base_local: f64,
    pub rope_scale_global: f64,
    pub sliding_window: usize,
    /// Every `swa_pattern`-th layer attends globally.
    pub swa_pattern: usize,
    pub attn_scale: f32,
    pub vocab: usize,
    pub context_length: usize,
}

impl Config {
    pub fn from_gguf(f: &GgufFile) -> Result<Config, LocalError> {
        let arch = f.get_str("general.architecture")?;
        if arch != "gemma3" {
            return Err(LocalError::Unsupported(format!(
                "{}: general.architecture is {arch:?}; this build runs \"gemma3\" models",
                f.path.display()
            )));
        }
        let u = |k: &str| f.get_u64(&format!("gemma3.{k}")).map(|v| v as usize);
        let n_embd = u("embedding_length")?;
        let n_head = u("attention.head_count")?;
        let head_dim = f
            .metadata
            .get("gemma3.attention.key_length")
            .and_then(|v| v.as_u64())
            .map_or(n_embd / n_head.max(1), |v| v as usize);
        let n_head_kv = f
            .metadata
            .get("gemma3.attention.head_count_kv")
            .and_then(|v| v.as_u64())
            .map_or(n_head, |v| v as usize);
        if let Some(v) = f
            .metadata
            .get("gemma3.attention.value_length")
            .and_then(|v| v.as_u64())
        {
            if v as usize != head_dim {
                return Err(LocalError::Unsupported(format!(
                    "{}: value_length {v} differs from key_length {head_dim}",
                    f.path.display()
                )));
            }
        }
        let embd = f.tensor("token_embd.weight")?;
        let vocab = *embd.dims.get(1).unwrap_or(&0) as usize;
        let opt_f = |k: &str| f.metadata.get(k).and_then(|v| v.as_f64());
        let cfg = Config {
            n_embd,
            n_layer: u("block_count")?,
            n_head,
            n_head_kv,
            head_dim,
            n_ff: u("feed_forward_length")?,
            eps: opt_f("gemma3.attention.layer_norm_rms_epsilon").unwrap_or(1e-6) as f32,
            rope_base_global: opt_f("gemma3.rope.freq_base").unwrap_or(1e6),
            rope_base_local: 10_000.0,
            rope_scale_global: opt_f("gemma3.rope.scaling.factor").map_or(1.0, |s| {
                if s > 0.0 {
                    1.0 / s
                } else {
                    1.0
                }
            }),
            sliding_window: f
                .metadata
                .get("gemma3.attention.sliding_window")
                .and_then(|v| v.as_u64())
                .unwrap_or(512) as usize,
            swa_pattern: 6,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            vocab,
            context_length: u("context_length").unwrap_or(32768),
        };
        if cfg.n_head == 0
            || cfg.n_head_kv == 0
            || !cfg.n_head.is_multiple_of(cfg.n_head_kv)
            || !head_dim.is_multiple_of(2)
        {
            return Err(LocalError::Unsupported(format!(
                "{}: head counts {}/{} with head size {head_dim} are not supported",
                f.path.display(),
                cfg.n_head,
                cfg.n_head_kv
            )));
        }
        Ok(cfg)
    }

    pub fn is_global(&self, layer: usize) -> bool {
        self.swa_pattern == 0 || layer % self.swa_pattern == self.swa_pattern - 1
    }
}

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
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    wo: Mat,
    post_attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    /// Gate and up stacked: `[2 n_ff][n_embd]`.
    w_gate_up: Mat,
    w_down: Mat,
    post_ffw_norm: Vec<f32>,
}

/// A Gemma 3 model: layer weights packed in half precision, computed in `f32`.
pub struct Model {
    pub cfg: Config,
    layers: Vec<Layer>,
    /// `[vocab][n_embd]`: input embedding and (tied) output head.
    embed: Embedding,
    output_norm: Vec<f32>,
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

impl Model {
    /// Loads and dequantises every weight of a Gemma 3 GGUF file.
    pub fn load(path: &Path) -> Result<Model, LocalError> {
        let f = GgufFile::open(path)?;
        Self::from_gguf(&f)
    }

    pub fn from_gguf(f: &GgufFile) -> Result<Model, LocalError> {
        let cfg = Config::from_gguf(f)?;
        let (e, hd, ff) = (cfg.n_embd, cfg.head_dim, cfg.n_ff);
        let (qd, kvd) = (cfg.n_head * hd, cfg.n_head_kv * hd);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(Layer {
                attn_norm: load_tensor(f, &n("attn_norm"), &[e])?,
                wqkv: load_mat(
                    f,
                    &[&n("attn_q"), &n("attn_k"), &n("attn_v")],
                    e,
                    &[qd, kvd, kvd],
                )?,
                q_norm: load_tensor(f, &n("attn_q_norm"), &[hd])?,
                k_norm: load_tensor(f, &n("attn_k_norm"), &[hd])?,
                wo: load_mat(f, &[&n("attn_output")], qd, &[e])?,
                post_attn_norm: load_tensor(f, &n("post_attention_norm"), &[e])?,
                ffn_norm: load_tensor(f, &n("ffn_norm"), &[e])?,
                w_gate_up: load_mat(f, &[&n("ffn_gate"), &n("ffn_up")], e, &[ff, ff])?,
                w_down: load_mat(f, &[&n("ffn_down")], ff, &[e])?,
                post_ffw_norm: load_tensor(f, &n("post_ffw_norm"), &[e])?,
            });
        }
        let et = f.tensor("token_embd.weight")?;
        let embed =
            if et.ty == crate::gguf::TensorType::Q8_0 && et.dims == [e as u64, cfg.vocab as u64] {
                Embedding::Q8(crate::kernels::Q8Matrix::from_q8_0(
                    f.tensor_bytes(et),
                    cfg.vocab,
                    e,
                ))
            } else {
                Embedding::F32(load_rows(f, &["token_embd.weight"], e, &[cfg.vocab])?)
            };
        if f.tensors.contains_key("output.weight") {
            return Err(LocalError::Unsupported(format!(
                "{}: a separate output.weight (untied head) is not supported",
                f.path.display()
            )));
        }
        let output_norm = load_tensor(f, "output_norm.weight", &[e])?;
        Ok(Model {
            cfg,
            layers,
            embed,
            output_norm,
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
        let scale = (e as f32).sqrt();
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
        let rope_local = RopeTable::new(&positions, hd, c.rope_base_local, 1.0);
        let rope_global = RopeTable::new(&positions, hd, c.rope_base_global, c.rope_scale_global);
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
                let (qr, rest) = row.split_at_mut(qd);
                let (kr, vr) = rest.split_at_mut(kvd);
                for head in qr.chunks_exact_mut(hd) {
                    rms_norm_inplace(head, &l.q_norm, c.eps);
                    rope.apply(head, i);
                    for v in head.iter_mut() {
                        *v *= c.attn_scale;
                    }
                }
                for head in kr.chunks_exact_mut(hd) {
                    rms_norm_inplace(head, &l.k_norm, c.eps);
                    rope.apply(head, i);
                }
                q[i * qd..(i + 1) * qd].copy_from_slice(qr);
                kc.extend_from_slice(kr);
                vc.extend_from_slice(vr);
            }
            let window = if c.is_global(li) {
                usize::MAX
            } else {
                c.sliding_window
            };
            attention(&q, kc, vc, &mut att, t, past, c, window);
            matmul_wt(&att, &l.wo, &mut o, t);
            for i in 0..t {
                let (orow, xrow) = (&mut o[i * e..(i + 1) * e], &mut x[i * e..(i + 1) * e]);
                rms_norm_inplace(orow, &l.post_attn_norm, c.eps);
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
                for ((a, &gv), &uv) in act[i * ff..(i + 1) * ff].iter_mut().zip(g).zip(u) {
                    *a = gelu_tanh(gv) * uv;
                }
            }
            matmul_wt(&act, &l.w_down, &mut o, t);
            for i in 0..t {
                let (orow, xrow) = (&mut o[i * e..(i + 1) * e], &mut x[i * e..(i + 1) * e]);
                rms_norm_inplace(orow, &l.post_ffw_norm, c.eps);
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
        match &self.embed {
            Embedding::F32(m) => crate::kernels::gemv_rows(m, hidden, &mut out),
            Embedding::Q8(m) => m.gemv(hidden, &mut out),
        }
        out
    }
}

/// cos/sin of NeoX rotary embeddings for a run of positions.
struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    fn new(positions: &[usize], head_dim: usize, base: f64, scale: f64) -> RopeTable {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for i in 0..half {
                let theta = p as f64 * scale * base.powf(-2.0 * i as f64 / head_dim as f64);
                cos.push(theta.cos() as f32);
                sin.push(theta.sin() as f32);
            }
        }
        RopeTable { half, cos, sin }
    }

    fn apply(&self, x: &mut [f32], row: usize) {
        let h = self.half;
        let (cs, sn) = (
            &self.cos[row * h..(row + 1) * h],
            &self.sin[row * h..(row + 1) * h],
        );
        let (a, b) = x.split_at_mut(h);
        for i in 0..h {
            let (x0, x1) = (a[i], b[i]);
            a[i] = x0 * cs[i] - x1 * sn[i];
            b[i] = x0 * sn[i] + x1 * cs[i];
        }
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
