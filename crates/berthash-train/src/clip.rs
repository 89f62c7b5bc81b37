//! Global gradient-norm clipping with `torch.nn.utils.clip_grad_norm_` semantics: the total L2
//! norm over all gradients, and every gradient scaled by `min(1, max_norm / (norm + 1e-6))`.
//!
//! torch takes the norm of the per-tensor norms; here the squares of all gradients are summed and
//! one square root taken, the same value up to rounding with fewer operations: on a GPU backend
//! every operation on a small tensor is a kernel launch of its own, and a sum of a whole tensor
//! is two (a zeroed output, then the sum). So each matrix's squares are summed over its shorter
//! axis only (a reduction Burn's fusion may join the squaring to), the partial sums of every
//! gradient are added as columns of equal length (one fused chain per length; a vector's squares
//! join that chain unreduced), and only each chain's total is summed whole.
//! For the same reason the gradients are not scaled here: the factor goes to the optimizer step,
//! which multiplies each gradient inside its update, where the GPU backends fuse the product with
//! the update's other element-wise operations. Everything stays a lazy tensor, so clipping needs
//! no host sync.

use std::collections::BTreeMap;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::FloatDType;

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
        columns: Vec::new(),
    };
    module.visit(&mut squares);
    // Added after all the reductions, each length's columns in one run, so that each run of
    // additions is one chain the GPU backends fuse.
    let mut by_length: BTreeMap<usize, Vec<Column<B::InnerBackend>>> = BTreeMap::new();
    for column in squares.columns {
        by_length.entry(column.len()).or_default().push(column);
    }
    let totals = by_length.into_values().map(|columns| {
        columns
            .into_iter()
            .map(Column::squares)
            .reduce(|a, b| a.add(b))
            .expect("a length has a column")
            .sum()
    });
    let Some(total) = totals.reduce(|a, b| a.add(b)) else {
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

/// Each gradient's squares as one column `[len, 1]`, in the module's order.
struct SquareSums<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    columns: Vec<Column<B::InnerBackend>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquareSums<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.columns.push(Column::of(grad));
        }
    }
}

/// A gradient's contribution to the sum of squares, as a column `[len, 1]`. A half-precision
/// gradient is cast to f32 where it is squared, the first operation of a chain the GPU backends
/// fuse (a cast of its own would be one kernel).
enum Column<B: Backend> {
    /// A vector (or a matrix with one row or column), not squared yet (nor cast): its squares
    /// join the additions of its length.
    Values(Tensor<B, 2>),
    /// A matrix's squares summed over its shorter axis.
    Squares(Tensor<B, 2>),
}

impl<B: Backend> Column<B> {
    /// A tensor of more than two axes is taken as the matrix of its rows.
    fn of<const D: usize>(grad: Tensor<B, D>) -> Self {
        let dims = grad.dims();
        let cols = dims[D - 1];
        let rows = dims.iter().product::<usize>() / cols.max(1);
        if rows == 1 || cols == 1 {
            return Self::Values(grad.reshape([rows * cols, 1]));
        }
        let squares = grad
            .cast(FloatDType::F32)
            .powi_scalar(2)
            .reshape([rows, cols]);
        Self::Squares(if rows >= cols {
            squares.sum_dim(1)
        } else {
            squares.sum_dim(0).reshape([cols, 1])
        })
    }

    fn len(&self) -> usize {
        match self {
            Self::Values(t) | Self::Squares(t) => t.dims()[0],
        }
    }

    fn squares(self) -> Tensor<B, 2> {
        match self {
            Self::Values(t) => t.cast(FloatDType::F32).powi_scalar(2),
            Self::Squares(t) => t,
        }
    }
}
