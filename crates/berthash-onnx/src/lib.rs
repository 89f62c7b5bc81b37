//! A BERT Hash model as an ONNX file (opset 17, f32). Inputs: `input_ids`, `attention_mask` and
//! `token_type_ids` (int64, `[batch_size, sequence_length]`). Outputs: `last_hidden_state`,
//! `pooler_output` (when the model has a pooler) and `logits` (with a head), named as Optimum's
//! BERT exports name them, so tools that read `onnx/model.onnx` from a model directory take it
//! as any BERT; and for a sentence-embedding model `sentence_embedding`, pooled (and
//! normalised) as sentence-transformers does it.

mod bert;
mod graph;
pub mod proto;
mod weights;

use std::path::{Path, PathBuf};

use berthash_model::fs::write_atomic;
use berthash_model::{BertHashConfig, ModelError};
use burn::module::Module;
use burn::prelude::Backend;
use prost::Message;

pub use bert::{Head, SentenceOutput};
use proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use weights::Weights;

/// Where an exported model directory keeps its ONNX graph.
pub const ONNX_FILE: &str = "onnx/model.onnx";
/// The operator set: 17 has `LayerNormalization`, and every ONNX Runtime since 1.14 runs it.
pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;

/// The ONNX model of `model` (loaded from `source`, which errors name), ending with a
/// `sentence_embedding` output too when `sentence` is given.
pub fn to_onnx<B: Backend, M: Module<B>>(
    config: &BertHashConfig,
    model: &M,
    source: &Path,
    sentence: Option<SentenceOutput>,
) -> Result<(ModelProto, Head), ModelError> {
    let weights = Weights::of(model, source.to_path_buf());
    let (graph, head) = bert::build(config, &weights, sentence)?;
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("berthash".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!("BERT Hash ({head:?}) exported by berthash")),
        graph: Some(graph),
        metadata_props: vec![StringStringEntryProto {
            key: Some("model_type".into()),
            value: Some(config.model_type.clone()),
        }],
    };
    Ok((model, head))
}

/// Writes [`ONNX_FILE`] under `dir` for `model` (see [`to_onnx`]), and returns its path.
pub fn write<B: Backend, M: Module<B>>(
    dir: &Path,
    config: &BertHashConfig,
    model: &M,
    source: &Path,
    sentence: Option<SentenceOutput>,
) -> Result<PathBuf, ModelError> {
    let (proto, _) = to_onnx(config, model, source, sentence)?;
    let path = dir.join(ONNX_FILE);
    let parent = path.parent().expect("ONNX_FILE has a folder");
    std::fs::create_dir_all(parent).map_err(|cause| ModelError::Io {
        path: parent.to_path_buf(),
        cause,
    })?;
    write_atomic(&path, &proto.encode_to_vec())?;
    Ok(path)
}
