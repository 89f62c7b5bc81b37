//! Multi-head self-attention, as `BertAttention` (self + output with residual and LayerNorm).

use berthash_kernels::{attention, AttentionConfig, Kernels};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;

use crate::config::BertHashConfig;
use crate::dense::{dense, dense_dropout_add};
use crate::init::Initializer;
use crate::layer_norm::LayerNorm;

/// `attention.self`: the query/key/value projections and the scaled dot-product.
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub dropout: Dropout,
    pub num_heads: usize,
}

impl<B: Backend> BertSelfAttention<B> {
    pub fn new(config: &BertHashConfig, init: &mut Initializer<B>) -> Self {
        let h = config.hidden_size;
        Self {
            query: init.linear(h, h, true),
            key: init.linear(h, h, true),
            value: init.linear(h, h, true),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            num_heads: config.num_attention_heads,
        }
    }
}

/// How the rows of hidden states `[batch * seq, hidden]` make sequences: `seq` rows each, in
/// turn, and the additive key mask `[batch, seq]` (see [`additive_attention_mask`]).
#[derive(Debug, Clone)]
pub struct Sequences<B: Backend> {
    pub seq: usize,
    pub mask: Option<Tensor<B, 2>>,
}

impl<B: Kernels> BertSelfAttention<B> {
    pub fn forward(&self, hidden: Tensor<B, 2>, sequences: &Sequences<B>) -> Tensor<B, 2> {
        let [rows, width] = hidden.dims();
        let seq = sequences.seq;
        let shaped = |x: Tensor<B, 2>| x.reshape([rows / seq, seq, width]);
        let query = shaped(dense(&self.query, hidden.clone()));
        let key = shaped(dense(&self.key, hidden.clone()));
        let value = shaped(dense(&self.value, hidden));
        // The mask is built in f32; under half precision the projections are not.
        let mask = sequences.mask.clone().map(|mask| mask.cast(query.dtype()));
        let config = AttentionConfig {
            heads: self.num_heads,
            scale: 1.0 / ((width / self.num_heads) as f64).sqrt(),
            dropout: self.dropout.prob,
        };
        attention(query, key, value, mask, config).reshape([rows, width])
    }
}

/// `attention.output`: projection, dropout, residual, LayerNorm (post-LN).
#[derive(Module, Debug)]
pub struct BertSelfOutput<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertSelfOutput<B> {
    pub fn new(config: &BertHashConfig, init: &mut Initializer<B>) -> Self {
        Self {
            dense: init.linear(config.hidden_size, config.hidden_size, true),
            layer_norm: init.layer_norm(config.hidden_size, config.layer_norm_eps),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }
}

impl<B: Kernels> BertSelfOutput<B> {
    pub fn forward(&self, hidden: Tensor<B, 2>, residual: Tensor<B, 2>) -> Tensor<B, 2> {
        self.layer_norm.forward(dense_dropout_add(
            &self.dense,
            hidden,
            &self.dropout,
            residual,
        ))
    }
}

/// `attention`: Hugging Face calls the inner module `self`, a Rust keyword, hence `self_`.
#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    pub self_: BertSelfAttention<B>,
    pub output: BertSelfOutput<B>,
}

impl<B: Backend> BertAttention<B> {
    pub fn new(config: &BertHashConfig, init: &mut Initializer<B>) -> Self {
        Self {
            self_: BertSelfAttention::new(config, init),
            output: BertSelfOutput::new(config, init),
        }
    }
}

impl<B: Kernels> BertAttention<B> {
    pub fn forward(&self, hidden: Tensor<B, 2>, sequences: &Sequences<B>) -> Tensor<B, 2> {
        let attended = self.self_.forward(hidden.clone(), sequences);
        self.output.forward(attended, hidden)
    }
}

/// Turns a `[batch, seq]` 1/0 attention mask into the additive `[batch, seq]` key bias BERT adds
/// to the attention scores (broadcast over heads and queries): 0 where attended, the most
/// negative f32 where padded (`torch.finfo(float32).min`, as transformers uses).
pub fn additive_attention_mask<B: Backend>(attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    (attention_mask.float().neg() + 1.0) * f32::MIN
}
