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

/// `reduce` (a max or a sum along an axis) over each row of `t` `[rows, classes]`, as
/// `[rows, 1]`: within each of `blocks` equal blocks of classes, then over the blocks.
fn reduce_rows<B: Backend>(
    t: Tensor<B, 2>,
    blocks: usize,
    reduce: fn(Tensor<B, 2>, usize) -> Tensor<B, 2>,
) -> Tensor<B, 2> {
    if blocks == 1 {
        return reduce(t, 1);
    }
    let [rows, classes] = t.dims();
    let partial = reduce(t.reshape([rows * blocks, classes / blocks]), 1);
    reduce(partial.reshape([rows, blocks]), 1)
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
    let max = reduce_rows(logits.clone(), blocks, Tensor::max_dim::<usize>);
    let sum_exp = reduce_rows(
        (logits.clone() - max.clone()).exp(),
        blocks,
        Tensor::sum_dim::<usize>,
    );
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
