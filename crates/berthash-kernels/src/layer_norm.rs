//! Layer normalization composed from Burn tensor ops, forward and hand-written backward: the
//! default of a backend without its own, and the reference the CPU and GPU kernels are tested
//! against.
//!
//! Differentiated op by op, a layer norm is a dozen full-size tensors (the mean, the centred
//! rows, their squares, the variance, its square root, the quotient, the scale and shift) and
//! their gradients, and its weight's and bias's gradients are sums over every row of the batch.
//! The backward here is three passes over the rows:
//! `dx = (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)) / σ` with `ĝ = grad * gamma`, and the column sums of
//! `grad * x̂` and of `grad` over blocks of rows ([`column_sums`]).
//!
//! The forward is Burn's own op for op, on the input's own shape: Burn's fusion joins the ops
//! around its reductions, and a reshape between them would split that.

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorMetadata;

use crate::cross_entropy::float;
use crate::sum_blocks::column_sums;
use crate::{LayerNormGrads, LayerNormSaved};

/// `[1, .., 1, width]`: a `[width]` vector broadcast over the rows of a tensor of `rank` axes.
fn broadcast<B: Backend>(vector: FloatTensor<B>, rank: usize) -> FloatTensor<B> {
    let width = vector.shape()[0];
    let mut dims = vec![1; rank];
    dims[rank - 1] = width;
    B::float_reshape(vector, dims.into())
}

/// `t` `[.., width]` as the matrix of its rows.
fn rows<B: Backend>(t: FloatTensor<B>) -> Tensor<B, 2> {
    let shape = t.shape();
    let width = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / width.max(1);
    float(B::float_reshape(t, [rows, width].into()))
}

/// [`Kernels::layer_norm_forward`](crate::Kernels::layer_norm_forward) in Burn's ops.
pub fn forward_composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, LayerNormSaved<FloatTensor<B>>) {
    let rank = x.shape().num_dims();
    let last = rank - 1;
    let mean = B::float_mean_dim(x.clone(), last);
    let centred = B::float_sub(x, mean);
    let variance = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), last);
    let std = B::float_sqrt(B::float_add_scalar(variance, epsilon.into()));
    let normalized = B::float_div(centred, std.clone());
    let scaled = B::float_mul(normalized.clone(), broadcast::<B>(gamma, rank));
    let y = B::float_add(scaled, broadcast::<B>(beta, rank));
    (y, LayerNormSaved { normalized, std })
}

/// [`Kernels::layer_norm_backward`](crate::Kernels::layer_norm_backward) in Burn's ops.
pub fn backward_composed<B: Backend>(
    saved: LayerNormSaved<FloatTensor<B>>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> LayerNormGrads<FloatTensor<B>> {
    let LayerNormSaved { normalized, std } = saved;
    let rank = grad.shape().num_dims();
    let last = rank - 1;
    let scaled = B::float_mul(grad.clone(), broadcast::<B>(gamma, rank));
    let mean = B::float_mean_dim(scaled.clone(), last);
    let mean_dot = B::float_mean_dim(B::float_mul(scaled.clone(), normalized.clone()), last);
    let centred = B::float_sub(scaled, mean);
    let x = B::float_div(
        B::float_sub(centred, B::float_mul(normalized.clone(), mean_dot)),
        std,
    );
    let gamma = column_sums(rows::<B>(B::float_mul(grad.clone(), normalized)));
    LayerNormGrads {
        x,
        gamma: gamma.into_primitive().tensor(),
        beta: column_sums(rows::<B>(grad)).into_primitive().tensor(),
    }
}
