//! The fused cross-entropy against Burn's own op-by-op log-softmax: loss and gradient, on the
//! CPU backend with and without autodiff.

use berthash_kernels::cross_entropy;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::Tolerance;

mod common;

type Ad = Autodiff<Flex>;

/// The plain formula: mean of `-log_softmax(logits)[target]`.
fn reference<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [rows, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, targets.reshape([rows, 1]))
        .mean()
        .neg()
}

/// d(factor * mean CE(scale * logits)) / d logits, in f64.
fn exact_gradient(
    logits: &TensorData,
    targets: &TensorData,
    scale: f64,
    factor: f64,
) -> TensorData {
    let [rows, classes] = [logits.shape[0], logits.shape[1]];
    let x = logits.to_vec::<f32>().unwrap();
    let t = targets.clone().convert::<i64>().to_vec::<i64>().unwrap();
    let mut grad = vec![0.0f32; rows * classes];
    for r in 0..rows {
        let row: Vec<f64> = x[r * classes..(r + 1) * classes]
            .iter()
            .map(|&v| v as f64 * scale)
            .collect();
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
        for c in 0..classes {
            let p = (row[c] - max).exp() / sum - if c as i64 == t[r] { 1.0 } else { 0.0 };
            grad[r * classes + c] = (p * scale * factor / rows as f64) as f32;
        }
    }
    TensorData::new(grad, [rows, classes])
}

fn case(rows: usize, classes: usize, seed: u64) -> (TensorData, TensorData) {
    (
        common::normal(&[rows, classes], 0.0, 4.0, 2 * seed),
        common::below(rows, classes, 2 * seed + 1),
    )
}

#[test]
fn loss_and_gradient_match_log_softmax() {
    let device = Default::default();
    for (rows, classes) in [(1, 2), (5, 2), (37, 3), (64, 1000), (13, 30522)] {
        let (logits, targets) = case(rows, classes, rows as u64);

        let plain = Tensor::<Flex, 2>::from_data(logits.clone(), &device);
        let ids = Tensor::<Flex, 1, Int>::from_data(targets.clone(), &device);
        let expected = reference(plain.clone(), ids.clone()).into_data();
        cross_entropy(plain, ids)
            .into_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::relative(1e-5));

        // Scale the loss (3x) and the logits (1.5x) so that the chain rule's factors are
        // exercised. The logits are an intermediate (as a decoder's output is), so the fused
        // backward owns them and writes the gradient in place.
        let x = Tensor::<Ad, 2>::from_data(logits.clone(), &device).require_grad();
        let ids = Tensor::<Ad, 1, Int>::from_data(targets.clone(), &device);
        let grads = (cross_entropy(x.clone() * 1.5, ids) * 3.0).backward();
        let got = x.grad(&grads).expect("gradient").into_data();
        got.assert_approx_eq::<f32>(
            &exact_gradient(&logits, &targets, 1.5, 3.0),
            Tolerance::absolute(2e-6).set_relative(1e-4),
        );
    }
}

#[test]
fn gradient_flows_through_a_shared_input() {
    // The logits are still referenced elsewhere (here: a second use), so the backward must not
    // overwrite them in place.
    let device = Default::default();
    let (logits, targets) = case(9, 50, 7);
    let run = |fused: bool| {
        let x = Tensor::<Ad, 2>::from_data(logits.clone(), &device).require_grad();
        let ids = Tensor::<Ad, 1, Int>::from_data(targets.clone(), &device);
        let y = x.clone() * 2.0;
        let loss = if fused {
            cross_entropy(y.clone(), ids)
        } else {
            reference(y.clone(), ids)
        } + y.sum() * 0.01;
        let grads = loss.backward();
        x.grad(&grads).expect("gradient").into_data()
    };
    run(true).assert_approx_eq::<f32>(&run(false), Tolerance::absolute(1e-6).set_relative(1e-4));
}

#[test]
#[should_panic(expected = "target 5 of row 1 is outside 0..5")]
fn a_target_out_of_range_is_named() {
    let device = Default::default();
    let logits = Tensor::<Flex, 2>::zeros([2, 5], &device);
    let ids = Tensor::<Flex, 1, Int>::from_data([0, 5], &device);
    cross_entropy(logits, ids);
}

#[test]
fn the_composed_loss_in_class_blocks_matches_log_softmax() {
    // The composed path (the GPU backends') reduces each row in blocks of classes: 30,522 is 6
    // blocks of 5,087, 1,000 is 2 of 500, and 3 classes stay one block.
    use berthash_kernels::cross_entropy::{backward_composed, forward_composed};
    use berthash_kernels::sum_blocks::sum_blocks;
    assert_eq!([30522, 1000, 32000, 3, 2].map(sum_blocks), [6, 2, 64, 1, 1]);
    let device = Default::default();
    for (rows, classes) in [(5, 2), (37, 3), (64, 1000), (13, 30522)] {
        let (logits, targets) = case(rows, classes, 100 + rows as u64);
        let plain = || Tensor::<Flex, 2>::from_data(logits.clone(), &device);
        let ids = || Tensor::<Flex, 1, Int>::from_data(targets.clone(), &device);
        let (loss, log_sum_exp) =
            forward_composed::<Flex>(plain().into_primitive().tensor(), ids().into_primitive());
        let loss = Tensor::<Flex, 1>::from_primitive(burn::tensor::TensorPrimitive::Float(loss));
        loss.into_data().assert_approx_eq::<f32>(
            &reference(plain(), ids()).into_data(),
            Tolerance::relative(1e-5),
        );
        let one = Tensor::<Flex, 1>::ones([1], &device)
            .into_primitive()
            .tensor();
        let grad = backward_composed::<Flex>(
            plain().into_primitive().tensor(),
            log_sum_exp,
            ids().into_primitive(),
            one,
        );
        Tensor::<Flex, 2>::from_primitive(burn::tensor::TensorPrimitive::Float(grad))
            .into_data()
            .assert_approx_eq::<f32>(
                &exact_gradient(&logits, &targets, 1.0, 1.0),
                Tolerance::absolute(2e-6).set_relative(1e-4),
            );
    }
}
