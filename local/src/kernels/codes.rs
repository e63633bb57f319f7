//! Layer weights held as the file's 8-bit codes ([`crate::quant::Codes`]:
//! `value = scale * q + min`, one scale and offset per 16 values along the
//! inner dimension) in the panel layout of [`super::Packed`]: `q` as `k`
//! rows of [`NR`] codes per panel, `scale` and `min` as `k / 16` rows of
//! [`NR`] per panel. About 1.5 bytes a weight (150 MB for Gemma 3 270M's
//! layers, against 200 MB in half precision) and the file's values exactly,
//! where half precision rounded them to 11 bits.
//!
//! The prefill widens a panel to `f32` (fused multiply-add per value) for
//! the register-blocked kernel; a decoding step reads the codes directly:
//! per block of 16 inner positions it sums `x * q` per column, then adds
//! `scale * sum + min * sum(x)`, so the offset costs one FMA per block.

use super::NR;
use crate::quant::{Codes, CODE_BLOCK};

pub(super) struct CodePanels {
    q: Vec<u8>,
    scale: Vec<f32>,
    min: Vec<f32>,
}

/// One panel's codes, scales and offsets.
#[derive(Clone, Copy)]
pub(super) struct CodePanel<'a> {
    pub(super) q: &'a [u8],
    pub(super) scale: &'a [f32],
    pub(super) min: &'a [f32],
}

impl CodePanels {
    /// From row-major codes of an `[n][k]` matrix (`k` a multiple of 16).
    pub(super) fn pack(c: &Codes, n: usize, k: usize) -> CodePanels {
        assert!(k.is_multiple_of(CODE_BLOCK));
        let kb = k / CODE_BLOCK;
        assert!(c.q.len() == n * k && c.scale.len() == n * kb && c.min.len() == n * kb);
        let panels = n.div_ceil(NR);
        let mut out = CodePanels {
            q: vec![0; panels * k * NR],
            scale: vec![0.0; panels * kb * NR],
            min: vec![0.0; panels * kb * NR],
        };
        for j in 0..n {
            let (panel, col) = (j / NR, j % NR);
            for p in 0..k {
                out.q[panel * k * NR + p * NR + col] = c.q[j * k + p];
            }
            for b in 0..kb {
                let at = panel * kb * NR + b * NR + col;
                out.scale[at] = c.scale[j * kb + b];
                out.min[at] = c.min[j * kb + b];
            }
        }
        out
    }

    pub(super) fn bytes(&self) -> usize {
        self.q.len() + 4 * (self.scale.len() + self.min.len())
    }

    pub(super) fn panel(&self, p: usize, k: usize) -> CodePanel<'_> {
        let kb = k / CODE_BLOCK;
        CodePanel {
            q: &self.q[p * k * NR..(p + 1) * k * NR],
            scale: &self.scale[p * kb * NR..(p + 1) * kb * NR],
            min: &self.min[p * kb * NR..(p + 1) * kb * NR],
        }
    }
}

/// Panel `p` widened to `f32` (`k` rows of [`NR`]) into `dst`.
pub(super) fn widen(panel: CodePanel<'_>, k: usize, dst: &mut [f32]) {
    assert!(dst.len() >= k * NR && panel.q.len() >= k * NR);
    #[cfg(target_arch = "x86_64")]
    {
        if super::class::avx2() {
            // SAFETY: the class never exceeds what the CPU supports; lengths
            // checked above.
            return unsafe { widen_avx2(panel, k, dst) };
        }
    }
    for p in 0..k {
        let b = (p / CODE_BLOCK) * NR;
        for l in 0..NR {
            dst[p * NR + l] = panel.scale[b + l] * panel.q[p * NR + l] as f32 + panel.min[b + l];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn widen_avx2(panel: CodePanel<'_>, k: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let (q, d) = (panel.q.as_ptr(), dst.as_mut_ptr());
    for blk in 0..k / CODE_BLOCK {
        let s = panel.scale.as_ptr().add(blk * NR);
        let m = panel.min.as_ptr().add(blk * NR);
        let mut grid = [(_mm256_setzero_ps(), _mm256_setzero_ps()); 4];
        for (i, g) in grid.iter_mut().enumerate() {
            *g = (_mm256_loadu_ps(s.add(8 * i)), _mm256_loadu_ps(m.add(8 * i)));
        }
        for p in blk * CODE_BLOCK..(blk + 1) * CODE_BLOCK {
            for (i, &(sv, mv)) in grid.iter().enumerate() {
                let codes = _mm_loadl_epi64(q.add(p * NR + 8 * i) as *const __m128i);
                let v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(codes));
                _mm256_storeu_ps(d.add(p * NR + 8 * i), _mm256_fmadd_ps(sv, v, mv));
            }
        }
    }
}

/// `rows` rows of `a` (row stride `k`) times one code panel read directly,
/// into `cols` (<= NR) columns of `c` (row stride `ldc`); one row at a time
/// (a decoding step has one).
///
/// # Safety
/// AVX2 and FMA must be supported; `c` must point at `rows` rows of `cols`
/// writable values `ldc` apart; `a` must hold `rows * k` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn small_codes_avx2(
    rows: usize,
    a: &[f32],
    k: usize,
    panel: CodePanel<'_>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= rows * k && panel.q.len() >= k * NR);
    let q = panel.q.as_ptr();
    for r in 0..rows {
        let x = a.as_ptr().add(r * k);
        let mut acc = [_mm256_setzero_ps(); 4];
        for blk in 0..k / CODE_BLOCK {
            let mut part = [_mm256_setzero_ps(); 4];
            let mut xsum = 0f32;
            for p in blk * CODE_BLOCK..(blk + 1) * CODE_BLOCK {
                let xv = *x.add(p);
                xsum += xv;
                let av = _mm256_set1_ps(xv);
                for (i, s) in part.iter_mut().enumerate() {
                    let codes = _mm_loadl_epi64(q.add(p * NR + 8 * i) as *const __m128i);
                    let v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(codes));
                    *s = _mm256_fmadd_ps(av, v, *s);
                }
            }
            let (sp, mp) = (
                panel.scale.as_ptr().add(blk * NR),
                panel.min.as_ptr().add(blk * NR),
            );
            let xs = _mm256_set1_ps(xsum);
            for (i, s) in acc.iter_mut().enumerate() {
                *s = _mm256_fmadd_ps(_mm256_loadu_ps(sp.add(8 * i)), part[i], *s);
                *s = _mm256_fmadd_ps(_mm256_loadu_ps(mp.add(8 * i)), xs, *s);
            }
        }
        super::store_avx(c.add(r * ldc), &acc, cols);
    }
}
