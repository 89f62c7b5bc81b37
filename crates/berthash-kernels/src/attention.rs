//! Attention composed from Burn tensor ops: the probabilities `softmax(scores * scale +
//! key_bias)` and their gradient, and the whole multi-head attention at inference.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;

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

/// Multi-head attention from `[batch, seq, hidden]` projections: heads split, `Q Kᵀ`, the
/// backend's probabilities, `P V`, heads merged.
pub fn inference_composed<B: crate::Kernels>(
    query: FloatTensor<B>,
    key: FloatTensor<B>,
    value: FloatTensor<B>,
    heads: usize,
    scale: f64,
    key_bias: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    let query: Tensor<B, 3> = float(query);
    let [batch, seq, width] = query.dims();
    let split = |x: Tensor<B, 3>| {
        x.reshape([batch, seq, heads, width / heads])
            .swap_dims(1, 2)
    };
    let (query, key, value) = (split(query), split(float(key)), split(float(value)));
    let scores = query.matmul(key.swap_dims(2, 3)).into_primitive().tensor();
    let probs: Tensor<B, 4> = float(B::attention_probs(scores, scale, key_bias));
    probs
        .matmul(value)
        .swap_dims(1, 2)
        .reshape([batch, seq, width])
        .into_primitive()
        .tensor()
}
