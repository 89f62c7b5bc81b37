//! Flat vectors of many parameters, each made or cut as one operation: the optimizer's vectors
//! of a weight-decay group's gradients and values, gathered from some thirty parameters and cut
//! back into them every step. Composed, that is a reshape per parameter and a concatenation
//! (Burn's `cat` launches a kernel per piece), and a slice and a reshape per parameter, each an
//! operation of Burn's fusion stream. Here the gathering is one CubeCL kernel over the whole
//! vector (one unit per element, which finds its piece among the offsets, or is a gap's zero),
//! and the cutting runs on Burn's CubeCL backend inside one operation, where the slices and
//! reshapes are changes of metadata.

use std::sync::Arc;

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::cube::{empty, grid, CubeKernels};
use crate::split_composed;

/// The most pieces one launch reads: its tensors are bindings, of which a WebGPU device may
/// allow few.
const MAX_PIECES: usize = 32;

/// Unit `start + i`, below `end`: the element of the piece at `offsets` that covers it, or 0.
#[cube(launch_unchecked)]
fn gather<F: Float>(
    pieces: &Sequence<Tensor<F>>,
    offsets: Sequence<usize>,
    flat: &mut Tensor<F>,
    start: usize,
    end: usize,
    #[define(F)] _dtype: StorageType,
) {
    let position = start + ABSOLUTE_POS;
    if position >= end {
        terminate!();
    }
    let count = comptime![pieces.len()];
    let mut value = F::new(0.0);
    #[unroll]
    for i in 0..count {
        let piece = &pieces[i];
        let offset = offsets[i];
        if position >= offset && position < offset + piece.len() {
            value = piece[position - offset];
        }
    }
    flat[position] = value;
}

/// `pieces` (contiguous) at `offsets` of a vector of `len`, zeros between them.
fn gathered<R: CubeRuntime>(
    pieces: Vec<CubeTensor<R>>,
    offsets: &[usize],
    len: usize,
) -> CubeTensor<R> {
    let first = pieces.first().expect("at least one piece to flatten");
    let (client, dtype) = (first.client.clone(), first.dtype);
    let flat = empty(first, Shape::new([len]), dtype);
    let per_launch = MAX_PIECES
        .min(client.properties().hardware.max_bindings.saturating_sub(2) as usize)
        .max(1);
    let pieces: Vec<(CubeTensor<R>, usize)> =
        pieces.into_iter().zip(offsets.iter().copied()).collect();
    let chunks: Vec<&[(CubeTensor<R>, usize)]> = pieces.chunks(per_launch).collect();
    for (c, chunk) in chunks.iter().enumerate() {
        // Each launch writes from its first piece (the vector's start for the first launch) to
        // the next launch's first piece (the vector's end for the last): the gaps between.
        let start = if c == 0 { 0 } else { chunk[0].1 };
        let end = chunks.get(c + 1).map_or(len, |next| next[0].1);
        if end == start {
            continue;
        }
        let mut tensors = SequenceArg::new();
        let mut at = SequenceArg::new();
        for (piece, offset) in chunk.iter() {
            tensors.push(piece.clone().into_tensor_arg());
            at.push(*offset);
        }
        let (count, dim) = grid(&flat, end - start);
        // SAFETY: the pieces are contiguous and lie within the vector at their offsets; the
        // kernel reads a piece only at positions it covers and returns early past `end`.
        unsafe {
            gather::launch_unchecked(
                &client,
                count,
                dim,
                tensors,
                at,
                flat.clone().into_tensor_arg(),
                start,
                end,
                dtype.into(),
            );
        }
    }
    flat
}

/// [`Kernels::flatten_into`](crate::Kernels::flatten_into) as one operation.
pub fn flatten_into<B: CubeKernels>(
    pieces: Vec<FloatTensor<B>>,
    offsets: &[usize],
    len: usize,
) -> FloatTensor<B> {
    let dtype = pieces
        .first()
        .expect("at least one piece to flatten")
        .dtype();
    let offsets = offsets.to_vec();
    let launch = move |pieces: Vec<CubeTensor<B::Runtime>>| {
        let pieces = pieces.into_iter().map(into_contiguous).collect();
        vec![gathered(pieces, &offsets, len)]
    };
    let outputs = vec![(Shape::new([len]), dtype)];
    let mut flat = B::custom("berthash_flatten", pieces, outputs, Arc::new(launch));
    flat.pop().expect("the flat vector")
}

/// [`Kernels::split`](crate::Kernels::split) as one operation.
pub fn split<B: CubeKernels>(
    flat: FloatTensor<B>,
    offsets: &[usize],
    shapes: &[Shape],
) -> Vec<FloatTensor<B>> {
    let dtype = flat.dtype();
    let outputs = shapes.iter().map(|shape| (shape.clone(), dtype)).collect();
    let (offsets, shapes) = (offsets.to_vec(), shapes.to_vec());
    let launch = move |flat: Vec<CubeTensor<B::Runtime>>| {
        let flat = flat.into_iter().next().expect("the flat vector");
        split_composed::<B::Cube>(flat, &offsets, &shapes, |piece| piece)
    };
    B::custom("berthash_split", vec![flat], outputs, Arc::new(launch))
}
