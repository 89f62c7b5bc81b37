//! Fine-tuning end to end on a tiny SST-2-shaped task: run_glue metric names, best eval, the
//! exported classifier, and exact resume of the fine-tuning loop (per-epoch shuffles).

mod common;

use berthash_train::log::{read_metrics, Record};
use berthash_train::{finetune, RunMode};
use burn::backend::{Autodiff, Flex};

type B = Autodiff<Flex>;

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
    let summary = finetune::<B>(
        common::finetune_config(root),
        &straight,
        &device,
        RunMode::New,
    )
    .unwrap();
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
    let mut short = common::finetune_config(root);
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
    finetune::<B>(
        common::finetune_config(root),
        &broken,
        &device,
        RunMode::Resume,
    )
    .unwrap();
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
