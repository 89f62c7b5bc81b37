//! Sentence embeddings: texts through a BERT Hash encoder, pooled as sentence-transformers'
//! `Pooling` module pools them (over every position whose attention mask is 1, special tokens
//! included), optionally L2-normalised. Texts are encoded in batches of similar length (sorted,
//! so padding is minimal) and come back in input order. No autodiff: run it on a plain backend.

use std::path::Path;

use berthash_data::glue::EncodedSplit;
use berthash_data::{encode_examples, GlueExample, Padding, TokenizerHandle};
use berthash_kernels::Kernels;
pub use berthash_model::pooling::{normalize, pool, Pooling};
use berthash_model::{load, BertHashConfig, BertHashModel};
use burn::prelude::*;

use crate::config::check_vocab;
use crate::error::{Result, TrainError};
use crate::tensors::classification_tensors;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    pub pooling: Pooling,
    /// Divide each embedding by its L2 norm (sentence-transformers' `Normalize`).
    pub normalize: bool,
    /// Longer texts are truncated to this many tokens, special tokens included; `None`: 128
    /// (the GLUE length), or the model's positions when it has fewer.
    pub max_seq_length: Option<usize>,
    /// Texts per forward pass (0 counts as 1).
    pub batch_size: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            pooling: Pooling::Mean,
            normalize: false,
            max_seq_length: None,
            batch_size: 64,
        }
    }
}

/// Single texts tokenized with `[CLS]` and `[SEP]`, truncated to `max_seq_length` tokens, to be
/// batched padded to the longest of each batch.
pub fn encode_texts(
    tokenizer: &TokenizerHandle,
    texts: &[String],
    max_seq_length: usize,
) -> Result<EncodedSplit> {
    let examples: Vec<GlueExample> = texts
        .iter()
        .map(|text| GlueExample {
            text_a: text.clone(),
            text_b: None,
            label: None,
        })
        .collect();
    Ok(encode_examples(
        tokenizer,
        &examples,
        max_seq_length,
        Padding::Longest,
    )?)
}

/// The length texts are truncated to unless asked otherwise: the 128 tokens of the GLUE recipes,
/// or the model's positions when it has fewer.
pub fn default_max_seq_length(config: &BertHashConfig) -> usize {
    config.max_position_embeddings.min(128)
}

/// Refuses a truncation length beyond the model's `positions` of the model in `dir`, or too
/// short to hold any text.
pub fn check_max_seq_length(dir: &Path, n: usize, positions: usize) -> Result<()> {
    let message = if n > positions {
        format!("max_seq_length {n} is beyond the model's {positions} positions (max_position_embeddings)")
    } else if n < 3 {
        format!(
            "max_seq_length {n} leaves no room for text between [CLS] and [SEP]: use at least 3"
        )
    } else {
        return Ok(());
    };
    Err(TrainError::Format {
        path: dir.to_path_buf(),
        message,
    })
}

/// One embedding per text, row-major `[len, dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub dim: usize,
    pub values: Vec<f32>,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// Cosine similarity of rows `i` and `j` (0 when either is the zero vector).
    pub fn cosine(&self, i: usize, j: usize) -> f32 {
        cosine(self.row(i), self.row(j))
    }
}

/// The cosine similarity of two vectors (0 when either is the zero vector).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = l2(a) * l2(b);
    if norm > 0.0 {
        dot / norm
    } else {
        0.0
    }
}

fn l2(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// An encoder, its tokenizer and the options it embeds with, checked to fit each other.
#[derive(Debug)]
pub struct Embedder<B: Backend> {
    pub config: BertHashConfig,
    model: BertHashModel<B>,
    tokenizer: TokenizerHandle,
    options: EmbedOptions,
    max_seq_length: usize,
    device: B::Device,
}

impl<B: Kernels> Embedder<B> {
    /// Loads the encoder of the model directory `dir` (any head is ignored). Refuses a tokenizer
    /// with ids beyond the model's vocabulary and a `max_seq_length` beyond its positions.
    pub fn load(
        dir: &Path,
        tokenizer: TokenizerHandle,
        options: EmbedOptions,
        device: &B::Device,
    ) -> Result<Self> {
        let loaded = load::<B, BertHashModel<B>>(dir, None, 0, device)?;
        Self::new(dir, loaded.config, loaded.model, tokenizer, options, device)
    }

    /// An embedder over `model` (with `config`, from `dir`, which errors name).
    pub fn new(
        dir: &Path,
        config: BertHashConfig,
        model: BertHashModel<B>,
        tokenizer: TokenizerHandle,
        options: EmbedOptions,
        device: &B::Device,
    ) -> Result<Self> {
        check_vocab(&tokenizer, &config).map_err(|_| TrainError::Format {
            path: dir.to_path_buf(),
            message: format!(
                "the tokenizer ({}) has {} tokens, more than the model's vocabulary of {}: use the tokenizer the model was trained with",
                tokenizer.name(),
                tokenizer.vocab_size(),
                config.vocab_size
            ),
        })?;
        let positions = config.max_position_embeddings;
        let max_seq_length = options
            .max_seq_length
            .unwrap_or(default_max_seq_length(&config));
        check_max_seq_length(dir, max_seq_length, positions)?;
        Ok(Self {
            config,
            model,
            tokenizer,
            options,
            max_seq_length,
            device: device.clone(),
        })
    }

    /// The embeddings of `texts`, in their order.
    pub fn embed(&self, texts: &[String]) -> Result<Embeddings> {
        let encoded = encode_texts(&self.tokenizer, texts, self.max_seq_length)?;
        // Longest first (stable), so each batch pads to nearly its own length.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded.examples[i].input_ids.len()));
        let dim = self.config.hidden_size;
        let mut values = vec![0.0; texts.len() * dim];
        for indices in order.chunks(self.options.batch_size.max(1)) {
            let batch = encoded.batch(indices)?;
            let tensors = classification_tensors::<B>(&batch, &self.device);
            let mask = tensors
                .input
                .attention_mask
                .clone()
                .expect("a padded batch has a mask");
            let hidden = self.model.encode(tensors.input);
            let pooled = pool(hidden, mask, self.options.pooling);
            let pooled = if self.options.normalize {
                normalize(pooled)
            } else {
                pooled
            };
            let rows = pooled
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 embeddings");
            for (&i, row) in indices.iter().zip(rows.chunks_exact(dim)) {
                values[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
        }
        Ok(Embeddings { dim, values })
    }
}
