//! Multi-head attention at inference on the CPU, reading Q, K and V where their projections left
//! them (`[batch, seq, hidden]`, head `h` in columns `h * d .. (h + 1) * d`) and writing the
//! context in that layout too. Per (batch, head): `Q Kᵀ` is one gemm call on strided views, the
//! softmax runs on its rows ([`crate::softmax::forward_row`]), `P V` is a second gemm call that
//! writes into the head's columns of the output. No head split, key transpose or head merge is
//! copied, which the composed ops do around every attention.

use rayon::prelude::*;

use crate::cpu_gemm::{matmul, Out, Threads};
use crate::softmax::forward_row;

/// The dimensions of one call.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub batch: usize,
    pub seq: usize,
    pub hidden: usize,
    pub heads: usize,
}

/// `softmax(Q Kᵀ * scale + key_bias) V` per head; `q`, `k`, `v` `[batch, seq, hidden]`
/// row-major, `key_bias` `[batch, seq]` (additive). Returns the context, `[batch, seq, hidden]`.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    key_bias: Option<&[f32]>,
    shape: Shape,
    scale: f32,
) -> Vec<f32> {
    let Shape {
        batch,
        seq,
        hidden,
        heads,
    } = shape;
    let d = hidden / heads;
    let len = batch * seq * hidden;
    assert!(
        q.len() == len && k.len() == len && v.len() == len,
        "attention: q, k, v must be [batch, seq, hidden]"
    );
    assert_eq!(d * heads, hidden, "attention: hidden must split into heads");
    // Written, never read, by the second gemm call of each (batch, head): no zeroing first.
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = Out(out.as_mut_ptr());
    (0..batch * heads).into_par_iter().for_each_init(
        || (vec![0.0f32; seq * seq], vec![0.0f32; seq * seq]),
        |(scores, probs), unit| {
            let (b, h) = (unit / heads, unit % heads);
            let offset = b * seq * hidden + h * d;
            let (row, col) = (hidden as isize, 1isize);
            // SAFETY: every pointer stays inside its slice (rows `0..seq` of batch `b` at stride
            // `hidden`, columns `h * d .. (h + 1) * d`), and no other unit writes the output
            // block of (b, h).
            unsafe {
                // scores[i, j] = sum_c q[i, c] k[j, c]: rhs is Kᵀ, read through K's strides.
                matmul(
                    [seq, seq, d],
                    (scores.as_mut_ptr(), 1, seq as isize),
                    (q.as_ptr().add(offset), col, row),
                    (k.as_ptr().add(offset), row, col),
                    Threads::One,
                );
            }
            let bias = key_bias.map(|bias| &bias[b * seq..(b + 1) * seq]);
            for (s, p) in scores.chunks(seq).zip(probs.chunks_mut(seq)) {
                forward_row(s, scale, bias, p);
            }
            // SAFETY: the same bounds; `probs` is this unit's own `seq x seq` scratch buffer.
            unsafe {
                matmul(
                    [seq, d, seq],
                    (dst.get().add(offset), col, row),
                    (probs.as_ptr(), 1, seq as isize),
                    (v.as_ptr().add(offset), col, row),
                    Threads::One,
                );
            }
        },
    );
    // SAFETY: the (batch, head) blocks cover all `len` elements, each written above.
    unsafe { out.set_len(len) };
    out
}
