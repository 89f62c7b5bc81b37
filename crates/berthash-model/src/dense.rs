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
    apply(layer, x, LinearThen::Nothing)
}

/// `gelu(layer(x))`.
pub fn dense_gelu<B: Kernels>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    apply(layer, x, LinearThen::Gelu)
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
    apply(layer, x, LinearThen::Add(residual))
}

fn apply<B: Kernels>(
    layer: &Linear<B>,
    x: Tensor<B, 3>,
    then: LinearThen<Tensor<B, 3>>,
) -> Tensor<B, 3> {
    let [batch, seq, features] = x.dims();
    let rows = x.reshape([batch * seq, features]);
    let flat = |t: Tensor<B, 3>| {
        let [_, _, width] = t.dims();
        t.reshape([batch * seq, width])
    };
    let out = if B::ad_enabled(&rows.device()) {
        let y = layer.forward(rows);
        match then {
            LinearThen::Nothing => y,
            LinearThen::Gelu => gelu(y),
            LinearThen::Add(residual) => y + flat(residual),
        }
    } else {
        let then = match then {
            LinearThen::Nothing => LinearThen::Nothing,
            LinearThen::Gelu => LinearThen::Gelu,
            LinearThen::Add(residual) => LinearThen::Add(flat(residual)),
        };
        linear_inference(
            rows,
            layer.weight.val(),
            layer.bias.as_ref().map(|b| b.val()),
            then,
        )
    };
    let [_, width] = out.dims();
    out.reshape([batch, seq, width])
}
