//! The bootstraps' random numbers: xoshiro256++ seeded through SplitMix64.
//!
//! Small, fast and the same on every platform, so a seed always gives the
//! same numbers. Each bootstrap gets its own stream, derived from the user's
//! seed and a label (model, temperature, scope), so results do not depend on
//! the order or the thread in which models are analysed.

/// xoshiro256++ (Blackman and Vigna), seeded with SplitMix64.
#[derive(Debug, Clone)]
pub struct FastRng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl FastRng {
    pub fn new(seed: u64) -> FastRng {
        let mut st = seed;
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        FastRng { s }
    }

    /// A stream for `seed` and a label: FNV-1a of the label mixed with the seed.
    pub fn for_label(seed: u64, label: &str) -> FastRng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut st = h ^ seed.rotate_left(17);
        FastRng::new(splitmix64(&mut st) ^ seed)
    }

    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Two independent indices in `0..n` from one draw (multiply-shift on
    /// each 32-bit half; the bias is below n / 2^32).
    #[inline(always)]
    pub fn two_below(&mut self, n: u32) -> (u32, u32) {
        let x = self.next_u64();
        let lo = ((x & 0xffff_ffff) * n as u64) >> 32;
        let hi = ((x >> 32) * n as u64) >> 32;
        (lo as u32, hi as u32)
    }

    /// One index in `0..n`.
    #[inline(always)]
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * n as u64) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeatable_and_roughly_uniform() {
        let mut a = FastRng::for_label(7, "m|0.1|persona");
        let mut b = FastRng::for_label(7, "m|0.1|persona");
        let mut c = FastRng::for_label(8, "m|0.1|persona");
        let xs: Vec<u64> = (0..10).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..10).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..10).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            let (i, j) = a.two_below(7);
            counts[i as usize] += 1;
            counts[j as usize] += 1;
        }
        for c in counts {
            assert!((19_000..21_000).contains(&c), "{counts:?}");
        }
    }
}
