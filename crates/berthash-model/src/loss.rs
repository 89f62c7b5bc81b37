//! The two losses of the heads, written for selected rows (Burn's CrossEntropyLoss has no
//! ignore-index: the MLM loss is computed on the masked positions only, which is the same mean).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Mean cross-entropy of `logits` `[rows, classes]` against class ids `[rows]`.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [rows, _] = logits.dims();
    let log_probs = log_softmax(logits, 1);
    log_probs.gather(1, targets.reshape([rows, 1])).mean().neg()
}

/// Mean squared error for regression heads (`num_labels == 1`): `predictions` `[rows, 1]`.
pub fn mse<B: Backend>(predictions: Tensor<B, 2>, targets: Tensor<B, 1>) -> Tensor<B, 1> {
    let [rows, _] = predictions.dims();
    (predictions.reshape([rows]) - targets)
        .powi_scalar(2)
        .mean()
}
