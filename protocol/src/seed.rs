//! The seed of a slot, computed the same way wherever the slot is asked.

use moralsweep_common::hash::Fnv1a;
use moralsweep_common::Mode;

/// The seed of a slot: a pure function of the sweep's seed, the model key, the
/// mode and the slot index, so that a repeated run asks every slot with the
/// same seeds (attempt `a` uses `seed + a`).
pub fn slot_seed(sweep_seed: u64, model: &str, mode: Mode, index: u32) -> u64 {
    let mut h = Fnv1a::with_basis(Fnv1a::OFFSET_BASIS ^ sweep_seed.rotate_left(17));
    h.write(model.as_bytes());
    h.write(&[0xff]);
    h.write(mode.name().as_bytes());
    h.write(&index.to_le_bytes());
    // A final mix so that neighbouring slots do not get neighbouring seeds.
    let mut h = h.finish();
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_per_slot_and_are_stable() {
        let a = slot_seed(1, "m", Mode::Persona, 0);
        assert_eq!(a, slot_seed(1, "m", Mode::Persona, 0));
        assert_ne!(a, slot_seed(1, "m", Mode::Persona, 1));
        assert_ne!(a, slot_seed(1, "m", Mode::SelfMode, 0));
        assert_ne!(a, slot_seed(2, "m", Mode::Persona, 0));
        assert_ne!(a, slot_seed(1, "n", Mode::Persona, 0));
    }

    #[test]
    fn seeds_are_those_of_earlier_releases() {
        // The formula before it moved here (FNV-1a written out inline):
        // recorded sweeps resume with the same seeds.
        fn inline(sweep_seed: u64, model: &str, mode: Mode, index: u32) -> u64 {
            let mut h: u64 = 0xcbf29ce484222325 ^ sweep_seed.rotate_left(17);
            for b in model
                .as_bytes()
                .iter()
                .chain([0xffu8].iter())
                .chain(mode.name().as_bytes())
                .chain(index.to_le_bytes().iter())
            {
                h ^= *b as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
            h ^= h >> 33;
            h = h.wrapping_mul(0xff51afd7ed558ccd);
            h ^= h >> 33;
            h
        }
        for (s, m, mode, i) in [
            (0, "a", Mode::Persona, 0),
            (7, "gpt-4o", Mode::SelfMode, 99),
        ] {
            assert_eq!(slot_seed(s, m, mode, i), inline(s, m, mode, i));
        }
    }
}
