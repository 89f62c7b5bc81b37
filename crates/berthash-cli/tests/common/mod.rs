//! Helpers of the binary's tests: running `berthash`, a tiny model to run it on, and reading the
//! tensors it writes.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berthash_model::pretrained::{init_model, save};
use berthash_model::weights::{TensorFile, WeightLayout};
use berthash_model::{BertHashConfig, BertHashForMaskedLM, ModelOptions};
use burn::backend::Flex;

/// Runs in the temporary directory, so nothing lands in the crate: CubeCL, for one, keeps its
/// autotune results in `target/` beside the nearest `Cargo.toml` above the working directory.
pub fn berthash(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berthash"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

/// stdout of a run that must succeed.
pub fn ok(args: &[&str]) -> String {
    let output = berthash(args);
    assert!(
        output.status.success(),
        "berthash {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// stderr of a run that must fail.
pub fn fails(args: &[&str]) -> String {
    let output = berthash(args);
    assert!(
        !output.status.success(),
        "berthash {} succeeded",
        args.join(" ")
    );
    String::from_utf8(output.stderr).unwrap()
}

pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A tiny masked-LM model (hidden 16, 64 positions) in `dir/model-<vocab>`, over the full
/// bert-base-uncased vocabulary unless `vocab` says otherwise.
pub fn write_model(dir: &Path, vocab: Option<usize>) -> PathBuf {
    let mut config = BertHashConfig::new(16, 1, 2, 32, 4);
    config.max_position_embeddings = 64;
    if let Some(vocab) = vocab {
        config.vocab_size = vocab;
    }
    let model: BertHashForMaskedLM<Flex> =
        init_model(&config, ModelOptions::default(), 5, &Default::default());
    let model_dir = dir.join(format!("model-{}", config.vocab_size));
    save::<Flex, _>(&model_dir, &config, &model, &WeightLayout::default()).unwrap();
    model_dir
}

/// The golden case in this repo: a cls, an mlm and a base model, inputs with padded rows, and
/// Hugging Face's outputs.
pub fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden/tiny")
}

/// The `keys` that `berthash forward` wrote to `written` for the golden case's `head` model are
/// Hugging Face's outputs, each within 1e-4.
pub fn assert_golden_outputs(written: &TensorFile, head: &str, keys: &[&str]) {
    let expected = TensorFile::read(&golden().join("expected.safetensors")).unwrap();
    for key in keys {
        let (shape, got) = f32s(written, key);
        let (want_shape, want) = f32s(&expected, &format!("{head}.{key}"));
        assert_eq!(shape, want_shape, "{head}.{key}");
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-4, "{head}.{key}: max abs diff {diff}");
    }
}

/// A little-endian f32 tensor of a safetensors file: its shape and values.
pub fn f32s(file: &TensorFile, key: &str) -> (Vec<usize>, Vec<f32>) {
    let t = &file.tensors[key];
    let values = t
        .bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape.clone(), values)
}
