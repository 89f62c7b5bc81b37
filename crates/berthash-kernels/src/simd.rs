//! The vector operations of the CPU row kernels, for AVX-512F (16 lanes), AVX2 with FMA (8 lanes)
//! and plain scalar code (1 lane), picked at run time: each kernel is written once, generic over
//! [`Simd`], and [`dispatch`] compiles it for every instruction set inside a `#[target_feature]`
//! function. Written here rather than taken from `pulp` (which gemm uses) because the
//! vectorised `exp` needs a floor and the exponent-bit arithmetic that `pulp::Simd` lacks.

/// One instruction set: a zero-sized token that exists only where the CPU has it, so its
/// operations are safe to call.
pub(crate) trait Simd: Copy {
    type V: Copy;
    const LANES: usize;
    fn splat(self, x: f32) -> Self::V;
    /// The first `LANES` values of `x`.
    fn load(self, x: &[f32]) -> Self::V;
    /// Into the first `LANES` values of `out`.
    fn store(self, out: &mut [f32], v: Self::V);
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// Correctly rounded, as `f32::sqrt`.
    fn sqrt(self, a: Self::V) -> Self::V;
    /// `a * b + c`.
    fn fmadd(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `c - a * b`.
    fn fnmadd(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// The smaller of the two; `b` where either is NaN.
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    /// The larger of the two; `b` where either is NaN.
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    fn floor(self, a: Self::V) -> Self::V;
    /// `2^n` for whole numbers `n` in `[-126, 128]`.
    fn pow2(self, n: Self::V) -> Self::V;
    /// `v`, with 0 where `x < limit`.
    fn zero_below(self, v: Self::V, x: Self::V, limit: f32) -> Self::V;
    fn any_nan(self, v: Self::V) -> bool;
    fn abs(self, v: Self::V) -> Self::V;
    /// `v` with the sign bit of `sign` set where `sign` has it (`v` must be non-negative).
    fn with_sign_of(self, v: Self::V, sign: Self::V) -> Self::V;
    fn sum(self, v: Self::V) -> f32;
    /// The largest lane (NaN lanes are not expected).
    fn max_lane(self, v: Self::V) -> f32;
}

/// A kernel generic over the instruction set; [`dispatch`] runs it on the best one there is.
pub(crate) trait Kernel {
    type Output;
    fn run<S: Simd>(self, s: S) -> Self::Output;
}

/// Runs `kernel` with AVX-512F, else AVX2 and FMA, else scalar code.
pub(crate) fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(s) = x86::Avx512::detect() {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { x86::run_avx512(s, kernel) };
        }
        if let Some(s) = x86::Avx2::detect() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { x86::run_avx2(s, kernel) };
        }
    }
    kernel.run(Scalar)
}

/// An operation lane by lane, for any instruction set.
pub(crate) trait LaneMap: Copy {
    fn apply<S: Simd>(self, s: S, x: S::V) -> S::V;
}

/// `row[i] = m(row[i])`: whole vectors, then the tail on [`Scalar`].
#[inline(always)]
pub(crate) fn map_in_place<S: Simd, M: LaneMap>(s: S, row: &mut [f32], m: M) {
    let body = row.len() / S::LANES * S::LANES;
    let (head, tail) = row.split_at_mut(body);
    for chunk in head.chunks_exact_mut(S::LANES) {
        let v = m.apply(s, s.load(chunk));
        s.store(chunk, v);
    }
    for x in tail {
        *x = m.apply(Scalar, *x);
    }
}

/// An operation on two inputs lane by lane, for any instruction set.
pub(crate) trait LaneZip: Copy {
    fn apply<S: Simd>(self, s: S, x: S::V, y: S::V) -> S::V;
}

/// `y[i] = m(x[i], y[i])`: whole vectors, then the tail on [`Scalar`].
#[inline(always)]
pub(crate) fn zip_in_place<S: Simd, M: LaneZip>(s: S, x: &[f32], y: &mut [f32], m: M) {
    assert_eq!(x.len(), y.len(), "element-wise operands differ in length");
    let body = y.len() / S::LANES * S::LANES;
    let (head, tail) = y.split_at_mut(body);
    for (yc, xc) in head
        .chunks_exact_mut(S::LANES)
        .zip(x.chunks_exact(S::LANES))
    {
        let v = m.apply(s, s.load(xc), s.load(yc));
        s.store(yc, v);
    }
    for (y, &x) in tail.iter_mut().zip(&x[body..]) {
        *y = m.apply(Scalar, x, *y);
    }
}

/// Runs `kernel` on every instruction set this CPU has (tests compare them).
#[cfg(test)]
pub(crate) fn on_every_instruction_set<K: Kernel + Clone>(kernel: K) -> Vec<K::Output> {
    let mut out = vec![kernel.clone().run(Scalar)];
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(s) = x86::Avx2::detect() {
            // SAFETY: the CPU has AVX2 and FMA.
            out.push(unsafe { x86::run_avx2(s, kernel.clone()) });
        }
        if let Some(s) = x86::Avx512::detect() {
            // SAFETY: the CPU has AVX-512F.
            out.push(unsafe { x86::run_avx512(s, kernel) });
        }
    }
    out
}

/// `exp` lane by lane: Cephes' `expf` (range reduction by `ln 2`, degree-6 polynomial, `2^n`
/// built in the exponent bits), relative error about 2e-7. Below -87.3 gives 0 (the true value is
/// under f32's normal range); NaN stays NaN.
#[inline(always)]
pub(crate) fn exp<S: Simd>(s: S, x: S::V) -> S::V {
    // `max`/`min` return their second operand when either is NaN: keep `x` second.
    let clamped = s.min(s.splat(88.7), s.max(s.splat(-87.3), x));
    let n = s.floor(s.fmadd(clamped, s.splat(std::f32::consts::LOG2_E), s.splat(0.5)));
    let r = s.fnmadd(n, s.splat(0.693_359_4), clamped);
    let r = s.fnmadd(n, s.splat(-2.121_944_4e-4), r);
    let mut p = s.splat(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = s.fmadd(p, r, s.splat(c));
    }
    let e = s.fmadd(p, s.mul(r, r), s.add(r, s.splat(1.0)));
    s.zero_below(s.mul(e, s.pow2(n)), x, -87.3)
}

/// One lane: the fallback, and the tails of rows that are not a whole number of vectors.
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

impl Simd for Scalar {
    type V = f32;
    const LANES: usize = 1;
    #[inline(always)]
    fn splat(self, x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn load(self, x: &[f32]) -> f32 {
        x[0]
    }
    #[inline(always)]
    fn store(self, out: &mut [f32], v: f32) {
        out[0] = v;
    }
    #[inline(always)]
    fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn sub(self, a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    fn mul(self, a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    fn div(self, a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    fn sqrt(self, a: f32) -> f32 {
        a.sqrt()
    }
    #[inline(always)]
    fn fmadd(self, a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn fnmadd(self, a: f32, b: f32, c: f32) -> f32 {
        (-a).mul_add(b, c)
    }
    #[inline(always)]
    fn min(self, a: f32, b: f32) -> f32 {
        if a < b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn max(self, a: f32, b: f32) -> f32 {
        if a > b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn floor(self, a: f32) -> f32 {
        a.floor()
    }
    #[inline(always)]
    fn pow2(self, n: f32) -> f32 {
        f32::from_bits(((n as i32 + 127) as u32) << 23)
    }
    #[inline(always)]
    fn zero_below(self, v: f32, x: f32, limit: f32) -> f32 {
        if x < limit {
            0.0
        } else {
            v
        }
    }
    #[inline(always)]
    fn any_nan(self, v: f32) -> bool {
        v.is_nan()
    }
    #[inline(always)]
    fn abs(self, v: f32) -> f32 {
        v.abs()
    }
    #[inline(always)]
    fn with_sign_of(self, v: f32, sign: f32) -> f32 {
        f32::from_bits(v.to_bits() | (sign.to_bits() & 0x8000_0000))
    }
    #[inline(always)]
    fn sum(self, v: f32) -> f32 {
        v
    }
    #[inline(always)]
    fn max_lane(self, v: f32) -> f32 {
        v
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Kernel, Simd};

    #[target_feature(enable = "avx512f")]
    pub(super) fn run_avx512<K: Kernel>(s: Avx512, kernel: K) -> K::Output {
        kernel.run(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn run_avx2<K: Kernel>(s: Avx2, kernel: K) -> K::Output {
        kernel.run(s)
    }

    /// AVX-512F, 16 lanes.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(());

    impl Avx512 {
        pub(crate) fn detect() -> Option<Self> {
            is_x86_feature_detected!("avx512f").then_some(Avx512(()))
        }
    }

    // SAFETY (every `unsafe` block of this impl): an `Avx512` exists only where the CPU has
    // AVX-512F, and loads and stores are bounds-checked by slicing first.
    impl Simd for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        #[inline(always)]
        fn splat(self, x: f32) -> __m512 {
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        fn load(self, x: &[f32]) -> __m512 {
            unsafe { _mm512_loadu_ps(x[..16].as_ptr()) }
        }
        #[inline(always)]
        fn store(self, out: &mut [f32], v: __m512) {
            unsafe { _mm512_storeu_ps(out[..16].as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn add(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn sqrt(self, a: __m512) -> __m512 {
            unsafe { _mm512_sqrt_ps(a) }
        }
        #[inline(always)]
        fn div(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_div_ps(a, b) }
        }
        #[inline(always)]
        fn fmadd(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn fnmadd(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fnmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn min(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_min_ps(a, b) }
        }
        #[inline(always)]
        fn max(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        fn floor(self, a: __m512) -> __m512 {
            unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        fn pow2(self, n: __m512) -> __m512 {
            unsafe {
                let biased = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
                _mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased))
            }
        }
        #[inline(always)]
        fn zero_below(self, v: __m512, x: __m512, limit: f32) -> __m512 {
            unsafe {
                let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(limit));
                _mm512_maskz_mov_ps(!below, v)
            }
        }
        #[inline(always)]
        fn any_nan(self, v: __m512) -> bool {
            unsafe { _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v) != 0 }
        }
        #[inline(always)]
        fn abs(self, v: __m512) -> __m512 {
            unsafe { _mm512_abs_ps(v) }
        }
        #[inline(always)]
        fn with_sign_of(self, v: __m512, sign: __m512) -> __m512 {
            unsafe {
                let bit = _mm512_and_si512(_mm512_castps_si512(sign), _mm512_set1_epi32(i32::MIN));
                _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), bit))
            }
        }
        #[inline(always)]
        fn sum(self, v: __m512) -> f32 {
            let mut lanes = [0.0f32; 16];
            self.store(&mut lanes, v);
            lanes.iter().sum()
        }
        #[inline(always)]
        fn max_lane(self, v: __m512) -> f32 {
            let mut lanes = [0.0f32; 16];
            self.store(&mut lanes, v);
            lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
        }
    }

    /// AVX2 with FMA, 8 lanes.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(());

    impl Avx2 {
        pub(crate) fn detect() -> Option<Self> {
            (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
                .then_some(Avx2(()))
        }
    }

    // SAFETY (every `unsafe` block of this impl): an `Avx2` exists only where the CPU has AVX2
    // and FMA, and loads and stores are bounds-checked by slicing first.
    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        fn splat(self, x: f32) -> __m256 {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        fn load(self, x: &[f32]) -> __m256 {
            unsafe { _mm256_loadu_ps(x[..8].as_ptr()) }
        }
        #[inline(always)]
        fn store(self, out: &mut [f32], v: __m256) {
            unsafe { _mm256_storeu_ps(out[..8].as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn add(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn sqrt(self, a: __m256) -> __m256 {
            unsafe { _mm256_sqrt_ps(a) }
        }
        #[inline(always)]
        fn div(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline(always)]
        fn fmadd(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn fnmadd(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fnmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn min(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_min_ps(a, b) }
        }
        #[inline(always)]
        fn max(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        fn floor(self, a: __m256) -> __m256 {
            unsafe { _mm256_floor_ps(a) }
        }
        #[inline(always)]
        fn pow2(self, n: __m256) -> __m256 {
            unsafe {
                let biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
                _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased))
            }
        }
        #[inline(always)]
        fn zero_below(self, v: __m256, x: __m256, limit: f32) -> __m256 {
            unsafe {
                let below = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(limit));
                _mm256_andnot_ps(below, v)
            }
        }
        #[inline(always)]
        fn any_nan(self, v: __m256) -> bool {
            unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v)) != 0 }
        }
        #[inline(always)]
        fn abs(self, v: __m256) -> __m256 {
            unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), v) }
        }
        #[inline(always)]
        fn with_sign_of(self, v: __m256, sign: __m256) -> __m256 {
            unsafe { _mm256_or_ps(v, _mm256_and_ps(sign, _mm256_set1_ps(-0.0))) }
        }
        #[inline(always)]
        fn sum(self, v: __m256) -> f32 {
            let mut lanes = [0.0f32; 8];
            self.store(&mut lanes, v);
            lanes.iter().sum()
        }
        #[inline(always)]
        fn max_lane(self, v: __m256) -> f32 {
            let mut lanes = [0.0f32; 8];
            self.store(&mut lanes, v);
            lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp` on every instruction set this CPU has, against the exact value.
    #[test]
    fn exp_matches_std_across_the_range_on_every_instruction_set() {
        #[derive(Clone)]
        struct Check;
        impl Kernel for Check {
            type Output = ();
            fn run<S: Simd>(self, s: S) {
                let mut worst = 0.0f64;
                let mut out = vec![0.0f32; S::LANES];
                let mut x = -87.0f32;
                while x < 88.0 {
                    s.store(&mut out, exp(s, s.splat(x)));
                    let exact = (x as f64).exp();
                    worst = worst.max(((out[0] as f64 - exact) / exact).abs());
                    x += 0.0137;
                }
                assert!(
                    worst < 5e-7,
                    "{} lanes: worst relative error {worst}",
                    S::LANES
                );
                for (x, want) in [(-100.0, 0.0), (f32::NEG_INFINITY, 0.0), (0.0, 1.0)] {
                    s.store(&mut out, exp(s, s.splat(x)));
                    assert_eq!(out[0], want, "exp({x})");
                }
                s.store(&mut out, exp(s, s.splat(f32::NAN)));
                assert!(out[0].is_nan());
            }
        }
        on_every_instruction_set(Check);
    }
}
