//! Deterministic random numbers for shuffling and masking, and the SplitMix64 hash every crate
//! derives its seeds with.
//!
//! Only the raw output of `ChaCha8Rng` is used (its stream is documented as
//! portable across platforms and versions); the range/float/shuffle helpers are
//! written here so no `rand` distribution can change values under us.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Separates the RNG streams of different uses of the same seed.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Domain {
    Shuffle = 1,
    Mask = 2,
    EvalMask = 3,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output for state `z`: a cheap, well-mixed hash of a `u64` (seeds derived from
/// counters, say).
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The SplitMix64 generator: a stream of [`splitmix64`] outputs.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(GOLDEN);
        out
    }
}

/// An independent generator for `(seed, domain, a, b)`, e.g. `(seed, Shuffle, epoch, window)`.
pub(crate) fn derive(seed: u64, domain: Domain, a: u64, b: u64) -> ChaCha8Rng {
    let mix = splitmix64(seed) ^ (domain as u64);
    let s = splitmix64(mix) ^ a;
    let mut t = SplitMix64(splitmix64(s) ^ b);
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        chunk.copy_from_slice(&t.next_u64().to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// Uniform in [0, 1) with 53 random bits.
pub(crate) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in [0, n) without modulo bias (Lemire's multiply-and-reject). `n > 0`.
pub(crate) fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = (rng.next_u64() as u128) * (n as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Fisher-Yates shuffle.
pub(crate) fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// FNV-1a, a hash that is the same on every platform and Rust version (std's is not).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StableHasher(u64);

impl StableHasher {
    pub(crate) fn new() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator so ("ab", "c") and ("a", "bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_streams_differ_and_repeat() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = derive(7, Domain::Mask, 0, 1);
                move |_| r.next_u64()
            })
            .collect();
        let mut again = derive(7, Domain::Mask, 0, 1);
        assert_eq!(a[0], again.next_u64());
        let mut other = derive(7, Domain::Mask, 0, 2);
        assert_ne!(a[0], other.next_u64());
        let mut shuffle_domain = derive(7, Domain::Shuffle, 0, 1);
        assert_ne!(a[0], shuffle_domain.next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = derive(1, Domain::Shuffle, 0, 0);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[below(&mut rng, 7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = derive(3, Domain::Shuffle, 1, 2);
        let mut v: Vec<usize> = (0..100).collect();
        shuffle(&mut rng, &mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
