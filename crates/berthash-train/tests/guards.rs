//! Guard rails and precision: a diverging run stops with a clear error naming the step (or skips
//! its updates when configured), and half precision is either run or refused clearly.

mod common;

use berthash_train::{
    pretrain, OnNonFinite, Precision, RunMode, ScheduleConfig, ScheduleKind, TrainError,
};
use burn::backend::{Autodiff, Flex};

type B = Autodiff<Flex>;

fn diverging(max_steps: u64) -> berthash_train::PretrainConfig {
    let mut config = common::tiny_pretrain(max_steps);
    config.optimizer.lr = 1e30; // the first update blows the weights up to ~1e30
    config.optimizer.max_grad_norm = None;
    config.train.log_every = 10;
    config.schedule = ScheduleConfig {
        kind: ScheduleKind::Constant,
        warmup_steps: 0,
        total_steps: None,
    };
    config
}

#[test]
fn nonfinite_loss_stops_with_the_step_or_is_skipped() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let mut config = diverging(6);
    config.train.save_every = 1;
    let err = pretrain::<B>(config, &dir.path().join("stop"), &device, RunMode::New).unwrap_err();
    let TrainError::NonFinite {
        step,
        ref last_checkpoint,
        ..
    } = err
    else {
        panic!("expected a non-finite error, got {err}");
    };
    assert_eq!(
        step, 2,
        "the first update is finite, the second loss is not: {err}"
    );
    // The checkpoint of step 1 (finite) was kept and is named; none was written after it.
    assert!(
        last_checkpoint.as_ref().unwrap().ends_with("step-00000001"),
        "{err}"
    );
    assert!(err.to_string().contains("non-finite loss"), "{err}");

    let mut config = diverging(4);
    config.train.on_nonfinite = OnNonFinite::Skip;
    let summary = pretrain::<B>(config, &dir.path().join("skip"), &device, RunMode::New).unwrap();
    assert_eq!(summary.steps, 4);
    assert_eq!(summary.skipped_steps, 3);
}

#[test]
fn bf16_trains_packed_and_padded_batches() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::tiny_pretrain(2);
    config.train.precision = Precision::Bf16;
    let summary = pretrain::<B>(config, &dir.path().join("bf16"), &device, RunMode::New).unwrap();
    assert!(summary.final_loss.unwrap().is_finite());
    assert_eq!(summary.precision, "bf16");

    let mut config = common::tiny_pretrain(2);
    config.train.precision = Precision::Bf16;
    config.data.pack_mode = berthash_data::PackMode::PerDocument;
    let summary = pretrain::<B>(config, &dir.path().join("padded"), &device, RunMode::New).unwrap();
    assert!(summary.final_loss.unwrap().is_finite());
}
