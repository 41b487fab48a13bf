//! splitmix64, the one source of randomness and hashing in the engine: a bijective 64-bit mix, a
//! counter-based generator keyed by numbers (masks, shuffles), and a streaming hash (cache
//! checksums, tokenizer fingerprints). Everything is a pure function of its inputs, never of
//! timing or thread count.

/// The golden-ratio increment of splitmix64.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's finalizer: a bijective 64-bit mix.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A tiny counter-based generator: its whole state is derived from the key.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, epoch: u64, key: u64) -> Self {
        Rng(mix(seed ^ mix(epoch.wrapping_add(0x5851_F42D_4C95_7F2D) ^ mix(key))))
    }
    /// splitmix64's next output: the state advances by the golden increment, which `mix` adds.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let z = self.0;
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(z)
    }
    /// Uniform in [0, 1).
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [0, n).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// A fast streaming 64-bit hash (splitmix over 8-byte words, the length mixed in at the end).
pub struct Hasher {
    h: u64,
    pending: [u8; 8],
    n_pending: usize,
    len: u64,
}

impl Hasher {
    pub fn new(seed: u64) -> Self {
        Hasher { h: mix(seed), pending: [0; 8], n_pending: 0, len: 0 }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.n_pending > 0 {
            let take = (8 - self.n_pending).min(data.len());
            self.pending[self.n_pending..self.n_pending + take].copy_from_slice(&data[..take]);
            self.n_pending += take;
            data = &data[take..];
            if self.n_pending < 8 {
                return;
            }
            self.h = mix(self.h ^ u64::from_le_bytes(self.pending));
            self.n_pending = 0;
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.h = mix(self.h ^ u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.n_pending = rest.len();
    }

    pub fn finish(mut self) -> u64 {
        self.pending[self.n_pending..].fill(0);
        mix(mix(self.h ^ u64::from_le_bytes(self.pending)) ^ self.len)
    }
}

/// The hash of one byte string.
pub fn hash_bytes(data: &[u8], seed: u64) -> u64 {
    let mut h = Hasher::new(seed);
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_splitmix64() {
        // The reference splitmix64 sequence from state 0 (Vigna's splitmix64.c).
        let mut r = Rng(0);
        assert_eq!([r.next_u64(), r.next_u64(), r.next_u64()], [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F]);
    }

    #[test]
    fn streaming_hash_ignores_how_the_bytes_are_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = hash_bytes(&data, 5);
        for split in [1, 3, 7, 8, 9, 500, 999] {
            let mut h = Hasher::new(5);
            for part in data.chunks(split) {
                h.update(part);
            }
            assert_eq!(h.finish(), whole, "chunks of {split}");
        }
        assert_ne!(hash_bytes(&data, 6), whole, "the seed matters");
        assert_ne!(hash_bytes(&data[..999], 5), whole, "the length matters");
    }
}
