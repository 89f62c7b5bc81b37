//! Cross-entropy composed from Burn tensor ops: the reference the fused kernels are tested
//! against, and the implementation on backends without a fused one.

use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{IndexingUpdateOp, TensorPrimitive};

use crate::sum_blocks::sum_blocks;

/// A float primitive as a tensor.
pub(crate) fn float<B: Backend, const D: usize>(tensor: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
}

fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// `(mean loss [1], log-sum-exp [rows])`, with the max shift for stability. The row max and
/// sum run over blocks of classes ([`sum_blocks`]: a vocabulary's 30,522 are 6 of 5,087), then
/// over the blocks.
pub fn forward_composed<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let logits: Tensor<B, 2> = float(logits);
    let [rows, classes] = logits.dims();
    let targets = Tensor::<B, 1, Int>::from_primitive(targets).reshape([rows, 1]);
    let blocks = sum_blocks(classes);
    let in_blocks = |t: Tensor<B, 2>| t.reshape([rows, blocks, classes / blocks]);
    let max = in_blocks(logits.clone())
        .max_dim(2)
        .max_dim(1)
        .reshape([rows, 1]);
    let sum_exp = in_blocks((logits.clone() - max.clone()).exp())
        .sum_dim(2)
        .sum_dim(1)
        .reshape([rows, 1]);
    let log_sum_exp = sum_exp.log() + max;
    let picked = logits.gather(1, targets);
    let loss = (log_sum_exp.clone() - picked).mean();
    (primitive(loss), primitive(log_sum_exp.reshape([rows])))
}

/// `(softmax(logits) - one_hot(targets)) * grad / rows`.
pub fn backward_composed<B: Backend>(
    logits: FloatTensor<B>,
    log_sum_exp: FloatTensor<B>,
    targets: IntTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let logits: Tensor<B, 2> = float(logits);
    let [rows, _] = logits.dims();
    let targets = Tensor::<B, 1, Int>::from_primitive(targets).reshape([rows, 1]);
    let log_sum_exp: Tensor<B, 1> = float(log_sum_exp);
    let probs = (logits - log_sum_exp.reshape([rows, 1])).exp();
    let minus_one = Tensor::<B, 2>::ones([rows, 1], &probs.device()).neg();
    let diff = probs.scatter(1, targets, minus_one, IndexingUpdateOp::Add);
    let grad: Tensor<B, 1> = float(grad);
    primitive(diff * grad.reshape([1, 1]) / rows as f64)
}
