//! Rows picked by index, `x.select(0, indices)`, and the gradient of that pick: the default
//! [`Kernels::select_rows_backward`], which the GPU backends run (the CPU runs Burn's).
//!
//! The gradient adds each picked row's gradient into a zero tensor at its index. Burn's GPU
//! kernel for that gives each column one thread, which walks every index: 5 threads for the
//! hashed word table (5 columns) walking all 32,768 tokens of a 256 x 128 batch, 128 threads
//! for the masked rows of the hidden states. Here:
//! - rows picked at most once (the masked positions) are written by one thread per element;
//! - rows picked many times (token ids) are added up in blocks of indices, each block into a
//!   table of its own (one thread per block and column walks one block), and the blocks' tables
//!   are then summed.

use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{IndexingUpdateOp, TensorPrimitive};

use crate::sum_blocks::MAX_PARTIAL_ELEMENTS;
use crate::Kernels;

/// Whether an index may appear more than once among those that pick rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowIndices {
    /// Each row at most once (masked positions).
    Unique,
    /// Rows any number of times (token ids into an embedding table).
    Repeated,
}

/// The indices one thread walks in the repeated case.
const BLOCK_INDICES: usize = 128;

/// The blocks `indices` repeated indices are cut into, for a table of `rows x width`: enough
/// that each holds about 128 indices, as long as the blocks' tables (`blocks x rows x width`)
/// fit in [`MAX_PARTIAL_ELEMENTS`].
pub fn index_blocks(indices: usize, rows: usize, width: usize) -> usize {
    let by_work = indices.div_ceil(BLOCK_INDICES);
    let by_memory = MAX_PARTIAL_ELEMENTS / (rows * width).max(1);
    by_work.min(by_memory).max(1)
}

/// [`Kernels::select_rows_backward`] with every element or every block of indices on a thread
/// of its own.
pub fn backward_in_parallel<B: Backend>(
    grad: FloatTensor<B>,
    indices: IntTensor<B>,
    rows: usize,
    kind: RowIndices,
) -> FloatTensor<B> {
    let grad = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(grad));
    let indices = Tensor::<B, 1, Int>::from_primitive(indices);
    let [picked, width] = grad.dims();
    let (device, dtype) = (grad.device(), grad.dtype());
    let zeros = |shape: [usize; 2]| Tensor::<B, 2>::zeros(shape, (&device, dtype));
    match kind {
        RowIndices::Unique => {
            let table = zeros([rows, width]);
            table
                .scatter_nd(indices.reshape([picked, 1]), grad, IndexingUpdateOp::Assign)
                .into_primitive()
                .tensor()
        }
        RowIndices::Repeated => {
            let blocks = index_blocks(picked, rows, width);
            let per_block = picked.div_ceil(blocks);
            let padding = blocks * per_block - picked;
            // Padding adds zero rows at index 0: a sum that changes nothing.
            let (grad, indices) = if padding == 0 {
                (grad, indices)
            } else {
                let pad_indices = Tensor::<B, 1, Int>::zeros([padding], (&device, indices.dtype()));
                (
                    Tensor::cat(vec![grad, zeros([padding, width])], 0),
                    Tensor::cat(vec![indices, pad_indices], 0),
                )
            };
            // Index `i` of block `b` is entry `b * per_block + i`; the blocks run along axis 1,
            // and so do their tables.
            let values = grad.reshape([blocks, per_block, width]).swap_dims(0, 1);
            let indices = indices
                .reshape([blocks, per_block, 1])
                .swap_dims(0, 1)
                .expand([per_block, blocks, width]);
            Tensor::<B, 3>::zeros([rows, blocks, width], (&device, dtype))
                .scatter(0, indices, values, IndexingUpdateOp::Add)
                .sum_dim(1)
                .reshape([rows, width])
                .into_primitive()
                .tensor()
        }
    }
}

/// `x.select(0, indices)` for `x` `[rows, width]`: see [`Kernels::select_rows`].
pub fn select_rows<B: Kernels>(
    x: Tensor<B, 2>,
    indices: Tensor<B, 1, Int>,
    kind: RowIndices,
) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(B::select_rows(
        x.into_primitive().tensor(),
        indices.into_primitive(),
        kind,
    )))
}

/// An embedding lookup: the rows of `weight` `[entries, width]` at `ids` `[batch, seq]`, as
/// `[batch, seq, width]`.
pub fn embedding<B: Kernels>(weight: Tensor<B, 2>, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
    let [batch, seq] = ids.dims();
    let width = weight.dims()[1];
    select_rows(weight, ids.reshape([batch * seq]), RowIndices::Repeated)
        .reshape([batch, seq, width])
}
