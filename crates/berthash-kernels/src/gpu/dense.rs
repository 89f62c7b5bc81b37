//! The dense layer's backward as one operation of the GPU backend.
//!
//! [`dense_backward_in_blocks`] is about a dozen Burn operations (reshapes, transposes, the
//! products over blocks of rows, the sums over the blocks), none of which Burn's fusion joins
//! with another: run by the fusion stream, each costs the host its description and the
//! stream's search for a fusion. Run inside one custom operation on Burn's CubeCL backend, the
//! reshapes and transposes are changes of metadata and the products and sums the same kernels.

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::tensor::CubeTensor;

use super::cube::CubeKernels;
use crate::sum_blocks::dense_backward_in_blocks;
use crate::DenseGrads;

/// [`Kernels::dense_backward`](crate::Kernels::dense_backward) as one operation.
pub fn backward<B: CubeKernels>(
    x: Option<FloatTensor<B>>,
    weight: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
    bias: bool,
) -> DenseGrads<FloatTensor<B>> {
    let (rows, outputs, dtype) = (grad.shape()[0], grad.shape()[1], grad.dtype());
    let (has_x, has_weight) = (x.is_some(), weight.is_some());
    // The outputs in the order of `DenseGrads`: the input's, the weight's, the bias's.
    let mut shapes = Vec::new();
    if let Some(weight) = &weight {
        shapes.push((Shape::new([rows, weight.shape()[0]]), dtype));
    }
    if let Some(x) = &x {
        shapes.push((Shape::new([x.shape()[1], outputs]), dtype));
    }
    if bias {
        shapes.push((Shape::new([outputs]), dtype));
    }
    let inputs = [Some(grad), x, weight].into_iter().flatten().collect();
    let launch = move |tensors: Vec<CubeTensor<B::Runtime>>| {
        let mut tensors = tensors.into_iter();
        let grad = tensors.next().expect("the output's gradient");
        let x = has_x.then(|| tensors.next().expect("the input"));
        let weight = has_weight.then(|| tensors.next().expect("the weight"));
        let grads = dense_backward_in_blocks::<B::Cube>(x, weight, grad, bias);
        [grads.x, grads.weight, grads.bias]
            .into_iter()
            .flatten()
            .collect()
    };
    let mut grads = B::custom(
        "berthash_dense_backward",
        inputs,
        shapes,
        std::sync::Arc::new(launch),
    )
    .into_iter();
    DenseGrads {
        x: has_weight.then(|| grads.next().expect("the input's gradient")),
        weight: has_x.then(|| grads.next().expect("the weight's gradient")),
        bias: bias.then(|| grads.next().expect("the bias's gradient")),
    }
}
