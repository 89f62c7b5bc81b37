//! The AdamW update of a tensor of parameters (in training, a weight-decay group's flat vector),
//! as `torch.optim.AdamW` computes it:
//!
//! ```text
//! p <- p * (1 - lr * wd)                 (decoupled weight decay, first; skipped at wd = 0)
//! m <- b1 * m + (1 - b1) * g
//! v <- b2 * v + (1 - b2) * g^2
//! p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! Composed, it is a dozen tensor ops, each a pass over the tensor that allocates its result
//! (the GPU backends fuse the chain). The CPU backend runs it as one pass that writes the
//! parameter and both moments in place, with the same f32 operations in the same order, so that
//! both give the same bits.

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use rayon::prelude::*;

use crate::simd::{dispatch, Kernel, Scalar, Simd};
use crate::CHUNK;

/// The scalars of one update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub b1: f64,
    pub b2: f64,
    pub eps: f64,
    /// 0 for a parameter without weight decay.
    pub weight_decay: f64,
    /// `1 - b1^t` at update `t`.
    pub bias_correction1: f64,
    /// `sqrt(1 - b2^t)` at update `t`.
    pub bias_correction2_sqrt: f64,
}

/// A parameter and its two moments, of one shape: what an update reads and returns.
pub struct AdamWState<T> {
    pub param: T,
    pub exp_avg: T,
    pub exp_avg_sq: T,
}

impl<T> AdamWState<T> {
    /// The three, each through `f`.
    pub fn map<U>(self, f: impl Fn(T) -> U) -> AdamWState<U> {
        AdamWState {
            param: f(self.param),
            exp_avg: f(self.exp_avg),
            exp_avg_sq: f(self.exp_avg_sq),
        }
    }
}

/// The update in Burn's ops (`Kernels::adamw`'s default), on tensors of any shape (all four
/// the same). Burn's fusion compiles the chain into one kernel where nothing between its ops
/// reshapes a tensor to fewer axes, so the tensors keep the parameter's own shape.
pub fn composed<B: Backend>(
    state: AdamWState<FloatTensor<B>>,
    grad: FloatTensor<B>,
    step: &AdamWStep,
) -> AdamWState<FloatTensor<B>> {
    let AdamWState {
        param: mut value,
        exp_avg,
        exp_avg_sq,
    } = state;
    if step.weight_decay != 0.0 {
        value = B::float_mul_scalar(value, (1.0 - step.lr * step.weight_decay).into());
    }
    let exp_avg = B::float_add(
        B::float_mul_scalar(exp_avg, step.b1.into()),
        B::float_mul_scalar(grad.clone(), (1.0 - step.b1).into()),
    );
    let exp_avg_sq = B::float_add(
        B::float_mul_scalar(exp_avg_sq, step.b2.into()),
        B::float_mul_scalar(B::float_mul(grad.clone(), grad), (1.0 - step.b2).into()),
    );
    let denom = B::float_add_scalar(
        B::float_div_scalar(
            B::float_sqrt(exp_avg_sq.clone()),
            step.bias_correction2_sqrt.into(),
        ),
        step.eps.into(),
    );
    let step_size = step.lr / step.bias_correction1;
    let update = B::float_mul_scalar(B::float_div(exp_avg.clone(), denom), step_size.into());
    AdamWState {
        param: B::float_sub(value, update),
        exp_avg,
        exp_avg_sq,
    }
}

/// The update in place, on rayon threads; `grad` is as long as the others.
pub(crate) fn update_in_place(
    param: &mut [f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
    grad: &[f32],
    step: &AdamWStep,
) {
    let n = param.len();
    assert!(
        exp_avg.len() == n && exp_avg_sq.len() == n && grad.len() == n,
        "adamw: parameter, moments and gradient differ in length"
    );
    // Each scalar rounded to f32 as Burn's scalar ops round theirs.
    let scalars = Scalars {
        decay: (step.weight_decay != 0.0).then_some((1.0 - step.lr * step.weight_decay) as f32),
        b1: step.b1 as f32,
        one_minus_b1: (1.0 - step.b1) as f32,
        b2: step.b2 as f32,
        one_minus_b2: (1.0 - step.b2) as f32,
        bias_correction2_sqrt: step.bias_correction2_sqrt as f32,
        eps: step.eps as f32,
        step_size: (step.lr / step.bias_correction1) as f32,
    };
    param
        .par_chunks_mut(CHUNK)
        .zip(exp_avg.par_chunks_mut(CHUNK))
        .zip(exp_avg_sq.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((param, exp_avg), exp_avg_sq), grad)| {
            dispatch(Update {
                param,
                exp_avg,
                exp_avg_sq,
                grad,
                scalars,
            })
        });
}

#[derive(Clone, Copy)]
struct Scalars {
    decay: Option<f32>,
    b1: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
    step_size: f32,
}

/// One chunk of the update.
struct Update<'a> {
    param: &'a mut [f32],
    exp_avg: &'a mut [f32],
    exp_avg_sq: &'a mut [f32],
    grad: &'a [f32],
    scalars: Scalars,
}

impl Kernel for Update<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(mut self, s: S) {
        let n = self.param.len();
        let body = n / S::LANES * S::LANES;
        for i in (0..body).step_by(S::LANES) {
            self.lanes(s, i);
        }
        for i in body..n {
            self.lanes(Scalar, i);
        }
    }
}

impl Update<'_> {
    /// The `S::LANES` elements from `i`.
    #[inline(always)]
    fn lanes<S: Simd>(&mut self, s: S, i: usize) {
        let c = self.scalars;
        let g = s.load(&self.grad[i..]);
        let mut p = s.load(&self.param[i..]);
        if let Some(decay) = c.decay {
            p = s.mul(p, s.splat(decay));
        }
        let m = s.add(
            s.mul(s.load(&self.exp_avg[i..]), s.splat(c.b1)),
            s.mul(g, s.splat(c.one_minus_b1)),
        );
        let v = s.add(
            s.mul(s.load(&self.exp_avg_sq[i..]), s.splat(c.b2)),
            s.mul(s.mul(g, g), s.splat(c.one_minus_b2)),
        );
        let denom = s.add(
            s.div(s.sqrt(v), s.splat(c.bias_correction2_sqrt)),
            s.splat(c.eps),
        );
        let p = s.sub(p, s.mul(s.div(m, denom), s.splat(c.step_size)));
        s.store(&mut self.param[i..], p);
        s.store(&mut self.exp_avg[i..], m);
        s.store(&mut self.exp_avg_sq[i..], v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::on_every_instruction_set;

    /// A chunk's update on every instruction set gives the same bits as the scalar code, which
    /// the integration test compares with the composed ops.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        #[derive(Clone)]
        struct Case(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);
        impl Kernel for Case {
            type Output = Vec<u32>;
            fn run<S: Simd>(self, s: S) -> Vec<u32> {
                let Case(mut p, mut m, mut v, g) = self;
                Update {
                    param: &mut p,
                    exp_avg: &mut m,
                    exp_avg_sq: &mut v,
                    grad: &g,
                    scalars: Scalars {
                        decay: Some(0.99999),
                        b1: 0.9,
                        one_minus_b1: 0.1,
                        b2: 0.999,
                        one_minus_b2: 0.001,
                        bias_correction2_sqrt: 0.0447,
                        eps: 1e-6,
                        step_size: 0.01,
                    },
                }
                .run(s);
                p.iter().chain(&m).chain(&v).map(|x| x.to_bits()).collect()
            }
        }
        let n = 37; // whole vectors and a tail on every instruction set
        let values = |k: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * k) % 23) as f32 - 11.0) / 7.0)
                .collect()
        };
        let v: Vec<f32> = values(5).iter().map(|x| x * x).collect();
        let outputs = on_every_instruction_set(Case(values(3), values(7), v, values(11)));
        for out in &outputs[1..] {
            assert_eq!(out, &outputs[0]);
        }
    }
}
