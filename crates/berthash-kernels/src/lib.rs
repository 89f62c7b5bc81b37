//! Fused training kernels with hand-written backward passes, for the few operations where
//! Burn's op-by-op autodiff dominated a tiny model's step.
//!
//! | kernel | why Burn's composed version is slow | CPU override (`flex.rs`) | backward |
//! |---|---|---|---|
//! | cross-entropy | a dozen full-size tensors (max, shift, exp, sum, log, gather and their gradients) over `[masked rows, 30522]` logits, ~75 MB each at nano's batch | row log-sum-exps in one pass, SIMD `exp` | written over the logits in place: `(softmax - one_hot) * g / rows` |
//! | dropout | the mask drawn element by element from a ChaCha RNG on one thread, then two multiplies | the element index hashed with a per-call key (drawn from the backend's seeded RNG, so runs stay reproducible), one parallel pass | recomputes the mask from the key instead of storing it |
//! | GELU | a scalar `erf` per element, forward and backward | vectorised `erf` | vectorised derivative |
//! | dense (linear) layer | each product's output zeroed, then copied once more to align it; the bias, GELU and residual each a pass of their own; operands transposed by copy | one gemm call per block of rows into a fresh buffer, bias and GELU or residual on the block in cache ([`dense`](mod@dense)) | the same products on strided views, the bias's as column sums |
//! | layer norm | a dozen tracked ops (mean, centring, squares, variance, square root, quotient, scale, shift), each a full-size tensor with a gradient of its own; the weight's and bias's gradients summed over every row by one thread per column on a GPU | one pass per row: mean, variance, normalized rows and output ([`layer_norm`](mod@layer_norm)) | one pass per row for the input's gradient, the column sums per task of rows |
//! | multi-head attention | the heads split and merged by copies around every product, forward and backward; softmax five tracked ops, the padding mask a strided broadcast, glibc's `expf` slow on masked (hugely negative) scores | per (batch, head): products on strided views of the projections' layout, then scale, padding bias and softmax in one row pass and the dropout, on a block in cache (`cpu_attention.rs`) | the same units: `dV`, `dP`, the dropout's and softmax's gradients, `dQ`, `dK` |
//!
//! One more has no backward: the AdamW update (of a whole weight-decay group at once in
//! training), on the CPU one pass in place instead of a dozen allocating ops
//! ([`adamw`](mod@adamw)).
//!
//! Each kernel is a method of [`Kernels`], an extension of Burn's `Backend`:
//! - the default methods compose Burn tensor ops, so every backend has them (the GPU backends
//!   use these; the dense layer's backward sums over rows block by block, [`sum_blocks`], and
//!   the gradient of rows picked by index, embeddings included, is scattered by one thread per
//!   element or per block of indices, [`select_rows`](mod@select_rows));
//! - the GPU backends (`gpu/`) override the layer norm, the attention's softmax and the making
//!   of flat vectors with CubeCL kernels, and run the attention, the dense backward and the
//!   cutting of flat vectors as one operation each: each Burn operation costs the host about
//!   the same whatever its size, and these were 60% of the 940 operations of a nano training
//!   step;
//! - the CPU backend (`Flex`) overrides them with SIMD loops over rows on rayon threads;
//! - `Autodiff<B>` records one graph node whose backward calls `B`'s fused backward
//!   (`autodiff.rs`).

use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{ActivationOps, FloatTensor, IntTensor, ModuleOps};
use burn::tensor::{Slice, TensorMetadata, TensorPrimitive};

pub use adamw::{AdamWState, AdamWStep};
pub use select_rows::{embedding, select_rows, RowIndices};

pub mod adamw;
pub mod attention;
mod autodiff;
mod cpu_attention;
mod cpu_gemm;
mod cpu_layer_norm;
pub mod cross_entropy;
pub mod dense;
pub mod dropout;
mod exp;
mod flex;
mod gelu;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod gpu;
mod hash_mask;
pub mod layer_norm;
pub mod select_rows;
mod simd;
mod softmax;
pub mod sum_blocks;

/// Elements per rayon task of the CPU element-wise kernels.
const CHUNK: usize = 1 << 15;

/// A backend with berthash's fused kernels.
pub trait Kernels: Backend {
    /// Mean cross-entropy of `logits` `[rows, classes]` against class ids `targets` `[rows]`
    /// (shape `[1]`), and each row's log-sum-exp `[rows]`, which the backward reuses.
    fn cross_entropy_forward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        cross_entropy::forward_composed::<Self>(logits, targets)
    }

    /// Gradient of that mean with respect to the logits, given the loss's gradient `grad`
    /// (shape `[1]`): `(softmax(logits) - one_hot(targets)) * grad / rows`.
    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        log_sum_exp: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        cross_entropy::backward_composed::<Self>(logits, log_sum_exp, targets, grad)
    }

    /// The loss alone. `Autodiff` overrides it to record a single graph node.
    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        Self::cross_entropy_forward(logits, targets).0
    }

    /// What a dropout's backward needs to know of the elements its forward kept.
    type DropoutMask: Clone + Send + core::fmt::Debug + 'static;

    /// Zeroes each element of `x` with probability `prob` (in `(0, 1]`) and scales the others
    /// by `1 / (1 - prob)`.
    fn dropout_forward(x: FloatTensor<Self>, prob: f64) -> (FloatTensor<Self>, Self::DropoutMask);

    /// The gradient through that dropout: the same mask and scale, applied to `grad`.
    fn dropout_backward(
        grad: FloatTensor<Self>,
        mask: Self::DropoutMask,
        prob: f64,
    ) -> FloatTensor<Self>;

    /// Dropout alone. `Autodiff` overrides it to record a single graph node.
    fn dropout(x: FloatTensor<Self>, prob: f64) -> FloatTensor<Self> {
        Self::dropout_forward(x, prob).0
    }

    /// GELU, the exact (erf) form. By default Burn's own; `Autodiff` records a node whose
    /// backward is [`Kernels::gelu_erf_backward`].
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::gelu(x)
    }

    /// `grad * gelu'(x)`.
    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as ActivationOps<Self>>::gelu_backward(x, grad)
    }

    /// Multi-head self-attention while training: `dropout(softmax(Q Kᵀ * scale + key_bias)) V`
    /// per head, for `q`, `k`, `v` `[batch, seq, hidden]` as the projections give them and an
    /// additive `key_bias` `[batch, keys]` (the padding mask; it gets no gradient). Returns the
    /// context `[batch, seq, hidden]`, the probabilities before dropout `[batch, heads, seq, seq]`
    /// and the dropout's mask: what [`Kernels::attention_backward`] needs.
    fn attention_forward(
        qkv: [FloatTensor<Self>; 3],
        key_bias: Option<FloatTensor<Self>>,
        config: AttentionConfig,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        Option<Self::DropoutMask>,
    ) {
        attention::training_forward_composed::<Self>(qkv, key_bias, config)
    }

    /// The gradients of Q, K and V from the context's `grad`, given what the forward returned.
    fn attention_backward(
        qkv: [FloatTensor<Self>; 3],
        probs: FloatTensor<Self>,
        mask: Option<Self::DropoutMask>,
        config: AttentionConfig,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        attention::training_backward_composed::<Self>(qkv, probs, mask, config, grad)
    }

    /// The attention's context alone. `Autodiff` overrides it to record one node whose backward
    /// is [`Kernels::attention_backward`].
    fn self_attention(
        qkv: [FloatTensor<Self>; 3],
        key_bias: Option<FloatTensor<Self>>,
        config: AttentionConfig,
    ) -> FloatTensor<Self> {
        Self::attention_forward(qkv, key_bias, config).0
    }

    /// The same attention without gradient (inference): no probabilities kept, and no dropout
    /// whatever `config.dropout` says.
    fn attention_inference(
        qkv: [FloatTensor<Self>; 3],
        key_bias: Option<FloatTensor<Self>>,
        config: AttentionConfig,
    ) -> FloatTensor<Self> {
        attention::inference_composed::<Self>(qkv, key_bias, config)
    }

    /// A dense layer: `then(x W + b)` for `x` `[rows, in]`, `weight` `[in, out]` and `bias`
    /// `[out]`. `Autodiff` records `x W + b` as one node, whose backward is
    /// [`Kernels::dense_backward`], and the GELU or the addition as nodes of their own.
    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        then: DenseThen<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        dense_composed::<Self>(x, weight, bias, then)
    }

    /// The gradients of `x W + b` from the output's `grad` `[rows, out]`: the input's
    /// (`grad Wᵀ`, when `weight` is given), the weight's (`xᵀ grad`, when `x` is given) and the
    /// bias's (the column sums of `grad`, when `bias`). The default sums over blocks of rows
    /// and over blocks of a vocabulary's outputs ([`sum_blocks`]).
    fn dense_backward(
        x: Option<FloatTensor<Self>>,
        weight: Option<FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        bias: bool,
    ) -> DenseGrads<FloatTensor<Self>> {
        sum_blocks::dense_backward_in_blocks::<Self>(x, weight, grad, bias)
    }

    /// Layer normalization of `x` `[.., width]` while training: each row's
    /// `(x - mean) / sqrt(var + epsilon)` (biased variance, as BERT) times `gamma` plus `beta`
    /// (`[width]`), and what [`Kernels::layer_norm_backward`] needs. At inference the model
    /// calls [`Kernels::layer_norm_inference`].
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, LayerNormSaved<FloatTensor<Self>>) {
        layer_norm::forward_composed::<Self>(x, gamma, beta, epsilon)
    }

    /// The gradients of that layer norm from the output's `grad`: the input's and the column
    /// sums that are `gamma`'s and `beta`'s (over blocks of rows by default, [`sum_blocks`]).
    fn layer_norm_backward(
        saved: LayerNormSaved<FloatTensor<Self>>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> LayerNormGrads<FloatTensor<Self>> {
        layer_norm::backward_composed::<Self>(saved, gamma, grad)
    }

    /// The same layer norm without gradient (inference): Burn's own by default.
    fn layer_norm_inference(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// The layer norm's output alone. `Autodiff` overrides it to record one node whose backward
    /// is [`Kernels::layer_norm_backward`].
    fn layer_norm_training(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm_forward(x, gamma, beta, epsilon).0
    }

    /// `x.select(0, indices)`: the rows of `x` `[rows, width]` at `indices` `[n]`, `[n, width]`.
    /// `Autodiff` overrides it to record one node whose backward is
    /// [`Kernels::select_rows_backward`].
    fn select_rows(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        _kind: RowIndices,
    ) -> FloatTensor<Self> {
        Self::float_select(x, 0, indices)
    }

    /// The gradient of [`Kernels::select_rows`] with respect to `x`: zeros `[rows, width]` with
    /// row `i` of `grad` `[n, width]` added into row `indices[i]`. The default puts every
    /// element, or every block of indices, on a thread of its own
    /// ([`select_rows`](mod@select_rows)).
    fn select_rows_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
        rows: usize,
        kind: RowIndices,
    ) -> FloatTensor<Self> {
        select_rows::backward_in_parallel::<Self>(grad, indices, rows, kind)
    }

    /// One AdamW update of a tensor of parameters from its gradient (all four of one shape), as
    /// `torch.optim.AdamW` ([`adamw`](mod@adamw)): the new parameter and moments. The CPU
    /// backend writes them over the old ones in one pass.
    fn adamw(
        state: AdamWState<FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        step: &AdamWStep,
    ) -> AdamWState<FloatTensor<Self>> {
        adamw::composed::<Self>(state, grad, step)
    }

    /// `pieces` (of any shapes, one type) flattened into one vector of `len` elements, piece
    /// `i` from `offsets[i]` (in increasing order), zeros elsewhere. The GPU backends make it
    /// one operation.
    fn flatten_into(
        pieces: Vec<FloatTensor<Self>>,
        offsets: &[usize],
        len: usize,
    ) -> FloatTensor<Self> {
        flatten_composed::<Self>(pieces, offsets, len)
    }

    /// The pieces of the vector `flat` from `offsets`, shaped `shapes`: the inverse of
    /// [`Kernels::flatten_into`]. Views of `flat` where the backend makes them (the GPU
    /// backends, at offsets their alignment allows; one operation). The CPU backend copies each
    /// piece into a buffer of its own: its kernels copy a view of a larger buffer before they
    /// read it, and the whole buffer before they write to it.
    fn split(
        flat: FloatTensor<Self>,
        offsets: &[usize],
        shapes: &[Shape],
    ) -> Vec<FloatTensor<Self>> {
        split_composed::<Self>(flat, offsets, shapes, |piece| piece)
    }
}

/// [`Kernels::flatten_into`] in Burn's ops: one concatenation of the pieces, flattened, and
/// views of one zero vector for the gaps.
pub(crate) fn flatten_composed<B: Backend>(
    pieces: Vec<FloatTensor<B>>,
    offsets: &[usize],
    len: usize,
) -> FloatTensor<B> {
    assert_eq!(pieces.len(), offsets.len(), "one offset per piece");
    let first = pieces.first().expect("at least one piece to flatten");
    let (dtype, device) = (first.dtype(), B::float_device(first));
    let sizes: Vec<usize> = pieces.iter().map(|p| p.shape().num_elements()).collect();
    // The gap before each piece, and the one after the last.
    let mut gaps = Vec::with_capacity(pieces.len() + 1);
    let mut end = 0;
    for (&offset, size) in offsets.iter().zip(&sizes) {
        gaps.push(offset - end);
        end = offset + size;
    }
    gaps.push(len - end);
    let widest = gaps.iter().copied().max().unwrap_or(0);
    let zeros = (widest > 0).then(|| B::float_zeros([widest].into(), &device, dtype.into()));
    let gap = |len: usize| {
        let zeros = zeros
            .clone()
            .expect("a zero vector as long as the widest gap");
        B::float_slice(zeros, &[Slice::from(0..len)])
    };
    let mut parts = Vec::with_capacity(2 * pieces.len() + 1);
    for ((piece, size), &before) in pieces.into_iter().zip(sizes).zip(&gaps) {
        if before > 0 {
            parts.push(gap(before));
        }
        parts.push(B::float_reshape(piece, [size].into()));
    }
    if let Some(&after) = gaps.last().filter(|&&after| after > 0) {
        parts.push(gap(after));
    }
    B::float_cat(parts, 0)
}

/// [`Kernels::split`] in Burn's ops: a slice of `flat` per piece, `own` applied to it (the CPU
/// backend's copy into a buffer of its own), then its shape.
pub(crate) fn split_composed<B: Backend>(
    flat: FloatTensor<B>,
    offsets: &[usize],
    shapes: &[Shape],
    own: impl Fn(FloatTensor<B>) -> FloatTensor<B>,
) -> Vec<FloatTensor<B>> {
    assert_eq!(offsets.len(), shapes.len(), "one offset per piece");
    offsets
        .iter()
        .zip(shapes)
        .map(|(&offset, shape)| {
            let range = offset..offset + shape.num_elements();
            let piece = own(B::float_slice(flat.clone(), &[Slice::from(range)]));
            B::float_reshape(piece, shape.clone())
        })
        .collect()
}

/// [`Kernels::dense_backward`] in Burn's ops.
pub(crate) fn dense_backward_composed<B: Kernels>(
    x: Option<FloatTensor<B>>,
    weight: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
    bias: bool,
) -> DenseGrads<FloatTensor<B>> {
    DenseGrads {
        bias: bias.then(|| <B as ModuleOps<B>>::linear_bias_backward(grad.clone())),
        weight: x.map(|x| <B as ModuleOps<B>>::linear_weight_backward(x, grad.clone())),
        x: weight.map(|w| <B as ModuleOps<B>>::linear_x_backward(w, grad)),
    }
}

/// [`Kernels::dense`] in Burn's ops.
pub(crate) fn dense_composed<B: Kernels>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    then: DenseThen<FloatTensor<B>>,
) -> FloatTensor<B> {
    let y = <B as ModuleOps<B>>::linear(x, weight, bias);
    match then {
        DenseThen::Nothing => y,
        DenseThen::Gelu => B::gelu_erf(y),
        DenseThen::Add(residual) => B::float_add(y, residual),
    }
}

/// The constants of one multi-head attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionConfig {
    pub heads: usize,
    /// The factor of `Q Kᵀ`, `1 / sqrt(head size)` in BERT.
    pub scale: f64,
    /// The probability of dropping each attention probability (0: no dropout).
    pub dropout: f64,
}

impl AttentionConfig {
    /// The same attention without dropout, as at inference.
    pub fn without_dropout(self) -> Self {
        Self {
            dropout: 0.0,
            ..self
        }
    }
}

/// What follows the product of [`Kernels::dense`].
pub enum DenseThen<T> {
    Nothing,
    /// GELU (erf form).
    Gelu,
    /// The addition of a residual shaped like the output.
    Add(T),
}

impl<T> DenseThen<T> {
    /// The same step, with `f` applied to the residual.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> DenseThen<U> {
        match self {
            DenseThen::Nothing => DenseThen::Nothing,
            DenseThen::Gelu => DenseThen::Gelu,
            DenseThen::Add(residual) => DenseThen::Add(f(residual)),
        }
    }
}

/// What a layer norm's backward needs of its forward.
#[derive(Debug, Clone)]
pub struct LayerNormSaved<T> {
    /// `(x - mean) / σ`, the input's shape.
    pub normalized: T,
    /// `σ = sqrt(var + epsilon)` per row, the input's shape with a last axis of 1.
    pub std: T,
}

/// The gradients of a layer norm.
pub struct LayerNormGrads<T> {
    pub x: T,
    pub gamma: T,
    pub beta: T,
}

/// The gradients [`Kernels::dense_backward`] was asked for.
pub struct DenseGrads<T> {
    pub x: Option<T>,
    pub weight: Option<T>,
    pub bias: Option<T>,
}

/// See [`Kernels::dense`]: `then(x W + b)` for `x` `[rows, in]`.
pub fn dense<B: Kernels>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    then: DenseThen<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(B::dense(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.map(|b| b.into_primitive().tensor()),
        then.map(|residual| residual.into_primitive().tensor()),
    )))
}

/// Layer normalization over the last axis of `x` `[.., width]` with weight `gamma` and bias
/// `beta` (`[width]`): Burn's own layer norm at inference (a backend without autodiff), one
/// graph node with a fused backward while training ([`Kernels::layer_norm_training`]).
pub fn layer_norm<B: Kernels, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> Tensor<B, D> {
    let tracked = B::ad_enabled(&x.device());
    let [x, gamma, beta] = [
        x.into_primitive().tensor(),
        gamma.into_primitive().tensor(),
        beta.into_primitive().tensor(),
    ];
    let y = if tracked {
        B::layer_norm_training(x, gamma, beta, epsilon)
    } else {
        B::layer_norm_inference(x, gamma, beta, epsilon)
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// See [`Kernels::adamw`]. On a backend without autodiff (an optimizer's state lives there).
pub fn adamw<B: Kernels, const D: usize>(
    state: AdamWState<Tensor<B, D>>,
    grad: Tensor<B, D>,
    step: &AdamWStep,
) -> AdamWState<Tensor<B, D>> {
    let primitive = |t: Tensor<B, D>| t.into_primitive().tensor();
    B::adamw(state.map(primitive), primitive(grad), step)
        .map(|t| Tensor::from_primitive(TensorPrimitive::Float(t)))
}

/// `burn::nn::Dropout::forward`, fused: identity outside training (a backend without autodiff)
/// or at probability 0.
pub fn dropout<B: Kernels, const D: usize>(x: Tensor<B, D>, dropout: &Dropout) -> Tensor<B, D> {
    if dropout.prob == 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    Tensor::from_primitive(TensorPrimitive::Float(B::dropout(
        x.into_primitive().tensor(),
        dropout.prob,
    )))
}

/// GELU (erf form, as BERT), fused: see [`Kernels::gelu_erf`].
pub fn gelu<B: Kernels, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::gelu_erf(
        x.into_primitive().tensor(),
    )))
}

/// Multi-head self-attention over `[batch, seq, hidden]` projections with an additive padding
/// bias `[batch, seq]`: [`Kernels::attention_inference`] (no dropout) on a backend without
/// autodiff, [`Kernels::self_attention`] on one with it.
pub fn attention<B: Kernels>(
    query: Tensor<B, 3>,
    key: Tensor<B, 3>,
    value: Tensor<B, 3>,
    key_bias: Option<Tensor<B, 2>>,
    config: AttentionConfig,
) -> Tensor<B, 3> {
    let [batch, seq, _] = query.dims();
    if let Some(bias) = &key_bias {
        assert_eq!(
            bias.dims(),
            [batch, seq],
            "attention: key bias must be [batch, seq]"
        );
    }
    let tracked = B::ad_enabled(&query.device());
    let [query, key, value] = [query, key, value].map(|t| t.into_primitive().tensor());
    let key_bias = key_bias.map(|bias| bias.into_primitive().tensor());
    let context = if tracked {
        B::self_attention([query, key, value], key_bias, config)
    } else {
        B::attention_inference([query, key, value], key_bias, config)
    };
    Tensor::from_primitive(TensorPrimitive::Float(context))
}

/// An autodiff backend the trainer runs on: the kernels on the tracked backend (training) and on
/// its inner backend (evaluation).
pub trait TrainBackend: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

impl<B> TrainBackend for B
where
    B: AutodiffBackend + Kernels,
    B::InnerBackend: Kernels,
{
}

/// Mean cross-entropy of `logits` `[rows, classes]` against class ids `[rows]`, fused: see
/// [`Kernels::cross_entropy`].
pub fn cross_entropy<B: Kernels>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [rows, _] = logits.dims();
    assert_eq!(
        rows,
        targets.dims()[0],
        "cross_entropy: {rows} rows of logits but {} targets",
        targets.dims()[0]
    );
    let loss = B::cross_entropy(logits.into_primitive().tensor(), targets.into_primitive());
    Tensor::from_primitive(TensorPrimitive::Float(loss))
}
