//! GELU (the exact, erf form BERT uses) and its gradient over f32 slices, vectorised
//! ([`crate::simd`]): the CPU backend's own GELU calls a scalar `erf` per element.
//!
//! `erf` is Abramowitz and Stegun's 7.1.26 (absolute error under 1.5e-7), built on the
//! vectorised `exp`.

use crate::simd::{dispatch, exp, map_in_place, zip_in_place, Kernel, LaneMap, LaneZip, Simd};

/// `x[i] = gelu(x[i])`.
pub fn gelu_in_place(x: &mut [f32]) {
    dispatch(Op::Forward(x));
}

/// `grad[i] *= gelu'(x[i])`.
pub fn gelu_backward_in_place(x: &[f32], grad: &mut [f32]) {
    assert_eq!(
        x.len(),
        grad.len(),
        "gelu backward: input and gradient sizes differ"
    );
    dispatch(Op::Backward(x, grad));
}

const A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_72,
    1.421_413_8,
    -1.453_152_1,
    1.061_405_4,
];
const P: f32 = 0.327_591_1;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2 pi)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

enum Op<'a> {
    Forward(&'a mut [f32]),
    Backward(&'a [f32], &'a mut [f32]),
}

impl Kernel for Op<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        match self {
            Op::Forward(x) => map_in_place(s, x, Forward),
            Op::Backward(x, grad) => zip_in_place(s, x, grad, Backward),
        }
    }
}

/// `(Phi(x), exp(-x^2 / 2))`: the normal CDF through `erf(x / sqrt 2)`, whose
/// `exp(-(x / sqrt 2)^2)` is the density's exponential too.
#[inline(always)]
fn cdf_and_gauss<S: Simd>(s: S, x: S::V) -> (S::V, S::V) {
    let z = s.mul(x, s.splat(FRAC_1_SQRT_2));
    let abs = s.abs(z);
    let t = s.div(s.splat(1.0), s.fmadd(s.splat(P), abs, s.splat(1.0)));
    let mut poly = s.splat(A[4]);
    for a in [A[3], A[2], A[1], A[0]] {
        poly = s.fmadd(poly, t, s.splat(a));
    }
    poly = s.mul(poly, t);
    let gauss = exp(s, s.sub(s.splat(0.0), s.mul(abs, abs)));
    let erf_abs = s.fnmadd(poly, gauss, s.splat(1.0));
    let erf = s.with_sign_of(erf_abs, z);
    (s.mul(s.splat(0.5), s.add(s.splat(1.0), erf)), gauss)
}

/// `gelu(x)`.
#[derive(Clone, Copy)]
struct Forward;

impl LaneMap for Forward {
    #[inline(always)]
    fn apply<S: Simd>(self, s: S, x: S::V) -> S::V {
        gelu_lanes(s, x)
    }
}

/// `gelu(x)` lane by lane.
#[inline(always)]
pub(crate) fn gelu_lanes<S: Simd>(s: S, x: S::V) -> S::V {
    s.mul(x, cdf_and_gauss(s, x).0)
}

/// `grad * gelu'(x)`, with `gelu'(x) = Phi(x) + x phi(x)`.
#[derive(Clone, Copy)]
struct Backward;

impl LaneZip for Backward {
    #[inline(always)]
    fn apply<S: Simd>(self, s: S, x: S::V, grad: S::V) -> S::V {
        let (cdf, gauss) = cdf_and_gauss(s, x);
        let density = s.mul(s.splat(FRAC_1_SQRT_2PI), gauss);
        s.mul(grad, s.fmadd(x, density, cdf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2))
    }

    fn exact_derivative(x: f64) -> f64 {
        0.5 * (1.0 + libm_erf(x / std::f64::consts::SQRT_2))
            + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }

    /// erf in f64 to ~1e-16 (Taylor series near 0, continued fraction far out).
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let (mut term, mut sum, x2) = (x, x, x * x);
            for n in 1..200 {
                term *= -x2 / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut frac = 0.0;
            for k in (1..120).rev() {
                frac = (k as f64 / 2.0) / (x.abs() + frac);
            }
            let erfc = (-x * x).exp() / std::f64::consts::PI.sqrt() / (x.abs() + frac);
            (1.0 - erfc).copysign(x)
        }
    }

    /// Both directions on owned buffers, to run on every instruction set.
    #[derive(Clone)]
    struct Both(Vec<f32>);

    impl Kernel for Both {
        type Output = (Vec<f32>, Vec<f32>);
        fn run<S: Simd>(self, s: S) -> (Vec<f32>, Vec<f32>) {
            let mut out = self.0.clone();
            Op::Forward(&mut out).run(s);
            let mut grad = vec![1.0f32; self.0.len()];
            Op::Backward(&self.0, &mut grad).run(s);
            (out, grad)
        }
    }

    #[test]
    fn gelu_and_its_gradient_match_the_exact_values_on_every_instruction_set() {
        // Whole vectors and a tail alike: 1203 values.
        let xs: Vec<f32> = (-601..=601).map(|i| i as f32 / 60.0).collect();
        for (fast, grad) in crate::simd::on_every_instruction_set(Both(xs.clone())) {
            for (i, &x) in xs.iter().enumerate() {
                let (g, d) = (exact_gelu(x as f64), exact_derivative(x as f64));
                assert!(
                    (fast[i] as f64 - g).abs() < 1e-6 * (1.0 + g.abs()),
                    "gelu({x}) = {} vs {g}",
                    fast[i]
                );
                assert!(
                    (grad[i] as f64 - d).abs() < 1e-6,
                    "gelu'({x}) = {} vs {d}",
                    grad[i]
                );
            }
        }
    }
}
