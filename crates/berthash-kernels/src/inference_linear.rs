//! Linear layers at inference on the CPU: `x W + b` written into a fresh buffer (no zeroing, no
//! copy), block of rows by block of rows, and each block's bias, then GELU or a residual, added
//! while the block is still in cache. Burn's linear zeroes its output, copies it once more to
//! align it, and adds the bias, like each following element-wise op, in a pass of its own over
//! the whole tensor.

use rayon::prelude::*;

use crate::cpu_gemm::{matmul, Out};
use crate::gelu::gelu_lanes;
use crate::simd::{dispatch, Kernel, Scalar, Simd};

/// What is applied to `x W + b`, row by row.
#[derive(Clone, Copy)]
pub enum Then<'a> {
    Nothing,
    /// GELU (erf form).
    Gelu,
    /// `+ residual`, `[rows, out]` like the output.
    Add(&'a [f32]),
}

/// `then(x W + bias)` for `x` `[rows, inputs]`, `weight` `[inputs, outputs]` and `bias`
/// `[outputs]`, all row-major; returns `[rows, outputs]`.
pub fn linear(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    [rows, inputs, outputs]: [usize; 3],
    then: Then,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * inputs, "linear: x must be [rows, inputs]");
    assert_eq!(
        weight.len(),
        inputs * outputs,
        "linear: weight must be [inputs, outputs]"
    );
    assert!(
        bias.is_none_or(|b| b.len() == outputs),
        "linear: bias must be [outputs]"
    );
    if let Then::Add(residual) = then {
        assert_eq!(
            residual.len(),
            rows * outputs,
            "linear: residual must be [rows, outputs]"
        );
    }
    let len = rows * outputs;
    // Written, never read, by the gemm call of each block before its epilogue: no zeroing first.
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = Out(out.as_mut_ptr());
    // Four blocks per thread balance the load; 8 to 256 rows keep gemm efficient and a block's
    // output in cache.
    let tasks = rayon::current_num_threads() * 4;
    let block = rows.div_ceil(tasks).clamp(8, 256);
    (0..rows.div_ceil(block)).into_par_iter().for_each(|b| {
        let first = b * block;
        let n = block.min(rows - first);
        // SAFETY: rows `first .. first + n` of `x` and of the output lie inside their buffers
        // (checked above), the weight is `inputs x outputs`, and no other block touches these
        // output rows. The slice is made after gemm has written every element of it.
        let rows_out = unsafe {
            let start = dst.get().add(first * outputs);
            matmul(
                [n, outputs, inputs],
                (start, 1, outputs as isize),
                (x.as_ptr().add(first * inputs), 1, inputs as isize),
                (weight.as_ptr(), 1, outputs as isize),
            );
            std::slice::from_raw_parts_mut(start, n * outputs)
        };
        let residual = match then {
            Then::Add(r) => Some(&r[first * outputs..(first + n) * outputs]),
            _ => None,
        };
        dispatch(Epilogue {
            rows: rows_out,
            width: outputs,
            bias,
            gelu: matches!(then, Then::Gelu),
            residual,
        });
    });
    // SAFETY: the blocks cover all `len` elements, each written above.
    unsafe { out.set_len(len) };
    out
}

/// `row = then(row + bias)` for each row of a block.
struct Epilogue<'a> {
    rows: &'a mut [f32],
    width: usize,
    bias: Option<&'a [f32]>,
    gelu: bool,
    residual: Option<&'a [f32]>,
}

impl Kernel for Epilogue<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        for (r, row) in self.rows.chunks_exact_mut(self.width).enumerate() {
            let residual = self
                .residual
                .map(|res| &res[r * self.width..][..self.width]);
            let body = self.width / S::LANES * S::LANES;
            let mut j = 0;
            while j < body {
                let v = lane(s, row, self.bias, residual, self.gelu, j);
                s.store(&mut row[j..], v);
                j += S::LANES;
            }
            for j in body..self.width {
                row[j] = lane(Scalar, row, self.bias, residual, self.gelu, j);
            }
        }
    }
}

/// The epilogue of the `S::LANES` values of `row` from `j`.
#[inline(always)]
fn lane<S: Simd>(
    s: S,
    row: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    gelu: bool,
    j: usize,
) -> S::V {
    let mut v = s.load(&row[j..]);
    if let Some(bias) = bias {
        v = s.add(v, s.load(&bias[j..]));
    }
    if gelu {
        v = gelu_lanes(s, v);
    }
    if let Some(residual) = residual {
        v = s.add(v, s.load(&residual[j..]));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], b: &[f32], [rows, inputs, outputs]: [usize; 3]) -> Vec<f64> {
        let mut out = vec![0.0f64; rows * outputs];
        for r in 0..rows {
            for o in 0..outputs {
                out[r * outputs + o] = b[o] as f64
                    + (0..inputs)
                        .map(|i| x[r * inputs + i] as f64 * w[i * outputs + o] as f64)
                        .sum::<f64>();
            }
        }
        out
    }

    fn gelu(x: f64) -> f64 {
        // The row kernel, tested against the exact values in gelu.rs.
        let mut v = [x as f32];
        crate::gelu::gelu_in_place(&mut v);
        v[0] as f64
    }

    #[test]
    fn matches_the_plain_product_with_each_epilogue() {
        // Odd sizes: partial vectors, and blocks of unequal length.
        for [rows, inputs, outputs] in [[37, 13, 21], [128, 64, 256], [1, 7, 3]] {
            let x: Vec<f32> = (0..rows * inputs)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
                .collect();
            let w: Vec<f32> = (0..inputs * outputs)
                .map(|i| ((i * 17 % 89) as f32 - 44.0) / 60.0)
                .collect();
            let b: Vec<f32> = (0..outputs).map(|i| i as f32 / 10.0 - 1.0).collect();
            let res: Vec<f32> = (0..rows * outputs).map(|i| (i % 7) as f32 - 3.0).collect();
            let shape = [rows, inputs, outputs];
            let want = reference(&x, &w, &b, shape);
            let plain = linear(&x, &w, Some(&b), shape, Then::Nothing);
            let gelu_out = linear(&x, &w, Some(&b), shape, Then::Gelu);
            let added = linear(&x, &w, Some(&b), shape, Then::Add(&res));
            let no_bias = linear(&x, &w, None, shape, Then::Nothing);
            for i in 0..rows * outputs {
                let tol = 1e-5 * (1.0 + want[i].abs());
                assert!((plain[i] as f64 - want[i]).abs() < tol, "{shape:?} {i}");
                assert!(
                    (gelu_out[i] as f64 - gelu(want[i])).abs() < 2e-5 * (1.0 + want[i].abs()),
                    "{shape:?} {i}"
                );
                assert!(
                    (added[i] as f64 - want[i] - res[i] as f64).abs() < tol,
                    "{shape:?} {i}"
                );
                let b_i = b[i % outputs] as f64;
                assert!(
                    (no_bias[i] as f64 - (want[i] - b_i)).abs() < tol,
                    "{shape:?} {i}"
                );
            }
        }
    }
}
