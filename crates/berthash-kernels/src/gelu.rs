//! GELU (the exact, erf form BERT uses) and its gradient over f32 slices, 8 lanes at a time with
//! AVX2 and FMA: the CPU backend's own GELU calls a scalar `erf` per element.
//!
//! `erf` is Abramowitz and Stegun's 7.1.26 (absolute error under 1.5e-7), built on the
//! vectorised `exp`.

/// `out[i] = gelu(x[i])`.
pub fn gelu(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "gelu: input and output sizes differ");
    #[cfg(target_arch = "x86_64")]
    if crate::exp::avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::gelu(x, out) };
    }
    out.iter_mut()
        .zip(x)
        .for_each(|(o, &x)| *o = scalar::gelu(x));
}

/// `grad[i] *= gelu'(x[i])`.
pub fn gelu_backward_in_place(x: &[f32], grad: &mut [f32]) {
    assert_eq!(
        x.len(),
        grad.len(),
        "gelu backward: input and gradient sizes differ"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::exp::avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::gelu_backward_in_place(x, grad) };
    }
    grad.iter_mut()
        .zip(x)
        .for_each(|(g, &x)| *g *= scalar::gelu_derivative(x));
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

mod scalar {
    use super::*;

    fn erf(x: f32) -> f32 {
        let t = 1.0 / (1.0 + P * x.abs());
        let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
        (1.0 - poly * (-x * x).exp()).copysign(x)
    }

    pub fn gelu(x: f32) -> f32 {
        0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))
    }

    /// `Phi(x) + x phi(x)`.
    pub fn gelu_derivative(x: f32) -> f32 {
        0.5 * (1.0 + erf(x * FRAC_1_SQRT_2)) + x * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
    }

    #[cfg(test)]
    pub(super) fn erf_for_tests(x: f32) -> f32 {
        erf(x)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::*;
    use crate::exp::avx2::{exp8, LANES};

    /// `(Phi(x), exp(-x^2 / 2))`: the normal CDF through `erf(x / sqrt 2)`, whose
    /// `exp(-(x / sqrt 2)^2)` is the density's exponential too.
    #[target_feature(enable = "avx2,fma")]
    fn cdf_and_gauss(x: __m256) -> (__m256, __m256) {
        let splat = _mm256_set1_ps;
        let z = _mm256_mul_ps(x, splat(FRAC_1_SQRT_2));
        let sign = _mm256_and_ps(z, splat(-0.0));
        let abs = _mm256_andnot_ps(splat(-0.0), z);
        let t = _mm256_div_ps(splat(1.0), _mm256_fmadd_ps(splat(P), abs, splat(1.0)));
        let mut poly = splat(A[4]);
        for a in [A[3], A[2], A[1], A[0]] {
            poly = _mm256_fmadd_ps(poly, t, splat(a));
        }
        poly = _mm256_mul_ps(poly, t);
        let gauss = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(abs, abs)));
        let erf_abs = _mm256_fnmadd_ps(poly, gauss, splat(1.0));
        let erf = _mm256_or_ps(erf_abs, sign);
        (
            _mm256_mul_ps(splat(0.5), _mm256_add_ps(splat(1.0), erf)),
            gauss,
        )
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn gelu(x: &[f32], out: &mut [f32]) {
        let mut outs = out.chunks_exact_mut(LANES);
        let inputs = x.chunks_exact(LANES);
        let tail = inputs.remainder();
        for (o, x) in (&mut outs).zip(inputs) {
            // SAFETY: every chunk holds 8 f32.
            unsafe {
                let xv = _mm256_loadu_ps(x.as_ptr());
                let (cdf, _) = cdf_and_gauss(xv);
                _mm256_storeu_ps(o.as_mut_ptr(), _mm256_mul_ps(xv, cdf));
            }
        }
        for (o, &x) in outs.into_remainder().iter_mut().zip(tail) {
            *o = scalar::gelu(x);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn gelu_backward_in_place(x: &[f32], grad: &mut [f32]) {
        let mut grads = grad.chunks_exact_mut(LANES);
        let inputs = x.chunks_exact(LANES);
        let tail = inputs.remainder();
        for (g, x) in (&mut grads).zip(inputs) {
            // SAFETY: every chunk holds 8 f32.
            unsafe {
                let xv = _mm256_loadu_ps(x.as_ptr());
                let (cdf, gauss) = cdf_and_gauss(xv);
                let density = _mm256_mul_ps(_mm256_set1_ps(FRAC_1_SQRT_2PI), gauss);
                let derivative = _mm256_fmadd_ps(xv, density, cdf);
                _mm256_storeu_ps(
                    g.as_mut_ptr(),
                    _mm256_mul_ps(_mm256_loadu_ps(g.as_ptr()), derivative),
                );
            }
        }
        for (g, &x) in grads.into_remainder().iter_mut().zip(tail) {
            *g *= scalar::gelu_derivative(x);
        }
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

    #[test]
    fn erf_is_within_its_bound() {
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            let err = (scalar::erf_for_tests(x) as f64 - libm_erf(x as f64)).abs();
            assert!(err < 3e-7, "erf({x}) off by {err}");
        }
    }

    #[test]
    fn gelu_and_its_gradient_match_the_exact_values_both_ways() {
        // 8-lane body and scalar tail alike: 1203 values.
        let xs: Vec<f32> = (-601..=601).map(|i| i as f32 / 60.0).collect();
        let mut fast = vec![0.0f32; xs.len()];
        gelu(&xs, &mut fast);
        let mut grad = vec![1.0f32; xs.len()];
        gelu_backward_in_place(&xs, &mut grad);
        for (i, &x) in xs.iter().enumerate() {
            let (g, d) = (exact_gelu(x as f64), exact_derivative(x as f64));
            assert!(
                (fast[i] as f64 - g).abs() < 1e-6 * (1.0 + g.abs()),
                "gelu({x}) = {} vs {g}",
                fast[i]
            );
            assert!(
                (scalar::gelu(x) as f64 - g).abs() < 1e-6 * (1.0 + g.abs()),
                "scalar gelu({x})"
            );
            assert!(
                (grad[i] as f64 - d).abs() < 1e-6,
                "gelu'({x}) = {} vs {d}",
                grad[i]
            );
            assert!(
                (scalar::gelu_derivative(x) as f64 - d).abs() < 1e-6,
                "scalar gelu'({x})"
            );
        }
    }
}
