//! Long sums cut into blocks: the default
//! [`Kernels::dense_backward`](crate::Kernels::dense_backward), which the GPU backends run as
//! one operation (the CPU has its own), the column sums of the composed layer norm's backward,
//! and the block count the composed cross-entropy's row reductions use.
//!
//! CubeCL's kernels without autotune (the build whose kernels compile in seconds) give each
//! output of a reduction one thread, and each output tile of a product one block, which walks
//! the whole summed axis. Where that axis is long and the outputs few, a few hundred threads
//! run on a GPU that runs a hundred thousand:
//! - the weight's and bias's gradients sum all the rows of a batch (tens of thousands) into
//!   128 x 128 to 128 x 512 outputs, or 128 (a bias);
//! - the input's gradient of the vocabulary decoder sums 30,522 outputs into each
//!   `[masked rows, 128]` element;
//! - a layer norm's weight and bias gradients sum all its rows into the hidden size;
//! - the cross-entropy's row max and sum walk 30,522 logits per masked row.
//!
//! Cut into equal blocks, each is a batched product (one output tile per block) or a reduction
//! over a shorter axis, then a short sum over the blocks: the same totals, with the GPU full.
//! Narrow rows are padded with zero rows up to a whole number of blocks ([`row_blocks`]): the
//! masked rows of an MLM batch vary in number from batch to batch, and a count without a good
//! divisor must fill the GPU as well. Anything as wide as a vocabulary (the logits, their
//! gradient) is cut by a divisor ([`sum_blocks`]): padding it would copy it whole.

use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, ModuleOps};

use crate::cross_entropy::float;
use crate::DenseGrads;

/// The most blocks a sum is cut into.
const MAX_BLOCKS: usize = 64;
/// The fewest terms a block keeps: below that, one sum over the whole axis fills the GPU.
const MIN_BLOCK_LEN: usize = 256;
/// The most elements the blocks' partial sums take together (`blocks x outputs`): 2^25, 64 MiB
/// in bf16. A vocabulary decoder's weight gradient (128 x 30,522) is cut into at most 8 blocks.
pub const MAX_PARTIAL_ELEMENTS: usize = 1 << 25;
/// The fewest outputs of a dense layer whose input gradient is summed in blocks: a
/// vocabulary, not a hidden layer (whose rows give the product enough output tiles).
const MIN_WIDE_OUTPUTS: usize = 8192;

/// The number of equal blocks a sum over `len` terms is cut into: the largest divisor of `len`
/// up to 64 whose blocks keep 256 terms, or 1.
pub fn sum_blocks(len: usize) -> usize {
    largest_divisor_up_to(len, MAX_BLOCKS.min(len / MIN_BLOCK_LEN))
}

fn largest_divisor_up_to(len: usize, most: usize) -> usize {
    (1..=most)
        .rev()
        .find(|&blocks| len.is_multiple_of(blocks))
        .unwrap_or(1)
}

/// `(blocks, rows per block)` for sums over `rows` rows of `width` columns into `partial`
/// values per block: up to 64 blocks of at least 256 rows, no more than keep the partial sums
/// within [`MAX_PARTIAL_ELEMENTS`]. Narrow rows fill the last block up with zero rows; rows as
/// wide as a vocabulary are cut by a divisor, since padding would copy them all.
pub fn row_blocks(rows: usize, width: usize, partial: usize) -> (usize, usize) {
    let most = (rows / MIN_BLOCK_LEN)
        .min(MAX_BLOCKS)
        .min(MAX_PARTIAL_ELEMENTS / partial.max(1))
        .max(1);
    if width < MIN_WIDE_OUTPUTS {
        (most, rows.div_ceil(most))
    } else {
        let blocks = largest_divisor_up_to(rows, most);
        (blocks, rows / blocks)
    }
}

/// `t` `[rows, width]` as `[blocks, per_block, width]`, the rows beyond `rows` zero (they add
/// nothing to the sums).
fn split_rows<B: Backend>(t: Tensor<B, 2>, blocks: usize, per_block: usize) -> Tensor<B, 3> {
    let [rows, width] = t.dims();
    let padding = blocks * per_block - rows;
    let t = if padding == 0 {
        t
    } else {
        let zeros = Tensor::zeros([padding, width], (&t.device(), t.dtype()));
        Tensor::cat(vec![t, zeros], 0)
    };
    t.reshape([blocks, per_block, width])
}

/// The column sums `[width]` of rows split by [`split_rows`]: within each block, then over
/// the blocks.
fn sum_over_blocks<B: Backend>(blocks: Tensor<B, 3>) -> Tensor<B, 1> {
    let [_, _, width] = blocks.dims();
    blocks.sum_dim(1).sum_dim(0).reshape([width])
}

/// The column sums of `t` `[rows, width]` (a bias's or a layer norm's gradient), over blocks of
/// [`row_blocks`] rows.
pub fn column_sums<B: Backend>(t: Tensor<B, 2>) -> Tensor<B, 1> {
    let [rows, width] = t.dims();
    match row_blocks(rows, width, width) {
        (1, _) => t.sum_dim(0).reshape([width]),
        (blocks, per_block) => sum_over_blocks(split_rows(t, blocks, per_block)),
    }
}

/// [`Kernels::dense_backward`](crate::Kernels::dense_backward) with the weight's and the
/// bias's gradients summed block by block of [`row_blocks`] rows, and the input's over blocks
/// of outputs where there are at least 8,192 of them.
pub fn dense_backward_in_blocks<B: Backend>(
    x: Option<FloatTensor<B>>,
    weight: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
    bias: bool,
) -> DenseGrads<FloatTensor<B>> {
    let grad = float::<B, 2>(grad);
    let [rows, outputs] = grad.dims();
    let x = x.map(float::<B, 2>);
    // The weight's gradient, where there is one, has the larger partial sums.
    let inputs = x.as_ref().map_or(1, |x| x.dims()[1]);
    let (row_blocks, per_block) = row_blocks(rows, outputs, inputs * outputs);
    let in_blocks = |t| split_rows(t, row_blocks, per_block);
    // Where the rows are cut into more than one block.
    let grad_blocks = (row_blocks > 1).then(|| in_blocks(grad.clone()));
    let bias = bias.then(|| match &grad_blocks {
        None => <B as ModuleOps<B>>::linear_bias_backward(grad.clone().into_primitive().tensor()),
        Some(blocks) => sum_over_blocks(blocks.clone()).into_primitive().tensor(),
    });
    let weight_grad = x.map(|x| match grad_blocks {
        None => <B as ModuleOps<B>>::linear_weight_backward(
            x.into_primitive().tensor(),
            grad.clone().into_primitive().tensor(),
        ),
        Some(blocks) => in_blocks(x)
            .swap_dims(1, 2)
            .matmul(blocks)
            .sum_dim(0)
            .reshape([inputs, outputs])
            .into_primitive()
            .tensor(),
    });
    let x_grad = weight.map(|w| {
        let output_blocks = if outputs >= MIN_WIDE_OUTPUTS {
            sum_blocks(outputs)
        } else {
            1
        };
        if output_blocks == 1 {
            return <B as ModuleOps<B>>::linear_x_backward(w, grad.into_primitive().tensor());
        }
        let w = float::<B, 2>(w);
        let inputs = w.dims()[0];
        let per_block = outputs / output_blocks;
        // `grad Wᵀ` as a sum over blocks of outputs: `[blocks, rows, per] x [blocks, per, in]`.
        let grad = grad
            .reshape([rows, output_blocks, per_block])
            .swap_dims(0, 1);
        let w = w
            .reshape([inputs, output_blocks, per_block])
            .permute([1, 2, 0]);
        grad.matmul(w)
            .sum_dim(0)
            .reshape([rows, inputs])
            .into_primitive()
            .tensor()
    });
    DenseGrads {
        bias,
        weight: weight_grad,
        x: x_grad,
    }
}
