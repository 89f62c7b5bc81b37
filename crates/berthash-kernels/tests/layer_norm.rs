//! The layer norm, its output and the gradients of its input, weight and bias, against the same
//! computed in f64 on the host: the CPU kernel (`Flex`) and the composed version the GPU
//! backends run, each under autodiff, and Burn's own layer norm differentiated op by op.

use berthash_kernels::layer_norm;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, FloatTensorOps, ModuleOps};
use burn::tensor::{TensorMetadata, TensorPrimitive};

mod common;

type Ad = Autodiff<Flex>;

const EPSILON: f64 = 1e-12;

/// `x` `[rows, width]`, `gamma`, `beta` `[width]`, and the output's gradient `[rows, width]`.
struct Case {
    rows: usize,
    width: usize,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    grad: Vec<f32>,
}

impl Case {
    fn new(rows: usize, width: usize, seed: u64) -> Self {
        let draw = |shape: &[usize], mean, std, stream: u64| {
            common::normal(shape, mean, std, 4 * seed + stream)
                .to_vec::<f32>()
                .unwrap()
        };
        Self {
            rows,
            width,
            // Rows off centre, as a residual stream is: a mean far from 0 tests the variance's
            // cancellation.
            x: draw(&[rows, width], 3.0, 2.0, 0),
            gamma: draw(&[width], 1.0, 0.3, 1),
            beta: draw(&[width], 0.0, 0.5, 2),
            grad: draw(&[rows, width], 0.0, 1.0, 3),
        }
    }

    /// `[y, dx, dgamma, dbeta]` in f64, and for each element the sum of the magnitudes of the
    /// terms that make it (what bounds the rounding of any order of summation).
    fn exact(&self) -> [(Vec<f64>, Vec<f64>); 4] {
        let w = self.width;
        let f = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let (x, gamma, beta, grad) = (f(&self.x), f(&self.gamma), f(&self.beta), f(&self.grad));
        let mut out: [(Vec<f64>, Vec<f64>); 4] = Default::default();
        out[2] = (vec![0.0; w], vec![0.0; w]);
        out[3] = (vec![0.0; w], vec![0.0; w]);
        for r in 0..self.rows {
            let row = &x[r * w..(r + 1) * w];
            let g = &grad[r * w..(r + 1) * w];
            let mean = row.iter().sum::<f64>() / w as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / w as f64;
            let inv_std = 1.0 / (var + EPSILON).sqrt();
            let n: Vec<f64> = row.iter().map(|v| (v - mean) * inv_std).collect();
            // What bounds the rounding of `n`: the centring subtracts a mean of magnitude
            // `mean_abs`, so its error is relative to that, not to `n`.
            let mean_abs = row.iter().map(|v| v.abs()).sum::<f64>() / w as f64;
            let n_mag: Vec<f64> = row
                .iter()
                .map(|v| ((v - mean).abs() + mean_abs) * inv_std)
                .collect();
            let scaled: Vec<f64> = g.iter().zip(&gamma).map(|(g, w)| g * w).collect();
            let mean_g = scaled.iter().sum::<f64>() / w as f64;
            let mean_gn = scaled.iter().zip(&n).map(|(g, n)| g * n).sum::<f64>() / w as f64;
            let mag_g = scaled.iter().map(|g| g.abs()).sum::<f64>() / w as f64;
            let mag_gn = scaled
                .iter()
                .zip(&n_mag)
                .map(|(g, n)| g.abs() * n)
                .sum::<f64>()
                / w as f64;
            for c in 0..w {
                out[0].0.push(n[c] * gamma[c] + beta[c]);
                out[0].1.push((n_mag[c] * gamma[c]).abs() + beta[c].abs());
                out[1]
                    .0
                    .push((scaled[c] - mean_g - n[c] * mean_gn) * inv_std);
                let terms = scaled[c].abs() + mag_g + n_mag[c] * (mean_gn.abs() + mag_gn);
                out[1].1.push(terms * inv_std);
                out[2].0[c] += g[c] * n[c];
                out[2].1[c] += (g[c] * n_mag[c]).abs();
                out[3].0[c] += g[c];
                out[3].1[c] += g[c].abs();
            }
        }
        out
    }
}

/// How a case is computed.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// [`layer_norm`] on `Autodiff<Flex>`: the CPU kernel.
    Fused,
    /// The composed forward and backward the GPU backends run, on `Flex`.
    Composed,
    /// Burn's layer norm, differentiated op by op.
    Burn,
}

fn data(values: &[f32], shape: &[usize]) -> TensorData {
    TensorData::new(values.to_vec(), shape.to_vec())
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// `[y, dx, dgamma, dbeta]` by `path`, for `x` shaped `[1, rows, width]`.
fn run(case: &Case, path: Path) -> [Vec<f32>; 4] {
    let device = Default::default();
    let (rows, width) = (case.rows, case.width);
    match path {
        Path::Fused | Path::Burn => {
            let x = Tensor::<Ad, 3>::from_data(data(&case.x, &[1, rows, width]), &device)
                .require_grad();
            let gamma =
                Tensor::<Ad, 1>::from_data(data(&case.gamma, &[width]), &device).require_grad();
            let beta =
                Tensor::<Ad, 1>::from_data(data(&case.beta, &[width]), &device).require_grad();
            let y = match path {
                Path::Fused => layer_norm(x.clone(), gamma.clone(), beta.clone(), EPSILON),
                _ => Tensor::from_primitive(TensorPrimitive::Float(
                    <Ad as ModuleOps<Ad>>::layer_norm(
                        x.clone().into_primitive().tensor(),
                        gamma.clone().into_primitive().tensor(),
                        Some(beta.clone().into_primitive().tensor()),
                        EPSILON,
                    ),
                )),
            };
            // The sum of `y * grad` has `grad` as the output's gradient.
            let weights = Tensor::<Ad, 3>::from_data(data(&case.grad, &[1, rows, width]), &device);
            let grads = (y.clone() * weights).sum().backward();
            [
                values(y),
                values(x.grad(&grads).unwrap()),
                values(gamma.grad(&grads).unwrap()),
                values(beta.grad(&grads).unwrap()),
            ]
        }
        Path::Composed => {
            let tensor =
                |v: &[f32], shape: &[usize]| Flex::float_from_data(data(v, shape), &device);
            let gamma = tensor(&case.gamma, &[width]);
            let (y, saved) = layer_norm::forward_composed::<Flex>(
                tensor(&case.x, &[1, rows, width]),
                gamma.clone(),
                tensor(&case.beta, &[width]),
                EPSILON,
            );
            let grads = layer_norm::backward_composed::<Flex>(
                saved,
                gamma,
                tensor(&case.grad, &[1, rows, width]),
            );
            let out = |t: FloatTensor<Flex>| {
                let n = t.shape().num_elements();
                values(Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(
                    Flex::float_reshape(t, [n].into()),
                )))
            };
            [out(y), out(grads.x), out(grads.gamma), out(grads.beta)]
        }
    }
}

/// Each element within 1e-6 (8 f32 epsilons) of the f64 value, relative to the magnitudes that
/// make it.
fn check(case: &Case, path: Path) {
    let got = run(case, path);
    let names = ["y", "x grad", "gamma grad", "beta grad"];
    for ((got, (want, magnitude)), name) in got.iter().zip(case.exact()).zip(names) {
        assert_eq!(got.len(), want.len(), "{path:?} {name}");
        let worst = got
            .iter()
            .zip(&want)
            .zip(&magnitude)
            .map(|((&g, w), m)| (g as f64 - w).abs() / m.max(1e-30))
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e-6,
            "{path:?}, {} x {}: {name} differs by {worst:e} of its magnitude",
            case.rows,
            case.width
        );
    }
}

#[test]
fn the_cpu_kernel_the_composed_one_and_burns_equal_the_exact_values() {
    // 4,919 rows (a prime: the composed column sums pad the last block), widths with an 8-lane
    // tail and without, and a batch smaller than one rayon task.
    for (i, &(rows, width)) in [(4919, 13), (300, 128), (5, 80)].iter().enumerate() {
        let case = Case::new(rows, width, i as u64);
        for path in [Path::Fused, Path::Composed, Path::Burn] {
            check(&case, path);
        }
    }
}

#[test]
fn at_inference_it_is_burns_layer_norm() {
    let device = Default::default();
    let case = Case::new(40, 24, 7);
    let x = Tensor::<Flex, 3>::from_data(data(&case.x, &[4, 10, 24]), &device);
    let gamma = Tensor::<Flex, 1>::from_data(data(&case.gamma, &[24]), &device);
    let beta = Tensor::<Flex, 1>::from_data(data(&case.beta, &[24]), &device);
    let got = layer_norm(x.clone(), gamma.clone(), beta.clone(), EPSILON);
    let want = Flex::layer_norm(
        x.into_primitive().tensor(),
        gamma.into_primitive().tensor(),
        Some(beta.into_primitive().tensor()),
        EPSILON,
    );
    assert_eq!(got.dims(), [4, 10, 24]);
    assert_eq!(
        values(got),
        values(Tensor::<Flex, 3>::from_primitive(TensorPrimitive::Float(
            want
        )))
    );
}
