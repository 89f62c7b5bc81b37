//! Shared helpers: a tiny model and the repository's sample corpus.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use berthash_data::{CorpusConfig, CorpusSource, PretrainStreamConfig};
use berthash_model::pretrained::{init_model, save};
use berthash_model::weights::WeightLayout;
use berthash_model::BertHashConfig;
use berthash_model::{BertHashForMaskedLM, ModelOptions};
use berthash_train::log::{read_metrics, Record};
use berthash_train::{FinetuneConfig, PretrainConfig, ScheduleConfig, ScheduleKind};
use burn::backend::Flex;

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

/// An SST-2 layout folder: `sentence<TAB>label`, positive and negative words.
pub fn write_task(dir: &std::path::Path) {
    let good = ["good", "great", "fine", "lovely", "wonderful", "superb"];
    let bad = ["bad", "awful", "boring", "dull", "terrible", "poor"];
    let lines = |n: usize, offset: usize| {
        let mut text = String::from("sentence\tlabel\n");
        for i in 0..n {
            let (words, label) = if (i + offset).is_multiple_of(2) {
                (&good, 1)
            } else {
                (&bad, 0)
            };
            text.push_str(&format!(
                "a {} and {} film \t{label}\n",
                words[i % 6],
                words[(i + 1) % 6]
            ));
        }
        text
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("train.tsv"), lines(40, 0)).unwrap();
    std::fs::write(dir.join("dev.tsv"), lines(12, 1)).unwrap();
}

/// Fine-tuning the tiny model on a tiny SST-2-shaped task in `root`: 40 examples, batch 8 (5
/// steps an epoch), 2 epochs, evaluation every 5 steps, checkpoints every 3.
pub fn finetune_config(root: &std::path::Path) -> FinetuneConfig {
    let device = Default::default();
    let model_dir = root.join("pretrained");
    if !model_dir.exists() {
        let model_config = tiny_model();
        let model: BertHashForMaskedLM<Flex> =
            init_model(&model_config, ModelOptions::default(), 7, &device);
        save::<Flex, _>(&model_dir, &model_config, &model, &WeightLayout::default()).unwrap();
        write_task(&root.join("sst2"));
    }
    let mut config = FinetuneConfig::new(
        berthash_data::builtin_task("sst2").unwrap(),
        root.join("sst2"),
        tokenizer(),
        model_dir,
    );
    config.max_seq_length = 16;
    config.epochs = 2.0;
    config.train.batch_size = 8;
    config.train.log_every = 1;
    config.train.save_every = 3;
    config.train.eval_every = 5;
    config.optimizer.lr = 1e-3;
    config
}
