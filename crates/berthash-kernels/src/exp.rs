//! Row loops around a vectorised `exp`: glibc's `expf` is scalar, and on 30522-wide rows it was
//! an eighth of the CPU training step. On x86-64 with AVX2 and FMA (picked at run time) the rows
//! go 8 lanes at a time; other CPUs run the plain scalar loops.

/// `ln(sum(exp(row)))`, shifted by the row's max for stability. NaN if any entry is NaN; the
/// max itself if it is infinite (all `-inf`: every probability is 0).
pub fn log_sum_exp(row: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::log_sum_exp(row) };
    }
    scalar::log_sum_exp(row)
}

/// `row[i] = exp(row[i] - shift) * scale`, in place: a softmax row times a gradient scale when
/// `shift` is the row's log-sum-exp.
pub fn exp_shifted_scaled(row: &mut [f32], shift: f32, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::exp_shifted_scaled(row, shift, scale) };
    }
    scalar::exp_shifted_scaled(row, shift, scale)
}

mod scalar {
    fn max(row: &[f32]) -> f32 {
        row.iter().fold(
            f32::NEG_INFINITY,
            |a, &b| if b > a || b.is_nan() { b } else { a },
        )
    }

    pub fn log_sum_exp(row: &[f32]) -> f32 {
        let max = max(row);
        if !max.is_finite() {
            return max;
        }
        row.iter().map(|&x| (x - max).exp()).sum::<f32>().ln() + max
    }

    pub fn exp_shifted_scaled(row: &mut [f32], shift: f32, scale: f32) {
        for x in row {
            *x = (*x - shift).exp() * scale;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    pub const LANES: usize = 8;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// `exp` on 8 lanes: Cephes' `expf` (range reduction by `ln 2`, degree-6 polynomial, 2^n
    /// built in the exponent bits), relative error about 2e-7. Below -87.3 gives 0 (the true
    /// value is under f32's normal range); NaN stays NaN.
    #[target_feature(enable = "avx2,fma")]
    pub fn exp8(x: __m256) -> __m256 {
        let splat = _mm256_set1_ps;
        // `max`/`min` return their second operand when either is NaN: keep `x` second.
        let clamped = _mm256_min_ps(splat(88.7), _mm256_max_ps(splat(-87.3), x));
        let n = _mm256_floor_ps(_mm256_fmadd_ps(
            clamped,
            splat(std::f32::consts::LOG2_E),
            splat(0.5),
        ));
        let r = _mm256_fnmadd_ps(n, splat(0.693_359_4), clamped);
        let r = _mm256_fnmadd_ps(n, splat(-2.121_944_4e-4), r);
        let mut p = splat(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            p = _mm256_fmadd_ps(p, r, splat(c));
        }
        let e = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, splat(1.0)));
        let biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased));
        let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, splat(-87.3));
        _mm256_andnot_ps(underflow, _mm256_mul_ps(e, pow2))
    }

    fn sum8(v: __m256) -> f32 {
        let mut lanes = [0.0f32; LANES];
        // SAFETY: `lanes` holds 8 f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.iter().sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn log_sum_exp(row: &[f32]) -> f32 {
        let chunks = row.chunks_exact(LANES);
        let tail = chunks.remainder();
        let load = |chunk: &[f32]| {
            // SAFETY: every chunk holds 8 f32.
            unsafe { _mm256_loadu_ps(chunk.as_ptr()) }
        };
        let mut max = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut nan = _mm256_setzero_ps();
        for chunk in chunks.clone() {
            let v = load(chunk);
            max = _mm256_max_ps(max, v);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        }
        if _mm256_movemask_ps(nan) != 0 || tail.iter().any(|x| x.is_nan()) {
            return f32::NAN;
        }
        let mut lanes = [0.0f32; LANES];
        // SAFETY: `lanes` holds 8 f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), max) };
        let max = lanes
            .iter()
            .chain(tail)
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        if !max.is_finite() {
            return max;
        }
        let shift = _mm256_set1_ps(max);
        let mut sum = _mm256_setzero_ps();
        for chunk in chunks {
            sum = _mm256_add_ps(sum, exp8(_mm256_sub_ps(load(chunk), shift)));
        }
        let tail_sum: f32 = tail.iter().map(|&x| (x - max).exp()).sum();
        (sum8(sum) + tail_sum).ln() + max
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn exp_shifted_scaled(row: &mut [f32], shift: f32, scale: f32) {
        let (shift8, scale8) = (_mm256_set1_ps(shift), _mm256_set1_ps(scale));
        let mut chunks = row.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            // SAFETY: every chunk holds 8 f32.
            unsafe {
                let v = _mm256_loadu_ps(chunk.as_ptr());
                let out = _mm256_mul_ps(exp8(_mm256_sub_ps(v, shift8)), scale8);
                _mm256_storeu_ps(chunk.as_mut_ptr(), out);
            }
        }
        for x in chunks.into_remainder() {
            *x = (*x - shift).exp() * scale;
        }
    }

    #[cfg(test)]
    #[test]
    fn exp8_matches_std_across_the_range() {
        if !available() {
            return;
        }
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let mut out = [0.0f32; LANES];
            // SAFETY: AVX2 and FMA are available; `out` holds 8 f32.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp8(_mm256_set1_ps(x))) };
            let exact = (x as f64).exp();
            worst = worst.max(((out[0] as f64 - exact) / exact).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        let specials = [
            -100.0,
            f32::NEG_INFINITY,
            0.0,
            f32::NAN,
            1.0,
            -1.0,
            2.0,
            3.0,
        ];
        let mut out = [0.0f32; LANES];
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp8(_mm256_loadu_ps(specials.as_ptr()))) };
        assert_eq!(&out[..3], &[0.0, 0.0, 1.0]);
        assert!(out[3].is_nan());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_log_sum_exp(row: &[f32]) -> f64 {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        row.iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max
    }

    #[test]
    fn log_sum_exp_matches_the_exact_value_both_ways() {
        for len in [1usize, 7, 8, 9, 61, 30522] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0)
                .collect();
            let expected = exact_log_sum_exp(&row);
            for got in [log_sum_exp(&row), scalar::log_sum_exp(&row)] {
                let got = got as f64;
                assert!(
                    (got - expected).abs() < 1e-5 * expected.abs().max(1.0),
                    "{len}: {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn log_sum_exp_special_values() {
        for row in [vec![f32::NEG_INFINITY; 3], vec![f32::NEG_INFINITY; 11]] {
            assert_eq!(log_sum_exp(&row), f32::NEG_INFINITY);
        }
        let mut with_nan = vec![1.0f32; 20];
        for at in [0, 9, 19] {
            with_nan[at] = f32::NAN;
            assert!(log_sum_exp(&with_nan).is_nan(), "NaN at {at}");
            assert!(scalar::log_sum_exp(&with_nan).is_nan(), "NaN at {at}");
            with_nan[at] = 1.0;
        }
    }

    #[test]
    fn exp_shifted_scaled_is_a_scaled_softmax() {
        for len in [3usize, 8, 21] {
            let row: Vec<f32> = (0..len).map(|i| i as f32 * 0.3 - 2.0).collect();
            let lse = log_sum_exp(&row);
            let (mut fast, mut plain) = (row.clone(), row.clone());
            exp_shifted_scaled(&mut fast, lse, 2.0);
            scalar::exp_shifted_scaled(&mut plain, lse, 2.0);
            let total: f32 = fast.iter().sum();
            assert!((total - 2.0).abs() < 1e-5, "{total}");
            for (a, b) in fast.iter().zip(&plain) {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} vs {b}");
            }
        }
    }
}
