//! The product of activations with a layer's weight matrix, packed once at
//! load: every projection of the prefill (a matrix-matrix product over the
//! prompt's positions) and of a decoding step (one or two positions).
//!
//! The weights are stored once, in panels of [`NR`] output columns: as the
//! file's 8-bit codes where its tensors are quantised grids
//! ([`super::codes`]: the file's values exactly, about 1.5 bytes each), else
//! in half precision (the values rounded to 11 significant bits), and in
//! `f32` for a matrix with a value outside the half-precision range.
//!
//! - Prefill (more than [`SMALL_M`] rows): each thread converts one panel at
//!   a time to `f32` (an L2-sized buffer, amortised over every row of the
//!   prompt) and runs the micro-kernel of the kernel class
//!   (`kernels::class`: the CPU's best unless `MORALSWEEP_CPU` forces a
//!   lower one) over it: 12 rows x 32
//!   columns on AVX-512 (24 of its 32 registers), 6 rows x 16 columns on
//!   AVX2+FMA (12 accumulators of the 16 `ymm` registers, two for the panel
//!   row, one for the broadcast activation; the panel's two halves one after
//!   the other), or a portable body the compiler vectorises.
//! - Decoding (at most [`SMALL_M`] rows) on AVX2+FMA+F16C: the code or
//!   half-precision panels are read directly (a step is bound by memory
//!   bandwidth, so no buffer).
//!
//! The threads split the panels (output columns); the calling thread takes
//! one share itself.

use super::class;
use super::codes::{self, CodePanels};
#[cfg(target_arch = "x86_64")]
use super::store_avx;
use super::{f32_to_f16, threads, SendPtr, NR};
use crate::quant::{f16_to_f32, Codes, CODE_BLOCK};

/// Rows of activations the portable kernel computes at once.
const MR: usize = 8;
/// Rows of the AVX2 kernel: 6 x 2 accumulator registers.
const MR_AVX2: usize = 6;
/// Rows of the AVX-512 kernel.
const MR_AVX512: usize = 12;
/// Products of at most this many rows (decoding) read half-precision panels
/// directly.
pub const SMALL_M: usize = 3;
/// The largest finite half-precision value.
const HALF_MAX: f32 = 65504.0;

enum Store {
    Half(Vec<u16>),
    Single(Vec<f32>),
    /// The file's 8-bit codes (see [`super::codes`]).
    Codes(CodePanels),
}

/// A weight matrix packed once, at load, for [`gemm_packed`]: its columns
/// (the outputs) in panels of [`NR`], each panel stored inner-dimension-major
/// (`k` rows of `NR` contiguous values, the last panel zero-padded). The
/// product then streams each panel in order with no per-call packing, which
/// took about a quarter of the prefill time with a general SGEMM.
pub struct Packed {
    pub k: usize,
    pub n: usize,
    store: Store,
}

impl Packed {
    /// From a row-major `[n][k]` matrix (`n` outputs of `k` inputs each), in
    /// half precision (in `f32` if a value does not fit).
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> Packed {
        assert_eq!(w.len(), n * k);
        if w.iter().all(|v| v.abs() <= HALF_MAX) {
            Packed {
                k,
                n,
                store: Store::Half(pack(w, n, k, 0u16, f32_to_f16)),
            }
        } else {
            Packed::from_rows_f32(w, n, k)
        }
    }

    /// [`Packed::from_rows`] keeping the values in `f32`.
    pub fn from_rows_f32(w: &[f32], n: usize, k: usize) -> Packed {
        assert_eq!(w.len(), n * k);
        Packed {
            k,
            n,
            store: Store::Single(pack(w, n, k, 0f32, |v| v)),
        }
    }

    /// From the row-major codes of an `[n][k]` matrix ([`Codes`]), kept as
    /// codes: the file's values exactly, in about 1.5 bytes each. `k` must
    /// be a multiple of 16 (else use [`Packed::from_rows`]).
    pub fn from_codes(c: &Codes, n: usize, k: usize) -> Packed {
        assert!(k.is_multiple_of(CODE_BLOCK), "from_codes: k = {k}");
        Packed {
            k,
            n,
            store: Store::Codes(CodePanels::pack(c, n, k)),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match &self.store {
            Store::Half(d) => d.len() * 2,
            Store::Single(d) => d.len() * 4,
            Store::Codes(c) => c.bytes(),
        }
    }

    /// Whether the values are held as the file's codes.
    pub fn is_codes(&self) -> bool {
        matches!(self.store, Store::Codes(_))
    }

    /// Whether the values are held in half precision.
    pub fn is_half(&self) -> bool {
        matches!(self.store, Store::Half(_))
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// Panel `p` in `f32`: the stored values, or converted into `scratch`.
    fn panel_f32<'a>(&'a self, p: usize, scratch: &'a mut Vec<f32>) -> &'a [f32] {
        let len = self.k * NR;
        match &self.store {
            Store::Single(d) => &d[p * len..(p + 1) * len],
            Store::Half(h) => {
                scratch.resize(len, 0.0);
                half_to_f32(&h[p * len..(p + 1) * len], scratch);
                scratch
            }
            Store::Codes(c) => {
                scratch.resize(len, 0.0);
                codes::widen(c.panel(p, self.k), self.k, scratch);
                scratch
            }
        }
    }
}

fn pack<T: Copy>(w: &[f32], n: usize, k: usize, zero: T, conv: impl Fn(f32) -> T) -> Vec<T> {
    let mut data = vec![zero; n.div_ceil(NR) * k * NR];
    for (j, row) in w.chunks_exact(k).enumerate() {
        let base = (j / NR) * k * NR + j % NR;
        for (p, &v) in row.iter().enumerate() {
            data[base + p * NR] = conv(v);
        }
    }
    data
}

/// `dst[i] = src[i]` widened from half precision.
fn half_to_f32(src: &[u16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if class::avx2() {
            // SAFETY: the AVX2 class includes AVX and F16C, and the class
            // never exceeds what the CPU supports.
            return unsafe { half_to_f32_f16c(src, dst) };
        }
    }
    for (d, &h) in dst.iter_mut().zip(src) {
        *d = f16_to_f32(h);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn half_to_f32_f16c(src: &[u16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        i += 8;
    }
    for j in i..n {
        dst[j] = f16_to_f32(src[j]);
    }
}

/// `c[m][n] = a[m][k] . B[k][n]` for a packed `B`; `a` and `c` row-major
/// and contiguous. Split over the cores by panels of output columns.
pub fn gemm_packed(m: usize, a: &[f32], b: &Packed, c: &mut [f32]) {
    let (k, n) = (b.k, b.n);
    assert!(
        a.len() >= m * k && c.len() >= m * n,
        "gemm_packed: short operands"
    );
    if m == 0 || n == 0 {
        return;
    }
    let panels = b.panels();
    let path = pick_path(m, b);
    let nt = threads().min(panels).max(1);
    let cp = SendPtr(c.as_mut_ptr());
    // A decoding step streams the whole matrix, so it is split too.
    if nt == 1 || m.max(8) * k * n < 1 << 21 {
        // SAFETY: every panel's columns of c are in bounds (asserted above).
        unsafe { run_panels(path, m, a, b, 0..panels, cp) };
        return;
    }
    let per = panels.div_ceil(nt);
    std::thread::scope(|s| {
        for t in 1..nt {
            let range = t * per..((t + 1) * per).min(panels);
            if !range.is_empty() {
                // SAFETY: the threads write disjoint panels of columns of c.
                s.spawn(move || unsafe { run_panels(path, m, a, b, range, cp) });
            }
        }
        // SAFETY: as above; this thread takes the first share.
        unsafe { run_panels(path, m, a, b, 0..per.min(panels), cp) };
    });
}

/// A micro-kernel: `rows` rows of `a` (row stride `k`) times one `f32`
/// panel, into `cols` (<= NR) columns of `c` (row stride `ldc`).
type Kernel = unsafe fn(usize, &[f32], usize, &[f32], *mut f32, usize, usize);

/// How a product runs on this CPU.
#[derive(Clone, Copy)]
enum Path {
    /// Panels widened to `f32` one at a time, then the kernel, whose rows
    /// per call are given.
    Kernel(Kernel, usize),
    /// Half-precision panels read directly (AVX2+FMA+F16C), for few rows.
    #[cfg(target_arch = "x86_64")]
    SmallHalf,
    /// Code panels read directly (AVX2+FMA), for few rows.
    #[cfg(target_arch = "x86_64")]
    SmallCodes,
}

fn pick_path(m: usize, b: &Packed) -> Path {
    #[cfg(target_arch = "x86_64")]
    {
        if m <= SMALL_M && b.is_half() && class::avx2() {
            return Path::SmallHalf;
        }
        if m <= SMALL_M && b.is_codes() && class::avx2() {
            return Path::SmallCodes;
        }
    }
    let _ = (m, b);
    let (kernel, mr) = pick_kernel();
    Path::Kernel(kernel, mr)
}

/// The kernel of the current class ([`class::class`]), and the rows it
/// takes per call.
fn pick_kernel() -> (Kernel, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if class::avx512() {
            return (kernel_avx512, MR_AVX512);
        }
        if class::avx2() {
            return (kernel_avx2, MR_AVX2);
        }
    }
    (kernel_plain, MR)
}

/// # Safety
/// `c` must point at an `m x b.n` row-major matrix that no other thread
/// writes in these panels' columns; a path's instructions must be supported.
unsafe fn run_panels(
    path: Path,
    m: usize,
    a: &[f32],
    b: &Packed,
    panels: std::ops::Range<usize>,
    c: SendPtr,
) {
    let (k, n) = (b.k, b.n);
    let mut scratch = Vec::new();
    for panel in panels {
        let j0 = panel * NR;
        let cols = NR.min(n - j0);
        match path {
            Path::Kernel(kernel, mr) => {
                let bp = b.panel_f32(panel, &mut scratch);
                let mut i0 = 0;
                while i0 < m {
                    let rows = mr.min(m - i0);
                    kernel(rows, &a[i0 * k..], k, bp, c.get().add(i0 * n + j0), n, cols);
                    i0 += rows;
                }
            }
            #[cfg(target_arch = "x86_64")]
            Path::SmallHalf => {
                let Store::Half(h) = &b.store else {
                    unreachable!("the small path is picked for half-precision panels only")
                };
                let bp = &h[panel * k * NR..(panel + 1) * k * NR];
                let mut i0 = 0;
                while i0 < m {
                    let rows = SMALL_M.min(m - i0);
                    small_half_avx2(rows, &a[i0 * k..], k, bp, c.get().add(i0 * n + j0), n, cols);
                    i0 += rows;
                }
            }
            #[cfg(target_arch = "x86_64")]
            Path::SmallCodes => {
                let Store::Codes(codes) = &b.store else {
                    unreachable!("the small codes path is picked for code panels only")
                };
                codes::small_codes_avx2(m, a, k, codes.panel(panel, k), c.get().add(j0), n, cols);
            }
        }
    }
}

/// The portable micro-kernel: `rows` (<= 12) rows of `a` (stride `k`) times
/// one panel, into `cols` (<= NR) columns of `c` (row stride `ldc`). Written
/// for the compiler to keep the accumulators in vector registers.
#[inline(always)]
unsafe fn kernel_body<const FMA: bool>(
    rows: usize,
    a: &[f32],
    k: usize,
    bp: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[0f32; NR]; MR_AVX512];
    for (p, bv) in bp.chunks_exact(NR).enumerate().take(k) {
        for (r, accr) in acc.iter_mut().enumerate().take(rows) {
            let av = a[r * k + p];
            for l in 0..NR {
                accr[l] = if FMA {
                    av.mul_add(bv[l], accr[l])
                } else {
                    accr[l] + av * bv[l]
                };
            }
        }
    }
    for (r, accr) in acc.iter().enumerate().take(rows) {
        std::ptr::copy_nonoverlapping(accr.as_ptr(), c.add(r * ldc), cols);
    }
}

unsafe fn kernel_plain(
    rows: usize,
    a: &[f32],
    k: usize,
    bp: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    kernel_body::<false>(rows, a, k, bp, c, ldc, cols)
}

/// AVX-512: twelve rows by two registers of 16 columns, 24 accumulators
/// (of the 32 registers), each panel row loaded once per 12 x 32 FMAs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn kernel_avx512(
    rows: usize,
    a: &[f32],
    k: usize,
    bp: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    const R: usize = MR_AVX512;
    if rows != R {
        return kernel_body::<true>(rows, a, k, bp, c, ldc, cols);
    }
    debug_assert!(a.len() >= (R - 1) * k + k && bp.len() >= k * NR);
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    let (pa, pb) = (a.as_ptr(), bp.as_ptr());
    for p in 0..k {
        let b0 = _mm512_loadu_ps(pb.add(p * NR));
        let b1 = _mm512_loadu_ps(pb.add(p * NR + 16));
        for r in 0..R {
            let av = _mm512_set1_ps(*pa.add(r * k + p));
            lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
        }
    }
    for r in 0..R {
        let dst = c.add(r * ldc);
        if cols == NR {
            _mm512_storeu_ps(dst, lo[r]);
            _mm512_storeu_ps(dst.add(16), hi[r]);
        } else {
            let mut tmp = [0f32; NR];
            _mm512_storeu_ps(tmp.as_mut_ptr(), lo[r]);
            _mm512_storeu_ps(tmp.as_mut_ptr().add(16), hi[r]);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, cols);
        }
    }
}

/// AVX2+FMA: up to six rows, the panel's two 16-column halves one after the
/// other, each a tile of 6 x 2 accumulator registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(
    rows: usize,
    a: &[f32],
    k: usize,
    bp: &[f32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    debug_assert!((1..=MR_AVX2).contains(&rows));
    debug_assert!(a.len() >= (rows - 1) * k + k && bp.len() >= k * NR);
    let pa = a.as_ptr();
    for j in (0..cols).step_by(16) {
        let (b, cj, w) = (bp.as_ptr().add(j), c.add(j), (cols - j).min(16));
        match rows {
            6 => tile_avx2::<6>(pa, k, b, cj, ldc, w),
            5 => tile_avx2::<5>(pa, k, b, cj, ldc, w),
            4 => tile_avx2::<4>(pa, k, b, cj, ldc, w),
            3 => tile_avx2::<3>(pa, k, b, cj, ldc, w),
            2 => tile_avx2::<2>(pa, k, b, cj, ldc, w),
            _ => tile_avx2::<1>(pa, k, b, cj, ldc, w),
        }
    }
}

/// `R` rows of `a` times 16 columns of a panel (`b` points at the first,
/// rows [`NR`] apart), into `cols` (<= 16) columns of `c`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_avx2<const R: usize>(
    a: *const f32,
    k: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for p in 0..k {
        let b0 = _mm256_loadu_ps(b.add(p * NR));
        let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
        for (r, row) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(r * k + p));
            row[0] = _mm256_fmadd_ps(av, b0, row[0]);
            row[1] = _mm256_fmadd_ps(av, b1, row[1]);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        store_avx(c.add(r * ldc), row, cols);
    }
}

/// Up to [`SMALL_M`] rows times a half-precision panel, read directly.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn small_half_avx2(
    rows: usize,
    a: &[f32],
    k: usize,
    bp: &[u16],
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    debug_assert!((1..=SMALL_M).contains(&rows));
    debug_assert!(a.len() >= (rows - 1) * k + k && bp.len() >= k * NR);
    match rows {
        3 => small_tile::<3>(a.as_ptr(), k, bp.as_ptr(), c, ldc, cols),
        2 => small_tile::<2>(a.as_ptr(), k, bp.as_ptr(), c, ldc, cols),
        _ => small_tile::<1>(a.as_ptr(), k, bp.as_ptr(), c, ldc, cols),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn small_tile<const R: usize>(
    a: *const f32,
    k: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 4]; R];
    for p in 0..k {
        let row = b.add(p * NR) as *const __m128i;
        let bv = [
            _mm256_cvtph_ps(_mm_loadu_si128(row)),
            _mm256_cvtph_ps(_mm_loadu_si128(row.add(1))),
            _mm256_cvtph_ps(_mm_loadu_si128(row.add(2))),
            _mm256_cvtph_ps(_mm_loadu_si128(row.add(3))),
        ];
        for (r, accr) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(r * k + p));
            for (s, &bj) in accr.iter_mut().zip(&bv) {
                *s = _mm256_fmadd_ps(av, bj, *s);
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        store_avx(c.add(r * ldc), accr, cols);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operands(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..m * k)
            .map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5)
            .collect();
        let w = (0..n * k)
            .map(|i| ((i * 5) % 11) as f32 * 0.13 - 0.6)
            .collect();
        (a, w)
    }

    /// The product in f64 from the values the packed matrix holds.
    fn reference(m: usize, k: usize, n: usize, a: &[f32], w: &[f32], half: bool) -> Vec<f32> {
        let held = |v: f32| {
            if half {
                f16_to_f32(f32_to_f16(v))
            } else {
                v
            }
        };
        (0..m * n)
            .map(|ij| {
                let (i, j) = (ij / n, ij % n);
                (0..k)
                    .map(|p| a[i * k + p] as f64 * held(w[j * k + p]) as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }

    fn check(what: &str, got: &[f32], want: &[f32]) {
        for (i, (x, y)) in got.iter().zip(want).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}: element {i}: {x} vs {y}"
            );
        }
    }

    /// Every path this CPU runs (and the portable one), every row count of
    /// every kernel, both storages, against the scalar reference.
    #[test]
    fn every_path_matches_the_scalar_reference() {
        for (m, k, n) in [
            (1, 3, 1),
            (2, 37, 9),
            (3, 64, 32),
            (5, 37, 9),
            (8, 64, 32),
            (12, 16, 40),
            (19, 70, 77),
            (130, 640, 200),
        ] {
            let (a, w) = operands(m, k, n);
            for half in [true, false] {
                let packed = if half {
                    Packed::from_rows(&w, n, k)
                } else {
                    Packed::from_rows_f32(&w, n, k)
                };
                assert_eq!(packed.is_half(), half);
                let want = reference(m, k, n, &a, &w, half);
                check_paths(m, k, n, &a, &packed, &want, half);
            }
            // The file's codes, where k allows them: the reference is the
            // values they stand for.
            if k.is_multiple_of(CODE_BLOCK) {
                let c = codes_of(&w, n, k);
                let packed = Packed::from_codes(&c, n, k);
                assert!(packed.is_codes() && !packed.is_half());
                let held: Vec<f32> = (0..n * k)
                    .map(|i| c.scale[i / CODE_BLOCK] * c.q[i] as f32 + c.min[i / CODE_BLOCK])
                    .collect();
                let want = reference(m, k, n, &a, &held, false);
                check_paths(m, k, n, &a, &packed, &want, false);
            }
        }
    }

    /// Codes of made-up values: a grid per 16 values, some offsets negative.
    fn codes_of(w: &[f32], n: usize, k: usize) -> Codes {
        let mut c = Codes::default();
        for (b, vals) in w.chunks_exact(CODE_BLOCK).enumerate() {
            let (lo, hi) = vals
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let scale = ((hi - lo) / 255.0).max(1e-3) * (1.0 + (b % 3) as f32);
            c.scale.push(scale);
            c.min.push(lo);
            c.q.extend(
                vals.iter()
                    .map(|&v| ((v - lo) / scale).round().clamp(0.0, 255.0) as u8),
            );
        }
        assert_eq!(c.q.len(), n * k);
        c
    }

    /// Every path this CPU runs for `packed`, against `want`.
    #[allow(clippy::too_many_arguments)]
    fn check_paths(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        packed: &Packed,
        want: &[f32],
        half: bool,
    ) {
        let mut paths: Vec<(&str, Path)> = vec![("portable", Path::Kernel(kernel_plain, MR))];
        #[cfg(target_arch = "x86_64")]
        {
            let cpu = class::detected();
            if cpu >= class::CpuClass::Avx2 {
                // Every row count 1-6 of the AVX2 tile.
                for mr in 1..=MR_AVX2 {
                    paths.push(("avx2", Path::Kernel(kernel_avx2, mr)));
                }
            }
            if half && cpu >= class::CpuClass::Avx2 {
                paths.push(("small half", Path::SmallHalf));
            }
            if packed.is_codes() && cpu >= class::CpuClass::Avx2 {
                paths.push(("small codes", Path::SmallCodes));
            }
            if cpu >= class::CpuClass::Avx512 {
                paths.push(("avx512", Path::Kernel(kernel_avx512, MR_AVX512)));
                // Its remainder rows, through the portable body.
                paths.push(("avx512", Path::Kernel(kernel_avx512, 5)));
            }
        }
        let what = if packed.is_codes() {
            "codes"
        } else if half {
            "half"
        } else {
            "single"
        };
        for (name, path) in paths {
            let mut c = vec![f32::NAN; m * n];
            let panels = n.div_ceil(NR);
            unsafe { run_panels(path, m, a, packed, 0..panels, SendPtr(c.as_mut_ptr())) };
            check(&format!("{name} {m}x{k}x{n} {what}"), &c, want);
        }
        let mut c = vec![f32::NAN; m * n];
        gemm_packed(m, a, packed, &mut c);
        check(&format!("gemm_packed {m}x{k}x{n} {what}"), &c, want);
    }

    #[test]
    fn values_beyond_half_precision_stay_single() {
        let w = vec![1.0, 70000.0, -2.0, 0.5];
        let p = Packed::from_rows(&w, 2, 2);
        assert!(!p.is_half());
        let mut c = vec![0f32; 2];
        gemm_packed(1, &[1.0, 1.0], &p, &mut c);
        assert_eq!(c, vec![70001.0, -1.5]);
        let h = Packed::from_rows(&[1.0, 2.0], 1, 2);
        assert!(h.is_half());
        assert_eq!(h.bytes(), 2 * 2 * NR);
    }
}
