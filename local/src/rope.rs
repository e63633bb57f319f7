//! Rotary position embeddings: cos/sin tables for a run of positions, in
//! either pairing ([`RopeStyle`]), with Llama 3's per-frequency factors.

use crate::arch::RopeStyle;

/// cos/sin of the rotary embeddings of a run of positions.
pub(crate) struct RopeTable {
    half: usize,
    style: RopeStyle,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// Angle of frequency `i` at position `p`:
    /// `p * scale * base^(-2i/head_dim) / factors[i]`.
    pub(crate) fn new(
        positions: &[usize],
        head_dim: usize,
        base: f64,
        scale: f64,
        style: RopeStyle,
        factors: Option<&[f32]>,
    ) -> RopeTable {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for i in 0..half {
                let ff = factors.map_or(1.0, |f| f[i] as f64);
                let theta = p as f64 * scale * base.powf(-2.0 * i as f64 / head_dim as f64) / ff;
                cos.push(theta.cos() as f32);
                sin.push(theta.sin() as f32);
            }
        }
        RopeTable {
            half,
            style,
            cos,
            sin,
        }
    }

    /// Rotates one head of the `row`-th position in place.
    pub(crate) fn apply(&self, x: &mut [f32], row: usize) {
        let h = self.half;
        let (cs, sn) = (
            &self.cos[row * h..(row + 1) * h],
            &self.sin[row * h..(row + 1) * h],
        );
        match self.style {
            RopeStyle::Neox => {
                let (a, b) = x.split_at_mut(h);
                for i in 0..h {
                    let (x0, x1) = (a[i], b[i]);
                    a[i] = x0 * cs[i] - x1 * sn[i];
                    b[i] = x0 * sn[i] + x1 * cs[i];
                }
            }
            RopeStyle::Adjacent => {
                for (i, pair) in x.chunks_exact_mut(2).enumerate() {
                    let (x0, x1) = (pair[0], pair[1]);
                    pair[0] = x0 * cs[i] - x1 * sn[i];
                    pair[1] = x0 * sn[i] + x1 * cs[i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairings_rotate_the_same_angles() {
        let neox = RopeTable::new(&[3], 4, 10_000.0, 1.0, RopeStyle::Neox, None);
        let adj = RopeTable::new(&[3], 4, 10_000.0, 1.0, RopeStyle::Adjacent, None);
        let mut a = [1.0, 2.0, 3.0, 4.0];
        neox.apply(&mut a, 0);
        // The same pairs laid out adjacently: (1,3) and (2,4).
        let mut b = [1.0, 3.0, 2.0, 4.0];
        adj.apply(&mut b, 0);
        assert_eq!([a[0], a[2], a[1], a[3]], b);
        // Position 3, frequency 0: angle 3.
        assert!((a[0] - (3f32.cos() - 3.0 * 3f32.sin())).abs() < 1e-6);
        // A factor of 2 halves the angle.
        let f = RopeTable::new(&[3], 4, 10_000.0, 1.0, RopeStyle::Neox, Some(&[2.0, 1.0]));
        let mut c = [1.0, 0.0, 0.0, 0.0];
        f.apply(&mut c, 0);
        assert!((c[0] - 1.5f32.cos()).abs() < 1e-6 && (c[2] - 1.5f32.sin()).abs() < 1e-6);
    }
}
