//! What sits on top of the encoder: the pooler and the stock BERT MLM head (able to score only
//! selected positions). The classifier is two plain fields of its model (`dropout`, `classifier`).

use berthash_kernels::{select_rows, Kernels, RowIndices};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::tanh;

use crate::config::BertHashConfig;
use crate::dense::{dense, dense_gelu};
use crate::init::Initializer;
use crate::layer_norm::LayerNorm;

/// `pooler`: `tanh(dense(h[CLS]))`.
#[derive(Module, Debug)]
pub struct BertPooler<B: Backend> {
    pub dense: Linear<B>,
}

impl<B: Backend> BertPooler<B> {
    pub fn new(config: &BertHashConfig, init: &mut Initializer<B>) -> Self {
        Self {
            dense: init.linear(config.hidden_size, config.hidden_size, true),
        }
    }
}

impl<B: Kernels> BertPooler<B> {
    /// `[batch, seq, hidden]` -> `[batch, hidden]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, width] = hidden.dims();
        let first = hidden.slice([0..batch, 0..1]).reshape([batch, width]);
        tanh(dense(&self.dense, first))
    }
}

/// `cls.predictions.transform`: dense, GELU, LayerNorm.
#[derive(Module, Debug)]
pub struct BertPredictionHeadTransform<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
}

/// `cls.predictions`: transform then the untied vocabulary decoder. The decoder's bias is the
/// tensor transformers stores twice (`cls.predictions.bias` and `cls.predictions.decoder.bias`).
#[derive(Module, Debug)]
pub struct BertLMPredictionHead<B: Backend> {
    pub transform: BertPredictionHeadTransform<B>,
    pub decoder: Linear<B>,
}

/// `cls`.
#[derive(Module, Debug)]
pub struct BertOnlyMLMHead<B: Backend> {
    pub predictions: BertLMPredictionHead<B>,
}

impl<B: Backend> BertOnlyMLMHead<B> {
    pub fn new(config: &BertHashConfig, init: &mut Initializer<B>) -> Self {
        let h = config.hidden_size;
        Self {
            predictions: BertLMPredictionHead {
                transform: BertPredictionHeadTransform {
                    dense: init.linear(h, h, true),
                    layer_norm: init.layer_norm(h, config.layer_norm_eps),
                },
                decoder: init.linear(h, config.vocab_size, true),
            },
        }
    }
}

impl<B: Kernels> BertOnlyMLMHead<B> {
    /// `[..., hidden]` -> `[..., vocab]` logits.
    pub fn forward<const D: usize>(&self, hidden: Tensor<B, D>) -> Tensor<B, D> {
        let transform = &self.predictions.transform;
        let transformed = transform
            .layer_norm
            .forward(dense_gelu(&transform.dense, hidden));
        dense(&self.predictions.decoder, transformed)
    }

    /// Logits at selected positions only: `positions` index the flattened `[batch * seq]` rows,
    /// each at most once.
    /// At 15% masking this skips ~85% of the vocab decoder, by far the largest matmul.
    pub fn forward_selected(
        &self,
        hidden: Tensor<B, 3>,
        positions: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let [batch, seq, width] = hidden.dims();
        let rows = select_rows(
            hidden.reshape([batch * seq, width]),
            positions,
            RowIndices::Unique,
        );
        self.forward(rows)
    }
}
