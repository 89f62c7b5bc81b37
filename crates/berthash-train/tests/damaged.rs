//! Resume survives what a crash or a bad disk leaves: a newest checkpoint whose weights were
//! damaged after they were written (caught by its checksums: resume falls back to the previous
//! checkpoint) and a partly written last line in `metrics.jsonl`. The resumed run still matches
//! an uninterrupted one bit for bit.
//!
//! One test in this file: Burn's CPU backend RNG is process-global, so no other training may
//! run concurrently in the same process.

mod common;

use std::io::Write;

use berthash_train::{pretrain, Checkpoints, RunMode};
use burn::backend::{Autodiff, Flex};
use common::train_losses;

type B = Autodiff<Flex>;

#[test]
fn resume_skips_a_damaged_checkpoint_and_a_torn_log_line() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let total = 8u64;
    let config = |max_steps: u64| {
        let mut c = common::tiny_pretrain(max_steps);
        c.train.save_every = 2;
        c.schedule.total_steps = Some(total);
        c
    };
    let straight = dir.path().join("straight");
    pretrain::<B>(config(total), &straight, &device, RunMode::New).unwrap();

    let broken = dir.path().join("broken");
    pretrain::<B>(config(6), &broken, &device, RunMode::New).unwrap();
    let newest = broken.join("checkpoints").join(Checkpoints::name(6));
    // One byte of the weights flipped, past the header: the file still parses.
    let weights = newest.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x40;
    std::fs::write(&weights, bytes).unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(broken.join("metrics.jsonl"))
        .unwrap();
    log.write_all(br#"{"kind":"train","step":7,"lo"#).unwrap();

    let resumed = pretrain::<B>(config(total), &broken, &device, RunMode::Resume).unwrap();
    assert_eq!(resumed.steps, total);
    assert_eq!(train_losses(&straight), train_losses(&broken));
    let weights =
        |run: &std::path::Path| std::fs::read(run.join("model/model.safetensors")).unwrap();
    assert!(
        weights(&straight) == weights(&broken),
        "final weights differ"
    );
}
