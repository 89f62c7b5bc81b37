//! The fused dropout through autodiff on the CPU backend: the backward applies exactly the
//! forward's mask, the backend seed makes it reproducible, and inference leaves inputs alone.

use berthash_kernels::dropout;
use burn::backend::{Autodiff, Flex};
use burn::nn::DropoutConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use std::sync::Mutex;

type Ad = Autodiff<Flex>;

/// The backend RNG is process-wide: tests that seed it and draw from it take turns.
static RNG: Mutex<()> = Mutex::new(());

fn input(device: &burn::backend::flex::FlexDevice) -> TensorData {
    Flex::seed(device, 3);
    Tensor::<Flex, 3>::random([4, 33, 17], Distribution::Normal(1.0, 1.0), device).into_data()
}

#[test]
fn backward_applies_the_forward_mask() {
    let _turn = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let device = Default::default();
    let data = input(&device);
    let drop = DropoutConfig::new(0.25).init();
    Ad::seed(&device, 11);
    let x = Tensor::<Ad, 3>::from_data(data.clone(), &device).require_grad();
    let weights = Tensor::<Ad, 3>::random([4, 33, 17], Distribution::Uniform(-1.0, 1.0), &device);
    let y = dropout(x.clone() * 1.0, &drop);
    let grads = (y.clone() * weights.clone()).sum().backward();
    let grad = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();

    let x = data.to_vec::<f32>().unwrap();
    let y = y.into_data().to_vec::<f32>().unwrap();
    let w = weights.into_data().to_vec::<f32>().unwrap();
    let scale = 1.0 / 0.75f32;
    let mut dropped = 0;
    for i in 0..x.len() {
        if y[i] == 0.0 {
            dropped += 1;
            assert_eq!(
                grad[i], 0.0,
                "element {i} was dropped forward but not backward"
            );
        } else {
            assert!(
                (y[i] - x[i] * scale).abs() <= 1e-6 * y[i].abs(),
                "element {i}: forward scale"
            );
            assert!(
                (grad[i] - w[i] * scale).abs() <= 1e-6 * w[i].abs().max(1.0),
                "element {i}: backward"
            );
        }
    }
    let fraction = dropped as f64 / x.len() as f64;
    assert!((fraction - 0.25).abs() < 0.03, "dropped {fraction}");
}

#[test]
fn the_backend_seed_fixes_the_mask() {
    let _turn = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let device = Default::default();
    let data = input(&device);
    let drop = DropoutConfig::new(0.5).init();
    let run = |seed: u64| {
        Ad::seed(&device, seed);
        let x = Tensor::<Ad, 3>::from_data(data.clone(), &device);
        (
            dropout(x.clone(), &drop).into_data(),
            dropout(x, &drop).into_data(),
        )
    };
    let (first, second) = run(5);
    assert_eq!(run(5), (first.clone(), second.clone()));
    assert_ne!(first, second, "two calls in a row share a mask");
    assert_ne!(run(6).0, first, "another seed gives the same mask");
}

#[test]
fn inference_and_probability_zero_are_the_identity() {
    let _turn = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let device = Default::default();
    let data = input(&device);
    let x = Tensor::<Flex, 3>::from_data(data.clone(), &device);
    assert_eq!(
        dropout(x, &DropoutConfig::new(0.5).init()).into_data(),
        data
    );
    let x = Tensor::<Ad, 3>::from_data(data.clone(), &device);
    assert_eq!(
        dropout(x, &DropoutConfig::new(0.0).init()).into_data(),
        data
    );
}
