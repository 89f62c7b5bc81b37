//! Layer normalization as CubeCL kernels: the forward one operation (at inference too, without
//! keeping what the backward needs), the backward one operation of three launches.
//!
//! Composed from Burn's ops ([`crate::layer_norm`]), a layer norm is about a dozen operations
//! forward and thirty backward, each of which costs the host its description, fusion and
//! launch whatever the size of the tensor: for a model as small as nano, a fifth of the
//! operations of a training step. The arithmetic is the composed version's, in f32 whatever
//! the tensors' type:
//! - forward, one unit per row: mean, biased variance, `σ = sqrt(var + epsilon)`, the
//!   normalized row `x̂` and `x̂ gamma + beta`; while training `x̂` and `σ` (f32) are kept for
//!   the backward;
//! - backward, one unit per row: `dx = (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)) / σ` with
//!   `ĝ = grad * gamma`; then the column sums of `grad * x̂` (gamma's gradient) and of `grad`
//!   (beta's) over blocks of rows, one unit per block and column (neighbouring units read
//!   neighbouring columns), and one unit per column over the blocks.

use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::cube::{custom, empty, grid, CubeKernels};
use crate::sum_blocks::row_blocks;
use crate::{LayerNormGrads, LayerNormSaved};

#[cube(launch_unchecked)]
fn forward_rows<F: Float>(
    x: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    y: &mut Tensor<F>,
    normalized: &mut Tensor<F>,
    std: &mut Tensor<f32>,
    epsilon: f32,
    #[comptime] keep: bool,
    #[define(F)] _dtype: StorageType,
) {
    let width = gamma.len();
    let row = ABSOLUTE_POS;
    if row * width >= x.len() {
        terminate!();
    }
    let start = row * width;
    let count = f32::cast_from(width as u32);
    let mut sum = f32::new(0.0);
    for c in 0..width {
        sum += f32::cast_from(x[start + c]);
    }
    let mean = sum / count;
    let mut squares = f32::new(0.0);
    for c in 0..width {
        let centred = f32::cast_from(x[start + c]) - mean;
        squares += centred * centred;
    }
    let sigma = (squares / count + epsilon).sqrt();
    let inverse = f32::new(1.0) / sigma;
    for c in 0..width {
        let n = (f32::cast_from(x[start + c]) - mean) * inverse;
        if keep {
            normalized[start + c] = F::cast_from(n);
        }
        y[start + c] = F::cast_from(n * f32::cast_from(gamma[c]) + f32::cast_from(beta[c]));
    }
    if keep {
        std[row] = sigma;
    }
}

#[cube(launch_unchecked)]
fn backward_rows<F: Float>(
    grad: &Tensor<F>,
    normalized: &Tensor<F>,
    std: &Tensor<f32>,
    gamma: &Tensor<F>,
    dx: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let row = ABSOLUTE_POS;
    if row >= std.len() {
        terminate!();
    }
    let width = gamma.len();
    let start = row * width;
    let count = f32::cast_from(width as u32);
    let mut sum = f32::new(0.0);
    let mut dot = f32::new(0.0);
    for c in 0..width {
        let g = f32::cast_from(grad[start + c]) * f32::cast_from(gamma[c]);
        sum += g;
        dot += g * f32::cast_from(normalized[start + c]);
    }
    let mean = sum / count;
    let mean_dot = dot / count;
    let inverse = f32::new(1.0) / std[row];
    for c in 0..width {
        let g = f32::cast_from(grad[start + c]) * f32::cast_from(gamma[c]);
        let n = f32::cast_from(normalized[start + c]);
        dx[start + c] = F::cast_from((g - mean - n * mean_dot) * inverse);
    }
}

/// Unit `block * width + column`: the sums over the rows of `block` of `grad * x̂` and `grad`.
#[cube(launch_unchecked)]
fn column_partials<F: Float>(
    grad: &Tensor<F>,
    normalized: &Tensor<F>,
    gamma_partial: &mut Tensor<f32>,
    beta_partial: &mut Tensor<f32>,
    width: u32,
    rows_per_block: u32,
    #[define(F)] _dtype: StorageType,
) {
    let unit = ABSOLUTE_POS;
    if unit >= gamma_partial.len() {
        terminate!();
    }
    let width = width as usize;
    let rows = grad.len() / width;
    let column = unit % width;
    let first = (unit / width) * rows_per_block as usize;
    let mut end = first + rows_per_block as usize;
    if end > rows {
        end = rows;
    }
    let mut gamma_sum = f32::new(0.0);
    let mut beta_sum = f32::new(0.0);
    for row in first..end {
        let g = f32::cast_from(grad[row * width + column]);
        gamma_sum += g * f32::cast_from(normalized[row * width + column]);
        beta_sum += g;
    }
    gamma_partial[unit] = gamma_sum;
    beta_partial[unit] = beta_sum;
}

/// Unit `column`: the sums over the blocks.
#[cube(launch_unchecked)]
fn column_totals<F: Float>(
    gamma_partial: &Tensor<f32>,
    beta_partial: &Tensor<f32>,
    gamma_grad: &mut Tensor<F>,
    beta_grad: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let column = ABSOLUTE_POS;
    let width = gamma_grad.len();
    if column >= width {
        terminate!();
    }
    let blocks = gamma_partial.len() / width;
    let mut gamma_sum = f32::new(0.0);
    let mut beta_sum = f32::new(0.0);
    for block in 0..blocks {
        gamma_sum += gamma_partial[block * width + column];
        beta_sum += beta_partial[block * width + column];
    }
    gamma_grad[column] = F::cast_from(gamma_sum);
    beta_grad[column] = F::cast_from(beta_sum);
}

/// `shape` with a last axis of 1: one value per row.
fn per_row(shape: &Shape) -> Shape {
    let mut shape = shape.clone();
    if let Some(last) = shape.as_mut_slice().last_mut() {
        *last = 1;
    }
    shape
}

/// The layer norm of `x` by rows and, when `keep`, `x̂` and `σ` for the backward (otherwise
/// one-element tensors the kernel does not write).
fn normalized<R: CubeRuntime>(
    inputs: [CubeTensor<R>; 3],
    epsilon: f32,
    keep: bool,
) -> [CubeTensor<R>; 3] {
    let [x, gamma, beta] = inputs.map(into_contiguous);
    let shape = x.shape();
    let rows = shape.num_elements() / gamma.shape().num_elements().max(1);
    let kept = |shape: Shape, dtype| empty(&x, if keep { shape } else { Shape::new([1]) }, dtype);
    let y = empty(&x, shape.clone(), x.dtype);
    let normalized = kept(shape.clone(), x.dtype);
    let std = kept(per_row(&shape), DType::F32);
    if rows > 0 {
        let (count, dim) = grid(&x, rows);
        let (client, dtype) = (x.client.clone(), x.dtype);
        // SAFETY: every tensor is contiguous and sized to the rows and width read and written
        // (`x̂` and `σ` when `keep`); the kernel returns early past the last row.
        unsafe {
            forward_rows::launch_unchecked(
                &client,
                count,
                dim,
                x.into_tensor_arg(),
                gamma.into_tensor_arg(),
                beta.into_tensor_arg(),
                y.clone().into_tensor_arg(),
                normalized.clone().into_tensor_arg(),
                std.clone().into_tensor_arg(),
                epsilon,
                keep,
                dtype.into(),
            );
        }
    }
    [y, normalized, std]
}

/// [`Kernels::layer_norm_forward`](crate::Kernels::layer_norm_forward) as one operation.
pub fn forward<B: CubeKernels>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, LayerNormSaved<FloatTensor<B>>) {
    let (shape, dtype) = (x.shape(), x.dtype());
    let outputs = [
        (shape.clone(), dtype),
        (shape.clone(), dtype),
        (per_row(&shape), DType::F32),
    ];
    let epsilon = epsilon as f32;
    let launch = move |inputs| normalized(inputs, epsilon, true);
    let [y, normalized, std] =
        custom::<B, 3, 3>("berthash_layer_norm", [x, gamma, beta], outputs, launch);
    (y, LayerNormSaved { normalized, std })
}

/// [`Kernels::layer_norm_inference`](crate::Kernels::layer_norm_inference) as one operation.
pub fn inference<B: CubeKernels>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> FloatTensor<B> {
    let outputs = [(x.shape(), x.dtype())];
    let epsilon = epsilon as f32;
    let launch = move |inputs| {
        let [y, _, _] = normalized(inputs, epsilon, false);
        [y]
    };
    let [y] = custom::<B, 3, 1>(
        "berthash_layer_norm_inference",
        [x, gamma, beta],
        outputs,
        launch,
    );
    y
}

/// [`Kernels::layer_norm_backward`](crate::Kernels::layer_norm_backward) as one operation.
pub fn backward<B: CubeKernels>(
    saved: LayerNormSaved<FloatTensor<B>>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> LayerNormGrads<FloatTensor<B>> {
    let outputs = [
        (grad.shape(), grad.dtype()),
        (gamma.shape(), grad.dtype()),
        (gamma.shape(), grad.dtype()),
    ];
    let launch = |tensors: [CubeTensor<B::Runtime>; 4]| {
        let [grad, normalized, std, gamma] = tensors.map(into_contiguous);
        let (client, dtype) = (grad.client.clone(), grad.dtype);
        let width = gamma.shape().num_elements();
        let rows = grad.shape().num_elements() / width.max(1);
        let dx = empty(&grad, grad.shape(), dtype);
        let gamma_grad = empty(&grad, gamma.shape(), dtype);
        let beta_grad = empty(&grad, gamma.shape(), dtype);
        // The blocks' partial sums are kept in f32, as the row sums are.
        let (blocks, rows_per_block) = row_blocks(rows.max(1), width, width);
        let partial = || empty(&grad, Shape::new([blocks, width]), DType::F32);
        let (gamma_partial, beta_partial) = (partial(), partial());
        // SAFETY: every tensor is contiguous and sized to what the kernels index; each
        // returns early past its last unit.
        unsafe {
            if rows > 0 {
                let (count, dim) = grid(&grad, rows);
                backward_rows::launch_unchecked(
                    &client,
                    count,
                    dim,
                    grad.clone().into_tensor_arg(),
                    normalized.clone().into_tensor_arg(),
                    std.into_tensor_arg(),
                    gamma.into_tensor_arg(),
                    dx.clone().into_tensor_arg(),
                    dtype.into(),
                );
            }
            if width > 0 {
                let (count, dim) = grid(&grad, blocks * width);
                column_partials::launch_unchecked(
                    &client,
                    count,
                    dim,
                    grad.into_tensor_arg(),
                    normalized.into_tensor_arg(),
                    gamma_partial.clone().into_tensor_arg(),
                    beta_partial.clone().into_tensor_arg(),
                    width as u32,
                    rows_per_block as u32,
                    dtype.into(),
                );
                let (count, dim) = grid(&dx, width);
                column_totals::launch_unchecked(
                    &client,
                    count,
                    dim,
                    gamma_partial.into_tensor_arg(),
                    beta_partial.into_tensor_arg(),
                    gamma_grad.clone().into_tensor_arg(),
                    beta_grad.clone().into_tensor_arg(),
                    dtype.into(),
                );
            }
        }
        [dx, gamma_grad, beta_grad]
    };
    let LayerNormSaved { normalized, std } = saved;
    let [x, gamma, beta] = custom::<B, 4, 3>(
        "berthash_layer_norm_backward",
        [grad, normalized, std, gamma],
        outputs,
        launch,
    );
    LayerNormGrads { x, gamma, beta }
}
