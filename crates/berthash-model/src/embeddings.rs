//! The embedding block. The one departure from stock BERT lives here: the word embedding is a
//! `[vocab, projections]` table ("like a hash") followed by a bias-free projection to
//! `hidden_size`, so the vocabulary costs `vocab * projections` instead of `vocab * hidden`.

use berthash_kernels::{dropout, embedding, Kernels};
use burn::nn::{Dropout, DropoutConfig, Embedding, Linear};
use burn::prelude::*;

use crate::config::BertHashConfig;
use crate::dense::dense;
use crate::init::Initializer;
use crate::layer_norm::LayerNorm;

/// `embeddings.word_embeddings` in Hugging Face names: `embeddings.weight` and `projection.weight`.
#[derive(Module, Debug)]
pub struct HashedWordEmbeddings<B: Backend> {
    pub embeddings: Embedding<B>,
    pub projection: Linear<B>,
}

impl<B: Backend> HashedWordEmbeddings<B> {
    pub fn new(config: &BertHashConfig, projection_bias: bool, init: &mut Initializer<B>) -> Self {
        Self {
            embeddings: init.embedding(
                config.vocab_size,
                config.projections,
                Some(config.pad_token_id),
            ),
            projection: init.linear(config.projections, config.hidden_size, projection_bias),
        }
    }
}

impl<B: Kernels> HashedWordEmbeddings<B> {
    /// `[batch, seq]` token ids -> `[batch, seq, hidden]`.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        dense(
            &self.projection,
            embedding(self.embeddings.weight.val(), input_ids),
        )
    }
}

/// `embeddings`: token vector + absolute position + token type, then LayerNorm and dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: HashedWordEmbeddings<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertEmbeddings<B> {
    pub fn new(config: &BertHashConfig, projection_bias: bool, init: &mut Initializer<B>) -> Self {
        Self {
            word_embeddings: HashedWordEmbeddings::new(config, projection_bias, init),
            position_embeddings: init.embedding(
                config.max_position_embeddings,
                config.hidden_size,
                None,
            ),
            token_type_embeddings: init.embedding(config.type_vocab_size, config.hidden_size, None),
            layer_norm: init.layer_norm(config.hidden_size, config.layer_norm_eps),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }
}

impl<B: Kernels> BertEmbeddings<B> {
    /// `token_type_ids` `None` is type 0 everywhere. The position and type-0 vectors are added
    /// as rows broadcast over the batch rather than looked up per token: the same sum, whose
    /// gradient is a sum over the batch instead of a scatter of every token's gradient into the
    /// same few rows (on a GPU, a kernel whose threads each walk every token).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Option<Tensor<B, 2, Int>>,
    ) -> Tensor<B, 3> {
        let seq = input_ids.dims()[1];
        let [_, hidden] = self.position_embeddings.weight.dims();
        let positions = self
            .position_embeddings
            .weight
            .val()
            .narrow(0, 0, seq)
            .reshape([1, seq, hidden]);
        let words_and_positions = self.word_embeddings.forward(input_ids) + positions;
        let embeddings = match token_type_ids {
            Some(types) => {
                words_and_positions + embedding(self.token_type_embeddings.weight.val(), types)
            }
            None => {
                let type_zero = self
                    .token_type_embeddings
                    .weight
                    .val()
                    .narrow(0, 0, 1)
                    .reshape([1, 1, hidden]);
                words_and_positions + type_zero
            }
        };
        dropout(self.layer_norm.forward(embeddings), &self.dropout)
    }
}
