//! Global gradient-norm clipping with `torch.nn.utils.clip_grad_norm_` semantics: the total L2
//! norm over all gradients, and every gradient scaled by `min(1, max_norm / (norm + 1e-6))`.
//!
//! torch takes the norm of the per-tensor norms; here the squares of each weight-decay group's
//! flat gradient vector ([`crate::optim::GroupGrads`]) are summed and one square root taken, the
//! same value up to rounding, in a few operations for the whole model. A long vector is summed
//! in runs of [`ALIGN`] elements first ([`sum_long`]).
//! The gradients are not scaled here: the factor goes to the optimizer step, which multiplies
//! the gradients inside the update, where the GPU backends fuse the product with the update's
//! other element-wise operations. Everything stays a lazy tensor, so clipping needs no host sync.

use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::flat::ALIGN;
use crate::optim::GroupGrads;

/// The longest vector [`sum_long`] sums whole.
const SUM_WHOLE: usize = 1 << 16;

/// The total gradient norm and the factor the optimizer step applies to every gradient.
pub struct Clipped<B: Backend> {
    /// The total norm before clipping, of the gradients times `unscale`: a lazy `[1]` tensor.
    pub norm: Tensor<B, 1>,
    /// `unscale` times the clip coefficient; `None` where that is 1 (no `max_norm`, `unscale`
    /// 1) or where no parameter has a gradient.
    pub grad_scale: Option<Tensor<B, 1>>,
}

/// The total norm of `grads` once multiplied by `unscale` (a loss scale's inverse, or 1), and
/// the factor that removes the loss scale and, with `max_norm`, clips them as torch does. A
/// half-precision gradient is cast to f32 where it is squared.
pub fn clip_grad_norm<B: Backend>(
    grads: &GroupGrads<B>,
    unscale: f64,
    max_norm: Option<f64>,
) -> Clipped<B> {
    let total = grads
        .vectors()
        .map(|g| sum_long(g.clone().cast(FloatDType::F32).powi_scalar(2)))
        .reduce(|a, b| a.add(b));
    let Some(total) = total else {
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

/// The sum of `x`'s elements (`[1]`). A vector longer than 2^16 elements is first summed in runs
/// of [`ALIGN`] elements (the last run padded with zeros), as often as it takes. A whole-vector
/// sum of a million elements or more is wrong on wgpu: of a million ones, CubeCL's reduction
/// counted 262,132 on lavapipe (WebGPU runs at most 65,535 workgroups along one axis of a
/// dispatch).
pub fn sum_long<B: Backend>(mut x: Tensor<B, 1>) -> Tensor<B, 1> {
    while x.dims()[0] > SUM_WHOLE {
        let len = x.dims()[0];
        let runs = len.div_ceil(ALIGN);
        if runs * ALIGN > len {
            let zeros = Tensor::zeros([runs * ALIGN - len], (&x.device(), x.dtype()));
            x = Tensor::cat(vec![x, zeros], 0);
        }
        x = x.reshape([runs, ALIGN]).sum_dim(1).reshape([runs]);
    }
    x.sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn long_sums_add_every_element() {
        let device = Default::default();
        // Whole; in runs once; in runs twice, the last run of each pass padded.
        for len in [1000, 3 * SUM_WHOLE + 7, SUM_WHOLE * ALIGN + ALIGN + 3] {
            let x = Tensor::<Flex, 1>::ones([len], &device);
            // Beyond 2^24 an f32 holds even integers only: equal within rounding.
            let sum = f64::from(sum_long(x).into_scalar());
            assert!(
                (sum - len as f64).abs() <= 2.0,
                "{len} ones summed to {sum}"
            );
        }
    }
}
