//! The BERT Hash forward pass as an ONNX graph, node for node what `modeling_bert_hash.py` and
//! our model compute at inference: the hashed word embedding and its projection, position and
//! token-type embeddings, post-LN encoder layers with exact (erf) GELU, then the pooler and the
//! head the model has. Initializers carry the Hugging Face parameter names.

use berthash_model::pooling::Pooling;
use berthash_model::{BertHashConfig, ModelError};

use crate::graph::{Attr, Dim, Graph};
use crate::proto::{DATA_TYPE_BOOL, DATA_TYPE_FLOAT, DATA_TYPE_INT64};
use crate::weights::Weights;

const BATCH: Dim = Dim::Named("batch_size");
const SEQUENCE: Dim = Dim::Named("sequence_length");

/// What the graph ends with, found from the model's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// `last_hidden_state` (and `pooler_output` when the model has a pooler).
    Base,
    /// `logits` over the vocabulary at every position.
    MaskedLm,
    /// `logits` over the labels, from the pooler.
    SequenceClassification,
}

impl Head {
    pub fn of(weights: &Weights) -> Self {
        if weights.has("classifier.weight") {
            Head::SequenceClassification
        } else if weights.has("cls.predictions.decoder.weight") {
            Head::MaskedLm
        } else {
            Head::Base
        }
    }
}

struct Builder<'a> {
    graph: Graph,
    weights: &'a Weights,
}

impl Builder<'_> {
    fn weight(&mut self, key: &str) -> Result<(String, Vec<usize>), ModelError> {
        let (shape, values) = self.weights.get(key)?;
        Ok((self.graph.floats(key, shape, values), shape.clone()))
    }

    /// `x @ W (+ b)` with the Linear called `prefix`.
    fn linear(&mut self, x: &str, prefix: &str) -> Result<String, ModelError> {
        let (w, _) = self.weight(&format!("{prefix}.weight"))?;
        let product = self
            .graph
            .node("MatMul", &[x, &w], vec![], &format!("{prefix}/MatMul"));
        let bias = format!("{prefix}.bias");
        if !self.weights.has(&bias) {
            return Ok(product);
        }
        let (b, _) = self.weight(&bias)?;
        Ok(self.graph.node("Add", &[&product, &b], vec![], prefix))
    }

    fn layer_norm(&mut self, x: &str, prefix: &str, eps: f64) -> Result<String, ModelError> {
        let (gamma, _) = self.weight(&format!("{prefix}.weight"))?;
        let (beta, _) = self.weight(&format!("{prefix}.bias"))?;
        let attrs = vec![Attr::Int("axis", -1), Attr::Float("epsilon", eps as f32)];
        Ok(self
            .graph
            .node("LayerNormalization", &[x, &gamma, &beta], attrs, prefix))
    }

    /// GELU with erf, as `x * 0.5 * (1 + erf(x / sqrt(2)))`: the pattern ONNX Runtime fuses.
    fn gelu(&mut self, x: &str, name: &str) -> String {
        let g = &mut self.graph;
        let root2 = g.floats(&format!("{name}/sqrt2"), &[], &[std::f32::consts::SQRT_2]);
        let one = g.floats(&format!("{name}/one"), &[], &[1.0]);
        let half = g.floats(&format!("{name}/half"), &[], &[0.5]);
        let scaled = g.node("Div", &[x, &root2], vec![], &format!("{name}/Div"));
        let erf = g.node("Erf", &[&scaled], vec![], &format!("{name}/Erf"));
        let shifted = g.node("Add", &[&erf, &one], vec![], &format!("{name}/Add"));
        let gated = g.node("Mul", &[x, &shifted], vec![], &format!("{name}/Mul"));
        g.node("Mul", &[&gated, &half], vec![], name)
    }

    /// `[batch, seq, hidden]` -> `[batch, heads, seq, head]` (or `[batch, heads, head, seq]`).
    fn split_heads(&mut self, x: &str, shape: &str, perm: [i64; 4], name: &str) -> String {
        let split = self
            .graph
            .node("Reshape", &[x, shape], vec![], &format!("{name}/Reshape"));
        self.graph.node(
            "Transpose",
            &[&split],
            vec![Attr::Ints("perm", perm.to_vec())],
            name,
        )
    }

    fn self_attention(
        &mut self,
        x: &str,
        mask: &str,
        prefix: &str,
        config: &BertHashConfig,
    ) -> Result<String, ModelError> {
        let heads = config.num_attention_heads;
        let head = config.hidden_size / heads;
        let split = self.graph.int64s(
            &format!("{prefix}/heads_shape"),
            &[4],
            &[0, 0, heads as i64, head as i64],
        );
        let merge = self.graph.int64s(
            &format!("{prefix}/merged_shape"),
            &[3],
            &[0, 0, config.hidden_size as i64],
        );
        let q = self.linear(x, &format!("{prefix}.query"))?;
        let k = self.linear(x, &format!("{prefix}.key"))?;
        let v = self.linear(x, &format!("{prefix}.value"))?;
        let q = self.split_heads(&q, &split, [0, 2, 1, 3], &format!("{prefix}/q"));
        let kt = self.split_heads(&k, &split, [0, 2, 3, 1], &format!("{prefix}/k_t"));
        let v = self.split_heads(&v, &split, [0, 2, 1, 3], &format!("{prefix}/v"));
        let g = &mut self.graph;
        let scale = g.floats(
            &format!("{prefix}/scale"),
            &[],
            &[(1.0 / (head as f64).sqrt()) as f32],
        );
        let scores = g.node("MatMul", &[&q, &kt], vec![], &format!("{prefix}/scores"));
        let scores = g.node(
            "Mul",
            &[&scores, &scale],
            vec![],
            &format!("{prefix}/scaled"),
        );
        let scores = g.node("Add", &[&scores, mask], vec![], &format!("{prefix}/masked"));
        let probs = g.node(
            "Softmax",
            &[&scores],
            vec![Attr::Int("axis", -1)],
            &format!("{prefix}/probs"),
        );
        let context = g.node(
            "MatMul",
            &[&probs, &v],
            vec![],
            &format!("{prefix}/context"),
        );
        let context = g.node(
            "Transpose",
            &[&context],
            vec![Attr::Ints("perm", vec![0, 2, 1, 3])],
            &format!("{prefix}/context_t"),
        );
        Ok(g.node("Reshape", &[&context, &merge], vec![], prefix))
    }

    /// `dense(x) + residual`, then LayerNorm: `attention.output` and `output`.
    fn add_norm(
        &mut self,
        x: &str,
        residual: &str,
        prefix: &str,
        eps: f64,
    ) -> Result<String, ModelError> {
        let projected = self.linear(x, &format!("{prefix}.dense"))?;
        let sum = self.graph.node(
            "Add",
            &[&projected, residual],
            vec![],
            &format!("{prefix}/residual"),
        );
        self.layer_norm(&sum, &format!("{prefix}.LayerNorm"), eps)
    }

    fn embeddings(
        &mut self,
        input_ids: &str,
        token_type_ids: &str,
        eps: f64,
    ) -> Result<String, ModelError> {
        let (table, _) = self.weight("embeddings.word_embeddings.embeddings.weight")?;
        let hashed = self.graph.node(
            "Gather",
            &[&table, input_ids],
            vec![],
            "embeddings.word_embeddings.embeddings",
        );
        let words = self.linear(&hashed, "embeddings.word_embeddings.projection")?;
        let (positions, _) = self.weight("embeddings.position_embeddings.weight")?;
        let g = &mut self.graph;
        let seq = g.node(
            "Shape",
            &[input_ids],
            vec![Attr::Int("start", 1), Attr::Int("end", 2)],
            "embeddings/sequence_length",
        );
        let zero = g.int64s("embeddings/zero", &[1], &[0]);
        let positions = g.node(
            "Slice",
            &[&positions, &zero, &seq, &zero],
            vec![],
            "embeddings.position_embeddings",
        );
        let (types, _) = self.weight("embeddings.token_type_embeddings.weight")?;
        let g = &mut self.graph;
        let types = g.node(
            "Gather",
            &[&types, token_type_ids],
            vec![],
            "embeddings.token_type_embeddings",
        );
        let sum = g.node(
            "Add",
            &[&words, &positions],
            vec![],
            "embeddings/add_positions",
        );
        let sum = g.node("Add", &[&sum, &types], vec![], "embeddings/add_token_types");
        self.layer_norm(&sum, "embeddings.LayerNorm", eps)
    }

    /// The 1/0 `[batch, seq]` mask as the additive `[batch, 1, 1, seq]` score bias: 0 where
    /// attended, the most negative f32 where padded (as transformers builds it).
    fn additive_mask(&mut self, attention_mask: &str) -> String {
        let g = &mut self.graph;
        let one = g.floats("mask/one", &[], &[1.0]);
        let min = g.floats("mask/min", &[], &[f32::MIN]);
        let axes = g.int64s("mask/axes", &[2], &[1, 2]);
        let mask = cast(g, attention_mask, DATA_TYPE_FLOAT, "mask/float");
        let padded = g.node("Sub", &[&one, &mask], vec![], "mask/padded");
        let bias = g.node("Mul", &[&padded, &min], vec![], "mask/bias");
        g.node("Unsqueeze", &[&bias, &axes], vec![], "mask")
    }

    /// `[batch, seq, hidden]` to `[batch, hidden]` as sentence-transformers pools (see
    /// `berthash_model::pooling`): the mean over attended positions (their count at least
    /// 1e-9), the first token, or the maximum with padded positions at -1e9; then, if asked,
    /// each row over its L2 norm (at least 1e-12).
    fn sentence_embedding(
        &mut self,
        hidden: &str,
        attention_mask: &str,
        output: SentenceOutput,
    ) -> String {
        let g = &mut self.graph;
        let seq_axis = g.int64s("pooling/seq_axis", &[1], &[1]);
        let last_axis = g.int64s("pooling/last_axis", &[1], &[2]);
        let pooled = match output.pooling {
            Pooling::Cls => {
                let first = g.int64s("pooling/first", &[], &[0]);
                g.node(
                    "Gather",
                    &[hidden, &first],
                    vec![Attr::Int("axis", 1)],
                    "pooling/cls",
                )
            }
            Pooling::Mean => {
                let mask = cast(g, attention_mask, DATA_TYPE_FLOAT, "pooling/mask");
                let mask = g.node("Unsqueeze", &[&mask, &last_axis], vec![], "pooling/mask3");
                let tiny = g.floats("pooling/min_count", &[], &[1e-9]);
                let masked = g.node("Mul", &[hidden, &mask], vec![], "pooling/masked");
                let keep = vec![Attr::Int("keepdims", 0)];
                let sum = g.node(
                    "ReduceSum",
                    &[&masked, &seq_axis],
                    keep.clone(),
                    "pooling/sum",
                );
                let count = g.node("ReduceSum", &[&mask, &seq_axis], keep, "pooling/count");
                let count = g.node("Max", &[&count, &tiny], vec![], "pooling/count_min");
                g.node("Div", &[&sum, &count], vec![], "pooling/mean")
            }
            Pooling::Max => {
                let mask = cast(g, attention_mask, DATA_TYPE_BOOL, "pooling/mask");
                let mask = g.node("Unsqueeze", &[&mask, &last_axis], vec![], "pooling/mask3");
                let floor = g.floats("pooling/padding_value", &[], &[-1e9]);
                let filled = g.node("Where", &[&mask, hidden, &floor], vec![], "pooling/filled");
                let attrs = vec![Attr::Ints("axes", vec![1]), Attr::Int("keepdims", 0)];
                g.node("ReduceMax", &[&filled], attrs, "pooling/max")
            }
        };
        if !output.normalize {
            return g.node("Identity", &[&pooled], vec![], "sentence_embedding");
        }
        let tiny = g.floats("normalize/min_norm", &[], &[1e-12]);
        let squares = g.node("Mul", &[&pooled, &pooled], vec![], "normalize/squares");
        let sum = g.node(
            "ReduceSum",
            &[&squares, &seq_axis],
            vec![Attr::Int("keepdims", 1)],
            "normalize/sum",
        );
        let norm = g.node("Sqrt", &[&sum], vec![], "normalize/norm");
        let norm = g.node("Max", &[&norm, &tiny], vec![], "normalize/norm_min");
        g.node("Div", &[&pooled, &norm], vec![], "sentence_embedding")
    }
}

fn cast(g: &mut Graph, x: &str, to: i32, name: &str) -> String {
    g.node("Cast", &[x], vec![Attr::Int("to", to as i64)], name)
}

/// The sentence-transformers pooling to end the graph with, as a `sentence_embedding` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceOutput {
    pub pooling: Pooling,
    pub normalize: bool,
}

/// The whole graph for `config` and `weights`, and the head it ends with.
pub fn build(
    config: &BertHashConfig,
    weights: &Weights,
    sentence: Option<SentenceOutput>,
) -> Result<(crate::proto::GraphProto, Head), ModelError> {
    let head = Head::of(weights);
    let eps = config.layer_norm_eps;
    let mut b = Builder {
        graph: Graph::default(),
        weights,
    };
    let ids = [BATCH, SEQUENCE];
    let input_ids = b.graph.input("input_ids", DATA_TYPE_INT64, &ids);
    let attention_mask = b.graph.input("attention_mask", DATA_TYPE_INT64, &ids);
    let token_type_ids = b.graph.input("token_type_ids", DATA_TYPE_INT64, &ids);

    let mask = b.additive_mask(&attention_mask);
    let mut hidden = b.embeddings(&input_ids, &token_type_ids, eps)?;
    for i in 0..config.num_hidden_layers {
        let layer = format!("encoder.layer.{i}");
        let attended =
            b.self_attention(&hidden, &mask, &format!("{layer}.attention.self"), config)?;
        let attended = b.add_norm(
            &attended,
            &hidden,
            &format!("{layer}.attention.output"),
            eps,
        )?;
        let intermediate = b.linear(&attended, &format!("{layer}.intermediate.dense"))?;
        let intermediate = b.gelu(&intermediate, &format!("{layer}.intermediate"));
        hidden = b.add_norm(&intermediate, &attended, &format!("{layer}.output"), eps)?;
    }
    let hidden_size = config.hidden_size;
    let last = b
        .graph
        .node("Identity", &[&hidden], vec![], "last_hidden_state");
    b.graph.output(
        &last,
        DATA_TYPE_FLOAT,
        &[BATCH, SEQUENCE, Dim::Fixed(hidden_size)],
    );

    // An MLM graph ends with the logits: a pooler there would be computed for nothing.
    let pooled = if head != Head::MaskedLm && b.weights.has("pooler.dense.weight") {
        let zero = b.graph.int64s("pooler/first", &[], &[0]);
        let first = b.graph.node(
            "Gather",
            &[&last, &zero],
            vec![Attr::Int("axis", 1)],
            "pooler/first_token",
        );
        let dense = b.linear(&first, "pooler.dense")?;
        let pooled = b.graph.node("Tanh", &[&dense], vec![], "pooler_output");
        b.graph
            .output(&pooled, DATA_TYPE_FLOAT, &[BATCH, Dim::Fixed(hidden_size)]);
        Some(pooled)
    } else {
        None
    };

    if let Some(sentence) = sentence {
        let embedding = b.sentence_embedding(&last, &attention_mask, sentence);
        b.graph.output(
            &embedding,
            DATA_TYPE_FLOAT,
            &[BATCH, Dim::Fixed(hidden_size)],
        );
    }

    match head {
        Head::Base => {}
        Head::MaskedLm => {
            let transform = b.linear(&last, "cls.predictions.transform.dense")?;
            let transform = b.gelu(&transform, "cls.predictions.transform.gelu");
            let transform = b.layer_norm(&transform, "cls.predictions.transform.LayerNorm", eps)?;
            let decoded = b.linear(&transform, "cls.predictions.decoder")?;
            let logits = b.graph.node("Identity", &[&decoded], vec![], "logits");
            let vocab = Dim::Fixed(config.vocab_size);
            b.graph
                .output(&logits, DATA_TYPE_FLOAT, &[BATCH, SEQUENCE, vocab]);
        }
        Head::SequenceClassification => {
            let pooled = pooled.ok_or_else(|| ModelError::MissingTensor {
                path: weights.source().to_path_buf(),
                key: "pooler.dense.weight".into(),
            })?;
            let labels = weights.get("classifier.weight")?.0[1];
            let logits = b.linear(&pooled, "classifier")?;
            let logits = b.graph.node("Identity", &[&logits], vec![], "logits");
            b.graph
                .output(&logits, DATA_TYPE_FLOAT, &[BATCH, Dim::Fixed(labels)]);
        }
    }
    Ok((b.graph.finish("bert_hash"), head))
}
