//! The attention probabilities composed from Burn tensor ops: `softmax(scores * scale +
//! key_bias)` and its gradient.

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
