//! Weight I/O: load-then-save is bit-identical, prefixes and heads are handled, and every kind of
//! bad file gives an error that names the file and the tensor.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use berthash_model::pretrained::{init_model, CONFIG_FILE, WEIGHTS_FILE};
use berthash_model::weights::{RawTensor, TensorFile, WeightLayout};
use berthash_model::{
    load, load_any, save, AnyModel, BertHashConfig, BertHashForMaskedLM,
    BertHashForSequenceClassification, BertHashModel, ModelOptions,
};
use burn::backend::Flex;
use burn::module::Module;

type B = Flex;

fn tiny(head: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/golden/tiny")
        .join(head)
}

/// An empty directory, removed when dropped.
fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("berthash-weights-{name}-"))
        .tempdir()
        .unwrap()
}

/// A copy of a golden dir whose safetensors file is replaced by `bytes`.
fn dir_with_weights(name: &str, bytes: &[u8]) -> TempDir {
    let dir = scratch(name);
    std::fs::copy(tiny("mlm").join(CONFIG_FILE), dir.path().join(CONFIG_FILE)).unwrap();
    std::fs::write(dir.path().join(WEIGHTS_FILE), bytes).unwrap();
    dir
}

fn mlm_file() -> TensorFile {
    TensorFile::read(&tiny("mlm").join(WEIGHTS_FILE)).unwrap()
}

fn load_mlm_error(dir: impl AsRef<Path>) -> String {
    load::<B, BertHashForMaskedLM<B>>(dir.as_ref(), None, 0, &Default::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn load_then_save_is_bit_identical_for_every_head() {
    let device = Default::default();
    for head in ["base", "mlm", "cls"] {
        let loaded = load_any::<B>(&tiny(head), &device).unwrap();
        assert!(
            loaded.report.initialized.is_empty(),
            "{head}: {:?}",
            loaded.report
        );
        assert!(
            loaded.report.unexpected.is_empty(),
            "{head}: {:?}",
            loaded.report
        );
        let out_tmp = scratch(&format!("roundtrip-{head}"));
        let out = out_tmp.path();
        match &loaded.model {
            AnyModel::Base(m) => save(out, &loaded.config, m, &loaded.layout).unwrap(),
            AnyModel::MaskedLm(m) => save(out, &loaded.config, m, &loaded.layout).unwrap(),
            AnyModel::Classifier(m) => save(out, &loaded.config, m, &loaded.layout).unwrap(),
        }
        let original = std::fs::read(tiny(head).join(WEIGHTS_FILE)).unwrap();
        let written = std::fs::read(out.join(WEIGHTS_FILE)).unwrap();
        assert!(
            original == written,
            "{head}: model.safetensors differs after load + save"
        );
        let config_in: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tiny(head).join(CONFIG_FILE)).unwrap())
                .unwrap();
        let config_out: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(config_in, config_out, "{head}: config.json differs");
    }
}

#[test]
fn the_mlm_bias_is_written_under_both_names() {
    let device = Default::default();
    let config = BertHashConfig::from_file(&tiny("mlm").join(CONFIG_FILE)).unwrap();
    let model: BertHashForMaskedLM<B> = init_model(&config, ModelOptions::default(), 7, &device);
    let out_tmp = scratch("mlm-bias");
    let out = out_tmp.path();
    save(out, &config, &model, &WeightLayout::default()).unwrap();
    let file = TensorFile::read(&out.join(WEIGHTS_FILE)).unwrap();
    assert_eq!(
        file.tensors["cls.predictions.bias"],
        file.tensors["cls.predictions.decoder.bias"]
    );
    assert!(file
        .tensors
        .contains_key("bert.embeddings.word_embeddings.projection.weight"));
    assert_eq!(
        file.tensors["cls.predictions.decoder.weight"].shape,
        vec![1000, 32]
    );
}

#[test]
fn heads_load_from_a_bare_encoder_and_are_reported() {
    let device = Default::default();
    let loaded =
        load::<B, BertHashForSequenceClassification<B>>(&tiny("base"), None, 1, &device).unwrap();
    let mut initialized = loaded.report.initialized.clone();
    initialized.sort();
    assert_eq!(
        initialized,
        [
            "bert.pooler.dense.bias",
            "bert.pooler.dense.weight",
            "classifier.bias",
            "classifier.weight"
        ]
    );
    assert!(loaded.report.unexpected.is_empty());
}

#[test]
fn an_encoder_loads_from_a_prefixed_mlm_file_and_reports_the_head() {
    let device = Default::default();
    let loaded = load::<B, BertHashModel<B>>(&tiny("mlm"), None, 0, &device).unwrap();
    assert!(loaded.report.initialized.is_empty());
    assert!(loaded
        .report
        .unexpected
        .iter()
        .all(|k| k.starts_with("cls.")));
    assert_eq!(loaded.report.unexpected.len(), 7);
}

#[test]
fn the_projection_is_found_by_shape_under_another_name_and_saved_back_under_it() {
    let mut file = mlm_file();
    let t = file
        .tensors
        .remove("bert.embeddings.word_embeddings.projection.weight")
        .unwrap();
    file.tensors
        .insert("bert.embeddings.word_embeddings.proj.weight".into(), t);
    let dir_tmp = dir_with_weights("proj-renamed", &file.to_bytes().unwrap());
    let dir = dir_tmp.path();
    let device = Default::default();
    let loaded = load::<B, BertHashForMaskedLM<B>>(dir, None, 0, &device).unwrap();
    assert_eq!(loaded.layout.projection, "embeddings.word_embeddings.proj");
    let out_tmp = scratch("proj-renamed-out");
    let out = out_tmp.path();
    save(out, &loaded.config, &loaded.model, &loaded.layout).unwrap();
    assert_eq!(
        std::fs::read(out.join(WEIGHTS_FILE)).unwrap(),
        std::fs::read(dir.join(WEIGHTS_FILE)).unwrap()
    );
}

#[test]
fn a_wrong_shape_names_the_tensor_and_both_shapes() {
    let mut file = mlm_file();
    file.tensors.insert(
        "bert.encoder.layer.1.intermediate.dense.weight".into(),
        RawTensor::from_f32(vec![63, 32], &vec![0.0; 63 * 32]),
    );
    let err = load_mlm_error(dir_with_weights("bad-shape", &file.to_bytes().unwrap()));
    assert!(
        err.contains("bert.encoder.layer.1.intermediate.dense.weight"),
        "{err}"
    );
    assert!(
        err.contains("[63, 32]") && err.contains("[64, 32]"),
        "{err}"
    );
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn a_wrong_dtype_is_named() {
    let mut file = mlm_file();
    let t = file
        .tensors
        .get_mut("bert.embeddings.LayerNorm.weight")
        .unwrap();
    t.dtype = safetensors::Dtype::I32;
    let err = load_mlm_error(dir_with_weights("bad-dtype", &file.to_bytes().unwrap()));
    assert!(
        err.contains("bert.embeddings.LayerNorm.weight") && err.contains("I32"),
        "{err}"
    );
}

#[test]
fn half_precision_files_load_and_save_back_in_their_dtype() {
    let mut file = mlm_file();
    for t in file.tensors.values_mut() {
        let values: Vec<half::f16> = t
            .bytes
            .chunks_exact(4)
            .map(|c| half::f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        t.dtype = safetensors::Dtype::F16;
        t.bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    let bytes = file.to_bytes().unwrap();
    let dir_tmp = dir_with_weights("f16", &bytes);
    let dir = dir_tmp.path();
    let loaded = load::<B, BertHashForMaskedLM<B>>(dir, None, 0, &Default::default()).unwrap();
    let out_tmp = scratch("f16-out");
    let out = out_tmp.path();
    save(out, &loaded.config, &loaded.model, &loaded.layout).unwrap();
    assert_eq!(std::fs::read(out.join(WEIGHTS_FILE)).unwrap(), bytes);
}

#[test]
fn a_missing_encoder_tensor_is_an_error_not_an_initialisation() {
    let mut file = mlm_file();
    file.tensors
        .remove("bert.encoder.layer.0.attention.self.key.bias");
    let err = load_mlm_error(dir_with_weights("missing", &file.to_bytes().unwrap()));
    assert!(
        err.contains("bert.encoder.layer.0.attention.self.key.bias") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn truncated_and_corrupt_files_are_refused_with_a_reason() {
    let good = std::fs::read(tiny("mlm").join(WEIGHTS_FILE)).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "shorter than the 8-byte header"),
        (
            "header-past-end",
            {
                let mut b = good[..100].to_vec();
                b[..8].copy_from_slice(&(1u64 << 20).to_le_bytes());
                b
            },
            "past the end of the file",
        ),
        (
            "truncated-data",
            good[..good.len() - 1000].to_vec(),
            "truncated",
        ),
        (
            "not-json",
            {
                let mut b = good.clone();
                b[8] = b'x';
                b
            },
            "model.safetensors",
        ),
    ];
    for (name, bytes, expected) in cases {
        let err = load_mlm_error(dir_with_weights(name, &bytes));
        assert!(
            err.contains(expected) && err.contains("model.safetensors"),
            "{name}: {err}"
        );
    }
}

#[test]
fn missing_files_and_bad_configs_are_reported_with_the_path() {
    let dir_tmp = scratch("no-weights");
    let dir = dir_tmp.path();
    let err = load_mlm_error(dir);
    assert!(err.contains("config.json"), "{err}");
    std::fs::write(dir.join(CONFIG_FILE), "{\"hidden_size\": 30,").unwrap();
    let err = load_mlm_error(dir);
    assert!(
        err.contains("config.json") && err.contains("line 1"),
        "{err}"
    );
    let mut config = BertHashConfig::from_file(&tiny("mlm").join(CONFIG_FILE)).unwrap();
    config.num_attention_heads = 5;
    std::fs::write(dir.join(CONFIG_FILE), config.to_json_string()).unwrap();
    let err = load_mlm_error(dir);
    assert!(
        err.contains("config.json") && err.contains("not divisible"),
        "{err}"
    );
    std::fs::copy(tiny("mlm").join(CONFIG_FILE), dir.join(CONFIG_FILE)).unwrap();
    let err = load_mlm_error(dir);
    assert!(
        err.contains("model.safetensors") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn module_parameter_counts_match_the_config_formula() {
    let device = Default::default();
    for name in berthash_model::config::PRESETS {
        let config = BertHashConfig::preset(name).unwrap();
        let counts = config.parameter_counts();
        let with_pooler = ModelOptions {
            with_pooler: true,
            ..Default::default()
        };
        let base: BertHashModel<B> = init_model(&config, with_pooler, 0, &device);
        assert_eq!(base.num_params(), counts.base_with_pooler(), "{name}");
        let mlm: BertHashForMaskedLM<B> = init_model(&config, ModelOptions::default(), 0, &device);
        assert_eq!(
            mlm.num_params(),
            counts.base_with_pooler() - counts.pooler + counts.mlm_head,
            "{name}"
        );
    }
}
