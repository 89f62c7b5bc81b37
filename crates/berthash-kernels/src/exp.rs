//! Row loops around a vectorised `exp` ([`crate::simd::exp`]): glibc's `expf` is scalar, and on
//! 30522-wide rows it was an eighth of the CPU training step. The rows go 16 lanes at a time with
//! AVX-512, 8 with AVX2 and FMA, one on other CPUs.

use crate::simd::{dispatch, exp, map_in_place, Kernel, LaneMap, Scalar, Simd};

/// `ln(sum(exp(row)))`, shifted by the row's max for stability. NaN if any entry is NaN; the
/// max itself if it is infinite (all `-inf`: every probability is 0).
pub fn log_sum_exp(row: &[f32]) -> f32 {
    dispatch(RowOp::LogSumExp(row))
}

/// `row[i] = exp(row[i] - shift) * scale`, in place: a softmax row times a gradient scale when
/// `shift` is the row's log-sum-exp.
pub fn exp_shifted_scaled(row: &mut [f32], shift: f32, scale: f32) {
    dispatch(RowOp::ExpShiftedScaled(row, shift, scale));
}

/// `row = softmax(row)` in place, one `exp` per entry. NaN everywhere if any entry is NaN.
pub fn softmax_in_place(row: &mut [f32]) {
    dispatch(RowOp::Softmax(row));
}

/// The row operations, as one kernel for [`dispatch`].
enum RowOp<'a> {
    LogSumExp(&'a [f32]),
    ExpShiftedScaled(&'a mut [f32], f32, f32),
    Softmax(&'a mut [f32]),
}

impl Kernel for RowOp<'_> {
    /// The log-sum-exp; 0 for the in-place operations.
    type Output = f32;

    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> f32 {
        match self {
            RowOp::LogSumExp(row) => match max_or_nan(s, row) {
                None => f32::NAN,
                Some(max) if !max.is_finite() => max,
                Some(max) => exp_shifted_sum(s, row, max).ln() + max,
            },
            RowOp::ExpShiftedScaled(row, shift, scale) => {
                map_in_place(s, row, ExpShiftedScaled(shift, scale));
                0.0
            }
            RowOp::Softmax(row) => {
                let Some(max) = max_or_nan(s, row) else {
                    row.fill(f32::NAN);
                    return 0.0;
                };
                let body = row.len() / S::LANES * S::LANES;
                let (head, tail) = row.split_at_mut(body);
                let mut sum = s.splat(0.0);
                for chunk in head.chunks_exact_mut(S::LANES) {
                    let e = exp(s, s.sub(s.load(chunk), s.splat(max)));
                    sum = s.add(sum, e);
                    s.store(chunk, e);
                }
                let mut total = s.sum(sum);
                for x in tail {
                    *x = exp(Scalar, *x - max);
                    total += *x;
                }
                map_in_place(s, row, Scale(1.0 / total));
                0.0
            }
        }
    }
}

/// `exp(x - shift) * scale`.
#[derive(Clone, Copy)]
struct ExpShiftedScaled(f32, f32);

impl LaneMap for ExpShiftedScaled {
    #[inline(always)]
    fn apply<S: Simd>(self, s: S, x: S::V) -> S::V {
        s.mul(exp(s, s.sub(x, s.splat(self.0))), s.splat(self.1))
    }
}

/// `x * scale`.
#[derive(Clone, Copy)]
struct Scale(f32);

impl LaneMap for Scale {
    #[inline(always)]
    fn apply<S: Simd>(self, s: S, x: S::V) -> S::V {
        s.mul(x, s.splat(self.0))
    }
}

/// The row's max, `None` if an entry is NaN.
#[inline(always)]
fn max_or_nan<S: Simd>(s: S, row: &[f32]) -> Option<f32> {
    let body = row.len() / S::LANES * S::LANES;
    let (head, tail) = row.split_at(body);
    let mut max = s.splat(f32::NEG_INFINITY);
    let mut nan = false;
    for chunk in head.chunks_exact(S::LANES) {
        let v = s.load(chunk);
        nan |= s.any_nan(v);
        max = s.max(max, v);
    }
    if nan || tail.iter().any(|x| x.is_nan()) {
        return None;
    }
    Some(tail.iter().fold(s.max_lane(max), |a, &b| a.max(b)))
}

/// `sum(exp(row - shift))`.
#[inline(always)]
fn exp_shifted_sum<S: Simd>(s: S, row: &[f32], shift: f32) -> f32 {
    let body = row.len() / S::LANES * S::LANES;
    let (head, tail) = row.split_at(body);
    let mut sum = s.splat(0.0);
    for chunk in head.chunks_exact(S::LANES) {
        sum = s.add(sum, exp(s, s.sub(s.load(chunk), s.splat(shift))));
    }
    s.sum(sum) + tail.iter().map(|&x| exp(Scalar, x - shift)).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::on_every_instruction_set;

    /// One operation on an owned row, to run on every instruction set.
    #[derive(Clone)]
    enum Owned {
        LogSumExp(Vec<f32>),
        ExpShiftedScaled(Vec<f32>, f32, f32),
        Softmax(Vec<f32>),
    }

    impl Kernel for Owned {
        type Output = (f32, Vec<f32>);
        fn run<S: Simd>(self, s: S) -> (f32, Vec<f32>) {
            match self {
                Owned::LogSumExp(row) => (RowOp::LogSumExp(&row).run(s), row),
                Owned::ExpShiftedScaled(mut row, shift, scale) => {
                    RowOp::ExpShiftedScaled(&mut row, shift, scale).run(s);
                    (0.0, row)
                }
                Owned::Softmax(mut row) => {
                    RowOp::Softmax(&mut row).run(s);
                    (0.0, row)
                }
            }
        }
    }

    fn exact_log_sum_exp(row: &[f32]) -> f64 {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        row.iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max
    }

    #[test]
    fn log_sum_exp_matches_the_exact_value_on_every_instruction_set() {
        for len in [1usize, 7, 8, 9, 17, 61, 30522] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0)
                .collect();
            let expected = exact_log_sum_exp(&row);
            for (got, _) in on_every_instruction_set(Owned::LogSumExp(row)) {
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
        for row in [vec![f32::NEG_INFINITY; 3], vec![f32::NEG_INFINITY; 37]] {
            for (got, _) in on_every_instruction_set(Owned::LogSumExp(row)) {
                assert_eq!(got, f32::NEG_INFINITY);
            }
        }
        let mut with_nan = vec![1.0f32; 40];
        for at in [0, 9, 19, 39] {
            with_nan[at] = f32::NAN;
            for (got, _) in on_every_instruction_set(Owned::LogSumExp(with_nan.clone())) {
                assert!(got.is_nan(), "NaN at {at}");
            }
            for (_, row) in on_every_instruction_set(Owned::Softmax(with_nan.clone())) {
                assert!(row.iter().all(|x| x.is_nan()), "NaN at {at}");
            }
            with_nan[at] = 1.0;
        }
    }

    #[test]
    fn softmax_and_exp_shifted_scaled_agree_with_the_exact_softmax() {
        for len in [3usize, 8, 21, 128, 131] {
            let row: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 6.0).collect();
            let lse = exact_log_sum_exp(&row);
            let exact: Vec<f64> = row.iter().map(|&x| (x as f64 - lse).exp()).collect();
            let scaled =
                on_every_instruction_set(Owned::ExpShiftedScaled(row.clone(), lse as f32, 2.0));
            let softmax = on_every_instruction_set(Owned::Softmax(row.clone()));
            for ((_, scaled), (_, softmax)) in scaled.iter().zip(&softmax) {
                for i in 0..len {
                    let tolerance = 1e-6 * exact[i].max(1e-3);
                    assert!(
                        (scaled[i] as f64 - 2.0 * exact[i]).abs() <= 2.0 * tolerance,
                        "{len}, {i}"
                    );
                    assert!(
                        (softmax[i] as f64 - exact[i]).abs() <= tolerance,
                        "{len}, {i}"
                    );
                }
            }
        }
    }
}
