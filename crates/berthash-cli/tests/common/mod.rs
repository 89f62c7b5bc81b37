//! Helpers of the binary's tests (`embed.rs`, `train_embeddings.rs`, `pretokenize.rs`): running
//! `berthash`, and a tiny model to run it on.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berthash_model::pretrained::{init_model, save};
use berthash_model::weights::WeightLayout;
use berthash_model::{BertHashConfig, BertHashForMaskedLM, ModelOptions};
use burn::backend::Flex;

pub fn berthash(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berthash"))
        .args(args)
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
