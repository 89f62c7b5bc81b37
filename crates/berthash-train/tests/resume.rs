//! Exact resume: a run of 2N steps and a run interrupted after step N+2 (its newest checkpoint
//! lost, as if killed before writing it) and resumed from the checkpoint at N give bit-identical
//! losses at every step after N and identical final weights. Dropout is on and each step has
//! two micro-batches (one in one of the bf16 runs), so the RNG reseeding, the data position and
//! the optimizer state all count.
//! In bf16 the uninterrupted run computes each step with the half weights the last update wrote,
//! and the resumed run starts from half weights cast from the saved f32 ones: the same values.
//!
//! One test in this file: Burn's CPU backend RNG is process-global, so no other training may
//! run concurrently in the same process.

mod common;

use berthash_train::{pretrain, Checkpoints, Precision, RunMode};
use burn::backend::{Autodiff, Flex};
use common::train_losses;

type B = Autodiff<Flex>;

#[test]
fn interrupted_and_resumed_run_matches_uninterrupted_run() {
    // bf16 with one micro-batch: half gradients reach the clipping and the update; with two,
    // each is cast to f32 before they are added.
    for (precision, grad_accum) in [
        (Precision::F32, 2),
        (Precision::Bf16, 1),
        (Precision::Bf16, 2),
    ] {
        interrupted_and_resumed(precision, grad_accum);
    }
}

fn interrupted_and_resumed(precision: Precision, grad_accum: usize) {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let (n, total) = (4u64, 8u64);
    let config = |max_steps: u64| {
        let mut c = common::tiny_pretrain(max_steps);
        c.train.precision = precision;
        c.train.grad_accum = grad_accum;
        c.train.save_every = n;
        c.train.eval_every = n;
        c.schedule.total_steps = Some(total); // the same schedule whatever the session's length
        c
    };

    // The uninterrupted run.
    let straight = dir.path().join("straight");
    let summary = pretrain::<B>(config(total), &straight, &device, RunMode::New).unwrap();
    assert_eq!(summary.steps, total);

    // The interrupted run: stops after step N + 2, and loses the checkpoint written then.
    let broken = dir.path().join("broken");
    pretrain::<B>(config(n + 2), &broken, &device, RunMode::New).unwrap();
    let checkpoints = Checkpoints::new(broken.join("checkpoints"), 3);
    let steps: Vec<u64> = checkpoints.list().unwrap().iter().map(|c| c.step).collect();
    assert_eq!(steps, [n, n + 2]);
    std::fs::remove_dir_all(broken.join("checkpoints").join(Checkpoints::name(n + 2))).unwrap();
    // A fresh start in a used run directory is refused.
    let refused = pretrain::<B>(config(total), &broken, &device, RunMode::New).unwrap_err();
    assert!(
        refused.to_string().contains("already holds a run"),
        "{refused}"
    );

    let resumed = pretrain::<B>(config(total), &broken, &device, RunMode::Resume).unwrap();
    assert_eq!(resumed.steps, total);

    let a = train_losses(&straight);
    let b = train_losses(&broken);
    assert_eq!(a.len() as u64, total, "one record per step: {a:?}");
    assert_eq!(a, b, "{precision}, grad_accum {grad_accum}: losses differ");
    assert!(a.iter().all(|(_, l)| l.is_finite()));

    let weights =
        |run: &std::path::Path| std::fs::read(run.join("model/model.safetensors")).unwrap();
    assert!(
        weights(&straight) == weights(&broken),
        "{precision}: final weights differ"
    );
    let optim = |run: &std::path::Path| {
        let path = run
            .join("checkpoints")
            .join(Checkpoints::name(total))
            .join("optimizer.safetensors");
        let file = berthash_model::weights::TensorFile::read(&path).unwrap();
        (file.tensors, file.metadata)
    };
    assert!(
        optim(&straight) == optim(&broken),
        "{precision}: final optimizer states differ"
    );
    assert_eq!(resumed.tokens_seen, summary.tokens_seen);
}
