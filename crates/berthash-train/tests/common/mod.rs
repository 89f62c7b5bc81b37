//! Shared helpers: a tiny model and the repository's sample corpus.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use berthash_data::{CorpusConfig, CorpusSource, PretrainStreamConfig};
use berthash_model::BertHashConfig;
use berthash_train::log::{read_metrics, Record};
use berthash_train::{PretrainConfig, ScheduleConfig, ScheduleKind};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn tokenizer() -> PathBuf {
    repo_root().join("data/tokenizer/bert-base-uncased/tokenizer.json")
}

/// The sample corpus (wikipedia + books shards under `data/sample`).
pub fn sample_corpus() -> CorpusConfig {
    let root = repo_root().join("data/sample");
    CorpusConfig::new(vec![
        CorpusSource::new(&[root.join("wikipedia").to_str().unwrap()]),
        CorpusSource::new(&[root.join("books").to_str().unwrap()]),
    ])
}

/// A tiny model (hidden 16, one layer) over the full bert-base-uncased vocabulary.
pub fn tiny_model() -> BertHashConfig {
    let mut config = BertHashConfig::new(16, 1, 2, 32, 4);
    config.max_position_embeddings = 64;
    config
}

/// A short pre-training run: rows of 32 tokens, batches of 4, small shuffle windows.
pub fn tiny_pretrain(max_steps: u64) -> PretrainConfig {
    let mut data = PretrainStreamConfig::new(sample_corpus(), tokenizer());
    data.max_length = 32;
    data.shuffle_buffer = 64;
    data.eval_documents = 4;
    data.threads = 1;
    data.prefetch_batches = 2;
    let mut config = PretrainConfig::new(tiny_model(), data);
    config.train.max_steps = Some(max_steps);
    config.train.batch_size = 4;
    config.train.log_every = 1;
    config.train.save_every = 0;
    config.train.eval_every = 0;
    config.eval_batches = 2;
    config.schedule = ScheduleConfig {
        kind: ScheduleKind::Linear,
        warmup_steps: 2,
        total_steps: None,
    };
    config
}

/// (step, loss) of every logged training step of a run.
pub fn train_losses(run: &Path) -> Vec<(u64, f64)> {
    read_metrics(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Train(t) => Some((t.step, t.loss)),
            Record::Eval(_) => None,
        })
        .collect()
}
