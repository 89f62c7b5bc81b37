//! Flat vectors of many parameters, each made or cut as one operation: the optimizer's vectors
//! of a weight-decay group's gradients and values, gathered from some thirty parameters and cut
//! back into them every step. Composed, that is a reshape per parameter and a concatenation,
//! and a slice and a reshape per parameter, each an operation of Burn's fusion stream; run on
//! Burn's CubeCL backend inside one operation, the reshapes and slices are changes of metadata
//! and the concatenation the same kernels.

use std::sync::Arc;

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::tensor::CubeTensor;

use super::cube::CubeKernels;
use crate::{flatten_composed, split_composed};

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
        vec![flatten_composed::<B::Cube>(pieces, &offsets, len)]
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
