//! From-scratch baselines on the real GLUE data (in ../shared, which CI has): pico initialised
//! from scratch learns SST-2 clearly above the majority class (0.509), and MRPC reports F1 and
//! accuracy. A from-scratch model needs a larger learning rate than run_glue's 1e-4.

use std::path::{Path, PathBuf};
use std::process::Command;

fn glue_dir(task: &str) -> Option<PathBuf> {
    let shared = std::env::var_os("BERTHASH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let dir = shared.join("data/glue").join(task);
    dir.join("train.tsv").is_file().then_some(dir)
}

const RECIPE: &str = "max_seq_length = 64\npadding = \"longest\"\n[optimizer]\nlr = 1e-3\n[schedule]\nwarmup_steps = 30\n[train]\nbatch_size = 32\n";

fn finetune_from_scratch(
    task: &str,
    data: &Path,
    samples: &str,
    epochs: &str,
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("recipe.toml");
    std::fs::write(&config, format!("task = \"{task}\"\n{RECIPE}")).unwrap();
    let out = dir.path().join("run");
    let output = Command::new(env!("CARGO_BIN_EXE_berthash"))
        .args(["finetune", "--scratch", "pico", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data)
        .args(["--max-train-samples", samples, "--epochs", epochs, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results = std::fs::read_to_string(out.join("eval_results.json")).unwrap();
    println!("{task}: {results}");
    serde_json::from_str(&results).unwrap()
}

#[test]
fn pico_from_scratch_learns_sst2_and_reports_mrpc() {
    let (Some(sst2), Some(mrpc)) = (glue_dir("SST-2"), glue_dir("MRPC")) else {
        eprintln!(
            "skipped: ../shared/data/glue not found (set BERTHASH_SHARED); CI runs this test"
        );
        return;
    };
    let results = finetune_from_scratch("sst2", &sst2, "4000", "3");
    let accuracy = results["eval_accuracy"].as_f64().unwrap();
    assert_eq!(results["eval_samples"], 872.0);
    assert!(
        accuracy > 0.60,
        "SST-2 dev accuracy {accuracy} is not clearly above the majority class"
    );

    let results = finetune_from_scratch("mrpc", &mrpc, "2000", "1");
    assert_eq!(results["eval_samples"], 408.0);
    for key in ["eval_accuracy", "eval_f1"] {
        let value = results[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&value), "{key} = {value}");
    }
}
