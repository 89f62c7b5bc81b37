//! What a user hands a run through the binary that does not fit: inputs beyond the model, flags
//! that contradict the run being resumed, a batch beyond the machine: a clear error, and no run
//! directory left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn berthash(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berthash"));
    command.args(args);
    command
}

fn refused(command: &mut Command) -> String {
    let output: Output = command.output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn inputs_that_do_not_fit_the_model_are_refused_before_a_run_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    let sst2 = repo().join("tests/fixtures/glue/SST-2");
    let config = repo().join("configs/glue/sst2.toml");
    let out = dir.path().join("run");
    let finetune = |model: &[&str], extra: &[&str]| {
        let mut command = berthash(&["finetune", "--config"]);
        command
            .arg(&config)
            .arg("--data-dir")
            .arg(&sst2)
            .arg("--out")
            .arg(&out);
        command.args(model).args(extra);
        command
    };

    // femto reads at most 256 positions.
    let stderr = refused(&mut finetune(
        &["--scratch", "femto"],
        &["--max-seq-length", "512"],
    ));
    assert!(
        stderr.contains("max_seq_length") && stderr.contains("256"),
        "{stderr}"
    );
    assert!(!out.exists(), "a refused run left {} behind", out.display());

    // A model whose config.json asks for an impossible dropout.
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    let golden = repo().join("tests/fixtures/golden/tiny/cls");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join("config.json")).unwrap())
            .unwrap();
    json["classifier_dropout"] = serde_json::json!(1.5);
    std::fs::write(model.join("config.json"), json.to_string()).unwrap();
    std::fs::copy(
        golden.join("model.safetensors"),
        model.join("model.safetensors"),
    )
    .unwrap();
    let stderr = refused(&mut finetune(&["--model", model.to_str().unwrap()], &[]));
    assert!(stderr.contains("classifier_dropout"), "{stderr}");
    assert!(!out.exists(), "a refused run left {} behind", out.display());
    let stderr = refused(&mut berthash(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "a film",
    ]));
    assert!(stderr.contains("classifier_dropout"), "{stderr}");
}

#[test]
fn resume_refuses_flags_that_contradict_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let short = |size: &str, steps: &str, extra: &[&str]| {
        let mut command = berthash(&["pretrain", "--size", size, "--max-steps", steps]);
        command.args(["--batch-size", "8", "--warmup-steps", "2", "--out"]);
        command.arg(&run).args(extra);
        command
    };
    assert!(short("femto", "4", &[]).output().unwrap().status.success());
    let stderr = refused(&mut short("femto", "9", &["--resume", "--lr", "0.5"]));
    assert!(
        stderr.contains("optimizer.lr = 0.5") && stderr.contains("train.max_steps = 9"),
        "{stderr}"
    );
    assert!(stderr.contains("init_from"), "{stderr}");
    let stderr = refused(&mut short("nano", "4", &["--resume"]));
    assert!(stderr.contains("--size nano"), "{stderr}");
    // The same flags resume (the run is complete: nothing to do).
    assert!(short("femto", "4", &["--resume"])
        .output()
        .unwrap()
        .status
        .success());
}

#[test]
fn model_configs_with_impossible_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let golden = repo().join("tests/fixtures/golden/tiny/mlm");
    for (key, value) in [
        ("layer_norm_eps", serde_json::json!(0.0)),
        ("initializer_range", serde_json::json!(-0.02)),
        ("classifier_dropout", serde_json::json!(1.0)),
    ] {
        let model = dir.path().join(key);
        std::fs::create_dir_all(&model).unwrap();
        let text = std::fs::read_to_string(golden.join("config.json")).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json[key] = value;
        std::fs::write(model.join("config.json"), json.to_string()).unwrap();
        std::fs::copy(
            golden.join("model.safetensors"),
            model.join("model.safetensors"),
        )
        .unwrap();
        let stderr = refused(&mut berthash(&[
            "fill-mask",
            "--model",
            model.to_str().unwrap(),
            "a [MASK]",
        ]));
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
}

#[test]
fn a_batch_beyond_the_machines_memory_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut command = berthash(&["pretrain", "--size", "nano", "--max-steps", "1"]);
    command
        .args(["--batch-size", "100000000", "--out"])
        .arg(&out);
    let stderr = refused(&mut command);
    assert!(
        stderr.contains("train.batch_size") && stderr.contains("GiB"),
        "{stderr}"
    );
    assert!(!out.exists(), "a refused run left {} behind", out.display());
}

#[test]
fn a_run_keeps_its_own_tokenizer_in_every_model_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    // The built-in tokenizer, with a marker in a companion file.
    let tokenizer = dir.path().join("tokenizer");
    std::fs::create_dir_all(&tokenizer).unwrap();
    let builtin = repo().join("data/tokenizer/bert-base-uncased");
    std::fs::copy(
        builtin.join("tokenizer.json"),
        tokenizer.join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(
        tokenizer.join("tokenizer_config.json"),
        r#"{"marker": "ours"}"#,
    )
    .unwrap();
    let run = dir.path().join("run");
    let mut pretrain = berthash(&["pretrain", "--size", "femto", "--max-steps", "2"]);
    pretrain.args(["--batch-size", "4", "--warmup-steps", "1", "--tokenizer"]);
    pretrain
        .arg(tokenizer.join("tokenizer.json"))
        .arg("--out")
        .arg(&run);
    assert!(pretrain.output().unwrap().status.success());
    let marked = |dir: &Path| {
        std::fs::read_to_string(dir.join("tokenizer_config.json")).is_ok_and(|t| t.contains("ours"))
    };
    assert!(marked(&run.join("model")));
    assert!(marked(&run.join("checkpoints/step-00000002")));
    let export = dir.path().join("export");
    let mut command = berthash(&["export", "--from"]);
    command.arg(&run).arg("--out").arg(&export);
    assert!(command.output().unwrap().status.success());
    assert!(marked(&export), "export wrote another tokenizer");
}

#[test]
fn predict_and_eval_refuse_sequences_beyond_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let sst2 = repo().join("tests/fixtures/glue/SST-2");
    let run = dir.path().join("run");
    let mut finetune = berthash(&["finetune", "--scratch", "femto", "--max-steps", "1"]);
    finetune
        .arg("--config")
        .arg(repo().join("configs/glue/sst2.toml"));
    finetune.args([
        "--max-train-samples",
        "8",
        "--max-eval-samples",
        "8",
        "--data-dir",
    ]);
    finetune.arg(&sst2).arg("--out").arg(&run);
    assert!(finetune.output().unwrap().status.success());
    let recipe = dir.path().join("long.toml");
    std::fs::write(&recipe, "task = \"sst2\"\nmax_seq_length = 512\n").unwrap();
    let mut predict = berthash(&["predict", "--model"]);
    predict
        .arg(&run)
        .arg("--config")
        .arg(&recipe)
        .arg("a fine film");
    let stderr = refused(&mut predict);
    assert!(
        stderr.contains("max_seq_length") && stderr.contains("256"),
        "{stderr}"
    );
    let mut eval = berthash(&["eval", "--model"]);
    eval.arg(&run)
        .arg("--config")
        .arg(&recipe)
        .arg("--data-dir")
        .arg(&sst2);
    let stderr = refused(&mut eval);
    assert!(
        stderr.contains("max_seq_length") && stderr.contains("256"),
        "{stderr}"
    );
}
