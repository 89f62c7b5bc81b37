//! Attention composed from Burn tensor ops: the probabilities `softmax(scores * scale +
//! key_bias)` and their gradient, and the whole multi-head attention, forward (at inference and
//! while training) and backward.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;

use crate::{AttentionConfig, Kernels};

fn float<B: Backend, const D: usize>(tensor: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
}

/// `scores` `[batch, heads, queries, keys]`, `key_bias` `[batch, keys]`.
pub fn forward_composed<B: Backend>(
    scores: FloatTensor<B>,
    scale: f64,
    key_bias: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    let scores: Tensor<B, 4> = float(scores);
    let [batch, _, _, keys] = scores.dims();
    let mut logits = scores * scale;
    if let Some(bias) = key_bias {
        let bias: Tensor<B, 2> = float(bias);
        logits = logits + bias.reshape([batch, 1, 1, keys]);
    }
    softmax(logits, 3).into_primitive().tensor()
}

/// `scale * probs * (grad - sum(grad * probs))`, the sum over each row of keys.
pub fn backward_composed<B: Backend>(
    probs: FloatTensor<B>,
    scale: f64,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let probs: Tensor<B, 4> = float(probs);
    let grad: Tensor<B, 4> = float(grad);
    let dot = (grad.clone() * probs.clone()).sum_dim(3);
    ((grad - dot) * probs * scale).into_primitive().tensor()
}

/// `[batch, seq, hidden]` -> `[batch, heads, seq, hidden / heads]` (a view).
pub(crate) fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [batch, seq, width] = x.dims();
    x.reshape([batch, seq, heads, width / heads])
        .swap_dims(1, 2)
}

/// The inverse of [`split_heads`].
pub(crate) fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> FloatTensor<B> {
    let [batch, heads, seq, d] = x.dims();
    x.swap_dims(1, 2)
        .reshape([batch, seq, heads * d])
        .into_primitive()
        .tensor()
}

/// [`Kernels::attention_inference`] in the backend's ops: the training forward without dropout.
pub fn inference_composed<B: Kernels>(
    qkv: [FloatTensor<B>; 3],
    key_bias: Option<FloatTensor<B>>,
    config: AttentionConfig,
) -> FloatTensor<B> {
    training_forward_composed::<B>(qkv, key_bias, config.without_dropout()).0
}

/// [`Kernels::attention_forward`] in the backend's ops: heads split, `Q Kᵀ`, the probabilities,
/// the backend's dropout, `P V`, heads merged.
pub fn training_forward_composed<B: Kernels>(
    [query, key, value]: [FloatTensor<B>; 3],
    key_bias: Option<FloatTensor<B>>,
    config: AttentionConfig,
) -> (FloatTensor<B>, FloatTensor<B>, Option<B::DropoutMask>) {
    let split = |x| split_heads::<B>(float(x), config.heads);
    let (query, key, value) = (split(query), split(key), split(value));
    let scores = query.matmul(key.swap_dims(2, 3)).into_primitive().tensor();
    let probs = forward_composed::<B>(scores, config.scale, key_bias);
    let (weights, mask) = if config.dropout > 0.0 {
        let (dropped, mask) = B::dropout_forward(probs.clone(), config.dropout);
        (dropped, Some(mask))
    } else {
        (probs.clone(), None)
    };
    let context = merge_heads(float::<B, 4>(weights).matmul(value));
    (context, probs, mask)
}

/// [`Kernels::attention_backward`] in the backend's ops.
pub fn training_backward_composed<B: Kernels>(
    [query, key, value]: [FloatTensor<B>; 3],
    probs: FloatTensor<B>,
    mask: Option<B::DropoutMask>,
    config: AttentionConfig,
    grad: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let split = |x| split_heads::<B>(float(x), config.heads);
    let (query, key, value, grad) = (split(query), split(key), split(value), split(grad));
    // The probabilities after dropout: the same mask and scale on the kept ones.
    let dropped = |x: FloatTensor<B>| match &mask {
        Some(mask) => B::dropout_backward(x, mask.clone(), config.dropout),
        None => x,
    };
    let weights: Tensor<B, 4> = float(dropped(probs.clone()));
    let grad_value = weights.swap_dims(2, 3).matmul(grad.clone());
    let grad_weights = grad.matmul(value.swap_dims(2, 3)).into_primitive().tensor();
    let grad_probs = dropped(grad_weights);
    let grad_scores: Tensor<B, 4> = float(backward_composed::<B>(probs, config.scale, grad_probs));
    let grad_query = grad_scores.clone().matmul(key);
    let grad_key = grad_scores.swap_dims(2, 3).matmul(query);
    [grad_query, grad_key, grad_value].map(merge_heads)
}
