//! Global gradient-norm clipping with `torch.nn.utils.clip_grad_norm_` semantics: the total L2
//! norm over all gradients, and every gradient scaled by `min(1, max_norm / (norm + 1e-6))`.
//!
//! torch takes the norm of the per-tensor norms; here the squares of all gradients are summed and
//! one square root taken, the same value up to rounding with fewer operations: on a GPU backend
//! every operation on a small tensor is a kernel launch of its own. For the same reason the
//! gradients are not scaled here: the factor goes to the optimizer step, which multiplies each
//! gradient inside its update, where the GPU backends fuse the product with the update's other
//! element-wise operations. Everything stays a lazy tensor, so clipping needs no host sync.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// The total gradient norm and the factor the optimizer step applies to every gradient.
pub struct Clipped<B: Backend> {
    /// The total norm before clipping, of the gradients times `unscale`: a lazy `[1]` tensor.
    pub norm: Tensor<B, 1>,
    /// `unscale` times the clip coefficient; `None` where that is 1 (no `max_norm`, `unscale`
    /// 1) or where no parameter has a gradient.
    pub grad_scale: Option<Tensor<B, 1>>,
}

/// The total norm of `module`'s gradients in `grads` once multiplied by `unscale` (a loss scale's
/// inverse, or 1), and the factor that removes the loss scale and, with `max_norm`, clips them
/// as torch does.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
    unscale: f64,
    max_norm: Option<f64>,
) -> Clipped<B::InnerBackend> {
    let mut squares = SquareSums::<B> {
        grads,
        sums: Vec::new(),
    };
    module.visit(&mut squares);
    // Added after all the reductions, so that the additions form one chain the GPU backends fuse.
    let Some(total) = squares.sums.into_iter().reduce(|a, b| a.add(b)) else {
        return Clipped {
            norm: Tensor::zeros([1], &Default::default()),
            grad_scale: None,
        };
    };
    let device = total.device();
    let mut norm = total.sqrt();
    if unscale != 1.0 {
        norm = norm.mul_scalar(unscale);
    }
    let grad_scale = match max_norm {
        Some(max_norm) => {
            let coef = norm
                .clone()
                .add_scalar(1e-6)
                .recip()
                .mul_scalar(max_norm)
                .clamp_max(1.0);
            Some(if unscale != 1.0 {
                coef.mul_scalar(unscale)
            } else {
                coef
            })
        }
        None if unscale != 1.0 => Some(Tensor::from_floats([unscale as f32], &device)),
        None => None,
    };
    Clipped { norm, grad_scale }
}

/// Each gradient's sum of squares, in the module's order.
struct SquareSums<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sums: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquareSums<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sums.push(grad.powi_scalar(2).sum());
        }
    }
}
