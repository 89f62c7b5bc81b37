//! Layer normalization on the CPU, one pass over each row forward and one backward, rows in
//! rayon tasks of a fixed size.
//!
//! The weight's and bias's gradients are column sums over every row: each task sums its own
//! rows, and the tasks' sums are added in task order, so the result does not depend on which
//! thread ran what.

use rayon::prelude::*;

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 64;

/// A layer norm's output and what its backward needs.
pub struct Forward {
    pub y: Vec<f32>,
    /// `(x - mean) / σ`, `[rows, width]`.
    pub normalized: Vec<f32>,
    /// `σ = sqrt(var + epsilon)` per row.
    pub std: Vec<f32>,
}

/// `Σ term(row values at i)` over rows of one length, in eight independent partial sums: LLVM
/// vectorises those, not one running sum.
#[inline(always)]
fn sum_by_lanes<const N: usize>(rows: [&[f32]; N], term: impl Fn([f32; N]) -> f32) -> f32 {
    let len = rows[0].len();
    let body = len / 8 * 8;
    let mut lanes = [0.0f32; 8];
    for start in (0..body).step_by(8) {
        for (j, lane) in lanes.iter_mut().enumerate() {
            *lane += term(rows.map(|r| r[start + j]));
        }
    }
    let tail: f32 = (body..len).map(|i| term(rows.map(|r| r[i]))).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `x` `[rows, width]` normalized over each row (biased variance, as BERT), scaled by `gamma`
/// and shifted by `beta` (`[width]`).
pub fn forward(x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f32) -> Forward {
    let width = gamma.len();
    assert!(
        width > 0 && x.len().is_multiple_of(width) && beta.len() == width,
        "layer_norm: x must be [rows, {width}] and beta [{width}]"
    );
    let mut y = vec![0.0; x.len()];
    let mut normalized = vec![0.0; x.len()];
    let mut std = vec![0.0; x.len() / width];
    let chunk = ROWS_PER_TASK * width;
    y.par_chunks_mut(chunk)
        .zip(normalized.par_chunks_mut(chunk))
        .zip(std.par_chunks_mut(ROWS_PER_TASK))
        .zip(x.par_chunks(chunk))
        .for_each(|(((y, normalized), std), x)| {
            let rows = y
                .chunks_mut(width)
                .zip(normalized.chunks_mut(width))
                .zip(x.chunks(width));
            for (((y, normalized), x), std) in rows.zip(std) {
                *std = forward_row(x, gamma, beta, epsilon, normalized, y);
            }
        });
    Forward { y, normalized, std }
}

/// One row of [`forward`]; returns `σ`.
fn forward_row(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    normalized: &mut [f32],
    y: &mut [f32],
) -> f32 {
    let width = x.len() as f32;
    let mean = sum_by_lanes([x], |[v]| v) / width;
    let variance = sum_by_lanes([x], |[v]| (v - mean) * (v - mean)) / width;
    let std = (variance + epsilon).sqrt();
    for ((((y, n), &v), &g), &b) in y.iter_mut().zip(normalized).zip(x).zip(gamma).zip(beta) {
        *n = (v - mean) / std;
        *y = *n * g + b;
    }
    std
}

/// The gradients of [`forward`] from the output's `grad` `[rows, width]`, given the forward's
/// `normalized` rows and `std`: the input's, written over `grad`, and `(gamma's, beta's)`.
pub fn backward(
    normalized: &[f32],
    std: &[f32],
    gamma: &[f32],
    grad: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    assert!(
        normalized.len() == grad.len() && normalized.len() == std.len() * width,
        "layer_norm backward: grad and normalized must be [{}, {width}]",
        std.len()
    );
    let chunk = ROWS_PER_TASK * width;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = grad
        .par_chunks_mut(chunk)
        .zip(normalized.par_chunks(chunk))
        .zip(std.par_chunks(ROWS_PER_TASK))
        .map(|((grad, normalized), std)| {
            let mut sums = (vec![0.0f32; width], vec![0.0f32; width]);
            let rows = grad.chunks_mut(width).zip(normalized.chunks(width));
            for ((grad, normalized), &std) in rows.zip(std) {
                backward_row(normalized, std, gamma, grad, &mut sums);
            }
            sums
        })
        .collect();
    let (mut gamma_grad, mut beta_grad) = (vec![0.0f32; width], vec![0.0f32; width]);
    for (gamma_part, beta_part) in &partials {
        gamma_grad
            .iter_mut()
            .zip(gamma_part)
            .for_each(|(a, b)| *a += b);
        beta_grad
            .iter_mut()
            .zip(beta_part)
            .for_each(|(a, b)| *a += b);
    }
    (gamma_grad, beta_grad)
}

/// One row of [`backward`]: adds `grad * x̂` and `grad` to the column sums, then writes
/// `(ĝ - mean(ĝ) - x̂ mean(ĝ x̂)) / σ`, `ĝ = grad * gamma`, over `grad`.
fn backward_row(
    normalized: &[f32],
    std: f32,
    gamma: &[f32],
    grad: &mut [f32],
    (gamma_sums, beta_sums): &mut (Vec<f32>, Vec<f32>),
) {
    let width = grad.len() as f32;
    for (((gs, bs), &g), &n) in gamma_sums
        .iter_mut()
        .zip(beta_sums.iter_mut())
        .zip(grad.iter())
        .zip(normalized)
    {
        *gs += g * n;
        *bs += g;
    }
    let mean = sum_by_lanes([grad, gamma], |[g, w]| g * w) / width;
    let mean_dot = sum_by_lanes([grad, gamma, normalized], |[g, w, n]| g * w * n) / width;
    for ((g, &w), &n) in grad.iter_mut().zip(gamma).zip(normalized) {
        *g = (*g * w - mean - n * mean_dot) / std;
    }
}
