//! Dense (linear) layers on the CPU, forward and backward, each product one gemm call per block
//! written straight into a fresh buffer: no zeroing, no copy, no transposed copy of an operand.
//!
//! The forward writes `x W + b` block of rows by block of rows and adds each block's bias, then
//! GELU or a residual, while the block is still in cache. Burn's linear zeroes its output, copies
//! it once more to align it, and adds the bias, like each following element-wise op, in a pass
//! of its own over the whole tensor; its gradients are the same zeroed and copied products.

use rayon::prelude::*;

use crate::cpu_gemm::{matmul, Out, Threads};
use crate::gelu::gelu_lanes;
use crate::simd::{dispatch, zip_in_place, Kernel, LaneZip, Scalar, Simd};

/// The largest weight each block of rows packs for itself (a core's L2 cache); a larger one is
/// packed once, by one product on all threads.
const PACKED_PER_BLOCK: usize = 1 << 20;

/// What is applied to `x W + b`, row by row.
#[derive(Clone, Copy)]
pub enum Then<'a> {
    Nothing,
    /// GELU (erf form).
    Gelu,
    /// `+ residual`, `[rows, out]` like the output.
    Add(&'a [f32]),
}

/// A weight `[inputs, outputs]`, as stored.
#[derive(Clone, Copy)]
pub enum Weight<'a> {
    /// Row-major `[inputs, outputs]` (a layer's weight, for its forward).
    Rows(&'a [f32]),
    /// The transpose of a row-major `[outputs, inputs]` matrix (a layer's weight, for the
    /// gradient of its input).
    Transposed(&'a [f32]),
}

impl<'a> Weight<'a> {
    fn values(self) -> &'a [f32] {
        match self {
            Weight::Rows(w) | Weight::Transposed(w) => w,
        }
    }

    /// The pointer, column and row strides of `[inputs, outputs]`.
    fn view(self, inputs: usize, outputs: usize) -> (*const f32, isize, isize) {
        match self {
            Weight::Rows(w) => (w.as_ptr(), 1, outputs as isize),
            Weight::Transposed(w) => (w.as_ptr(), inputs as isize, 1),
        }
    }
}

/// `then(x W + bias)` for `x` `[rows, inputs]`, `weight` `[inputs, outputs]` and `bias`
/// `[outputs]`, row-major; returns `[rows, outputs]`.
pub fn linear(
    x: &[f32],
    weight: Weight,
    bias: Option<&[f32]>,
    [rows, inputs, outputs]: [usize; 3],
    then: Then,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * inputs, "linear: x must be [rows, inputs]");
    assert_eq!(
        weight.values().len(),
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
    // Written, never read, by gemm before the epilogue: no zeroing first.
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = Out(out.as_mut_ptr());
    // Four blocks per thread balance the load; 8 to 256 rows keep gemm efficient and a block's
    // output in cache.
    let tasks = rayon::current_num_threads() * 4;
    let block = rows.div_ceil(tasks).clamp(8, 256);
    let epilogue = |first: usize, rows_out: &mut [f32]| {
        let residual = match then {
            Then::Add(r) => Some(&r[first * outputs..][..rows_out.len()]),
            _ => None,
        };
        if bias.is_some() || !matches!(then, Then::Nothing) {
            dispatch(Epilogue {
                rows: rows_out,
                width: outputs,
                bias,
                gelu: matches!(then, Then::Gelu),
                residual,
            });
        }
    };
    if inputs * outputs * size_of::<f32>() > PACKED_PER_BLOCK {
        // Every block would pack this weight again: one call on all threads packs it once, and
        // the epilogue is a second pass.
        // SAFETY: `x` is `rows x inputs`, the weight view covers `inputs x outputs` elements of
        // its buffer, the output `rows x outputs` fits the capacity, and gemm writes every
        // element of it.
        unsafe {
            matmul(
                [rows, outputs, inputs],
                (dst.get(), 1, outputs as isize),
                (x.as_ptr(), 1, inputs as isize),
                weight.view(inputs, outputs),
                Threads::All,
            );
            out.set_len(len);
        }
        out.par_chunks_mut(block * outputs)
            .enumerate()
            .for_each(|(b, rows_out)| epilogue(b * block, rows_out));
        return out;
    }
    (0..rows.div_ceil(block)).into_par_iter().for_each(|b| {
        let first = b * block;
        let n = block.min(rows - first);
        // SAFETY: rows `first .. first + n` of `x` and of the output lie inside their buffers
        // (checked above), the weight view covers `inputs x outputs` elements of its buffer, and
        // no other block touches these output rows. The slice is made after gemm has written
        // every element of it.
        let rows_out = unsafe {
            let start = dst.get().add(first * outputs);
            matmul(
                [n, outputs, inputs],
                (start, 1, outputs as isize),
                (x.as_ptr().add(first * inputs), 1, inputs as isize),
                weight.view(inputs, outputs),
                Threads::One,
            );
            std::slice::from_raw_parts_mut(start, n * outputs)
        };
        epilogue(first, rows_out);
    });
    // SAFETY: the blocks cover all `len` elements, each written above.
    unsafe { out.set_len(len) };
    out
}

/// The gradient of a weight `[inputs, outputs]`: `xᵀ grad` for `x` `[rows, inputs]` and `grad`
/// `[rows, outputs]`, one gemm call on all threads (it shares the packed operands between them).
pub fn weight_grad(x: &[f32], grad: &[f32], [rows, inputs, outputs]: [usize; 3]) -> Vec<f32> {
    assert_eq!(
        x.len(),
        rows * inputs,
        "weight_grad: x must be [rows, inputs]"
    );
    assert_eq!(
        grad.len(),
        rows * outputs,
        "weight_grad: grad must be [rows, outputs]"
    );
    let len = inputs * outputs;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: `xᵀ` is `inputs x rows` over `x`'s buffer, `grad` is `rows x outputs`, and the
    // output `inputs x outputs` fits the capacity; gemm writes every element without reading.
    unsafe {
        matmul(
            [inputs, outputs, rows],
            (out.as_mut_ptr(), 1, outputs as isize),
            (x.as_ptr(), inputs as isize, 1),
            (grad.as_ptr(), 1, outputs as isize),
            Threads::All,
        );
        out.set_len(len);
    }
    out
}

/// The gradient of a bias `[outputs]`: the column sums of `grad` `[rows, outputs]`.
pub fn bias_grad(grad: &[f32], outputs: usize) -> Vec<f32> {
    assert_eq!(
        grad.len() % outputs.max(1),
        0,
        "bias_grad: grad must be [rows, outputs]"
    );
    let rows = grad.len() / outputs.max(1);
    let tasks = rayon::current_num_threads() * 2;
    let block = rows.div_ceil(tasks).max(1);
    grad.par_chunks(block * outputs)
        .map(|rows| {
            dispatch(ColumnSums {
                rows,
                width: outputs,
            })
        })
        .reduce(
            || vec![0.0; outputs],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

/// The column sums of a block of rows.
struct ColumnSums<'a> {
    rows: &'a [f32],
    width: usize,
}

#[derive(Clone, Copy)]
struct Plus;

impl LaneZip for Plus {
    #[inline(always)]
    fn apply<S: Simd>(self, s: S, x: S::V, y: S::V) -> S::V {
        s.add(x, y)
    }
}

impl Kernel for ColumnSums<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> Vec<f32> {
        let mut sums = vec![0.0; self.width];
        for row in self.rows.chunks_exact(self.width) {
            zip_in_place(s, row, &mut sums, Plus);
        }
        sums
    }
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

    /// Deterministic `x` `[rows, inputs]`, `w` `[inputs, outputs]`, `b` `[outputs]`.
    fn operands([rows, inputs, outputs]: [usize; 3]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..rows * inputs)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let w = (0..inputs * outputs)
            .map(|i| ((i * 17 % 89) as f32 - 44.0) / 60.0)
            .collect();
        let b = (0..outputs).map(|i| i as f32 / 10.0 - 1.0).collect();
        (x, w, b)
    }

    fn gelu(x: f64) -> f64 {
        // The row kernel, tested against the exact values in gelu.rs.
        let mut v = [x as f32];
        crate::gelu::gelu_in_place(&mut v);
        v[0] as f64
    }

    #[test]
    fn matches_the_plain_product_with_each_epilogue() {
        // Odd sizes: partial vectors, and blocks of unequal length; the last weight is packed once
        // for all blocks.
        for [rows, inputs, outputs] in [[37, 13, 21], [128, 64, 256], [1, 7, 3], [37, 64, 4200]] {
            let (x, w, b) = operands([rows, inputs, outputs]);
            let res: Vec<f32> = (0..rows * outputs).map(|i| (i % 7) as f32 - 3.0).collect();
            let shape = [rows, inputs, outputs];
            let want = reference(&x, &w, &b, shape);
            let plain = linear(&x, Weight::Rows(&w), Some(&b), shape, Then::Nothing);
            let gelu_out = linear(&x, Weight::Rows(&w), Some(&b), shape, Then::Gelu);
            let added = linear(&x, Weight::Rows(&w), Some(&b), shape, Then::Add(&res));
            let no_bias = linear(&x, Weight::Rows(&w), None, shape, Then::Nothing);
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

    #[test]
    fn gradients_match_the_plain_products() {
        for [rows, inputs, outputs] in [[37, 13, 21], [300, 64, 129], [1, 7, 3], [37, 4200, 64]] {
            // `x` plays the layer's input, `g` the gradient of its output `[rows, outputs]`.
            let (x, w, _) = operands([rows, inputs, outputs]);
            let (g, _, _) = operands([rows, outputs, 1]);
            let tol = |v: f64| 1e-5 * (1.0 + v.abs());
            // dx = g Wᵀ: the forward over the transposed weight.
            let dx = linear(
                &g,
                Weight::Transposed(&w),
                None,
                [rows, outputs, inputs],
                Then::Nothing,
            );
            for r in 0..rows {
                for i in 0..inputs {
                    let want: f64 = (0..outputs)
                        .map(|o| g[r * outputs + o] as f64 * w[i * outputs + o] as f64)
                        .sum();
                    assert!(
                        (dx[r * inputs + i] as f64 - want).abs() < tol(want),
                        "dx {r} {i}"
                    );
                }
            }
            let dw = weight_grad(&x, &g, [rows, inputs, outputs]);
            for i in 0..inputs {
                for o in 0..outputs {
                    let want: f64 = (0..rows)
                        .map(|r| x[r * inputs + i] as f64 * g[r * outputs + o] as f64)
                        .sum();
                    assert!(
                        (dw[i * outputs + o] as f64 - want).abs() < tol(want),
                        "dw {i} {o}"
                    );
                }
            }
            let db = bias_grad(&g, outputs);
            for o in 0..outputs {
                let want: f64 = (0..rows).map(|r| g[r * outputs + o] as f64).sum();
                assert!((db[o] as f64 - want).abs() < tol(want), "db {o}");
            }
        }
    }
}
