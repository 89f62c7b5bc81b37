//! The CPU dropout mask: element `i` is kept when a keyed hash of `i` falls under
//! `(1 - prob) * 2^32`. Counter-based, so any chunk of a tensor can be masked by any thread, and
//! the backward recomputes the mask from the key instead of storing it.

use rayon::prelude::*;

use crate::CHUNK;

/// A dropout call's identity: which elements it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskKey(pub u64);

/// Chris Wellons' `lowbias32`: a bijection on `u32` with low avalanche bias.
#[inline(always)]
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^ (h >> 16)
}

#[inline(always)]
fn keeps(index: u32, key: [u32; 2], threshold: u32) -> bool {
    mix(mix(index ^ key[0]) ^ key[1]) < threshold
}

/// A float type dropout can scale.
pub trait Float: Copy + Send + Sync {
    const ZERO: Self;
    fn scaled(self, scale: f32) -> Self;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn scaled(self, scale: f32) -> Self {
        self * scale
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn scaled(self, scale: f32) -> Self {
        self * scale as f64
    }
}

impl Float for half::bf16 {
    const ZERO: Self = half::bf16::ZERO;
    #[inline(always)]
    fn scaled(self, scale: f32) -> Self {
        half::bf16::from_f32(self.to_f32() * scale)
    }
}

impl Float for half::f16 {
    const ZERO: Self = half::f16::ZERO;
    #[inline(always)]
    fn scaled(self, scale: f32) -> Self {
        half::f16::from_f32(self.to_f32() * scale)
    }
}

/// `values[i] = kept(i) ? values[i] * scale : 0` over a whole tensor, in place; `prob` in
/// `(0, 1]`.
pub fn apply<T: Float>(values: &mut [T], key: MaskKey, prob: f64) {
    values
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| apply_at(chunk, c * CHUNK, key, prob));
}

/// [`apply`] to the elements `first ..` of a tensor, given as `values`, on this thread.
pub fn apply_at<T: Float>(values: &mut [T], first: usize, key: MaskKey, prob: f64) {
    let keep = 1.0 - prob;
    // `keep` < 1, so the threshold fits in u32.
    let threshold = (keep * 4_294_967_296.0) as u32;
    let scale = if keep > 0.0 { (1.0 / keep) as f32 } else { 0.0 };
    let key = [key.0 as u32, (key.0 >> 32) as u32];
    apply_chunk(values, first as u32, key, threshold, scale);
}

fn apply_chunk<T: Float>(chunk: &mut [T], first: u32, key: [u32; 2], threshold: u32, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn avx2<T: Float>(chunk: &mut [T], first: u32, key: [u32; 2], threshold: u32, scale: f32) {
            apply_body(chunk, first, key, threshold, scale)
        }
        // SAFETY: the CPU has AVX2.
        return unsafe { avx2(chunk, first, key, threshold, scale) };
    }
    apply_body(chunk, first, key, threshold, scale)
}

/// Plain loop over `u32` lanes: LLVM vectorises it (8 lanes with AVX2).
#[inline(always)]
fn apply_body<T: Float>(chunk: &mut [T], first: u32, key: [u32; 2], threshold: u32, scale: f32) {
    for (i, x) in chunk.iter_mut().enumerate() {
        let kept = keeps(first.wrapping_add(i as u32), key, threshold);
        *x = if kept { x.scaled(scale) } else { T::ZERO };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(n: usize, key: u64, prob: f64) -> Vec<bool> {
        let mut values = vec![1.0f32; n];
        apply(&mut values, MaskKey(key), prob);
        values.iter().map(|&v| v != 0.0).collect()
    }

    #[test]
    fn keeps_the_expected_fraction_scaled() {
        let n = 200_000;
        for prob in [0.1, 0.5, 0.9] {
            let mut values = vec![2.0f32; n];
            apply(&mut values, MaskKey(42), prob);
            let kept: Vec<f32> = values.iter().copied().filter(|&v| v != 0.0).collect();
            let fraction = kept.len() as f64 / n as f64;
            // Binomial standard deviation is under 0.0012 here: 5 of them.
            assert!(
                (fraction - (1.0 - prob)).abs() < 0.006,
                "prob {prob}: kept {fraction}"
            );
            let scaled = (2.0 / (1.0 - prob)) as f32;
            assert!(kept.iter().all(|&v| v == scaled), "prob {prob}: scale");
        }
        assert!(kept(1000, 1, 1.0).iter().all(|&k| !k));
    }

    #[test]
    fn the_key_decides_the_mask() {
        let n = 100_000;
        assert_eq!(kept(n, 7, 0.1), kept(n, 7, 0.1));
        let (a, b) = (kept(n, 7, 0.5), kept(n, 8, 0.5));
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / n as f64;
        assert!(
            (same - 0.5).abs() < 0.01,
            "masks of two keys agree on {same}"
        );
        // Neighbouring elements are independent too.
        let pairs = a.windows(2).filter(|w| w[0] == w[1]).count() as f64 / (n - 1) as f64;
        assert!((pairs - 0.5).abs() < 0.01, "neighbours agree on {pairs}");
    }

    #[test]
    fn chunks_and_pieces_are_the_same_mask_as_one_pass() {
        // The rayon split must not change which elements are kept.
        let n = 3 * CHUNK + 17;
        let mut whole = vec![1.0f32; n];
        apply(&mut whole, MaskKey(99), 0.3);
        let key = [99u32, 0];
        let threshold = (0.7 * 4_294_967_296.0) as u32;
        let expected: Vec<bool> = (0..n as u32).map(|i| keeps(i, key, threshold)).collect();
        let got: Vec<bool> = whole.iter().map(|&v| v != 0.0).collect();
        assert_eq!(got, expected);
        // And any piece, masked on its own at its offset.
        let mut pieces = vec![1.0f32; n];
        for (i, piece) in pieces.chunks_mut(1000).enumerate() {
            apply_at(piece, i * 1000, MaskKey(99), 0.3);
        }
        assert_eq!(pieces, whole);
    }
}
