//! Linear layers over `[.., features]`, as one `[rows, features]` product ([`Kernels::dense`]).
//!
//! Burn's `Linear` on a 3-d input broadcasts its weight into a batched product, which the CPU
//! backend runs as `batch` separate small gemm calls; one product over all the rows is the same
//! arithmetic in one call, and the reshapes of contiguous tensors copy nothing. The GELU or the
//! residual that follows a layer goes into the same call, which fuses it on the CPU; dropout
//! before a residual stays a step of its own while training.

use berthash_kernels::{dropout, DenseThen, Kernels};
use burn::nn::{Dropout, Linear};
use burn::prelude::*;

/// `layer(x)`.
pub fn dense<B: Kernels, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    on_rows(layer, x, DenseThen::Nothing)
}

/// `gelu(layer(x))`.
pub fn dense_gelu<B: Kernels, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    on_rows(layer, x, DenseThen::Gelu)
}

/// `dropout(layer(x)) + residual`.
pub fn dense_dropout_add<B: Kernels, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    dropped: &Dropout,
    residual: Tensor<B, D>,
) -> Tensor<B, D> {
    if dropped.prob != 0.0 && B::ad_enabled(&x.device()) {
        return dropout(dense(layer, x), dropped) + residual;
    }
    on_rows(layer, x, DenseThen::Add(residual))
}

/// `then(layer(x))` on `x` `[.., features]` as the matrix `[rows, features]`.
fn on_rows<B: Kernels, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    then: DenseThen<Tensor<B, D>>,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let features = dims[D - 1];
    let rows = x.shape().num_elements() / features.max(1);
    let then = then.map(|residual| {
        let width = residual.dims()[D - 1];
        residual.reshape([rows, width])
    });
    let out = berthash_kernels::dense(
        x.reshape([rows, features]),
        layer.weight.val(),
        layer.bias.as_ref().map(|b| b.val()),
        then,
    );
    dims[D - 1] = out.dims()[1];
    out.reshape(dims)
}
