//! Fused training kernels with hand-written backward passes.
//!
//! Burn differentiates op by op: the masked-LM loss over a `[masked rows, 30522]` logits matrix
//! becomes a dozen full-size tensors (max, shift, exp, sum, log, gather and their gradients),
//! each a pass over ~75 MB at nano's batch. A fused kernel reads the logits twice per step
//! instead: once forward for the row log-sum-exps, once backward to write the gradient.
//!
//! Each kernel is a method of [`Kernels`], an extension of Burn's `Backend`:
//! - the default methods compose Burn tensor ops, so every backend has them (the GPU backends
//!   use these);
//! - the CPU backend (`Flex`) overrides them with SIMD loops over rows on rayon threads
//!   ([`flex`]);
//! - `Autodiff<B>` records one graph node whose backward calls `B`'s fused backward
//!   ([`autodiff`]).

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::TensorPrimitive;

mod autodiff;
pub mod cross_entropy;
mod exp;
mod flex;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod gpu;

/// A backend with berthash's fused kernels.
pub trait Kernels: Backend {
    /// Mean cross-entropy of `logits` `[rows, classes]` against class ids `targets` `[rows]`
    /// (shape `[1]`), and each row's log-sum-exp `[rows]`, which the backward reuses.
    fn cross_entropy_forward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        cross_entropy::forward_composed::<Self>(logits, targets)
    }

    /// Gradient of that mean with respect to the logits, given the loss's gradient `grad`
    /// (shape `[1]`): `(softmax(logits) - one_hot(targets)) * grad / rows`.
    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        log_sum_exp: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        cross_entropy::backward_composed::<Self>(logits, log_sum_exp, targets, grad)
    }

    /// The loss alone. `Autodiff` overrides it to record a single graph node.
    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        Self::cross_entropy_forward(logits, targets).0
    }
}

/// An autodiff backend the trainer runs on: the kernels on the tracked backend (training) and on
/// its inner backend (evaluation).
pub trait TrainBackend: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

impl<B> TrainBackend for B
where
    B: AutodiffBackend + Kernels,
    B::InnerBackend: Kernels,
{
}

/// Mean cross-entropy of `logits` `[rows, classes]` against class ids `[rows]`, fused: see
/// [`Kernels::cross_entropy`].
pub fn cross_entropy<B: Kernels>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [rows, _] = logits.dims();
    assert_eq!(
        rows,
        targets.dims()[0],
        "cross_entropy: {rows} rows of logits but {} targets",
        targets.dims()[0]
    );
    let loss = B::cross_entropy(logits.into_primitive().tensor(), targets.into_primitive());
    Tensor::from_primitive(TensorPrimitive::Float(loss))
}
