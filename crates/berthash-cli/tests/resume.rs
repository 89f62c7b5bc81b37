//! Exact resume through the binary: a run killed with SIGKILL after a checkpoint, or stopped
//! with SIGTERM (which checkpoints at once), and resumed gives the same loss at every step and
//! the same final weights as an uninterrupted run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: &str = "10";

fn pretrain(out: &Path, extra: &[&str]) -> Command {
    pretrain_steps(out, STEPS, "4", extra)
}

fn pretrain_steps(out: &Path, steps: &str, save_every: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berthash"));
    command
        .args([
            "pretrain",
            "--size",
            "femto",
            "--max-steps",
            steps,
            "--batch-size",
            "8",
            "--warmup-steps",
            "3",
        ])
        .args([
            "--save-every",
            save_every,
            "--eval-every",
            "0",
            "--log-every",
            "1",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

/// (step, loss) of every logged training step.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r.get("loss").is_some())
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn a_run_killed_with_sigkill_resumes_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert!(pretrain(&whole, &[]).status().unwrap().success());

    let killed = dir.path().join("killed");
    let mut child = pretrain(&killed, &[]).spawn().unwrap();
    let first_checkpoint = killed.join("checkpoints/step-00000004");
    let start = Instant::now();
    while !first_checkpoint.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        if child.try_wait().unwrap().is_some() {
            break; // finished before we could kill it: the resume below then has nothing to do
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let killed_at = losses(&killed).last().map_or(0, |l| l.0);
    assert!(
        killed_at < 10,
        "the run should have been killed before its last step"
    );

    assert!(pretrain(&killed, &["--resume"]).status().unwrap().success());
    let (a, b) = (losses(&whole), losses(&killed));
    assert_eq!(a.len(), 10);
    assert_eq!(a, b, "per-step losses differ after resume");
    let weights = |run: &Path| std::fs::read(run.join("model/model.safetensors")).unwrap();
    assert!(
        weights(&whole) == weights(&killed),
        "final weights differ after resume"
    );
}

#[test]
fn a_signal_stops_with_a_checkpoint_and_the_run_resumes_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert!(pretrain_steps(&whole, "60", "1000", &[])
        .status()
        .unwrap()
        .success());
    for (signal, code) in [("-TERM", 143), ("-INT", 130)] {
        stop_and_resume(&whole, &dir.path().join(signal), signal, code);
    }
}

/// Stops a run in `stopped` with `signal` once it has logged two steps; it must exit with
/// `code` after a checkpoint, and resume to `whole`'s losses and weights.
fn stop_and_resume(whole: &Path, stopped: &Path, signal: &str, code: i32) {
    let child = pretrain_steps(stopped, "60", "1000", &[])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while losses(stopped).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the run logged no step"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{signal}: {stderr}");
    assert!(
        stderr.contains("stopped at step") && stderr.contains("--resume"),
        "{stderr}"
    );
    let at = losses(stopped).last().unwrap().0;
    assert!(at < 60);
    let checkpoint = stopped.join(format!("checkpoints/step-{at:08}"));
    assert!(
        checkpoint.join("state.json").exists(),
        "no checkpoint at step {at}: {stderr}"
    );

    assert!(pretrain_steps(stopped, "60", "1000", &["--resume"])
        .status()
        .unwrap()
        .success());
    assert_eq!(
        losses(whole),
        losses(stopped),
        "losses differ after the resume"
    );
    let weights = |run: &Path| std::fs::read(run.join("model/model.safetensors")).unwrap();
    assert!(weights(whole) == weights(stopped), "final weights differ");
}
