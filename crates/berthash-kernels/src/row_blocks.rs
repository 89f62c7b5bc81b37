//! The dense layer's weight and bias gradients as sums over blocks of rows: the default
//! [`Kernels::dense_backward`], which the GPU backends run (the CPU has its own).
//!
//! Both are sums over all the rows of a batch (`xᵀ grad`, the column sums of `grad`): tens of
//! thousands of rows into as few as 128 outputs (a bias) or one output tile per 128 x 128 of a
//! weight. CubeCL's kernels without autotune (the build whose kernels compile in seconds) give
//! each output one thread, or each output tile one block, that walks every row: a few hundred
//! threads on a GPU that runs a hundred thousand, which made these sums most of the backward. Cut into blocks of rows, the same sums are a
//! batched product (one output tile per block) and a reduction over one short axis each, which
//! fill the GPU; the totals add the blocks' partial sums.

use burn::tensor::ops::{FloatTensor, ModuleOps};
use burn::tensor::{Tensor, TensorPrimitive};

use crate::{dense_backward_composed, DenseGrads, Kernels};

/// The most blocks the rows are cut into.
const MAX_BLOCKS: usize = 64;
/// The fewest rows a block keeps: below that, one product over all the rows fills the GPU.
const MIN_BLOCK_ROWS: usize = 256;

/// The number of equal blocks `rows` is cut into: the largest divisor of `rows` up to 64 whose
/// blocks keep 256 rows, or 1.
pub fn row_blocks(rows: usize) -> usize {
    (1..=MAX_BLOCKS.min(rows / MIN_BLOCK_ROWS))
        .rev()
        .find(|&blocks| rows.is_multiple_of(blocks))
        .unwrap_or(1)
}

/// [`Kernels::dense_backward`] with the weight's and the bias's gradients summed block by block
/// of [`row_blocks`] rows; the input's gradient is one product, as in Burn.
pub fn dense_backward_in_blocks<B: Kernels>(
    x: Option<FloatTensor<B>>,
    weight: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
    bias: bool,
) -> DenseGrads<FloatTensor<B>> {
    let grad = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(grad));
    let [rows, outputs] = grad.dims();
    let blocks = row_blocks(rows);
    if blocks == 1 {
        return dense_backward_composed::<B>(x, weight, grad.into_primitive().tensor(), bias);
    }
    let per_block = rows / blocks;
    let grad_blocks = grad.clone().reshape([blocks, per_block, outputs]);
    let bias = bias.then(|| {
        grad_blocks
            .clone()
            .sum_dim(1)
            .sum_dim(0)
            .reshape([outputs])
            .into_primitive()
            .tensor()
    });
    let weight_grad = x.map(|x| {
        let x = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(x));
        let inputs = x.dims()[1];
        x.reshape([blocks, per_block, inputs])
            .swap_dims(1, 2)
            .matmul(grad_blocks)
            .sum_dim(0)
            .reshape([inputs, outputs])
            .into_primitive()
            .tensor()
    });
    DenseGrads {
        bias,
        weight: weight_grad,
        x: weight
            .map(|w| <B as ModuleOps<B>>::linear_x_backward(w, grad.into_primitive().tensor())),
    }
}
