//! Pre-trains a preset on the sample corpus and prints the loss curve (the numbers in the crate's
//! report). `cargo run --release -p berthash-train --example
//! learning_curve -- [preset] [steps] [batch] [seq] [run_dir]`.

use std::path::{Path, PathBuf};

use berthash_data::{CorpusConfig, CorpusSource, PretrainStreamConfig};
use berthash_model::BertHashConfig;
use berthash_train::log::{read_metrics, Record};
use berthash_train::{pretrain, PretrainConfig, RunMode, ScheduleConfig, ScheduleKind};
use burn::backend::{Autodiff, Flex};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let preset = arg(0, "pico");
    let steps: u64 = arg(1, "300").parse().unwrap();
    let batch: usize = arg(2, "32").parse().unwrap();
    let seq: usize = arg(3, "128").parse().unwrap();
    let run = PathBuf::from(arg(4, "/tmp/berthash-learning-curve"));

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sample = root.join("data/sample");
    let corpus = CorpusConfig::new(vec![
        CorpusSource::new(&[sample.join("wikipedia").to_str().unwrap()]),
        CorpusSource::new(&[sample.join("books").to_str().unwrap()]),
    ]);
    let mut data = PretrainStreamConfig::new(
        corpus,
        root.join("data/tokenizer/bert-base-uncased/tokenizer.json"),
    );
    data.max_length = seq;
    data.shuffle_buffer = 1024;
    let mut config = PretrainConfig::new(BertHashConfig::preset(&preset).unwrap(), data);
    config.train.max_steps = Some(steps);
    config.train.batch_size = batch;
    config.train.log_every = 10;
    config.train.eval_every = 100;
    config.train.save_every = 100;
    config.eval_batches = 4;
    config.schedule = ScheduleConfig {
        kind: ScheduleKind::Linear,
        warmup_steps: steps / 10,
        total_steps: None,
    };
    let summary =
        pretrain::<Autodiff<Flex>>(config, &run, &Default::default(), RunMode::Overwrite).unwrap();
    for record in read_metrics(&run.join("metrics.jsonl")).unwrap() {
        match record {
            Record::Train(t) => println!(
                "step {:4}  loss {:.3}  lr {:.2e}  |g| {:.2}  {:.0} tok/s",
                t.step, t.loss, t.lr, t.grad_norm, t.tokens_per_s
            ),
            Record::Eval(e) => println!("eval {:4}  {:?}", e.step, e.metrics),
        }
    }
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());
}
