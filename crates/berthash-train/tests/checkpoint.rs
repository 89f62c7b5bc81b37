//! Checkpoints: keep-last-K, atomicity (leftover temporary or incomplete folders are ignored by
//! resume), and refusal of a checkpoint of another model shape.

mod common;

use berthash_train::{pretrain, Checkpoints, RunMode, TrainError};
use burn::backend::{Autodiff, Flex};

type B = Autodiff<Flex>;

fn steps(run: &std::path::Path) -> Vec<u64> {
    Checkpoints::new(run.join("checkpoints"), 1)
        .list()
        .unwrap()
        .iter()
        .map(|c| c.step)
        .collect()
}

#[test]
fn keeps_the_last_k_and_resume_ignores_partial_checkpoints() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut config = common::tiny_pretrain(5);
    config.train.save_every = 1;
    config.train.keep_checkpoints = 2;
    config.train.log_every = 5;
    pretrain::<B>(config.clone(), &run, &device, RunMode::New).unwrap();
    assert_eq!(steps(&run), [4, 5]);
    let ckpt = run.join("checkpoints");
    let names: Vec<String> = std::fs::read_dir(&ckpt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "no temporary folders left behind: {names:?}"
    );
    for file in [
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
        "train_config.json",
    ] {
        assert!(
            ckpt.join(Checkpoints::name(5)).join(file).is_file(),
            "{file}"
        );
    }

    // A crash mid-write leaves a temporary folder; a torn `step-*` folder (no optimizer state,
    // truncated state.json) must not be picked up either.
    let tmp = ckpt.join(".tmp-step-00000009-4242");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("state.json"), b"{\"step\": 9").unwrap();
    let torn = ckpt.join(Checkpoints::name(10));
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::copy(
        ckpt.join(Checkpoints::name(5)).join("config.json"),
        torn.join("config.json"),
    )
    .unwrap();
    std::fs::write(torn.join("state.json"), b"{\"step\": 10, \"sch").unwrap();
    assert_eq!(steps(&run), [4, 5]);

    config.train.max_steps = Some(6);
    let summary = pretrain::<B>(config, &run, &device, RunMode::Resume).unwrap();
    assert_eq!(summary.steps, 6);
    assert!(
        !tmp.exists(),
        "stale temporary folder cleaned up after the next save"
    );
    let state = berthash_train::checkpoint::read_state(&ckpt.join(Checkpoints::name(6))).unwrap();
    assert_eq!(state.step, 6);
    assert!(state.stream_position.is_some());
}

#[test]
fn refuses_a_checkpoint_of_another_shape() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = common::tiny_pretrain(2);
    pretrain::<B>(config.clone(), &run, &device, RunMode::New).unwrap();

    let mut wider = config.clone();
    wider.model.hidden_size = 32;
    let err = pretrain::<B>(wider, &run, &device, RunMode::Resume).unwrap_err();
    assert!(
        matches!(err, TrainError::ShapeMismatch { ref field, .. } if field == "hidden_size"),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("`hidden_size` is 16 in the checkpoint but 32 in this run"),
        "{message}"
    );

    let mut deeper = config.clone();
    deeper.model.num_hidden_layers = 2;
    let err = pretrain::<B>(deeper, &run, &device, RunMode::Resume).unwrap_err();
    assert!(err.to_string().contains("num_hidden_layers"), "{err}");
}

#[test]
fn resume_without_checkpoint_and_overwrite() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("empty");
    let err = pretrain::<B>(common::tiny_pretrain(1), &run, &device, RunMode::Resume).unwrap_err();
    assert!(err.to_string().contains("nothing to resume"), "{err}");
    pretrain::<B>(common::tiny_pretrain(1), &run, &device, RunMode::Overwrite).unwrap();
    let summary =
        pretrain::<B>(common::tiny_pretrain(2), &run, &device, RunMode::Overwrite).unwrap();
    assert_eq!(summary.steps, 2);
    assert_eq!(steps(&run), [2]);
}
