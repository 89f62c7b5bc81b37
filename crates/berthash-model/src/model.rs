//! The three BERT Hash models, mirroring transformers' class and attribute names so that the
//! weight mapping is (almost) the identity: `BertHashModel` (`embeddings`, `encoder`, `pooler`),
//! `BertHashForMaskedLM` (`bert`, `cls`) and `BertHashForSequenceClassification` (`bert`,
//! `classifier`).

use berthash_kernels::{dropout, Kernels};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;

use crate::attention::additive_attention_mask;
use crate::config::BertHashConfig;
use crate::dense::dense;
use crate::embeddings::BertEmbeddings;
use crate::encoder::BertEncoder;
use crate::heads::{BertOnlyMLMHead, BertPooler};
use crate::init::Initializer;
use crate::loss;

/// One batch of model inputs, `[batch, seq]` each.
#[derive(Debug, Clone)]
pub struct BertInput<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    /// All zeros when absent.
    pub token_type_ids: Option<Tensor<B, 2, Int>>,
    /// 1 = attend, 0 = padding; everything attended when absent (packed pre-training rows).
    pub attention_mask: Option<Tensor<B, 2, Int>>,
}

impl<B: Backend> BertInput<B> {
    pub fn new(input_ids: Tensor<B, 2, Int>) -> Self {
        Self {
            input_ids,
            token_type_ids: None,
            attention_mask: None,
        }
    }
}

/// What the shape of a model needs beyond `config.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelOptions {
    pub with_pooler: bool,
    /// The published checkpoints have none; an importer found one if this is set.
    pub projection_bias: bool,
}

#[derive(Module, Debug)]
pub struct BertHashModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
    pub pooler: Option<BertPooler<B>>,
}

#[derive(Debug, Clone)]
pub struct BertModelOutput<B: Backend> {
    pub last_hidden_state: Tensor<B, 3>,
    pub pooler_output: Option<Tensor<B, 2>>,
}

impl<B: Backend> BertHashModel<B> {
    pub fn new(config: &BertHashConfig, options: ModelOptions, init: &mut Initializer<B>) -> Self {
        Self {
            embeddings: BertEmbeddings::new(config, options.projection_bias, init),
            encoder: BertEncoder::new(config, init),
            pooler: options.with_pooler.then(|| BertPooler::new(config, init)),
        }
    }
}

impl<B: Kernels> BertHashModel<B> {
    /// The encoder's output for every position, without the pooler.
    pub fn encode(&self, input: BertInput<B>) -> Tensor<B, 3> {
        let mask = input.attention_mask.map(additive_attention_mask);
        let embedded = self
            .embeddings
            .forward(input.input_ids, input.token_type_ids);
        self.encoder.forward(embedded, mask)
    }

    pub fn forward(&self, input: BertInput<B>) -> BertModelOutput<B> {
        let last_hidden_state = self.encode(input);
        let pooler_output = self
            .pooler
            .as_ref()
            .map(|pooler| pooler.forward(last_hidden_state.clone()));
        BertModelOutput {
            last_hidden_state,
            pooler_output,
        }
    }
}

#[derive(Module, Debug)]
pub struct BertHashForMaskedLM<B: Backend> {
    pub bert: BertHashModel<B>,
    pub cls: BertOnlyMLMHead<B>,
}

impl<B: Backend> BertHashForMaskedLM<B> {
    /// transformers builds `BertForMaskedLM` without a pooler; so do we unless asked.
    pub fn new(config: &BertHashConfig, options: ModelOptions, init: &mut Initializer<B>) -> Self {
        Self {
            bert: BertHashModel::new(config, options, init),
            cls: BertOnlyMLMHead::new(config, init),
        }
    }
}

impl<B: Kernels> BertHashForMaskedLM<B> {
    /// Hidden states and logits at every position: `[batch, seq, vocab]`.
    pub fn forward(&self, input: BertInput<B>) -> (BertModelOutput<B>, Tensor<B, 3>) {
        let output = self.bert.forward(input);
        let logits = self.cls.forward(output.last_hidden_state.clone());
        (output, logits)
    }

    /// Logits at the flattened `[batch * seq]` rows in `positions` only: `[positions, vocab]`.
    pub fn forward_selected(
        &self,
        input: BertInput<B>,
        positions: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        self.cls
            .forward_selected(self.bert.encode(input), positions)
    }

    /// Mean cross-entropy over the selected positions, and their logits.
    pub fn loss(
        &self,
        input: BertInput<B>,
        positions: Tensor<B, 1, Int>,
        labels: Tensor<B, 1, Int>,
    ) -> (Tensor<B, 1>, Tensor<B, 2>) {
        let logits = self.forward_selected(input, positions);
        (loss::cross_entropy(logits.clone(), labels), logits)
    }
}

#[derive(Module, Debug)]
pub struct BertHashForSequenceClassification<B: Backend> {
    pub bert: BertHashModel<B>,
    pub dropout: Dropout,
    pub classifier: Linear<B>,
}

/// Targets of a classification batch: class ids, or scores for a regression head.
#[derive(Debug, Clone)]
pub enum ClassificationTargets<B: Backend> {
    Classes(Tensor<B, 1, Int>),
    Scores(Tensor<B, 1>),
}

impl<B: Backend> BertHashForSequenceClassification<B> {
    pub fn new(config: &BertHashConfig, options: ModelOptions, init: &mut Initializer<B>) -> Self {
        let options = ModelOptions {
            with_pooler: true,
            ..options
        };
        let dropout = config
            .classifier_dropout
            .unwrap_or(config.hidden_dropout_prob);
        Self {
            bert: BertHashModel::new(config, options, init),
            dropout: DropoutConfig::new(dropout).init(),
            classifier: init.linear(config.hidden_size, config.num_labels(), true),
        }
    }
}

impl<B: Kernels> BertHashForSequenceClassification<B> {
    /// `[batch, num_labels]` logits (a single score per row for regression).
    pub fn forward(&self, input: BertInput<B>) -> (BertModelOutput<B>, Tensor<B, 2>) {
        let output = self.bert.forward(input);
        let pooled = output
            .pooler_output
            .clone()
            .expect("a classification model always has a pooler");
        let logits = dense(&self.classifier, dropout(pooled, &self.dropout));
        (output, logits)
    }

    /// Cross-entropy for classes, MSE for scores, as `BertForSequenceClassification` picks.
    pub fn loss(
        &self,
        input: BertInput<B>,
        targets: ClassificationTargets<B>,
    ) -> (Tensor<B, 1>, Tensor<B, 2>) {
        let (_, logits) = self.forward(input);
        let loss = match targets {
            ClassificationTargets::Classes(classes) => loss::cross_entropy(logits.clone(), classes),
            ClassificationTargets::Scores(scores) => loss::mse(logits.clone(), scores),
        };
        (loss, logits)
    }
}
