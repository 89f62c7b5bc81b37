//! Test inputs drawn on the host from seeded ChaCha streams: the same on every machine and in
//! whatever order a binary's tests run, which the backend's one RNG per process cannot promise.
// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Values from N(`mean`, `std`²) in `shape`.
pub fn normal(shape: &[usize], mean: f32, std: f32, seed: u64) -> TensorData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(mean, std).expect("a finite, non-negative deviation");
    let values: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| normal.sample(&mut rng))
        .collect();
    TensorData::new(values, shape.to_vec())
}

/// `n` integers drawn uniformly from `0..bound`.
pub fn below(n: usize, bound: usize, seed: u64) -> TensorData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<i64> = (0..n).map(|_| rng.random_range(0..bound as i64)).collect();
    TensorData::new(values, [n])
}
