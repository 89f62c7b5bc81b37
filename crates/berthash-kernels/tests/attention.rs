//! The fused attention probabilities against Burn's softmax of the scaled, masked scores: value
//! and gradient with respect to the scores, with and without a padding mask.

use berthash_kernels::attention_probs;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, Tolerance};

type Ad = Autodiff<Flex>;

const SCALE: f64 = 0.176_776_695_296_636_9; // 1 / sqrt(32)

/// Padding bias as BERT builds it: 0 where attended, f32::MIN where padded; the row of batch `b`
/// keeps its first `keys - 3 * b` keys.
fn padding_bias(batch: usize, keys: usize) -> TensorData {
    let values: Vec<f32> = (0..batch)
        .flat_map(|b| (0..keys).map(move |k| if k < keys - 3 * b { 0.0 } else { f32::MIN }))
        .collect();
    TensorData::new(values, [batch, keys])
}

fn reference<B: Backend>(scores: Tensor<B, 4>, bias: Option<Tensor<B, 2>>) -> Tensor<B, 4> {
    let [batch, _, _, keys] = scores.dims();
    let logits = match bias {
        Some(bias) => scores * SCALE + bias.reshape([batch, 1, 1, keys]),
        None => scores * SCALE,
    };
    softmax(logits, 3)
}

#[test]
fn probabilities_and_gradients_match_burn() {
    let device = Default::default();
    let shape = [3, 2, 11, 13];
    Flex::seed(&device, 9);
    let scores =
        Tensor::<Flex, 4>::random(shape, Distribution::Normal(0.0, 6.0), &device).into_data();
    let weights =
        Tensor::<Flex, 4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device).into_data();
    let tolerance = Tolerance::absolute(1e-6).set_relative(1e-4);

    for bias in [None, Some(padding_bias(3, 13))] {
        let run = |fused: bool| {
            let x = Tensor::<Ad, 4>::from_data(scores.clone(), &device).require_grad();
            let b = bias.clone().map(|b| Tensor::<Ad, 2>::from_data(b, &device));
            let y = x.clone() * 1.0;
            let probs = if fused {
                attention_probs(y, SCALE, b)
            } else {
                reference(y, b)
            };
            let w = Tensor::<Ad, 4>::from_data(weights.clone(), &device);
            let grads = (probs.clone() * w).sum().backward();
            (probs.into_data(), x.grad(&grads).unwrap().into_data())
        };
        let ((probs, grad), (expected_probs, expected_grad)) = (run(true), run(false));
        probs.assert_approx_eq::<f32>(&expected_probs, tolerance);
        grad.assert_approx_eq::<f32>(&expected_grad, tolerance);
        if bias.is_some() {
            // Padded keys get exactly zero probability: the last 6 keys of batch row 2.
            let p = probs.to_vec::<f32>().unwrap();
            let row = &p[2 * 2 * 11 * 13..][..13];
            assert!(row[7..].iter().all(|&v| v == 0.0), "{row:?}");
        }
    }
}

/// The CPU inference attention (strided gemm calls on the projections' layout, softmax rows in
/// between) against the composed ops: heads split, `Q Kᵀ`, probabilities, `P V`, heads merged.
#[test]
fn inference_attention_matches_the_composed_ops() {
    use berthash_kernels::attention::inference_composed;
    use berthash_kernels::attention_inference;
    use burn::tensor::TensorPrimitive;

    let device = Default::default();
    Flex::seed(&device, 3);
    for (batch, seq, hidden, heads) in [(3, 13, 16, 2), (1, 7, 12, 3), (2, 128, 64, 2)] {
        let draw = || {
            Tensor::<Flex, 3>::random(
                [batch, seq, hidden],
                Distribution::Normal(0.0, 1.0),
                &device,
            )
        };
        let (q, k, v) = (draw(), draw(), draw());
        let scale = 1.0 / ((hidden / heads) as f64).sqrt();
        for bias in [None, Some(padding_bias(batch, seq))] {
            let bias = bias.map(|b| Tensor::<Flex, 2>::from_data(b, &device));
            let fused =
                attention_inference(q.clone(), k.clone(), v.clone(), heads, scale, bias.clone());
            let composed: Tensor<Flex, 3> =
                Tensor::from_primitive(TensorPrimitive::Float(inference_composed::<Flex>(
                    q.clone().into_primitive().tensor(),
                    k.clone().into_primitive().tensor(),
                    v.clone().into_primitive().tensor(),
                    heads,
                    scale,
                    bias.map(|b| b.into_primitive().tensor()),
                )));
            fused.into_data().assert_approx_eq::<f32>(
                &composed.into_data(),
                Tolerance::absolute(1e-5).set_relative(1e-4),
            );
        }
    }
}
