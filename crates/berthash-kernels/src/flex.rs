//! The CPU backend's kernels: one rayon task per row, SIMD `exp` ([`crate::exp`]). Other float
//! types than f32 take the composed path.

use burn::backend::Flex;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::cross_entropy::{backward_composed, forward_composed};
use crate::exp::{exp_shifted_scaled, log_sum_exp};
use crate::Kernels;

/// `[rows, classes]` of a 2-D tensor.
fn matrix_dims(tensor: &FlexTensor) -> [usize; 2] {
    let shape = tensor.layout().shape();
    assert_eq!(
        shape.num_dims(),
        2,
        "cross_entropy: logits must be [rows, classes], got {shape:?}"
    );
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
        let values = logits.as_slice::<f32>().expect("contiguous f32");
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
        if logits.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return backward_composed::<Self>(logits, log_sum_exp, targets, grad);
        }
        let [rows, classes] = matrix_dims(&logits);
        let ids = class_ids(&targets, classes);
        let grad = grad.into_data().to_vec::<f32>().expect("f32 gradient")[0];
        let scale = grad / rows as f32;
        let log_sum_exp = log_sum_exp.to_contiguous();
        let log_sum_exp = log_sum_exp.as_slice::<f32>().expect("contiguous f32");
        // The logits are dead after this: write the gradient over them when we hold the only
        // reference (the usual case), else into a copy.
        let mut out = logits.to_contiguous();
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
