//! The run directory: one process at a time, and an overwrite leaves nothing of the previous
//! run behind.

use berthash_train::run_dir::{resolve_model, RunDir};
use berthash_train::{RunMode, TrainError};

#[test]
fn a_second_process_cannot_use_a_live_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let held = RunDir::prepare(&run, RunMode::New).unwrap();
    // Another open of the lock file conflicts like another process would (flock semantics).
    for mode in [RunMode::Overwrite, RunMode::Resume] {
        let err = RunDir::prepare(&run, mode).unwrap_err();
        assert!(matches!(err, TrainError::RunLocked { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("in use by another berthash process"),
            "{err}"
        );
        assert!(RunDir::check(&run, mode).is_err());
    }
    drop(held);
    RunDir::prepare(&run, RunMode::Resume).unwrap();
}

#[test]
fn an_overwrite_removes_the_previous_runs_outputs_but_not_its_own_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let old = [
        "train_config.json",
        "metrics.jsonl",
        "summary.json",
        "eval_results.json",
        "predictions.tsv",
    ];
    std::fs::create_dir_all(run.join("best")).unwrap();
    std::fs::create_dir_all(run.join("inputs")).unwrap();
    for name in old {
        std::fs::write(run.join(name), "{}").unwrap();
    }
    std::fs::write(run.join("best/config.json"), "{}").unwrap();
    std::fs::write(run.join("best/model.safetensors"), "").unwrap();
    std::fs::write(run.join("inputs/tokenizer.json"), "{}").unwrap();
    assert!(RunDir::check(&run, RunMode::New).is_err());

    RunDir::prepare(&run, RunMode::Overwrite).unwrap();
    for name in old.iter().chain(&["best"]) {
        assert!(!run.join(name).exists(), "{name} survived the overwrite");
    }
    assert!(run.join("inputs/tokenizer.json").exists());
    // With nothing left to serve, the run no longer resolves to the old best model.
    assert!(resolve_model(&run).is_err());
}
