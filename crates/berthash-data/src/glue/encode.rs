//! Encoding GLUE examples as `run_glue` does: `[CLS] a [SEP]` or
//! `[CLS] a [SEP] b [SEP]` with token type ids 0/1, truncated to
//! `max_seq_length` with the tokenizer's own longest-first strategy (so the cut
//! matches the Hugging Face fast tokenizer exactly), padded to `max_seq_length`
//! (`run_glue`'s default) or to the longest row of each batch.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::{EncodeInput, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{DataError, Result};
use crate::glue::task::{GlueExample, Label};
use crate::tokenize::{describe_text, TokenizerHandle};

/// How batches are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Every row has `max_seq_length` tokens (`run_glue --pad_to_max_length`).
    #[default]
    Fixed,
    /// Rows are padded to the longest row of their batch.
    Longest,
}

/// One encoded example (unpadded).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedExample {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    pub label: Option<Label>,
}

/// The labels of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchLabels {
    Classes(Vec<usize>),
    Scores(Vec<f32>),
    /// The split has no labels (e.g. a test split).
    Unlabelled,
}

/// A fine-tuning batch; the id vectors are flat and row-major `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationBatch {
    pub batch_size: usize,
    pub seq_len: usize,
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    /// 1 = real token, 0 = padding.
    pub attention_mask: Vec<u32>,
    pub labels: BatchLabels,
}

/// An encoded split, ready to be cut into batches in any order.
#[derive(Debug, Clone)]
pub struct EncodedSplit {
    pub examples: Vec<EncodedExample>,
    pub max_seq_length: usize,
    pub padding: Padding,
    pub pad_id: u32,
}

/// Tokenizes examples in parallel, truncating to `max_seq_length` tokens
/// (special tokens included; longest-first for pairs). All examples must be
/// labelled the same way (all classes, all scores, or none).
pub fn encode_examples(
    tokenizer: &TokenizerHandle,
    examples: &[GlueExample],
    max_seq_length: usize,
    padding: Padding,
) -> Result<EncodedSplit> {
    let pair = examples.iter().any(|e| e.text_b.is_some());
    let specials = if pair { 3 } else { 2 };
    if max_seq_length < specials + 1 {
        return Err(DataError::config(
            "max_seq_length",
            format!("{max_seq_length} leaves no room for text after {specials} special tokens"),
        ));
    }
    check_labels(examples)?;
    let mut tk = tokenizer.tokenizer().clone();
    tk.with_truncation(Some(TruncationParams {
        direction: TruncationDirection::Right,
        max_length: max_seq_length,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
    }))
    .map_err(|e| DataError::config("max_seq_length", e.to_string()))?;
    let encoded = examples
        .par_iter()
        .map(|ex| {
            let input: EncodeInput = match &ex.text_b {
                Some(b) => (ex.text_a.as_str(), b.as_str()).into(),
                None => ex.text_a.as_str().into(),
            };
            let enc = tk.encode_fast(input, true).map_err(|e| DataError::Encode {
                origin: describe_text(&ex.text_a),
                message: e.to_string(),
            })?;
            Ok(EncodedExample {
                input_ids: enc.get_ids().to_vec(),
                token_type_ids: enc.get_type_ids().to_vec(),
                label: ex.label,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EncodedSplit {
        examples: encoded,
        max_seq_length,
        padding,
        pad_id: tokenizer.pad_id(),
    })
}

fn check_labels(examples: &[GlueExample]) -> Result<()> {
    let kind = |l: &Option<Label>| match l {
        None => 0,
        Some(Label::Class(_)) => 1,
        Some(Label::Score(_)) => 2,
    };
    if let Some(first) = examples.first() {
        if let Some(i) = examples
            .iter()
            .position(|e| kind(&e.label) != kind(&first.label))
        {
            return Err(DataError::config(
                "examples",
                format!("example {i} is labelled differently from example 0 (mixed labelled/unlabelled or class/score)"),
            ));
        }
    }
    Ok(())
}

impl EncodedSplit {
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The batch of the examples at `indices` (e.g. a shuffled slice).
    /// Indices out of range are an error.
    pub fn batch(&self, indices: &[usize]) -> Result<ClassificationBatch> {
        let rows: Vec<&EncodedExample> = indices
            .iter()
            .map(|&i| {
                self.examples.get(i).ok_or_else(|| {
                    DataError::config("indices", format!("example {i} of {}", self.examples.len()))
                })
            })
            .collect::<Result<_>>()?;
        Ok(self.collate(&rows))
    }

    fn collate(&self, rows: &[&EncodedExample]) -> ClassificationBatch {
        let seq_len = match self.padding {
            Padding::Fixed => self.max_seq_length,
            Padding::Longest => rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0),
        };
        let n = rows.len() * seq_len;
        let (mut ids, mut types, mut mask) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for r in rows {
            let pad = seq_len - r.input_ids.len();
            ids.extend_from_slice(&r.input_ids);
            ids.extend(std::iter::repeat_n(self.pad_id, pad));
            types.extend_from_slice(&r.token_type_ids);
            types.extend(std::iter::repeat_n(0, pad));
            mask.extend(std::iter::repeat_n(1, r.input_ids.len()));
            mask.extend(std::iter::repeat_n(0, pad));
        }
        let labels = match rows.first().and_then(|r| r.label) {
            None => BatchLabels::Unlabelled,
            Some(Label::Class(_)) => BatchLabels::Classes(
                rows.iter()
                    .filter_map(|r| match r.label {
                        Some(Label::Class(c)) => Some(c),
                        _ => None,
                    })
                    .collect(),
            ),
            Some(Label::Score(_)) => BatchLabels::Scores(
                rows.iter()
                    .filter_map(|r| match r.label {
                        Some(Label::Score(s)) => Some(s),
                        _ => None,
                    })
                    .collect(),
            ),
        };
        ClassificationBatch {
            batch_size: rows.len(),
            seq_len,
            input_ids: ids,
            token_type_ids: types,
            attention_mask: mask,
            labels,
        }
    }

    /// Batches in order; the last may be smaller.
    pub fn batches(&self, batch_size: usize) -> impl Iterator<Item = ClassificationBatch> + '_ {
        let size = batch_size.max(1);
        self.examples.chunks(size).map(move |chunk| {
            let rows: Vec<&EncodedExample> = chunk.iter().collect();
            self.collate(&rows)
        })
    }
}
