//! Host batches from `berthash-data` as Burn tensors on a device.

use berthash_data::{BatchLabels, ClassificationBatch, MlmBatch};
use berthash_model::{BertInput, ClassificationTargets};
use burn::prelude::*;

fn ints<B: Backend, const D: usize>(
    values: &[u32],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    let values: Vec<i64> = values.iter().map(|&v| i64::from(v)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A masked-LM batch on the device.
#[derive(Debug, Clone)]
pub struct MlmTensors<B: Backend> {
    pub input: BertInput<B>,
    /// Flat `row * seq_len + col` positions of the selected tokens.
    pub positions: Tensor<B, 1, Int>,
    pub labels: Tensor<B, 1, Int>,
    /// Selected tokens (the loss's denominator).
    pub masked: usize,
    /// Non-padding tokens.
    pub tokens: usize,
}

/// The token types, or `None` (type 0 everywhere, which the model adds without a lookup) when
/// every one is 0, as in single-segment rows.
fn token_types<B: Backend>(
    types: &[u32],
    shape: [usize; 2],
    device: &B::Device,
) -> Option<Tensor<B, 2, Int>> {
    types
        .iter()
        .any(|&t| t != 0)
        .then(|| ints(types, shape, device))
}

pub fn mlm_tensors<B: Backend>(batch: &MlmBatch, device: &B::Device) -> MlmTensors<B> {
    let shape = [batch.batch_size, batch.seq_len];
    let masked = batch.masked_positions.len();
    MlmTensors {
        input: BertInput {
            input_ids: ints(&batch.input_ids, shape, device),
            token_type_ids: token_types(&batch.token_type_ids, shape, device),
            attention_mask: batch
                .attention_mask
                .as_ref()
                .map(|m| ints(m, shape, device)),
        },
        positions: ints(&batch.masked_positions, [masked], device),
        labels: ints(&batch.masked_labels, [masked], device),
        masked,
        tokens: batch.real_tokens(),
    }
}

/// A classification batch on the device; `targets` is `None` for an unlabelled split.
#[derive(Debug, Clone)]
pub struct ClassificationTensors<B: Backend> {
    pub input: BertInput<B>,
    pub targets: Option<ClassificationTargets<B>>,
    pub rows: usize,
    pub tokens: usize,
}

pub fn classification_tensors<B: Backend>(
    batch: &ClassificationBatch,
    device: &B::Device,
) -> ClassificationTensors<B> {
    let shape = [batch.batch_size, batch.seq_len];
    let rows = batch.batch_size;
    let targets = match &batch.labels {
        BatchLabels::Classes(classes) => {
            let values: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
            Some(ClassificationTargets::Classes(Tensor::from_data(
                TensorData::new(values, [rows]),
                device,
            )))
        }
        BatchLabels::Scores(scores) => Some(ClassificationTargets::Scores(Tensor::from_data(
            TensorData::new(scores.clone(), [rows]),
            device,
        ))),
        BatchLabels::Unlabelled => None,
    };
    ClassificationTensors {
        input: BertInput {
            input_ids: ints(&batch.input_ids, shape, device),
            token_type_ids: token_types(&batch.token_type_ids, shape, device),
            attention_mask: Some(ints(&batch.attention_mask, shape, device)),
        },
        targets,
        rows,
        tokens: batch.attention_mask.iter().filter(|&&m| m == 1).count(),
    }
}
