//! The output head's matrix: the embedding kept in its Q8_0 blocks, and the
//! product of all its rows with one hidden state (a distribution's logits).
//!
//! The hidden state is quantised once per product to 16-bit integers with
//! one scale per 32 values (relative error below 2e-5 of each block's
//! largest value, far inside the conformance tolerances), so that the AVX2
//! path multiplies integers: per block of 32, two sign extensions of the
//! weights, two `vpmaddwd` and one conversion, where widening every weight to
//! `f32` took four extensions, four conversions and four FMAs. The product
//! reads the whole 262k x 640 matrix for every distribution, so this is most
//! of a decoding step.

use super::par_rows;

/// A matrix stored as Q8_0 blocks (32 signed bytes and one scale each), kept
/// in that form because it is read whole for every output distribution:
/// 4x less memory traffic than `f32`, and the same values.
pub struct Q8Matrix {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols` quantised values, row-major.
    pub qs: Vec<i8>,
    /// One scale per 32 values.
    pub scales: Vec<f32>,
}

/// A vector quantised to 16-bit integers, one scale per 32 values.
struct Q16 {
    q: Vec<i16>,
    d: Vec<f32>,
}

impl Q16 {
    fn of(x: &[f32]) -> Q16 {
        let mut q = Vec::with_capacity(x.len());
        let mut d = Vec::with_capacity(x.len() / 32);
        for b in x.chunks(32) {
            let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = amax / 32767.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            d.push(scale);
            q.extend(b.iter().map(|v| (v * inv).round() as i16));
        }
        Q16 { q, d }
    }
}

impl Q8Matrix {
    /// From GGUF Q8_0 bytes (34 per block: f16 scale, 32 values).
    pub fn from_q8_0(bytes: &[u8], rows: usize, cols: usize) -> Q8Matrix {
        let blocks = rows * cols / 32;
        let mut qs = Vec::with_capacity(rows * cols);
        let mut scales = Vec::with_capacity(blocks);
        for b in bytes.chunks_exact(34).take(blocks) {
            scales.push(crate::quant::f16_to_f32(u16::from_le_bytes([b[0], b[1]])));
            qs.extend(b[2..34].iter().map(|&q| q as i8));
        }
        Q8Matrix {
            rows,
            cols,
            qs,
            scales,
        }
    }

    /// Row `r` in f32.
    pub fn row(&self, r: usize, out: &mut [f32]) {
        let (q, s) = (
            &self.qs[r * self.cols..(r + 1) * self.cols],
            &self.scales[r * self.cols / 32..],
        );
        for (i, (o, &v)) in out.iter_mut().zip(q).enumerate() {
            *o = v as f32 * s[i / 32];
        }
    }

    /// `out[r] = row_r . x` for every row.
    pub fn gemv(&self, x: &[f32], out: &mut [f32]) {
        let cols = self.cols;
        assert!(x.len() == cols && out.len() == self.rows && cols.is_multiple_of(32));
        let xq = Q16::of(x);
        let dot = pick_dot();
        par_rows(out, 4096, |r| {
            let w = &self.qs[r * cols..(r + 1) * cols];
            let s = &self.scales[r * cols / 32..(r + 1) * cols / 32];
            // SAFETY: `pick_dot` returns a path this CPU supports; the
            // operands have `cols` values and `cols / 32` scales each.
            unsafe { dot(w, s, &xq) }
        });
    }
}

type Dot = unsafe fn(&[i8], &[f32], &Q16) -> f32;

fn pick_dot() -> Dot {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return dot_avx2;
        }
    }
    dot_portable
}

/// The same integer products and scaling as the AVX2 path.
unsafe fn dot_portable(w: &[i8], scales: &[f32], x: &Q16) -> f32 {
    let mut total = 0f32;
    for ((wb, &dw), (xb, &dx)) in w
        .chunks_exact(32)
        .zip(scales)
        .zip(x.q.chunks_exact(32).zip(&x.d))
    {
        let s: i32 = wb.iter().zip(xb).map(|(&a, &b)| a as i32 * b as i32).sum();
        total += s as f32 * (dw * dx);
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(w: &[i8], scales: &[f32], x: &Q16) -> f32 {
    use std::arch::x86_64::*;
    let blocks = (w.len() / 32).min(scales.len()).min(x.d.len());
    let (pw, px) = (w.as_ptr(), x.q.as_ptr());
    let mut acc = _mm256_setzero_ps();
    for b in 0..blocks {
        let wp = pw.add(b * 32) as *const __m128i;
        let xp = px.add(b * 32) as *const __m256i;
        let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp));
        let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(1)));
        // |w| <= 128, |x| <= 32767: each pair sum fits, and so does the sum
        // of the two (32 products, below 2^28).
        let s = _mm256_add_epi32(
            _mm256_madd_epi16(w0, _mm256_loadu_si256(xp)),
            _mm256_madd_epi16(w1, _mm256_loadu_si256(xp.add(1))),
        );
        let d = _mm256_set1_ps(*scales.get_unchecked(b) * *x.d.get_unchecked(b));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
    }
    let hi = _mm256_extractf128_ps(acc, 1);
    let v = _mm_add_ps(_mm256_castps256_ps128(acc), hi);
    let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    let v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));
    _mm_cvtss_f32(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both paths against the product of the dequantised rows in f64.
    #[test]
    fn the_integer_products_match_the_dequantised_rows() {
        let (rows, cols) = (37, 96);
        let mut bytes = vec![];
        for r in 0..rows {
            for blk in 0..cols / 32 {
                let d = 0.01 + 0.003 * ((r + blk) % 5) as f32;
                bytes.extend(super::super::f32_to_f16(d).to_le_bytes());
                bytes.extend((0..32).map(|i| ((i * 37 + r * 11 + blk * 5) % 255) as u8));
            }
        }
        let m = Q8Matrix::from_q8_0(&bytes, rows, cols);
        // Blocks of very different sizes, a zero block and a negative one.
        let x: Vec<f32> = (0..cols)
            .map(|i| match i / 32 {
                0 => (i as f32 - 15.5) * 0.37,
                1 => 0.0,
                _ => -((i * 7 % 13) as f32) * 1e-3,
            })
            .collect();
        let mut row = vec![0f32; cols];
        let want: Vec<f64> = (0..rows)
            .map(|r| {
                m.row(r, &mut row);
                row.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum()
            })
            .collect();
        let xq = Q16::of(&x);
        let mut paths: Vec<(&str, Dot)> = vec![("portable", dot_portable)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                paths.push(("avx2", dot_avx2));
            }
        }
        for (name, dot) in paths {
            for (r, &w) in want.iter().enumerate() {
                let got = unsafe {
                    dot(
                        &m.qs[r * cols..(r + 1) * cols],
                        &m.scales[r * cols / 32..(r + 1) * cols / 32],
                        &xq,
                    )
                } as f64;
                assert!(
                    (got - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{name} row {r}: {got} vs {w}"
                );
            }
        }
        let mut out = vec![0f32; rows];
        m.gemv(&x, &mut out);
        for (g, w) in out.iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()));
        }
    }
}
