//! The CPU backend's kernels, on f32 tensors (other float types take the composed path):
//! cross-entropy with one rayon task per row and SIMD `exp` ([`crate::exp`]), dropout with a
//! hashed mask ([`crate::hash_mask`]), GELU, dense layers ([`crate::dense`]), multi-head attention
//! ([`crate::cpu_attention`]), the layer norm ([`crate::cpu_layer_norm`]) and the AdamW update
//! ([`crate::adamw`]). The gradient of rows picked by index is Burn's own.

use burn::backend::Flex;
use burn::tensor::ops::{ActivationOps, FloatTensor, FloatTensorOps, IntTensor};
use burn::tensor::{DType, Distribution, FloatDType, Shape, TensorData, TensorMetadata};
use burn_flex::FlexTensor;
use half::{bf16, f16};
use rayon::prelude::*;

use crate::adamw::{self, AdamWState, AdamWStep};
use crate::cpu_attention;
use crate::cpu_layer_norm;
use crate::cross_entropy::{backward_composed, forward_composed};
use crate::dense;
use crate::exp::{exp_shifted_scaled, log_sum_exp};
use crate::gelu;
use crate::hash_mask::{self, MaskKey};
use crate::{
    AttentionConfig, DenseGrads, DenseThen, Kernels, LayerNormGrads, LayerNormSaved, RowIndices,
    CHUNK,
};

/// `tensor` with a contiguous buffer this handle alone owns when it was the only handle: the
/// buffer can then be written in place.
fn into_contiguous(tensor: FlexTensor) -> FlexTensor {
    let contiguous = tensor.to_contiguous();
    drop(tensor);
    contiguous
}

/// The values of a contiguous f32 tensor.
fn f32s(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().expect("contiguous f32")
}

/// A new dropout key from the backend's RNG, so that `Backend::seed` makes runs reproducible.
fn draw_mask_key() -> MaskKey {
    let draws = Flex::float_random(
        Shape::new([2]),
        Distribution::Default,
        &Default::default(),
        FloatDType::F32,
    );
    let bits: Vec<u64> = draws
        .into_data()
        .to_vec::<f32>()
        .expect("f32 draws")
        .iter()
        .map(|&u| (u * 16_777_216.0) as u64)
        .collect();
    MaskKey(bits[0] << 24 | bits[1])
}

/// Dropout in place on a float buffer of any precision (the mask depends only on the key).
fn masked(tensor: FlexTensor, key: MaskKey, prob: f64) -> FlexTensor {
    let mut out = into_contiguous(tensor);
    match out.dtype() {
        DType::F32 => hash_mask::apply(out.storage_mut::<f32>(), key, prob),
        DType::F64 => hash_mask::apply(out.storage_mut::<f64>(), key, prob),
        DType::BF16 => hash_mask::apply(out.storage_mut::<bf16>(), key, prob),
        DType::F16 => hash_mask::apply(out.storage_mut::<f16>(), key, prob),
        other => panic!("dropout: not a float tensor ({other:?})"),
    }
    out
}

/// Whether all the operands are f32 (others take the composed path).
fn all_f32<'a>(tensors: impl IntoIterator<Item = &'a FlexTensor>) -> bool {
    tensors.into_iter().all(|t| t.dtype() == DType::F32)
}

/// [`cpu_attention::forward`] on tensors: the context `[batch, seq, hidden]` and, when
/// `keep_probs`, the probabilities `[batch, heads, seq, seq]`.
fn cpu_attention_forward(
    qkv: [FlexTensor; 3],
    key_bias: Option<FlexTensor>,
    config: AttentionConfig,
    mask: Option<MaskKey>,
    keep_probs: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    let (shape, dropped) = cpu_attention_call(&qkv, config, mask);
    let qkv = qkv.map(|t| t.to_contiguous());
    let bias = key_bias.map(|b| b.to_contiguous());
    let (context, probs) = cpu_attention::forward(
        qkv.each_ref().map(f32s),
        bias.as_ref().map(f32s),
        shape,
        config.scale as f32,
        dropped,
        keep_probs,
    );
    let probs_shape = [shape.batch, shape.heads, shape.seq, shape.seq];
    (
        FlexTensor::from_data(TensorData::new(context, qkv[0].layout().shape().clone())),
        probs.map(|p| FlexTensor::from_data(TensorData::new(p, probs_shape))),
    )
}

/// The shape of an attention's `[batch, seq, hidden]` operands, and its dropout.
fn cpu_attention_call(
    qkv: &[FlexTensor; 3],
    config: AttentionConfig,
    mask: Option<MaskKey>,
) -> (cpu_attention::Shape, Option<cpu_attention::Dropped>) {
    let [batch, seq, hidden] = qkv[0].layout().shape().dims::<3>();
    let shape = cpu_attention::Shape {
        batch,
        seq,
        hidden,
        heads: config.heads,
    };
    let dropped = mask.map(|key| cpu_attention::Dropped {
        key,
        prob: config.dropout,
    });
    (shape, dropped)
}

/// `[rows, columns]` of a 2-D tensor.
fn matrix_dims(tensor: &FlexTensor) -> [usize; 2] {
    let shape = tensor.layout().shape();
    assert_eq!(shape.num_dims(), 2, "expected a matrix, got {shape:?}");
    shape.dims::<2>()
}

/// Class ids as indices, each checked against the number of classes.
fn class_ids(targets: &FlexTensor, classes: usize) -> Vec<usize> {
    let ids = targets.clone().into_data().convert::<i64>();
    let ids = ids.as_slice::<i64>().expect("converted to i64");
    ids.iter()
        .enumerate()
        .map(|(row, &id)| {
            assert!(
                (0..classes as i64).contains(&id),
                "cross_entropy: target {id} of row {row} is outside 0..{classes}"
            );
            id as usize
        })
        .collect()
}

fn f32_tensor(values: Vec<f32>, shape: [usize; 1]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl Kernels for Flex {
    /// Burn's: one pass over the indices adding rows, which is what a CPU core does best.
    fn select_rows_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
        rows: usize,
        _kind: RowIndices,
    ) -> FloatTensor<Self> {
        let width = grad.shape()[1];
        let zeros = Flex::float_zeros(
            [rows, width].into(),
            &Default::default(),
            grad.dtype().into(),
        );
        Flex::float_select_add(zeros, 0, indices, grad)
    }

    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return <Self as ActivationOps<Self>>::gelu(x);
        }
        // In place: at inference the product before it is the only handle; in training the
        // graph keeps `x`, and the buffer is copied first.
        let mut out = into_contiguous(x);
        out.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .for_each(gelu::gelu_in_place);
        out
    }

    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if !all_f32([&x, &grad]) {
            return <Self as ActivationOps<Self>>::gelu_backward(x, grad);
        }
        let x = x.to_contiguous();
        let input = f32s(&x);
        let mut out = into_contiguous(grad);
        out.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .zip(input.par_chunks(CHUNK))
            .for_each(|(grad, x)| gelu::gelu_backward_in_place(x, grad));
        out
    }

    fn attention_inference(
        qkv: [FloatTensor<Self>; 3],
        key_bias: Option<FloatTensor<Self>>,
        config: AttentionConfig,
    ) -> FloatTensor<Self> {
        if !all_f32(qkv.iter().chain(&key_bias)) {
            return crate::attention::inference_composed::<Self>(qkv, key_bias, config);
        }
        cpu_attention_forward(qkv, key_bias, config, None, false).0
    }

    fn attention_forward(
        qkv: [FloatTensor<Self>; 3],
        key_bias: Option<FloatTensor<Self>>,
        config: AttentionConfig,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, Option<MaskKey>) {
        if !all_f32(qkv.iter().chain(&key_bias)) {
            return crate::attention::training_forward_composed::<Self>(qkv, key_bias, config);
        }
        let mask = (config.dropout > 0.0).then(draw_mask_key);
        let (context, probs) = cpu_attention_forward(qkv, key_bias, config, mask, true);
        (context, probs.expect("kept probabilities"), mask)
    }

    fn attention_backward(
        qkv: [FloatTensor<Self>; 3],
        probs: FloatTensor<Self>,
        mask: Option<MaskKey>,
        config: AttentionConfig,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        if !all_f32(qkv.iter().chain([&probs, &grad])) {
            return crate::attention::training_backward_composed::<Self>(
                qkv, probs, mask, config, grad,
            );
        }
        let (shape, dropped) = cpu_attention_call(&qkv, config, mask);
        let qkv = qkv.map(|t| t.to_contiguous());
        let (probs, grad) = (probs.to_contiguous(), grad.to_contiguous());
        let grads = cpu_attention::backward(
            qkv.each_ref().map(f32s),
            f32s(&probs),
            f32s(&grad),
            shape,
            config.scale as f32,
            dropped,
        );
        grads.map(|g| FlexTensor::from_data(TensorData::new(g, qkv[0].layout().shape().clone())))
    }

    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        then: DenseThen<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        let bias = bias.map(|b| b.to_contiguous());
        let then = then.map(|residual| residual.to_contiguous());
        let residual = match &then {
            DenseThen::Add(r) => Some(r),
            _ => None,
        };
        if !all_f32([&x, &weight].into_iter().chain(&bias).chain(residual)) {
            return crate::dense_composed::<Self>(x, weight, bias, then);
        }
        let [rows, inputs] = matrix_dims(&x);
        let [_, outputs] = matrix_dims(&weight);
        let out = dense::linear(
            f32s(&x),
            dense::Weight::Rows(f32s(&weight)),
            bias.as_ref().map(f32s),
            [rows, inputs, outputs],
            match &then {
                DenseThen::Nothing => dense::Then::Nothing,
                DenseThen::Gelu => dense::Then::Gelu,
                DenseThen::Add(residual) => dense::Then::Add(f32s(residual)),
            },
        );
        FlexTensor::from_data(TensorData::new(out, [rows, outputs]))
    }

    fn dense_backward(
        x: Option<FloatTensor<Self>>,
        weight: Option<FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        bias: bool,
    ) -> DenseGrads<FloatTensor<Self>> {
        if !all_f32(x.iter().chain(&weight).chain([&grad])) {
            return crate::dense_backward_composed::<Self>(x, weight, grad, bias);
        }
        let grad = grad.to_contiguous();
        let [rows, outputs] = matrix_dims(&grad);
        let g = f32s(&grad);
        let input_grad = weight.map(|weight| {
            let weight = weight.to_contiguous();
            let [inputs, _] = matrix_dims(&weight);
            let shape = [rows, outputs, inputs];
            let dx = dense::linear(
                g,
                dense::Weight::Transposed(f32s(&weight)),
                None,
                shape,
                dense::Then::Nothing,
            );
            FlexTensor::from_data(TensorData::new(dx, [rows, inputs]))
        });
        let weight_grad = x.map(|x| {
            let x = x.to_contiguous();
            let [_, inputs] = matrix_dims(&x);
            let dw = dense::weight_grad(f32s(&x), g, [rows, inputs, outputs]);
            FlexTensor::from_data(TensorData::new(dw, [inputs, outputs]))
        });
        let bias_grad = bias.then(|| f32_tensor(dense::bias_grad(g, outputs), [outputs]));
        DenseGrads {
            x: input_grad,
            weight: weight_grad,
            bias: bias_grad,
        }
    }

    fn layer_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, LayerNormSaved<FloatTensor<Self>>) {
        if !all_f32([&x, &gamma, &beta]) {
            return crate::layer_norm::forward_composed::<Self>(x, gamma, beta, epsilon);
        }
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.to_contiguous());
        let shape = x.layout().shape().clone();
        let out = cpu_layer_norm::forward(f32s(&x), f32s(&gamma), f32s(&beta), epsilon as f32);
        let mut row_shape = shape.clone();
        row_shape[shape.num_dims() - 1] = 1;
        let saved = LayerNormSaved {
            normalized: FlexTensor::from_data(TensorData::new(out.normalized, shape.clone())),
            std: FlexTensor::from_data(TensorData::new(out.std, row_shape)),
        };
        (FlexTensor::from_data(TensorData::new(out.y, shape)), saved)
    }

    fn layer_norm_backward(
        saved: LayerNormSaved<FloatTensor<Self>>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> LayerNormGrads<FloatTensor<Self>> {
        if !all_f32([&saved.normalized, &saved.std, &gamma, &grad]) {
            return crate::layer_norm::backward_composed::<Self>(saved, gamma, grad);
        }
        let [normalized, std, gamma] =
            [saved.normalized, saved.std, gamma].map(|t| t.to_contiguous());
        let width = f32s(&gamma).len();
        // The output's gradient is dead after this: the input's is written over it.
        let mut x = into_contiguous(grad);
        let (gamma, beta) =
            cpu_layer_norm::backward(f32s(&normalized), f32s(&std), f32s(&gamma), x.storage_mut());
        LayerNormGrads {
            x,
            gamma: f32_tensor(gamma, [width]),
            beta: f32_tensor(beta, [width]),
        }
    }

    fn adamw(
        state: AdamWState<FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        step: &AdamWStep,
    ) -> AdamWState<FloatTensor<Self>> {
        if !all_f32([&state.param, &state.exp_avg, &state.exp_avg_sq, &grad]) {
            return adamw::composed::<Self>(state, grad, step);
        }
        let grad = grad.to_contiguous();
        // In place where this update holds the only handle (a copy otherwise).
        let mut param = into_contiguous(state.param);
        let mut exp_avg = into_contiguous(state.exp_avg);
        let mut exp_avg_sq = into_contiguous(state.exp_avg_sq);
        adamw::update_in_place(
            param.storage_mut(),
            exp_avg.storage_mut(),
            exp_avg_sq.storage_mut(),
            f32s(&grad),
            step,
        );
        AdamWState {
            param,
            exp_avg,
            exp_avg_sq,
        }
    }

    fn split(
        flat: FloatTensor<Self>,
        offsets: &[usize],
        shapes: &[Shape],
    ) -> Vec<FloatTensor<Self>> {
        crate::split_composed::<Self>(flat, offsets, shapes, |piece| piece.to_contiguous())
    }

    type DropoutMask = MaskKey;

    fn dropout_forward(x: FloatTensor<Self>, prob: f64) -> (FloatTensor<Self>, MaskKey) {
        let key = draw_mask_key();
        (masked(x, key, prob), key)
    }

    fn dropout_backward(grad: FloatTensor<Self>, key: MaskKey, prob: f64) -> FloatTensor<Self> {
        masked(grad, key, prob)
    }

    fn cross_entropy_forward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if logits.dtype() != DType::F32 {
            return forward_composed::<Self>(logits, targets);
        }
        let [rows, classes] = matrix_dims(&logits);
        let ids = class_ids(&targets, classes);
        let logits = logits.to_contiguous();
        let values = f32s(&logits);
        let log_sum_exp: Vec<f32> = values.par_chunks(classes).map(log_sum_exp).collect();
        let total: f64 = log_sum_exp
            .iter()
            .zip(values.chunks(classes))
            .zip(&ids)
            .map(|((&lse, row), &id)| (lse - row[id]) as f64)
            .sum();
        let loss = (total / rows as f64) as f32;
        (f32_tensor(vec![loss], [1]), f32_tensor(log_sum_exp, [rows]))
    }

    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        log_sum_exp: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if !all_f32([&logits, &grad]) {
            return backward_composed::<Self>(logits, log_sum_exp, targets, grad);
        }
        let [rows, classes] = matrix_dims(&logits);
        let ids = class_ids(&targets, classes);
        let grad = grad.into_data().to_vec::<f32>().expect("f32 gradient")[0];
        let scale = grad / rows as f32;
        let log_sum_exp = log_sum_exp.to_contiguous();
        let log_sum_exp = f32s(&log_sum_exp);
        // The logits are dead after this: write the gradient over them when we hold the only
        // reference (the usual case), else into a copy.
        let mut out = into_contiguous(logits);
        let values: &mut [f32] = out.storage_mut();
        values
            .par_chunks_mut(classes)
            .zip(log_sum_exp.par_iter())
            .zip(ids.par_iter())
            .for_each(|((row, &lse), &id)| {
                exp_shifted_scaled(row, lse, scale);
                row[id] -= scale;
            });
        out
    }
}
