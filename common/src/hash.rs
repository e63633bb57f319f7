//! The one non-cryptographic hash of the project: 64-bit FNV-1a, stable
//! across platforms and releases (seeds and synthetic answers derive from
//! it, so a change would change recorded data).

/// An FNV-1a state.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Fnv1a {
    pub const OFFSET_BASIS: u64 = 0xcbf29ce484222325;
    pub const PRIME: u64 = 0x100000001b3;

    pub fn new() -> Self {
        Fnv1a(Self::OFFSET_BASIS)
    }

    /// Starts from another basis (a seed mixed into the offset basis).
    pub fn with_basis(basis: u64) -> Self {
        Fnv1a(basis)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a of `parts`, each followed by a 0xff separator (so that
/// `["ab", "c"]` and `["a", "bc"]` differ).
pub fn fnv1a_parts(parts: &[&[u8]]) -> u64 {
    let mut h = Fnv1a::new();
    for p in parts {
        h.write(p);
        h.write(&[0xff]);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_hash_matches_the_written_out_loop() {
        fn inline(parts: &[&[u8]]) -> u64 {
            let mut h: u64 = 0xcbf29ce484222325;
            for p in parts {
                for b in *p {
                    h ^= *b as u64;
                    h = h.wrapping_mul(0x100000001b3);
                }
                h ^= 0xff;
                h = h.wrapping_mul(0x100000001b3);
            }
            h
        }
        let cases: [&[&[u8]]; 3] = [&[], &[b"a"], &[b"gpt", b"persona", &[1, 2, 3]]];
        for c in cases {
            assert_eq!(fnv1a_parts(c), inline(c));
        }
        assert_ne!(fnv1a_parts(&[b"ab", b"c"]), fnv1a_parts(&[b"a", b"bc"]));
    }
}
