//! The numeric kernels everything else is built on: the product of
//! activations with a layer's weights packed once at load ([`packed`]: the
//! prefill's matrix-matrix products and the one-position decoding steps), a
//! strided `f32` matrix product for attention (matrixmultiply's packed SGEMM,
//! which picks AVX2/FMA kernels at run time), and the row-wise
//! matrix-vector product of the output head, split over threads and
//! vectorised by hand because it reads the whole 262k x 640 embedding.
//!
//! Which kernels run is [`class`]'s: the CPU's best, or a lower class forced
//! by `MORALSWEEP_CPU=avx512|avx2|portable` ([`CPU_ENV`]).

mod class;
mod codes;
mod packed;
mod q8;

pub use class::{class, detected, from_env, resolve, set_class, CpuClass, CPU_ENV};
pub use packed::{gemm_packed, Packed};
pub use q8::Q8Matrix;

/// Columns of a [`Packed`] panel: two AVX-512 registers, four AVX2 ones.
/// Here, not in `packed`, since `codes` lays its panels out the same way.
pub const NR: usize = 32;

/// `c[m][n] = a[m][k] . b[k][n]` with explicit (row, column) strides.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (isize, isize),
    b: &[f32],
    (rsb, csb): (isize, isize),
    c: &mut [f32],
    (rsc, csc): (isize, isize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows as isize - 1) * rs + (cols as isize - 1) * cs
    };
    assert!(rsa >= 0 && csa >= 0 && rsb >= 0 && csb >= 0 && rsc >= 0 && csc >= 0);
    assert!(
        k == 0 || (last(m, k, rsa, csa) as usize) < a.len(),
        "sgemm: a too short"
    );
    assert!(
        k == 0 || (last(k, n, rsb, csb) as usize) < b.len(),
        "sgemm: b too short"
    );
    assert!(
        (last(m, n, rsc, csc) as usize) < c.len(),
        "sgemm: c too short"
    );
    let nt = threads();
    // Split large products by output columns over scoped threads, each running
    // the single-threaded kernel on its own block of columns (matrixmultiply's
    // own threading spins at barriers and collapses on a busy machine).
    if nt > 1 && m * k * n >= 1 << 22 && csc > 0 && n >= 2 * 16 {
        let per = n.div_ceil(nt).next_multiple_of(16);
        let cp = SendPtr(c.as_mut_ptr());
        std::thread::scope(|s| {
            let mut j0 = 0;
            while j0 < n {
                let w = per.min(n - j0);
                let boff = j0 as isize * csb;
                let coff = j0 as isize * csc;
                s.spawn(move || {
                    // SAFETY: each thread writes a disjoint block of columns
                    // of c (bounds checked above); a and b are only read.
                    unsafe {
                        matrixmultiply::sgemm(
                            m,
                            k,
                            w,
                            1.0,
                            a.as_ptr(),
                            rsa,
                            csa,
                            b.as_ptr().offset(boff),
                            rsb,
                            csb,
                            0.0,
                            cp.get().offset(coff),
                            rsc,
                            csc,
                        );
                    }
                });
                j0 += w;
            }
        });
        return;
    }
    // SAFETY: the asserts above keep every index the product touches inside
    // the three slices; `c` is borrowed mutably, so it does not alias a or b.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            rsc,
            csc,
        );
    }
}

#[derive(Clone, Copy)]
pub(crate) struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint output blocks to scoped threads.
unsafe impl Send for SendPtr {}

impl SendPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Threads for the matrix products (MORALSWEEP_THREADS, default: all cores).
pub(crate) fn threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("MORALSWEEP_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1)
            .clamp(1, 64)
    })
}

/// `out[r] = mat[r] . x` for every row `r` of a row-major matrix whose rows
/// have `x.len()` columns.
pub fn gemv_rows(mat: &[f32], x: &[f32], out: &mut [f32]) {
    let cols = x.len();
    assert_eq!(mat.len(), cols * out.len());
    par_rows(out, 4096, |r| dot(&mat[r * cols..(r + 1) * cols], x));
}

/// `out[r] = f(r)` for every row, split over the threads in blocks of at
/// least `min_rows` rows.
pub(crate) fn par_rows(out: &mut [f32], min_rows: usize, f: impl Fn(usize) -> f32 + Sync) {
    let nt = threads().min(out.len().div_ceil(min_rows.max(1))).max(1);
    let per = out.len().div_ceil(nt).max(1);
    if nt == 1 {
        for (r, o) in out.iter_mut().enumerate() {
            *o = f(r);
        }
        return;
    }
    let f = &f;
    std::thread::scope(|s| {
        for (ci, chunk) in out.chunks_mut(per).enumerate() {
            s.spawn(move || {
                for (i, o) in chunk.iter_mut().enumerate() {
                    *o = f(ci * per + i);
                }
            });
        }
    });
}

/// Single to half precision, rounding to nearest even.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    let round = |v: u32, rem: u32, halfway: u32| {
        if rem > halfway || (rem == halfway && v & 1 == 1) {
            v + 1
        } else {
            v
        }
    };
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        return sign | round(m >> shift, m & ((1 << shift) - 1), 1 << (shift - 1)) as u16;
    }
    sign | round(((e as u32) << 10) | (man >> 13), man & 0x1fff, 0x1000) as u16
}

/// Dot product, with an AVX2/FMA path where the kernel class allows it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if class::avx2() {
            // SAFETY: the class never exceeds what the CPU supports.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n = a.len().min(b.len());
    let (ca, cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, s) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_ps(pa.add(i + 8 * j));
            let y = _mm256_loadu_ps(pb.add(i + 8 * j));
            *s = _mm256_fmadd_ps(x, y, *s);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i)),
            _mm256_loadu_ps(pb.add(i)),
            acc[0],
        );
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), s);
    let mut total: f32 = lanes.iter().sum();
    while i < n {
        total += a[i] * b[i];
        i += 1;
    }
    total
}

/// Stores the first `cols` lanes of `regs` at `dst`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn store_avx(dst: *mut f32, regs: &[std::arch::x86_64::__m256], cols: usize) {
    use std::arch::x86_64::*;
    if cols == regs.len() * 8 {
        for (i, r) in regs.iter().enumerate() {
            _mm256_storeu_ps(dst.add(8 * i), *r);
        }
    } else {
        let mut tmp = [0f32; NR];
        for (i, r) in regs.iter().enumerate() {
            _mm256_storeu_ps(tmp.as_mut_ptr().add(8 * i), *r);
        }
        std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, cols);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_round_trip() {
        for v in [0.0f32, 1.0, -2.5, 65504.0, 1e-5, 2.5e-3, -0.000_061_035_156] {
            let back = crate::quant::f16_to_f32(f32_to_f16(v));
            assert!((back - v).abs() <= v.abs() * 1e-3 + 1e-7, "{v} -> {back}");
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(1e9), 0x7c00);
    }

    #[test]
    fn gemm_matches_naive() {
        let (m, k, n) = (5, 37, 9);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.5).collect();
        // b stored as [n][k]; use it transposed.
        let mut c = vec![0f32; m * n];
        sgemm(
            m,
            k,
            n,
            &a,
            (k as isize, 1),
            &b,
            (1, k as isize),
            &mut c,
            (n as isize, 1),
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|x| a[i * k + x] * b[j * k + x]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-3);
            }
        }
        // Q8_0: 34-byte blocks of an f16 scale (1.0) and 32 values.
        let rows = 3;
        let mut bytes = vec![];
        for r in 0..rows {
            for blk in 0..2 {
                bytes.extend(0x3c00u16.to_le_bytes());
                bytes.extend((0..32).map(|i| (((i * (r + 1) + blk) % 11) as i8 - 5) as u8));
            }
        }
        let q = Q8Matrix::from_q8_0(&bytes, rows, 64);
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) * 0.1).collect();
        let mut got = vec![0f32; rows];
        q.gemv(&x, &mut got);
        let mut row = vec![0f32; 64];
        for (r, g) in got.iter().enumerate() {
            q.row(r, &mut row);
            let want: f32 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
            assert!((g - want).abs() < 1e-3, "{g} vs {want}");
        }
        let mut g = vec![0f32; n];
        gemv_rows(&b, &a[..k], &mut g);
        for j in 0..n {
            let want: f32 = (0..k).map(|x| a[x] * b[j * k + x]).sum();
            assert!((g[j] - want).abs() < 1e-3);
        }
    }
}
