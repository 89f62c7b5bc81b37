//! Training learns: a small model's MLM loss on the sample corpus falls by more than a nat in
//! 30 steps, and the run directory holds what it should.

mod common;

use berthash_train::log::{read_metrics, Record, Summary};
use berthash_train::{pretrain, RunMode, ScheduleConfig, ScheduleKind};
use burn::backend::{Autodiff, Flex};

type B = Autodiff<Flex>;

#[test]
fn mlm_loss_falls_within_30_steps() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut config = common::tiny_pretrain(30);
    config.model = berthash_model::BertHashConfig::new(32, 1, 2, 64, 8);
    config.model.max_position_embeddings = 64;
    config.train.batch_size = 8;
    config.train.log_every = 5;
    config.train.eval_every = 15;
    config.optimizer.lr = 5e-3;
    config.schedule = ScheduleConfig {
        kind: ScheduleKind::Constant,
        warmup_steps: 0,
        total_steps: None,
    };
    let summary = pretrain::<B>(config, &run, &Default::default(), RunMode::New).unwrap();

    let records = read_metrics(&run.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Train(t) => Some(t.loss),
            _ => None,
        })
        .collect();
    assert_eq!(losses.len(), 6, "{records:?}");
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(first > 9.0, "starts near ln(30522) = 10.3: {losses:?}");
    assert!(
        first - last > 1.0,
        "loss fell by less than a nat: {losses:?}"
    );
    let evals: Vec<_> = records
        .iter()
        .filter(|r| matches!(r, Record::Eval(_)))
        .collect();
    assert_eq!(evals.len(), 2, "at step 15 and at the end");

    // The run directory.
    let saved: Summary =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(saved, summary);
    assert_eq!(summary.steps, 30);
    assert_eq!(summary.tokens_seen, 30 * 8 * 32);
    assert!(summary.best_eval.as_ref().unwrap().metric == "eval_loss");
    assert!(summary.final_eval["eval_accuracy"] >= 0.0);
    for file in [
        "train_config.json",
        "train_config.toml",
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
    ] {
        assert!(run.join(file).is_file(), "{file}");
    }
    // The exported model loads as a Hugging Face directory.
    let loaded = berthash_model::load_any::<Flex>(&run.join("model"), &Default::default()).unwrap();
    assert!(matches!(
        loaded.model,
        berthash_model::AnyModel::MaskedLm(_)
    ));
}
