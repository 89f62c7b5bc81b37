//! Linear layers over `[batch, seq, features]`, as one `[batch * seq, features]` product.
//!
//! Burn's `Linear` on a 3-d input broadcasts its weight into a batched product, which the CPU
//! backend runs as `batch` separate small gemm calls; one product over all the rows is the same
//! arithmetic in one call, and the reshapes of contiguous tensors copy nothing. Without autodiff
//! (inference) the layer and what follows it (GELU, or dropout, an identity there, and the
//! residual) are one [`linear_inference`] call.

use berthash_kernels::{dropout, gelu, linear_inference, Kernels, LinearThen};
use burn::nn::{Dropout, Linear};
use burn::prelude::*;

/// `layer(x)`.
pub fn dense<B: Kernels>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    if B::ad_enabled(&x.device()) {
        return on_rows(x, |rows| layer.forward(rows));
    }
    inference(layer, x, LinearThen::Nothing)
}

/// `gelu(layer(x))`.
pub fn dense_gelu<B: Kernels>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    if B::ad_enabled(&x.device()) {
        return gelu(dense(layer, x));
    }
    inference(layer, x, LinearThen::Gelu)
}

/// `dropout(layer(x)) + residual`.
pub fn dense_dropout_add<B: Kernels>(
    layer: &Linear<B>,
    x: Tensor<B, 3>,
    dropped: &Dropout,
    residual: Tensor<B, 3>,
) -> Tensor<B, 3> {
    if B::ad_enabled(&x.device()) {
        return dropout(dense(layer, x), dropped) + residual;
    }
    inference(layer, x, LinearThen::Add(residual))
}

/// [`linear_inference`] on the rows of `x`.
fn inference<B: Kernels>(
    layer: &Linear<B>,
    x: Tensor<B, 3>,
    then: LinearThen<Tensor<B, 3>>,
) -> Tensor<B, 3> {
    let then = then.map(|residual| {
        let [batch, seq, width] = residual.dims();
        residual.reshape([batch * seq, width])
    });
    on_rows(x, |rows| {
        linear_inference(
            rows,
            layer.weight.val(),
            layer.bias.as_ref().map(|b| b.val()),
            then,
        )
    })
}

/// `f` on `x` `[batch, seq, features]` as the matrix `[batch * seq, features]`.
fn on_rows<B: Backend>(
    x: Tensor<B, 3>,
    f: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
) -> Tensor<B, 3> {
    let [batch, seq, features] = x.dims();
    let out = f(x.reshape([batch * seq, features]));
    let [_, width] = out.dims();
    out.reshape([batch, seq, width])
}
