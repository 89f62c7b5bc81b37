//! `berthash info` and `berthash forward` from the shell, against the shipped golden case.

use std::process::Command;

use berthash_model::weights::TensorFile;
use common::{assert_golden_outputs, golden};

mod common;

fn berthash() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berthash"))
}

#[test]
fn forward_writes_outputs_matching_the_reference() {
    for (head, keys) in [
        ("cls", vec!["last_hidden_state", "pooler_output", "logits"]),
        ("mlm", vec!["last_hidden_state", "logits"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(format!("{head}.safetensors"));
        let status = berthash()
            .args(["forward", "--model"])
            .arg(golden().join(head))
            .arg("--inputs")
            .arg(golden().join("inputs.json"))
            .arg("--output")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        let written = TensorFile::read(&out).unwrap();
        assert_eq!(
            written.tensors.len(),
            keys.len(),
            "{head}: {:?}",
            written.tensors.keys()
        );
        assert_golden_outputs(&written, head, &keys);
    }
}

#[test]
fn forward_refuses_out_of_vocabulary_ids_naming_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs.json");
    std::fs::write(&inputs, r#"{"input_ids": [[101, 5, 7], [101, 99999, 3]]}"#).unwrap();
    let output = berthash()
        .args(["forward", "--model"])
        .arg(golden().join("mlm"))
        .arg("--inputs")
        .arg(&inputs)
        .args(["--output", "/dev/null"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("row 1, column 1") && stderr.contains("99999"),
        "{stderr}"
    );
}

#[test]
fn info_reports_the_published_sizes() {
    for (preset, total) in [("pico", "448256"), ("nano", "969504")] {
        let output = berthash()
            .args(["info", "--preset", preset])
            .output()
            .unwrap();
        assert!(output.status.success());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find(|l| l.contains("total (encoder + pooler)"))
            .unwrap();
        assert!(line.trim_end().ends_with(total), "{line}");
    }
    let output = berthash()
        .args(["info", "--model"])
        .arg(golden().join("cls"))
        .arg("--json")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json["config"]["architectures"][0],
        "BertHashForSequenceClassification"
    );
}
