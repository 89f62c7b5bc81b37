//! Sentence embeddings: texts through a BERT Hash encoder, pooled as sentence-transformers'
//! `Pooling` module pools them (over every position whose attention mask is 1, special tokens
//! included), optionally L2-normalised. Texts are encoded in batches of similar length (sorted,
//! so padding is minimal) and come back in input order. No autodiff: run it on a plain backend.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use berthash_data::glue::EncodedSplit;
use berthash_data::{encode_examples, GlueExample, Padding, TokenizerHandle};
use berthash_kernels::Kernels;
use berthash_model::{load, BertHashConfig, BertHashModel};
use burn::prelude::*;

use crate::config::check_vocab;
use crate::error::{Result, TrainError};
use crate::tensors::classification_tensors;

/// How token vectors become one sentence vector (sentence-transformers' pooling modes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean over the attended positions (`pooling_mode_mean_tokens`).
    #[default]
    Mean,
    /// The first token, `[CLS]` (`pooling_mode_cls_token`).
    Cls,
    /// The element-wise maximum over the attended positions (`pooling_mode_max_tokens`).
    Max,
}

impl FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "max" => Ok(Pooling::Max),
            other => Err(format!("unknown pooling `{other}`: use mean, cls or max")),
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
        })
    }
}

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

/// `[batch, seq, hidden]` token vectors to `[batch, hidden]`, with `mask` `[batch, seq]` (1 =
/// attended) as sentence-transformers' `Pooling.forward` uses it.
pub fn pool<B: Backend>(
    hidden: Tensor<B, 3>,
    mask: Tensor<B, 2, Int>,
    pooling: Pooling,
) -> Tensor<B, 2> {
    let [batch, seq, dim] = hidden.dims();
    match pooling {
        Pooling::Cls => hidden.slice([0..batch, 0..1, 0..dim]).reshape([batch, dim]),
        Pooling::Mean => {
            let mask = mask.float().unsqueeze_dim::<3>(2);
            let counts = mask.clone().sum_dim(1).clamp_min(1e-9);
            (hidden * mask).sum_dim(1).div(counts).reshape([batch, dim])
        }
        Pooling::Max => {
            let padding = mask
                .equal_elem(0)
                .unsqueeze_dim::<3>(2)
                .expand([batch, seq, dim]);
            hidden
                .mask_fill(padding, -1e9)
                .max_dim(1)
                .reshape([batch, dim])
        }
    }
}

/// Each row divided by its L2 norm, at least 1e-12 (torch's `F.normalize`).
pub fn normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x.div(norm)
}
