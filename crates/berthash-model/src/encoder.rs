//! The post-LayerNorm encoder stack: `encoder.layer.N.{attention, intermediate, output}`.

use berthash_kernels::Kernels;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;

use crate::attention::{BertAttention, Sequences};
use crate::config::BertHashConfig;
use crate::dense::{dense_dropout_add, dense_gelu};
use crate::init::Initializer;
use crate::layer_norm::LayerNorm;

/// `intermediate`: hidden -> intermediate, GELU (erf form).
#[derive(Module, Debug)]
pub struct BertIntermediate<B: Backend> {
    pub dense: Linear<B>,
}

/// `output`: intermediate -> hidden, dropout, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertOutput<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertOutput<B>,
}

impl<B: Backend> BertLayer<B> {
    pub fn new(config: &BertHashConfig, init: &mut Initializer<B>) -> Self {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Self {
            attention: BertAttention::new(config, init),
            intermediate: BertIntermediate {
                dense: init.linear(h, i, true),
            },
            output: BertOutput {
                dense: init.linear(i, h, true),
                layer_norm: init.layer_norm(h, config.layer_norm_eps),
                dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            },
        }
    }
}

impl<B: Kernels> BertLayer<B> {
    pub fn forward(&self, hidden: Tensor<B, 2>, sequences: &Sequences<B>) -> Tensor<B, 2> {
        let attended = self.attention.forward(hidden, sequences);
        let expanded = dense_gelu(&self.intermediate.dense, attended.clone());
        let output = &self.output;
        output.layer_norm.forward(dense_dropout_add(
            &output.dense,
            expanded,
            &output.dropout,
            attended,
        ))
    }
}

#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    pub layer: Vec<BertLayer<B>>,
}

impl<B: Backend> BertEncoder<B> {
    pub fn new(config: &BertHashConfig, init: &mut Initializer<B>) -> Self {
        Self {
            layer: (0..config.num_hidden_layers)
                .map(|_| BertLayer::new(config, init))
                .collect(),
        }
    }
}

impl<B: Kernels> BertEncoder<B> {
    /// `hidden`: `[batch, seq, hidden]`. The layers pass it on as the matrix of its rows, which
    /// every dense layer multiplies as it is: reshaped at each layer instead, it cost the host
    /// two operations a layer, and their gradients two more, on a GPU backend.
    pub fn forward(&self, hidden: Tensor<B, 3>, mask: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
        let [batch, seq, width] = hidden.dims();
        let sequences = Sequences { seq, mask };
        let mut rows = hidden.reshape([batch * seq, width]);
        for layer in &self.layer {
            rows = layer.forward(rows, &sequences);
        }
        rows.reshape([batch, seq, width])
    }
}
