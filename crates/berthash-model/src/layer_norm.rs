//! `LayerNorm`, as `nn.LayerNorm` over the last axis: Burn's module holds its epsilon privately,
//! and the training path needs it for [`berthash_kernels::layer_norm()`], one graph node with a
//! fused backward.

use berthash_kernels::Kernels;
use burn::module::Param;
use burn::prelude::*;

/// `(x - mean) / sqrt(var + epsilon) * gamma + beta` over the last axis (biased variance).
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// `weight` in Hugging Face's files ([`crate::names`]).
    pub gamma: Param<Tensor<B, 1>>,
    /// `bias`.
    pub beta: Param<Tensor<B, 1>>,
    /// `layer_norm_eps`.
    pub epsilon: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// Weight 1 and bias 0, as PyTorch initialises them.
    pub fn new(width: usize, epsilon: f64, device: &B::Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([width], device)),
            beta: Param::from_tensor(Tensor::zeros([width], device)),
            epsilon,
        }
    }
}

impl<B: Kernels> LayerNorm<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        berthash_kernels::layer_norm(x, self.gamma.val(), self.beta.val(), self.epsilon)
    }
}
