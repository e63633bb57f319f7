//! Dequantisation of GGUF tensor blocks to `f32`, following ggml's block
//! layouts: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and
//! Q6_K. The model dequantises every weight once at load time and computes in
//! `f32` (see the crate docs for why).

use crate::gguf::TensorType;

/// IEEE half to single precision.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Dequantises `n` elements of type `ty` from `src` into `out` (appending).
/// Returns false for a type this module does not handle.
pub fn dequantize(ty: TensorType, src: &[u8], out: &mut Vec<f32>) -> bool {
    let Some((be, bb)) = ty.block() else {
        return false;
    };
    let blocks = src.len() / bb;
    out.reserve(blocks * be);
    for b in src.chunks_exact(bb) {
        match ty {
            TensorType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            TensorType::F16 => out.push(half(b, 0)),
            TensorType::BF16 => out.push(f32::from_bits(
                (u16::from_le_bytes([b[0], b[1]]) as u32) << 16,
            )),
            TensorType::Q4_0 => {
                let d = half(b, 0);
                let qs = &b[2..18];
                out.extend(qs.iter().map(|&q| ((q & 0xf) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
            TensorType::Q4_1 => {
                let (d, m) = (half(b, 0), half(b, 2));
                let qs = &b[4..20];
                out.extend(qs.iter().map(|&q| (q & 0xf) as f32 * d + m));
                out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
            }
            TensorType::Q5_0 | TensorType::Q5_1 => {
                let (d, m, rest) = if ty == TensorType::Q5_0 {
                    (half(b, 0), 0.0, &b[2..])
                } else {
                    (half(b, 0), half(b, 2), &b[4..])
                };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..20];
                let off = if ty == TensorType::Q5_0 { 16 } else { 0 };
                for (j, &q) in qs.iter().enumerate() {
                    let h = ((qh >> j) << 4) & 0x10;
                    out.push((((q & 0xf) as u32 | h) as i32 - off) as f32 * d + m);
                }
                for (j, &q) in qs.iter().enumerate() {
                    let h = (qh >> (j + 12)) & 0x10;
                    out.push((((q >> 4) as u32 | h) as i32 - off) as f32 * d + m);
                }
            }
            TensorType::Q8_0 => {
                let d = half(b, 0);
                out.extend(b[2..34].iter().map(|&q| (q as i8) as f32 * d));
            }
            TensorType::Q4K | TensorType::Q5K => {
                let (d, dmin) = (half(b, 0), half(b, 2));
                let scales = &b[4..16];
                let (qh, mut ql) = if ty == TensorType::Q5K {
                    (Some(&b[16..48]), &b[48..176])
                } else {
                    (None, &b[16..144])
                };
                let (mut u1, mut u2) = (1u8, 2u8);
                for j in 0..4 {
                    let (sc, m) = scale_min_k4(2 * j, scales);
                    let (d1, m1) = (d * sc as f32, dmin * m as f32);
                    let (sc, m) = scale_min_k4(2 * j + 1, scales);
                    let (d2, m2) = (d * sc as f32, dmin * m as f32);
                    for l in 0..32 {
                        let hi = qh.map_or(0, |h| if h[l] & u1 != 0 { 16 } else { 0 });
                        out.push(d1 * ((ql[l] & 0xf) + hi) as f32 - m1);
                    }
                    for l in 0..32 {
                        let hi = qh.map_or(0, |h| if h[l] & u2 != 0 { 16 } else { 0 });
                        out.push(d2 * ((ql[l] >> 4) + hi) as f32 - m2);
                    }
                    ql = &ql[32..];
                    u1 <<= 2;
                    u2 <<= 2;
                }
            }
            TensorType::Q6K => {
                let d = half(b, 208);
                let start = out.len();
                out.resize(start + 256, 0.0);
                let y = &mut out[start..];
                for n in 0..2 {
                    let ql = &b[n * 64..n * 64 + 64];
                    let qh = &b[128 + n * 32..128 + n * 32 + 32];
                    let sc = &b[192 + n * 8..192 + n * 8 + 8];
                    let y = &mut y[n * 128..n * 128 + 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
            }
            TensorType::Q2K | TensorType::Q3K | TensorType::Other(_) => return false,
        }
    }
    true
}

/// Values of 16 consecutive weights as 8-bit codes on a grid: value `i` of a
/// block is `scale * q[i] + min`. Every ggml block type below 8 bits per
/// weight is such a grid (Q6_K's scales change every 16 values, the others'
/// every 32), so the codes hold the file's values exactly, in about 1.5
/// bytes a weight instead of 4 (`f32`) or 2 (rounded to half precision).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Codes {
    pub q: Vec<u8>,
    /// One per 16 values.
    pub scale: Vec<f32>,
    pub min: Vec<f32>,
}

/// Values per [`Codes`] scale.
pub const CODE_BLOCK: usize = 16;

impl Codes {
    fn push(&mut self, q: impl IntoIterator<Item = u8>, scale: f32, min: f32) {
        self.q.extend(q);
        self.scale.push(scale);
        self.min.push(min);
    }
}

/// Appends the values of `src` (type `ty`) to `out` as codes. Returns false
/// for a type whose values are not such a grid (F32, F16, BF16) or that this
/// module does not read.
pub fn dequantize_codes(ty: TensorType, src: &[u8], out: &mut Codes) -> bool {
    let Some((_, bb)) = ty.block() else {
        return false;
    };
    for b in src.chunks_exact(bb) {
        match ty {
            TensorType::Q4_0 | TensorType::Q4_1 => {
                let (d, m, qs) = if ty == TensorType::Q4_0 {
                    (half(b, 0), -8.0 * half(b, 0), &b[2..18])
                } else {
                    (half(b, 0), half(b, 2), &b[4..20])
                };
                out.push(qs.iter().map(|&q| q & 0xf), d, m);
                out.push(qs.iter().map(|&q| q >> 4), d, m);
            }
            TensorType::Q5_0 | TensorType::Q5_1 => {
                let (d, m, rest) = if ty == TensorType::Q5_0 {
                    (half(b, 0), -16.0 * half(b, 0), &b[2..])
                } else {
                    (half(b, 0), half(b, 2), &b[4..])
                };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..20];
                let lo = |j: usize| (qs[j] & 0xf) | ((((qh >> j) << 4) & 0x10) as u8);
                let hi = |j: usize| (qs[j] >> 4) | (((qh >> (j + 12)) & 0x10) as u8);
                out.push((0..16).map(lo), d, m);
                out.push((0..16).map(hi), d, m);
            }
            TensorType::Q8_0 => {
                let d = half(b, 0);
                let q = b[2..34].iter().map(|&q| (q as i8 as i16 + 128) as u8);
                out.push(q.clone().take(16), d, -128.0 * d);
                out.push(q.skip(16), d, -128.0 * d);
            }
            TensorType::Q4K | TensorType::Q5K => {
                let (d, dmin) = (half(b, 0), half(b, 2));
                let scales = &b[4..16];
                let (qh, mut ql) = if ty == TensorType::Q5K {
                    (Some(&b[16..48]), &b[48..176])
                } else {
                    (None, &b[16..144])
                };
                let (mut u1, mut u2) = (1u8, 2u8);
                for j in 0..4 {
                    let hi = |l: usize, u: u8| qh.map_or(0, |h| if h[l] & u != 0 { 16 } else { 0 });
                    let (sc, m) = scale_min_k4(2 * j, scales);
                    let (d1, m1) = (d * sc as f32, dmin * m as f32);
                    for h in [0..16, 16..32] {
                        out.push(h.map(|l| (ql[l] & 0xf) + hi(l, u1)), d1, -m1);
                    }
                    let (sc, m) = scale_min_k4(2 * j + 1, scales);
                    let (d2, m2) = (d * sc as f32, dmin * m as f32);
                    for h in [0..16, 16..32] {
                        out.push(h.map(|l| (ql[l] >> 4) + hi(l, u2)), d2, -m2);
                    }
                    ql = &ql[32..];
                    u1 <<= 2;
                    u2 <<= 2;
                }
            }
            TensorType::Q6K => {
                let d = half(b, 208);
                for n in 0..2 {
                    let ql = &b[n * 64..n * 64 + 64];
                    let qh = &b[128 + n * 32..128 + n * 32 + 32];
                    let sc = &b[192 + n * 8..192 + n * 8 + 8];
                    // The four quarters of 32 values, each two blocks of 16.
                    for quarter in 0..4 {
                        for h in 0..2 {
                            let s = d * (sc[h + 2 * quarter] as i8) as f32;
                            let q = (16 * h..16 * h + 16).map(|l| match quarter {
                                0 => (ql[l] & 0xf) | ((qh[l] & 3) << 4),
                                1 => (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4),
                                2 => (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                                _ => (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                            });
                            out.push(q, s, -32.0 * s);
                        }
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn q8_0_block() {
        let mut b = vec![0x00, 0x38]; // d = 0.5
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let mut out = vec![];
        assert!(dequantize(TensorType::Q8_0, &b, &mut out));
        assert_eq!(out.len(), 32);
        assert_eq!(out[0], -8.0);
        assert_eq!(out[31], 7.5);
    }

    #[test]
    fn q5_0_block() {
        // d = 1; low nibbles 0..15 for j, high nibbles 15-j; qh sets bit 4 of element 0 and 16.
        let mut b = vec![0x00, 0x3c];
        b.extend((1u32 | (1 << 16)).to_le_bytes());
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = vec![];
        assert!(dequantize(TensorType::Q5_0, &b, &mut out));
        assert_eq!(out[0], 0.0); // (0 | 16) - 16
        assert_eq!(out[1], -15.0); // 1 - 16
        assert_eq!(out[16], 15.0); // (15 | 16) - 16
        assert_eq!(out[17], -2.0); // 14 - 16
    }

    #[test]
    fn q4_k_block_uses_scales_and_mins() {
        let mut b = vec![0x00, 0x3c, 0x00, 0x3c]; // d = 1, dmin = 1
        let mut scales = [0u8; 12];
        scales[0] = 2; // sub-block 0 scale
        scales[4] = 1; // sub-block 0 min
        scales[1] = 3; // sub-block 1 scale
        b.extend(scales);
        b.extend([0x75u8; 128]);
        let mut out = vec![];
        assert!(dequantize(TensorType::Q4K, &b, &mut out));
        assert_eq!(out.len(), 256);
        assert_eq!(out[0], 2.0 * 5.0 - 1.0);
        assert_eq!(out[32], 3.0 * 7.0);
        assert_eq!(out[64], 0.0);
    }

    #[test]
    fn q6_k_block() {
        let mut b = vec![0u8; 210];
        b[0] = 0x01; // ql[0] low nibble 1
        b[128] = 0x03; // qh[0] bits 0-1 = 3 -> q1 = 1 | 48 = 49 - 32 = 17
        b[192] = 2; // scale 0
        b[208..210].copy_from_slice(&0x3c00u16.to_le_bytes());
        let mut out = vec![];
        assert!(dequantize(TensorType::Q6K, &b, &mut out));
        assert_eq!(out[0], 34.0);
        assert_eq!(out[1], 2.0 * -32.0);
        assert_eq!(out[32], 0.0); // scale 2 is 0
    }

    /// Codes give the dequantised values (to one rounding: the grid's
    /// product and offset fused) for every type they cover.
    #[test]
    fn codes_hold_the_dequantised_values() {
        let mut seed = 7u32;
        let mut byte = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        };
        for ty in [
            TensorType::Q4_0,
            TensorType::Q4_1,
            TensorType::Q5_0,
            TensorType::Q5_1,
            TensorType::Q8_0,
            TensorType::Q4K,
            TensorType::Q5K,
            TensorType::Q6K,
        ] {
            let (_, bb) = ty.block().unwrap();
            let mut src: Vec<u8> = (0..3 * bb).map(|_| byte()).collect();
            // Finite, moderate half-precision scales.
            for b in src.chunks_exact_mut(bb) {
                let at = if ty == TensorType::Q6K {
                    vec![208]
                } else if matches!(
                    ty,
                    TensorType::Q4K | TensorType::Q5K | TensorType::Q4_1 | TensorType::Q5_1
                ) {
                    vec![0, 2]
                } else {
                    vec![0]
                };
                for a in at {
                    b[a + 1] = 0x20 | (b[a + 1] & 0x0b);
                }
            }
            let mut want = vec![];
            assert!(dequantize(ty, &src, &mut want));
            let mut codes = Codes::default();
            assert!(dequantize_codes(ty, &src, &mut codes), "{ty:?}");
            assert_eq!(codes.q.len(), want.len(), "{ty:?}");
            assert_eq!(codes.scale.len() * CODE_BLOCK, want.len(), "{ty:?}");
            for (i, &w) in want.iter().enumerate() {
                let got = codes.scale[i / CODE_BLOCK]
                    .mul_add(codes.q[i] as f32, codes.min[i / CODE_BLOCK]);
                assert!(
                    (got - w).abs()
                        <= 2.0 * f32::EPSILON * (w.abs() + codes.min[i / CODE_BLOCK].abs()),
                    "{ty:?} value {i}: {got} vs {w}"
                );
            }
        }
        let mut codes = Codes::default();
        assert!(!dequantize_codes(TensorType::F16, &[0, 0], &mut codes));
    }
}
