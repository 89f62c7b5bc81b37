//! Multi-head attention on the CPU, forward and backward, reading Q, K and V where their
//! projections left them (`[batch, seq, hidden]`, head `h` in columns `h * d .. (h + 1) * d`) and
//! writing the context and the gradients in that layout too. One unit of work is one (batch,
//! head): its products are gemm calls on strided views, its softmax rows
//! ([`crate::softmax`]) and dropout ([`crate::hash_mask`], by each probability's index in
//! `[batch, heads, seq, seq]`) run on a `seq x seq` scratch block while it is in cache. No head
//! split, key transpose or head merge is copied, which the composed ops do around every
//! attention, forward and backward.

use rayon::prelude::*;

use crate::cpu_gemm::{matmul, Out, Threads};
use crate::hash_mask::{self, MaskKey};
use crate::softmax::{backward_row, forward_row};

/// The dimensions of one call.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub batch: usize,
    pub seq: usize,
    pub hidden: usize,
    pub heads: usize,
}

impl Shape {
    fn head_dim(self) -> usize {
        self.hidden / self.heads
    }

    /// Checks `[batch, seq, hidden]` operands; returns their length.
    fn check(self, operands: &[&[f32]]) -> usize {
        let len = self.batch * self.seq * self.hidden;
        assert_eq!(
            self.head_dim() * self.heads,
            self.hidden,
            "attention: hidden must split into heads"
        );
        for operand in operands {
            assert_eq!(
                operand.len(),
                len,
                "attention: q, k, v and gradients must be [batch, seq, hidden]"
            );
        }
        len
    }
}

/// Dropout on the probabilities: the mask's key and the probability of dropping.
#[derive(Debug, Clone, Copy)]
pub struct Dropped {
    pub key: MaskKey,
    pub prob: f64,
}

/// The (column, row) strides of a head's `[seq, d]` block in a `[batch, seq, hidden]` tensor,
/// and of its transpose.
fn head_view(shape: Shape) -> ((isize, isize), (isize, isize)) {
    let hidden = shape.hidden as isize;
    ((1, hidden), (hidden, 1))
}

/// `softmax(Q Kᵀ * scale + key_bias) V` per head, with dropout on the probabilities; `key_bias`
/// `[batch, seq]` (additive). Returns the context `[batch, seq, hidden]` and, when `keep_probs`,
/// the probabilities before dropout `[batch, heads, seq, seq]` (what the backward needs).
pub fn forward(
    [q, k, v]: [&[f32]; 3],
    key_bias: Option<&[f32]>,
    shape: Shape,
    scale: f32,
    dropped: Option<Dropped>,
    keep_probs: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let len = shape.check(&[q, k, v]);
    let Shape {
        batch, seq, heads, ..
    } = shape;
    let d = shape.head_dim();
    let block = seq * seq;
    let (head, transposed) = head_view(shape);
    // Written, never read, by the last gemm call of each unit: no zeroing first.
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = Out(out.as_mut_ptr());
    let mut probs: Vec<f32> =
        Vec::with_capacity(if keep_probs { batch * heads * block } else { 0 });
    let kept = Out(probs.as_mut_ptr());
    (0..batch * heads).into_par_iter().for_each_init(
        || (vec![0.0f32; block], vec![0.0f32; block]),
        |(scores, scratch), unit| {
            let b = unit / heads;
            let offset = b * seq * shape.hidden + (unit % heads) * d;
            // SAFETY (every block below): pointers stay inside their slices (rows `0..seq` of
            // batch `b` at stride `hidden`, columns of head `unit % heads`; probability block
            // `unit`), and only this unit writes its output columns and probability block.
            unsafe {
                // scores = Q Kᵀ: rhs is Kᵀ, read through K's strides.
                matmul(
                    [seq, seq, d],
                    (scores.as_mut_ptr(), 1, seq as isize),
                    (q.as_ptr().add(offset), head.0, head.1),
                    (k.as_ptr().add(offset), transposed.0, transposed.1),
                    Threads::One,
                );
            }
            let p: &mut [f32] = if keep_probs {
                unsafe { std::slice::from_raw_parts_mut(kept.get().add(unit * block), block) }
            } else {
                &mut scratch[..]
            };
            let bias = key_bias.map(|bias| &bias[b * seq..(b + 1) * seq]);
            for (s, p) in scores.chunks(seq).zip(p.chunks_mut(seq)) {
                forward_row(s, scale, bias, p);
            }
            let weights: &[f32] = match dropped {
                Some(Dropped { key, prob }) => {
                    // The scores are spent: the dropped probabilities go there.
                    scores.copy_from_slice(p);
                    hash_mask::apply_at(scores, unit * block, key, prob);
                    scores
                }
                None => p,
            };
            unsafe {
                matmul(
                    [seq, d, seq],
                    (dst.get().add(offset), head.0, head.1),
                    (weights.as_ptr(), 1, seq as isize),
                    (v.as_ptr().add(offset), head.0, head.1),
                    Threads::One,
                );
            }
        },
    );
    // SAFETY: the units cover all `len` outputs and, when kept, all probabilities.
    unsafe {
        out.set_len(len);
        if keep_probs {
            probs.set_len(batch * heads * block);
        }
    }
    (out, keep_probs.then_some(probs))
}

/// The gradients of [`forward`]'s context with respect to Q, K and V, given the context's
/// gradient `grad` `[batch, seq, hidden]`, the probabilities before dropout and the same dropout.
pub fn backward(
    [q, k, v]: [&[f32]; 3],
    probs: &[f32],
    grad: &[f32],
    shape: Shape,
    scale: f32,
    dropped: Option<Dropped>,
) -> [Vec<f32>; 3] {
    let len = shape.check(&[q, k, v, grad]);
    let Shape {
        batch, seq, heads, ..
    } = shape;
    let d = shape.head_dim();
    let block = seq * seq;
    assert_eq!(
        probs.len(),
        batch * heads * block,
        "attention: probabilities must be [batch, heads, seq, seq]"
    );
    let (head, transposed) = head_view(shape);
    let fresh = || Vec::<f32>::with_capacity(len);
    let (mut dq, mut dk, mut dv) = (fresh(), fresh(), fresh());
    let (dq_out, dk_out, dv_out) = (
        Out(dq.as_mut_ptr()),
        Out(dk.as_mut_ptr()),
        Out(dv.as_mut_ptr()),
    );
    (0..batch * heads).into_par_iter().for_each_init(
        || (vec![0.0f32; block], vec![0.0f32; block]),
        |(weights, grad_probs), unit| {
            let offset = (unit / heads) * seq * shape.hidden + (unit % heads) * d;
            let p = &probs[unit * block..][..block];
            let weights: &[f32] = match dropped {
                Some(Dropped { key, prob }) => {
                    weights.copy_from_slice(p);
                    hash_mask::apply_at(weights, unit * block, key, prob);
                    weights
                }
                None => p,
            };
            // SAFETY (every block below): as in `forward`; only this unit writes its columns of
            // the three gradients.
            unsafe {
                // dV = Pᵀ dC, P the probabilities after dropout.
                matmul(
                    [seq, d, seq],
                    (dv_out.get().add(offset), head.0, head.1),
                    (weights.as_ptr(), seq as isize, 1),
                    (grad.as_ptr().add(offset), head.0, head.1),
                    Threads::One,
                );
                // dP = dC Vᵀ.
                matmul(
                    [seq, seq, d],
                    (grad_probs.as_mut_ptr(), 1, seq as isize),
                    (grad.as_ptr().add(offset), head.0, head.1),
                    (v.as_ptr().add(offset), transposed.0, transposed.1),
                    Threads::One,
                );
            }
            if let Some(Dropped { key, prob }) = dropped {
                hash_mask::apply_at(grad_probs, unit * block, key, prob);
            }
            // dS = scale * P * (dP - P . dP), row by row, over the probabilities before dropout.
            for (p, g) in p.chunks(seq).zip(grad_probs.chunks_mut(seq)) {
                backward_row(p, scale, g);
            }
            unsafe {
                // dQ = dS K.
                matmul(
                    [seq, d, seq],
                    (dq_out.get().add(offset), head.0, head.1),
                    (grad_probs.as_ptr(), 1, seq as isize),
                    (k.as_ptr().add(offset), head.0, head.1),
                    Threads::One,
                );
                // dK = dSᵀ Q.
                matmul(
                    [seq, d, seq],
                    (dk_out.get().add(offset), head.0, head.1),
                    (grad_probs.as_ptr(), seq as isize, 1),
                    (q.as_ptr().add(offset), head.0, head.1),
                    Threads::One,
                );
            }
        },
    );
    // SAFETY: the units cover all `len` elements of each gradient.
    unsafe {
        dq.set_len(len);
        dk.set_len(len);
        dv.set_len(len);
    }
    [dq, dk, dv]
}
