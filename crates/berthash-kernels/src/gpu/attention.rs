//! Multi-head self-attention as one operation each way, the row-wise part of each a CubeCL
//! kernel.
//!
//! Composed ([`crate::attention`]), an attention layer is about 25 Burn operations forward and
//! 30 backward (the heads split and merged, the scale, the padding bias, the softmax's five,
//! the dropout's three), each of which costs the host its description and the fusion stream's
//! search whatever the tensor's size, and Burn's fusion left the softmax's block unfused (it
//! starts with the key's transpose). Here the heads are views, the products Burn's CubeCL
//! kernels, and the rest one kernel each way, arithmetic in f32 whatever the tensors' type:
//! - forward, one unit per row of scores: `p = softmax(s * scale + key_bias)` and, with
//!   dropout, the weights `p * mask / keep`; the mask is the composed dropout's
//!   ([`dropout::draw_mask`]), so a seeded run draws the same one either way;
//! - backward, one unit per row: `dS = scale * p * (dP - sum(dP * p))`, with `dP` the weights'
//!   gradient times `mask / keep`.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor as BurnTensor};
use burn::tensor::{TensorMetadata, TensorPrimitive};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::cube::{empty, grid, CubeKernels, Launch};
use crate::attention::{merge_heads, split_heads};
use crate::{dropout, AttentionConfig};

/// The scaled and biased score of key `c` in the row starting at `start`.
#[cube]
fn logit<F: Float>(
    scores: &Tensor<F>,
    key_bias: &Tensor<F>,
    start: usize,
    bias_start: usize,
    c: usize,
    scale: f32,
    #[comptime] biased: bool,
) -> f32 {
    let mut v = f32::cast_from(scores[start + c]) * scale;
    if biased {
        v += f32::cast_from(key_bias[bias_start + c]);
    }
    v
}

/// Unit `row` of `scores` `[batch, heads, queries, keys]`: its probabilities and, when
/// `masked`, its weights after dropout. `key_bias` `[batch, keys]` is read when `biased`.
#[cube(launch_unchecked)]
fn softmax_rows<F: Float>(
    scores: &Tensor<F>,
    key_bias: &Tensor<F>,
    mask: &Tensor<F>,
    probs: &mut Tensor<F>,
    weights: &mut Tensor<F>,
    scale: f32,
    inverse_keep: f32,
    keys: u32,
    rows_per_batch: u32,
    #[comptime] biased: bool,
    #[comptime] masked: bool,
    #[define(F)] _dtype: StorageType,
) {
    let keys = keys as usize;
    let row = ABSOLUTE_POS;
    let start = row * keys;
    if start >= probs.len() {
        terminate!();
    }
    let bias_start = (row / rows_per_batch as usize) * keys;
    let mut max = logit::<F>(scores, key_bias, start, bias_start, 0, scale, biased);
    for c in 1..keys {
        let v = logit::<F>(scores, key_bias, start, bias_start, c, scale, biased);
        if v > max {
            max = v;
        }
    }
    let mut sum = f32::new(0.0);
    for c in 0..keys {
        sum += (logit::<F>(scores, key_bias, start, bias_start, c, scale, biased) - max).exp();
    }
    let inverse = f32::new(1.0) / sum;
    for c in 0..keys {
        let v = logit::<F>(scores, key_bias, start, bias_start, c, scale, biased);
        let p = (v - max).exp() * inverse;
        probs[start + c] = F::cast_from(p);
        if masked {
            weights[start + c] = F::cast_from(p * f32::cast_from(mask[start + c]) * inverse_keep);
        }
    }
}

/// Unit `row`: the scores' gradient from the probabilities and the weights' gradient.
#[cube(launch_unchecked)]
fn softmax_backward_rows<F: Float>(
    probs: &Tensor<F>,
    grad_weights: &Tensor<F>,
    mask: &Tensor<F>,
    grad_scores: &mut Tensor<F>,
    scale: f32,
    inverse_keep: f32,
    keys: u32,
    #[comptime] masked: bool,
    #[define(F)] _dtype: StorageType,
) {
    let keys = keys as usize;
    let start = ABSOLUTE_POS * keys;
    if start >= probs.len() {
        terminate!();
    }
    let mut dot = f32::new(0.0);
    for c in 0..keys {
        let mut g = f32::cast_from(grad_weights[start + c]);
        if masked {
            g *= f32::cast_from(mask[start + c]) * inverse_keep;
        }
        dot += g * f32::cast_from(probs[start + c]);
    }
    for c in 0..keys {
        let mut g = f32::cast_from(grad_weights[start + c]);
        if masked {
            g *= f32::cast_from(mask[start + c]) * inverse_keep;
        }
        let p = f32::cast_from(probs[start + c]);
        grad_scores[start + c] = F::cast_from(p * (g - dot) * scale);
    }
}

/// Unit `i`: the weights after dropout, `probs * mask / keep`.
#[cube(launch_unchecked)]
fn dropped<F: Float>(
    probs: &Tensor<F>,
    mask: &Tensor<F>,
    weights: &mut Tensor<F>,
    inverse_keep: f32,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= probs.len() {
        terminate!();
    }
    let p = f32::cast_from(probs[i]) * f32::cast_from(mask[i]) * inverse_keep;
    weights[i] = F::cast_from(p);
}

fn tensor<C: Backend, const D: usize>(tensor: FloatTensor<C>) -> BurnTensor<C, D> {
    BurnTensor::from_primitive(TensorPrimitive::Float(tensor))
}

/// `1 / (1 - prob)`, which the kernels multiply kept values by.
fn inverse_keep(prob: f64) -> f32 {
    (1.0 / (1.0 - prob)) as f32
}

/// The probabilities of `scores` and, given the dropout's `mask`, the weights after it.
fn softmax<R: CubeRuntime>(
    scores: CubeTensor<R>,
    key_bias: Option<CubeTensor<R>>,
    mask: Option<&CubeTensor<R>>,
    config: AttentionConfig,
) -> (CubeTensor<R>, Option<CubeTensor<R>>) {
    let scores = into_contiguous(scores);
    let shape = scores.shape();
    let [_, heads, queries, keys] = shape.dims();
    let (client, dtype) = (scores.client.clone(), scores.dtype);
    let key_bias = key_bias.map(|bias| into_contiguous(burn_cubecl::kernel::cast(bias, dtype)));
    let probs = empty(&scores, shape.clone(), dtype);
    let weights = mask.map(|_| empty(&scores, shape.clone(), dtype));
    let rows = shape.num_elements() / keys.max(1);
    if rows > 0 {
        // Arguments a variant does not read are bound to tensors it has anyway, or to a one-
        // element output where it writes none.
        let unused_output = || empty(&scores, Shape::new([1]), dtype);
        let (count, dim) = grid(&scores, rows);
        // SAFETY: every tensor is contiguous and sized to the rows and keys read and written;
        // the kernel returns early past the last row.
        unsafe {
            softmax_rows::launch_unchecked(
                &client,
                count,
                dim,
                scores.clone().into_tensor_arg(),
                key_bias
                    .as_ref()
                    .unwrap_or(&scores)
                    .clone()
                    .into_tensor_arg(),
                mask.unwrap_or(&scores).clone().into_tensor_arg(),
                probs.clone().into_tensor_arg(),
                weights
                    .clone()
                    .unwrap_or_else(unused_output)
                    .into_tensor_arg(),
                config.scale as f32,
                inverse_keep(config.dropout),
                keys as u32,
                (heads * queries) as u32,
                key_bias.is_some(),
                mask.is_some(),
                dtype.into(),
            );
        }
    }
    (probs, weights)
}

/// The scores' gradient from the probabilities and the weights' gradient.
fn softmax_backward<R: CubeRuntime>(
    probs: CubeTensor<R>,
    grad_weights: CubeTensor<R>,
    mask: Option<&CubeTensor<R>>,
    config: AttentionConfig,
) -> CubeTensor<R> {
    let grad_weights = into_contiguous(grad_weights);
    let shape = probs.shape();
    let keys = shape[shape.num_dims() - 1];
    let (client, dtype) = (probs.client.clone(), probs.dtype);
    let grad_scores = empty(&probs, shape.clone(), dtype);
    let rows = shape.num_elements() / keys.max(1);
    if rows > 0 {
        let (count, dim) = grid(&probs, rows);
        // SAFETY: as in `softmax`.
        unsafe {
            softmax_backward_rows::launch_unchecked(
                &client,
                count,
                dim,
                probs.clone().into_tensor_arg(),
                grad_weights.into_tensor_arg(),
                mask.unwrap_or(&probs).clone().into_tensor_arg(),
                grad_scores.clone().into_tensor_arg(),
                config.scale as f32,
                inverse_keep(config.dropout),
                keys as u32,
                mask.is_some(),
                dtype.into(),
            );
        }
    }
    grad_scores
}

/// The weights after dropout, recomputed from the probabilities and the mask.
fn weights<R: CubeRuntime>(
    probs: CubeTensor<R>,
    mask: &CubeTensor<R>,
    config: AttentionConfig,
) -> CubeTensor<R> {
    let (client, dtype, shape) = (probs.client.clone(), probs.dtype, probs.shape());
    let weights = empty(&probs, shape.clone(), dtype);
    let elements = shape.num_elements();
    if elements > 0 {
        let (count, dim) = grid(&probs, elements);
        // SAFETY: the three tensors are contiguous and of one size; the kernel returns early
        // past it.
        unsafe {
            dropped::launch_unchecked(
                &client,
                count,
                dim,
                probs.into_tensor_arg(),
                mask.clone().into_tensor_arg(),
                weights.clone().into_tensor_arg(),
                inverse_keep(config.dropout),
                dtype.into(),
            );
        }
    }
    weights
}

/// The attention on the CubeCL backend `C`: the context, the probabilities and the mask.
fn forward_on<C, R>(
    [query, key, value]: [CubeTensor<R>; 3],
    key_bias: Option<CubeTensor<R>>,
    config: AttentionConfig,
) -> (CubeTensor<R>, CubeTensor<R>, Option<CubeTensor<R>>)
where
    R: CubeRuntime,
    C: Backend<FloatTensorPrimitive = CubeTensor<R>>,
{
    let split = |x| split_heads::<C>(tensor(x), config.heads);
    let (query, key, value) = (split(query), split(key), split(value));
    let scores = query.matmul(key.swap_dims(2, 3)).into_primitive().tensor();
    let mask = (config.dropout > 0.0).then(|| dropout::draw_mask::<C>(&scores, config.dropout));
    let (probs, weights) = softmax(scores, key_bias, mask.as_ref(), config);
    let weights = weights.unwrap_or_else(|| probs.clone());
    let context = merge_heads(tensor::<C, 4>(weights).matmul(value));
    (into_contiguous(context), probs, mask)
}

/// The forward as one operation named `name`: the context and, when `training`, the
/// probabilities and the dropout's mask (when it drops).
fn forward_op<B: CubeKernels>(
    name: &'static str,
    qkv: [FloatTensor<B>; 3],
    key_bias: Option<FloatTensor<B>>,
    config: AttentionConfig,
    training: bool,
) -> Vec<FloatTensor<B>> {
    let (query, dtype) = (qkv[0].shape(), qkv[0].dtype());
    let [batch, seq, _] = query.dims();
    let scores = Shape::new([batch, config.heads, seq, seq]);
    let mut outputs = vec![(query, dtype)];
    if training {
        outputs.push((scores.clone(), dtype));
        if config.dropout > 0.0 {
            outputs.push((scores, dtype));
        }
    }
    let biased = key_bias.is_some();
    let launch: Launch<B::Runtime> = std::sync::Arc::new(move |tensors| {
        let mut tensors = tensors.into_iter();
        let qkv = [(); 3].map(|_| tensors.next().expect("Q, K and V"));
        let key_bias = biased.then(|| tensors.next().expect("the key bias"));
        let (context, probs, mask) = forward_on::<B::Cube, _>(qkv, key_bias, config);
        if !training {
            return vec![context];
        }
        [Some(context), Some(probs), mask]
            .into_iter()
            .flatten()
            .collect()
    });
    let inputs = qkv.into_iter().chain(key_bias).collect();
    B::custom(name, inputs, outputs, launch)
}

/// [`Kernels::attention_forward`](crate::Kernels::attention_forward) as one operation.
pub fn forward<B: CubeKernels>(
    qkv: [FloatTensor<B>; 3],
    key_bias: Option<FloatTensor<B>>,
    config: AttentionConfig,
) -> (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>) {
    let mut outputs =
        forward_op::<B>("berthash_attention", qkv, key_bias, config, true).into_iter();
    let context = outputs.next().expect("the context");
    let probs = outputs.next().expect("the probabilities");
    (context, probs, outputs.next())
}

/// [`Kernels::attention_inference`](crate::Kernels::attention_inference) as one operation.
pub fn inference<B: CubeKernels>(
    qkv: [FloatTensor<B>; 3],
    key_bias: Option<FloatTensor<B>>,
    config: AttentionConfig,
) -> FloatTensor<B> {
    let config = config.without_dropout();
    let name = "berthash_attention_inference";
    let mut outputs = forward_op::<B>(name, qkv, key_bias, config, false);
    outputs.pop().expect("the context")
}

/// The gradients of Q, K and V on the CubeCL backend `C`.
fn backward_on<C, R>(
    [query, key, value]: [CubeTensor<R>; 3],
    probs: CubeTensor<R>,
    mask: Option<CubeTensor<R>>,
    config: AttentionConfig,
    grad: CubeTensor<R>,
) -> [CubeTensor<R>; 3]
where
    R: CubeRuntime,
    C: Backend<FloatTensorPrimitive = CubeTensor<R>>,
{
    let split = |x| split_heads::<C>(tensor(x), config.heads);
    let (query, key, value, grad) = (split(query), split(key), split(value), split(grad));
    let probs = into_contiguous(probs);
    let mask = mask.map(into_contiguous);
    let weights = match &mask {
        Some(mask) => weights(probs.clone(), mask, config),
        None => probs.clone(),
    };
    let grad_value = tensor::<C, 4>(weights).swap_dims(2, 3).matmul(grad.clone());
    let grad_weights = grad.matmul(value.swap_dims(2, 3)).into_primitive().tensor();
    let grad_scores = tensor::<C, 4>(softmax_backward(probs, grad_weights, mask.as_ref(), config));
    let grad_query = grad_scores.clone().matmul(key);
    let grad_key = grad_scores.swap_dims(2, 3).matmul(query);
    [grad_query, grad_key, grad_value].map(|grad| into_contiguous(merge_heads(grad)))
}

/// [`Kernels::attention_backward`](crate::Kernels::attention_backward) as one operation.
pub fn backward<B: CubeKernels>(
    qkv: [FloatTensor<B>; 3],
    probs: FloatTensor<B>,
    mask: Option<FloatTensor<B>>,
    config: AttentionConfig,
    grad: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let masked = mask.is_some();
    let outputs = [(); 3].map(|_| (qkv[0].shape(), grad.dtype()));
    let launch: Launch<B::Runtime> = std::sync::Arc::new(move |tensors| {
        let mut tensors = tensors.into_iter();
        let qkv = [(); 3].map(|_| tensors.next().expect("Q, K and V"));
        let probs = tensors.next().expect("the probabilities");
        let mask = masked.then(|| tensors.next().expect("the mask"));
        let grad = tensors.next().expect("the context's gradient");
        backward_on::<B::Cube, _>(qkv, probs, mask, config, grad).into()
    });
    let inputs = qkv
        .into_iter()
        .chain([probs])
        .chain(mask)
        .chain([grad])
        .collect();
    B::custom(
        "berthash_attention_backward",
        inputs,
        outputs.into(),
        launch,
    )
    .try_into()
    .expect("three gradients")
}
