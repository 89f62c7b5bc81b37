//! The multi-head attention kernels against Burn's ops: heads split, `Q Kᵀ`, the softmax of the
//! scaled, padded scores, dropout, `P V`, heads merged. Values and the gradients of Q, K and V
//! under autodiff, with and without a padding mask and dropout; the composed path the GPU
//! backends run against the CPU kernel, with the same dropout mask; and inference.

use std::sync::{Mutex, MutexGuard};

use berthash_kernels::attention::{
    inference_composed, training_backward_composed, training_forward_composed,
};
use berthash_kernels::{attention, AttentionConfig, Kernels};
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Distribution, TensorPrimitive, Tolerance};

type Ad = Autodiff<Flex>;

/// The backend's RNG is shared by the tests of this binary, which run in parallel; the dropout
/// tests draw the same key twice from a seed, so they take turns.
static RNG: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tolerance() -> Tolerance<f32> {
    Tolerance::absolute(1e-5).set_relative(1e-4)
}

/// Padding bias as BERT builds it: 0 where attended, f32::MIN where padded; the row of batch `b`
/// keeps its first `keys - 3 * b` keys.
fn padding_bias(batch: usize, keys: usize) -> TensorData {
    let values: Vec<f32> = (0..batch)
        .flat_map(|b| (0..keys).map(move |k| if k < keys - 3 * b { 0.0 } else { f32::MIN }))
        .collect();
    TensorData::new(values, [batch, keys])
}

/// Q, K, V `[batch, seq, hidden]` and a context gradient, drawn from the seeded backend.
fn operands([batch, seq, hidden]: [usize; 3]) -> [TensorData; 4] {
    let device = Default::default();
    std::array::from_fn(|_| {
        Tensor::<Flex, 3>::random(
            [batch, seq, hidden],
            Distribution::Normal(0.0, 1.5),
            &device,
        )
        .into_data()
    })
}

fn primitive<const D: usize>(t: Tensor<Flex, D>) -> FloatTensor<Flex> {
    t.into_primitive().tensor()
}

fn tensor<const D: usize>(t: FloatTensor<Flex>) -> Tensor<Flex, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// Burn's ops, with dropout as the product with a constant `weights` `[batch, heads, seq, seq]`
/// (the kept elements' scale, zeros elsewhere).
fn reference<B: Backend>(
    [q, k, v]: [Tensor<B, 3>; 3],
    bias: Option<Tensor<B, 2>>,
    config: AttentionConfig,
    weights: Option<Tensor<B, 4>>,
) -> Tensor<B, 3> {
    let [batch, seq, hidden] = q.dims();
    let split = |x: Tensor<B, 3>| {
        x.reshape([batch, seq, config.heads, hidden / config.heads])
            .swap_dims(1, 2)
    };
    let mut logits = split(q).matmul(split(k).swap_dims(2, 3)) * config.scale;
    if let Some(bias) = bias {
        logits = logits + bias.reshape([batch, 1, 1, seq]);
    }
    let mut probs = softmax(logits, 3);
    if let Some(weights) = weights {
        probs = probs * weights;
    }
    probs
        .matmul(split(v))
        .swap_dims(1, 2)
        .reshape([batch, seq, hidden])
}

#[test]
fn training_attention_matches_burns_autodiff() {
    let _turn = turn();
    let device = Default::default();
    Flex::seed(&device, 3);
    for (shape, heads) in [([3, 13, 16], 2), ([1, 7, 12], 3), ([2, 128, 64], 2)] {
        let [batch, seq, _] = shape;
        let [q, k, v, grad] = operands(shape);
        for (bias, dropout) in [
            (None, 0.0),
            (Some(padding_bias(batch, seq)), 0.0),
            (Some(padding_bias(batch, seq)), 0.3),
        ] {
            let config = AttentionConfig {
                heads,
                scale: 1.0 / ((shape[2] / heads) as f64).sqrt(),
                dropout,
            };
            // The dropout this call will draw: the same seed, the forward alone.
            Flex::seed(&device, 17);
            let flex = |d: &TensorData| primitive(Tensor::<Flex, 3>::from_data(d.clone(), &device));
            let bias_flex = bias
                .clone()
                .map(|b| primitive(Tensor::<Flex, 2>::from_data(b, &device)));
            let (_, probs, mask) =
                Flex::attention_forward([flex(&q), flex(&k), flex(&v)], bias_flex, config);
            let weights = mask.map(|mask| {
                let ones = primitive(Tensor::<Flex, 4>::ones(tensor::<4>(probs).dims(), &device));
                Tensor::<Ad, 4>::from_data(
                    tensor::<4>(Flex::dropout_backward(ones, mask, dropout)).into_data(),
                    &device,
                )
            });

            let run = |fused: bool| {
                let leaf =
                    |d: &TensorData| Tensor::<Ad, 3>::from_data(d.clone(), &device).require_grad();
                let qkv = [leaf(&q), leaf(&k), leaf(&v)];
                let b = bias.clone().map(|b| Tensor::<Ad, 2>::from_data(b, &device));
                Flex::seed(&device, 17);
                let context = if fused {
                    attention(qkv[0].clone(), qkv[1].clone(), qkv[2].clone(), b, config)
                } else {
                    reference(qkv.clone(), b, config, weights.clone())
                };
                let g = Tensor::<Ad, 3>::from_data(grad.clone(), &device);
                let grads = (context.clone() * g).sum().backward();
                let mut out = vec![context.into_data()];
                out.extend(qkv.iter().map(|t| t.grad(&grads).unwrap().into_data()));
                out
            };
            for (fused, burn) in run(true).iter().zip(&run(false)) {
                fused.assert_approx_eq::<f32>(burn, tolerance());
            }
        }
    }
}

#[test]
fn the_composed_path_matches_the_cpu_kernel_with_dropout() {
    let _turn = turn();
    let device = Default::default();
    Flex::seed(&device, 5);
    let shape = [2, 19, 24];
    let [q, k, v, grad] = operands(shape);
    let config = AttentionConfig {
        heads: 3,
        scale: 0.35,
        dropout: 0.25,
    };
    let flex = |d: &TensorData| primitive(Tensor::<Flex, 3>::from_data(d.clone(), &device));
    let bias = || {
        Some(primitive(Tensor::<Flex, 2>::from_data(
            padding_bias(2, 19),
            &device,
        )))
    };
    // Both draw their dropout key from the backend's RNG at the same point.
    Flex::seed(&device, 23);
    let (context, probs, mask) =
        Flex::attention_forward([flex(&q), flex(&k), flex(&v)], bias(), config);
    Flex::seed(&device, 23);
    let (context_c, probs_c, mask_c) =
        training_forward_composed::<Flex>([flex(&q), flex(&k), flex(&v)], bias(), config);
    assert_eq!(mask, mask_c);
    tensor::<3>(context)
        .into_data()
        .assert_approx_eq::<f32>(&tensor::<3>(context_c).into_data(), tolerance());
    tensor::<4>(probs.clone())
        .into_data()
        .assert_approx_eq::<f32>(&tensor::<4>(probs_c).into_data(), tolerance());
    let grads = Flex::attention_backward(
        [flex(&q), flex(&k), flex(&v)],
        probs.clone(),
        mask,
        config,
        flex(&grad),
    );
    let grads_c = training_backward_composed::<Flex>(
        [flex(&q), flex(&k), flex(&v)],
        probs,
        mask,
        config,
        flex(&grad),
    );
    for (g, c) in grads.into_iter().zip(grads_c) {
        tensor::<3>(g)
            .into_data()
            .assert_approx_eq::<f32>(&tensor::<3>(c).into_data(), tolerance());
    }
}

/// The CPU inference attention (strided gemm calls on the projections' layout, softmax rows in
/// between) against the composed ops; padded keys get exactly zero weight.
#[test]
fn inference_attention_matches_the_composed_ops() {
    let _turn = turn();
    let device = Default::default();
    Flex::seed(&device, 3);
    for (shape, heads) in [([3, 13, 16], 2), ([1, 7, 12], 3), ([2, 128, 64], 2)] {
        let [batch, seq, hidden] = shape;
        let [q, k, v, _] = operands(shape);
        let flex = |d: &TensorData| Tensor::<Flex, 3>::from_data(d.clone(), &device);
        let config = AttentionConfig {
            heads,
            scale: 1.0 / ((hidden / heads) as f64).sqrt(),
            dropout: 0.1, // no effect without autodiff
        };
        for bias in [None, Some(padding_bias(batch, seq))] {
            let bias = bias.map(|b| Tensor::<Flex, 2>::from_data(b, &device));
            let fused = attention(flex(&q), flex(&k), flex(&v), bias.clone(), config);
            let composed: Tensor<Flex, 3> = tensor(inference_composed::<Flex>(
                [
                    primitive(flex(&q)),
                    primitive(flex(&k)),
                    primitive(flex(&v)),
                ],
                bias.clone().map(primitive),
                config,
            ));
            fused
                .clone()
                .into_data()
                .assert_approx_eq::<f32>(&composed.into_data(), tolerance());
            if bias.is_some() && batch > 2 {
                // Batch row 2 keeps its first `seq - 6` keys: changing the values of the padded
                // ones changes nothing.
                let mut v2 = flex(&v);
                let noise = Tensor::<Flex, 3>::ones([1, 6, hidden], &device) * 1e3;
                v2 = v2.slice_assign([2..3, seq - 6..seq, 0..hidden], noise);
                let again = attention(flex(&q), flex(&k), v2, bias, config);
                fused
                    .into_data()
                    .assert_approx_eq::<f32>(&again.into_data(), tolerance());
            }
        }
    }
}
