//! Every shipped recipe loads, flags override it, and a bad key or type is named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn berthash(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berthash"))
        .args(args)
        .output()
        .unwrap()
}

fn configs(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn resolved(output: Output) -> toml::Table {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).parse().unwrap()
}

#[test]
fn every_pretraining_recipe_loads_with_the_card_recipe_and_flags_override_it() {
    let files = configs("pretrain");
    assert_eq!(files.len(), 3);
    for file in files {
        let name = file.to_str().unwrap();
        let config = resolved(berthash(&["pretrain", "--config", name, "--print-config"]));
        assert_eq!(config["optimizer"]["lr"].as_float(), Some(1e-3), "{name}");
        assert_eq!(config["optimizer"]["eps"].as_float(), Some(1e-6), "{name}");
        assert_eq!(
            config["schedule"]["warmup_steps"].as_integer(),
            Some(2500),
            "{name}"
        );
        assert_eq!(
            config["train"]["batch_size"].as_integer(),
            Some(64),
            "{name}"
        );
        let size = file.file_stem().unwrap().to_str().unwrap();
        let hidden = match size {
            "femto" => 64,
            "pico" => 80,
            _ => 128,
        };
        assert_eq!(
            config["model"]["hidden_size"].as_integer(),
            Some(hidden),
            "{name}"
        );
        let config = resolved(berthash(&[
            "pretrain",
            "--config",
            name,
            "--print-config",
            "--lr",
            "0.0005",
            "--batch-size",
            "8",
            "--warmup-steps",
            "10",
            "--weight-decay",
            "0.1",
            "--seed",
            "7",
            "--grad-accum",
            "2",
            "--max-steps",
            "99",
        ]));
        assert_eq!(config["optimizer"]["lr"].as_float(), Some(5e-4));
        assert_eq!(config["optimizer"]["weight_decay"].as_float(), Some(0.1));
        assert_eq!(config["train"]["batch_size"].as_integer(), Some(8));
        assert_eq!(config["data"]["batch_size"].as_integer(), Some(8));
        assert_eq!(config["schedule"]["warmup_steps"].as_integer(), Some(10));
        assert_eq!(config["train"]["seed"].as_integer(), Some(7));
        assert_eq!(config["train"]["grad_accum"].as_integer(), Some(2));
        assert_eq!(config["train"]["max_steps"].as_integer(), Some(99));
    }
}

#[test]
fn every_glue_recipe_loads_with_run_glue_defaults() {
    let files = configs("glue");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb", "wnli"]
    );
    for file in &files {
        let name = file.to_str().unwrap();
        let config = resolved(berthash(&[
            "finetune",
            "--config",
            name,
            "--scratch",
            "femto",
            "--data-dir",
            "/nonexistent",
            "--print-config",
        ]));
        assert_eq!(config["max_seq_length"].as_integer(), Some(128), "{name}");
        assert_eq!(config["epochs"].as_float(), Some(4.0), "{name}");
        assert_eq!(config["optimizer"]["lr"].as_float(), Some(1e-4), "{name}");
        assert_eq!(
            config["optimizer"]["weight_decay"].as_float(),
            Some(0.0),
            "{name}"
        );
        assert_eq!(
            config["schedule"]["warmup_steps"].as_integer(),
            Some(0),
            "{name}"
        );
        assert_eq!(
            config["train"]["batch_size"].as_integer(),
            Some(32),
            "{name}"
        );
        assert_eq!(config["train"]["seed"].as_integer(), Some(42), "{name}");
        let task = file.file_stem().unwrap().to_str().unwrap();
        assert_eq!(config["task"]["name"].as_str(), Some(task), "{name}");
    }
    let config = resolved(berthash(&[
        "finetune",
        "--config",
        files[6].to_str().unwrap(),
        "--scratch",
        "femto",
        "--data-dir",
        "x",
        "--print-config",
        "--epochs",
        "1",
        "--lr",
        "0.00002",
        "--batch-size",
        "16",
        "--max-seq-length",
        "64",
        "--seed",
        "1",
        "--max-train-samples",
        "100",
        "--max-eval-samples",
        "50",
    ]));
    assert_eq!(config["epochs"].as_float(), Some(1.0));
    assert_eq!(config["optimizer"]["lr"].as_float(), Some(2e-5));
    assert_eq!(config["train"]["batch_size"].as_integer(), Some(16));
    assert_eq!(config["max_seq_length"].as_integer(), Some(64));
    assert_eq!(config["train"]["seed"].as_integer(), Some(1));
    assert_eq!(config["max_train_samples"].as_integer(), Some(100));
    assert_eq!(config["max_eval_samples"].as_integer(), Some(50));
}

#[test]
fn unknown_keys_and_wrong_types_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "pretrain",
            "size = \"pico\"\n[optimizer]\nlrr = 0.1\n",
            "`lrr`",
        ),
        (
            "pretrain",
            "size = \"pico\"\n[train]\nbatch_size = \"big\"\n",
            "train.batch_size",
        ),
        (
            "pretrain",
            "size = \"pico\"\n[model]\nhiden_size = 3\n",
            "model.hiden_size",
        ),
        ("pretrain", "size = \"pico\"\nwarmup = 3\n", "`warmup`"),
        ("finetune", "task = \"sst2\"\nepochz = 3\n", "`epochz`"),
        (
            "finetune",
            "task = \"sst2\"\n[optimizer]\nlr = \"fast\"\n",
            "optimizer.lr",
        ),
        ("finetune", "task = \"sst3\"\n", "unknown task \"sst3\""),
    ];
    for (i, (command, text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let file = file.to_str().unwrap();
        let output = match *command {
            "pretrain" => berthash(&["pretrain", "--config", file, "--print-config"]),
            _ => berthash(&[
                "finetune",
                "--config",
                file,
                "--scratch",
                "femto",
                "--data-dir",
                "x",
                "--print-config",
            ]),
        };
        assert!(!output.status.success(), "{text}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains(file),
            "{text}: {stderr}"
        );
    }
}
