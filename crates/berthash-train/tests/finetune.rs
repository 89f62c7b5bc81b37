//! Fine-tuning end to end on a tiny SST-2-shaped task: run_glue metric names, best eval, the
//! exported classifier, and exact resume of the fine-tuning loop (per-epoch shuffles).

mod common;

use berthash_model::pretrained::{init_model, save};
use berthash_model::weights::WeightLayout;
use berthash_model::{BertHashForMaskedLM, ModelOptions};
use berthash_train::log::{read_metrics, Record};
use berthash_train::{finetune, FinetuneConfig, RunMode};
use burn::backend::{Autodiff, Flex};

type B = Autodiff<Flex>;

/// An SST-2 layout folder: `sentence<TAB>label`, positive and negative words.
fn write_task(dir: &std::path::Path) {
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

fn config(root: &std::path::Path) -> FinetuneConfig {
    let device = Default::default();
    let model_dir = root.join("pretrained");
    if !model_dir.exists() {
        let model_config = common::tiny_model();
        let model: BertHashForMaskedLM<Flex> =
            init_model(&model_config, ModelOptions::default(), 7, &device);
        save::<Flex, _>(&model_dir, &model_config, &model, &WeightLayout::default()).unwrap();
        write_task(&root.join("sst2"));
    }
    let mut config = FinetuneConfig::new(
        berthash_data::builtin_task("sst2").unwrap(),
        root.join("sst2"),
        common::tokenizer(),
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

fn losses(run: &std::path::Path) -> Vec<(u64, f64)> {
    read_metrics(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Train(t) => Some((t.step, t.loss)),
            _ => None,
        })
        .collect()
}

#[test]
fn finetunes_evaluates_exports_and_resumes_exactly() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // 40 examples, batch 8: 5 steps per epoch, 2 epochs.
    let straight = root.join("straight");
    let summary = finetune::<B>(config(root), &straight, &device, RunMode::New).unwrap();
    assert_eq!(summary.steps, 10);
    assert_eq!(summary.best_eval.as_ref().unwrap().metric, "eval_accuracy");
    assert!(summary.final_eval.contains_key("eval_accuracy"));
    assert!(summary.final_eval.contains_key("eval_loss"));
    let exported = berthash_model::read_config(&straight.join("model")).unwrap();
    assert_eq!(exported.num_labels(), 2);
    assert_eq!(
        exported.architectures.as_deref(),
        Some(&["BertHashForSequenceClassification".to_string()][..])
    );
    let evals = read_metrics(&straight.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r, Record::Eval(_)))
        .count();
    assert_eq!(evals, 2, "at step 5 and at the end");

    // Interrupted after step 7 (checkpoint 6 kept), resumed: the same losses and weights.
    let broken = root.join("broken");
    let mut short = config(root);
    short.train.max_steps = Some(7);
    short.schedule.total_steps = Some(10);
    finetune::<B>(short, &broken, &device, RunMode::New).unwrap();
    // Checkpoints every 3 steps and at the end of each epoch (step 5), the newest 3 kept.
    let kept: Vec<u64> = berthash_train::Checkpoints::new(broken.join("checkpoints"), 3)
        .list()
        .unwrap()
        .iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(kept, [5, 6, 7]);
    std::fs::remove_dir_all(
        broken
            .join("checkpoints")
            .join(berthash_train::Checkpoints::name(7)),
    )
    .unwrap();
    finetune::<B>(config(root), &broken, &device, RunMode::Resume).unwrap();
    assert_eq!(losses(&straight), losses(&broken));
    let weights =
        |run: &std::path::Path| std::fs::read(run.join("model/model.safetensors")).unwrap();
    assert!(
        weights(&straight) == weights(&broken),
        "final weights differ"
    );
    // The best model survives the resume: the same best/ and the same dev results.
    let read = |run: &std::path::Path, file: &str| std::fs::read(run.join(file)).unwrap();
    assert_eq!(
        read(&straight, "eval_results.json"),
        read(&broken, "eval_results.json")
    );
    assert!(read(&straight, "best/model.safetensors") == read(&broken, "best/model.safetensors"));
}
