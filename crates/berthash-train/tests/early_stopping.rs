//! Choosing the best model and stopping early: the metric and its direction are recorded, a
//! run stops after `patience` evaluations without improvement, and a run killed before it
//! stopped resumes to the same step, the same best model and the same results.
//!
//! One test in this file: Burn's CPU backend RNG is process-global, so no other training may
//! run concurrently in the same process.

mod common;

use berthash_train::{finetune, Checkpoints, RunMode};
use burn::backend::{Autodiff, Flex};

type B = Autodiff<Flex>;

#[test]
fn early_stopping_stops_at_the_same_step_after_a_resume() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let config = || {
        let mut c = common::finetune_config(root);
        c.train.eval_every = 1;
        c.metric_for_best_model = Some("loss".into());
        c.early_stopping_patience = Some(2);
        // Only an improvement of more than 10 in the loss resets the patience: none will.
        c.early_stopping_threshold = 10.0;
        c
    };
    let mut bad = config();
    bad.metric_for_best_model = Some("eval_bleu".into());
    let err = finetune::<B>(bad, &root.join("bad"), &device, RunMode::New).unwrap_err();
    assert!(err.to_string().contains("metric_for_best_model"), "{err}");
    assert!(!root.join("bad").exists());

    let straight = root.join("straight");
    let summary = finetune::<B>(config(), &straight, &device, RunMode::New).unwrap();
    // Evaluations at steps 1, 2, 3: the first sets the best, two more without improvement.
    assert_eq!(summary.steps, 3);
    assert!(summary.stopped_early);
    assert_eq!(summary.metric_for_best_model, "eval_loss");
    assert!(!summary.greater_is_better);
    let read = |run: &std::path::Path, file: &str| std::fs::read(run.join(file)).unwrap();
    let results: serde_json::Value =
        serde_json::from_slice(&read(&straight, "eval_results.json")).unwrap();
    assert_eq!(results["metric_for_best_model"], "eval_loss");
    assert_eq!(results["greater_is_better"], false);

    // Killed after step 1's checkpoint: the resumed run makes the same decisions.
    let broken = root.join("broken");
    copy_dir(&straight, &broken);
    for step in [2, 3] {
        std::fs::remove_dir_all(broken.join("checkpoints").join(Checkpoints::name(step))).unwrap();
    }
    let resumed = finetune::<B>(config(), &broken, &device, RunMode::Resume).unwrap();
    assert_eq!(resumed.steps, 3);
    assert_eq!(resumed.best_eval, summary.best_eval);
    assert_eq!(
        common::train_losses(&straight),
        common::train_losses(&broken)
    );
    for file in [
        "eval_results.json",
        "best/model.safetensors",
        "model/model.safetensors",
    ] {
        assert!(
            read(&straight, file) == read(&broken, file),
            "{file} differs"
        );
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
