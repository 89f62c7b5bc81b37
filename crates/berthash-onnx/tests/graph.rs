//! The exported graph read back from its bytes: what ONNX Runtime needs of it structurally
//! (every value defined before use, names unique, the declared inputs and outputs) and every
//! parameter of the model carried once, at its Hugging Face name. Numerical agreement with
//! transformers is checked by the parity suite (tests/python/parity_checks/onnx_export.py).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use berthash_model::names::param_names;
use berthash_model::pooling::Pooling;
use berthash_model::pretrained::HfModel;
use berthash_model::{
    load_trained, BertHashForMaskedLM, BertHashForSequenceClassification, BertHashModel,
};
use berthash_onnx::proto::ModelProto;
use berthash_onnx::{to_onnx, Head, SentenceOutput, OPSET};
use burn::backend::Flex;
use prost::Message;

type B = Flex;

fn golden(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/golden/tiny")
        .join(kind)
}

/// Exports `kind` as `M`, decodes the bytes, checks the graph; returns its output names.
fn check<M: HfModel<B>>(kind: &str, head: Head, sentence: Option<SentenceOutput>) -> Vec<String> {
    let dir = golden(kind);
    let loaded = load_trained::<B, M>(&dir, &Default::default()).unwrap();
    let (proto, found) = to_onnx(&loaded.config, &loaded.model, &dir, sentence).unwrap();
    assert_eq!(found, head);
    let model = ModelProto::decode(proto.encode_to_vec().as_slice()).unwrap();
    assert_eq!(model, proto, "the bytes decode to the same model");
    assert_eq!(model.opset_import[0].version, Some(OPSET));
    let graph = model.graph.unwrap();

    let inputs: Vec<_> = graph
        .input
        .iter()
        .map(|v| v.name.clone().unwrap())
        .collect();
    assert_eq!(inputs, ["input_ids", "attention_mask", "token_type_ids"]);
    let mut defined: HashSet<String> = inputs.into_iter().collect();
    for tensor in &graph.initializer {
        let name = tensor.name.clone().unwrap();
        let count: i64 = tensor.dims.iter().product();
        let width = if tensor.data_type == Some(7) { 8 } else { 4 };
        assert_eq!(
            tensor.raw_data.as_ref().unwrap().len() as i64,
            count * width,
            "{name}"
        );
        assert!(
            defined.insert(name.clone()),
            "initializer {name} defined twice"
        );
    }
    for node in &graph.node {
        for input in &node.input {
            assert!(
                defined.contains(input),
                "{:?} reads {input} before it exists",
                node.name
            );
        }
        for output in &node.output {
            assert!(defined.insert(output.clone()), "{output} defined twice");
        }
    }
    let outputs: Vec<_> = graph
        .output
        .iter()
        .map(|v| v.name.clone().unwrap())
        .collect();
    for output in &outputs {
        assert!(
            defined.contains(output),
            "output {output} is never computed"
        );
    }

    // Every parameter once, under its Hugging Face name (without the `bert.` of a head model).
    let initializers: HashSet<_> = graph
        .initializer
        .iter()
        .map(|t| t.name.clone().unwrap())
        .collect();
    for param in param_names(&loaded.model) {
        let name = param
            .name
            .strip_prefix("bert.")
            .unwrap_or(&param.name)
            .to_string();
        assert!(
            initializers.contains(&name),
            "parameter {name} is not in the graph"
        );
        let tensor = graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(&name))
            .unwrap();
        let dims: Vec<usize> = tensor.dims.iter().map(|&d| d as usize).collect();
        assert_eq!(dims, param.shape, "{name}");
    }
    outputs
}

#[test]
fn each_head_exports_a_well_formed_graph_with_its_outputs() {
    assert_eq!(
        check::<BertHashModel<B>>("base", Head::Base, None),
        ["last_hidden_state"]
    );
    assert_eq!(
        check::<BertHashForMaskedLM<B>>("mlm", Head::MaskedLm, None),
        ["last_hidden_state", "logits"]
    );
    assert_eq!(
        check::<BertHashForSequenceClassification<B>>("cls", Head::SequenceClassification, None),
        ["last_hidden_state", "pooler_output", "logits"]
    );
}

#[test]
fn a_sentence_embedding_model_ends_with_its_pooling() {
    for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Max] {
        for normalize in [false, true] {
            let sentence = SentenceOutput { pooling, normalize };
            assert_eq!(
                check::<BertHashModel<B>>("base", Head::Base, Some(sentence)),
                ["last_hidden_state", "sentence_embedding"],
                "{sentence:?}"
            );
        }
    }
}
