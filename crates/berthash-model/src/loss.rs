//! The two losses of the heads, written for selected rows (Burn's CrossEntropyLoss has no
//! ignore-index: the MLM loss is computed on the masked positions only, which is the same mean).
//! Cross-entropy is the fused kernel of `berthash-kernels` (one pass forward, one backward).

use burn::prelude::*;

pub use berthash_kernels::cross_entropy;

/// Mean squared error for regression heads (`num_labels == 1`): `predictions` `[rows, 1]`.
pub fn mse<B: Backend>(predictions: Tensor<B, 2>, targets: Tensor<B, 1>) -> Tensor<B, 1> {
    let [rows, _] = predictions.dims();
    (predictions.reshape([rows]) - targets)
        .powi_scalar(2)
        .mean()
}
