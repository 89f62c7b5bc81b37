//! The whole workflow from a fresh state, through the binary: pre-train femto on the built-in
//! sample, export, fine-tune on a GLUE fixture, eval, predict, fill-mask, plot.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn berthash(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_berthash"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "berthash {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn pretrain_export_finetune_eval_predict_fill_mask() {
    let dir = tempfile::tempdir().unwrap();
    let pre = dir.path().join("pre");
    berthash(&[
        "pretrain",
        "--size",
        "femto",
        "--max-steps",
        "6",
        "--batch-size",
        "8",
        "--warmup-steps",
        "2",
        "--save-every",
        "3",
        "--eval-every",
        "3",
        "--log-every",
        "1",
        "--out",
        s(&pre),
    ]);
    for file in [
        "train_config.json",
        "train_config.toml",
        "metrics.jsonl",
        "summary.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "inputs/sample/SOURCES.md",
    ] {
        assert!(
            pre.join(file).exists(),
            "{file} missing from the pre-training run"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pre.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 6);

    let export = dir.path().join("export");
    berthash(&[
        "export",
        "--from",
        s(&pre),
        "--out",
        s(&export),
        "--head",
        "mlm",
    ]);
    for file in [
        "config.json",
        "model.safetensors",
        "modeling_bert_hash.py",
        "configuration_bert_hash.py",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "README.md",
    ] {
        assert!(export.join(file).exists(), "{file} missing from the export");
    }
    let card = std::fs::read_to_string(export.join("README.md")).unwrap();
    assert!(
        card.contains("## Training") && card.contains("tokens_seen"),
        "{card}"
    );

    let out = berthash(&[
        "fill-mask",
        "--model",
        s(&export),
        "the capital of france is [MASK].",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() >= 6);

    let fine = dir.path().join("fine");
    let sst2 = repo().join("tests/fixtures/glue/SST-2");
    let config = repo().join("configs/glue/sst2.toml");
    berthash(&[
        "finetune",
        "--config",
        s(&config),
        "--model",
        s(&export),
        "--data-dir",
        s(&sst2),
        "--out",
        s(&fine),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--max-train-samples",
        "64",
        "--max-eval-samples",
        "40",
    ]);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fine.join("eval_results.json")).unwrap())
            .unwrap();
    let accuracy = results["eval_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    assert_eq!(results["eval_samples"], 40.0);
    let predictions = std::fs::read_to_string(fine.join("predictions.tsv")).unwrap();
    assert_eq!(predictions.lines().count(), 41, "header + 40 dev rows");
    assert!(fine.join("best/model.safetensors").exists());
    // Evaluated every epoch: two dev evaluations in the log.
    let metrics = std::fs::read_to_string(fine.join("metrics.jsonl")).unwrap();
    assert!(
        metrics
            .lines()
            .filter(|l| l.contains("eval_accuracy"))
            .count()
            >= 2,
        "{metrics}"
    );

    let out = berthash(&[
        "eval",
        "--model",
        s(&fine),
        "--config",
        s(&config),
        "--data-dir",
        s(&sst2),
        "--max-eval-samples",
        "40",
    ]);
    let evaluated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evaluated["eval_accuracy"].as_f64().unwrap(), accuracy);

    let out = berthash(&[
        "predict",
        "--model",
        s(&fine),
        "a wonderful , moving film",
        "dull and lifeless",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("0\t") || l.starts_with("1\t")),
        "{text}"
    );

    berthash(&["plot", s(&pre)]);
    let svg = std::fs::read_to_string(pre.join("curves.svg")).unwrap();
    assert!(svg.contains("<polyline") && svg.contains("\nloss\n"));
    // Two runs overlaid, as a PNG drawn with the embedded font.
    let png = dir.path().join("curves.png");
    berthash(&["plot", s(&pre), s(&fine), "--out", s(&png)]);
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
}

#[test]
fn a_sweep_runs_its_grid_and_skips_finished_runs_when_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let sst2 = repo().join("tests/fixtures/glue/SST-2");
    let config = repo().join("configs/glue/sst2.toml");
    let args = [
        "sweep",
        "--scratch",
        "femto",
        "--config",
        s(&config),
        "--data-dir",
        s(&sst2),
        "--lr",
        "1e-3,1e-4",
        "--seeds",
        "1,2",
        "--max-steps",
        "2",
        "--max-train-samples",
        "16",
        "--max-eval-samples",
        "8",
        "--out",
        s(&out),
    ];
    berthash(&args);
    let read = || std::fs::read_to_string(out.join("sweep.json")).unwrap();
    let first = read();
    let sweep: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(sweep["runs"].as_array().unwrap().len(), 4);
    assert_eq!(sweep["combinations"].as_array().unwrap().len(), 2);
    assert_eq!(sweep["metric"], "eval_accuracy");
    assert!(sweep["best"]["mean"].as_f64().is_some(), "{first}");
    // Started again: every run is finished, none is trained again.
    let summary = out.join("lr1e-3-seed1/summary.json");
    let before = std::fs::metadata(&summary).unwrap().modified().unwrap();
    berthash(&args);
    assert_eq!(
        std::fs::metadata(&summary).unwrap().modified().unwrap(),
        before
    );
    assert_eq!(read(), first);
}

#[test]
fn runs_write_tensorboard_events_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let events = |run: &Path| {
        std::fs::read_dir(run)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("events.out.tfevents.")
            })
            .count()
    };
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "pretrain",
            "--size",
            "femto",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
        ];
        args.extend(["--warmup-steps", "1", "--out", s(&out)]);
        args.extend(extra);
        berthash(&args);
        out
    };
    let with = run("with", &[]);
    assert_eq!(events(&with), 1);
    let without = run("without", &["--report-to", "none"]);
    assert_eq!(events(&without), 0);
    berthash(&["plot", "--tensorboard", s(&without)]);
    assert_eq!(
        events(&without),
        1,
        "plot --tensorboard converts metrics.jsonl"
    );
}

#[test]
fn test_splits_become_glue_leaderboard_files() {
    let dir = tempfile::tempdir().unwrap();
    let glue = repo().join("tests/fixtures/glue");
    let finetune = |task: &str, folder: &str, extra: &[&str]| {
        let out = dir.path().join(task);
        let config = repo().join(format!("configs/glue/{task}.toml"));
        let mut args = vec!["finetune", "--scratch", "femto", "--config", s(&config)];
        args.extend([
            "--max-steps",
            "1",
            "--max-train-samples",
            "8",
            "--max-eval-samples",
            "8",
        ]);
        let data = glue.join(folder);
        args.extend(["--data-dir", s(&data), "--out", s(&out)]);
        args.extend(extra);
        berthash(&args);
        out
    };
    let lines = |path: PathBuf| {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        text.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let predict_test = |model: &Path, task: &str, data: &str, out: &str| {
        let out = dir.path().join(out);
        let config = repo().join(format!("configs/glue/{task}.toml"));
        let data = glue.join(data);
        let mut args = vec!["predict", "--model", s(model), "--config", s(&config)];
        args.extend(["--data-dir", s(&data), "--split", "test", "--out", s(&out)]);
        berthash(&args);
        out
    };
    // finetune --do-predict: SST-2.tsv and run_glue's predict_results_test.txt, 0/1 per row.
    let sst2 = finetune("sst2", "SST-2", &["--do-predict"]);
    let rows = lines(sst2.join("SST-2.tsv"));
    assert_eq!(rows[0], "index\tprediction");
    assert_eq!(rows.len(), 5);
    assert!(rows[1..]
        .iter()
        .enumerate()
        .all(|(i, r)| r == &format!("{i}\t0") || r == &format!("{i}\t1")));
    assert_eq!(rows, lines(sst2.join("predict_results_test.txt")));

    // predict --split test: MNLI's matched, mismatched and diagnostic sets, as label names.
    let mnli = finetune("mnli", "MNLI", &[]);
    let out = predict_test(&mnli, "mnli", "MNLI", "mnli-test");
    for (file, n) in [("MNLI-m.tsv", 2), ("MNLI-mm.tsv", 3), ("AX.tsv", 2)] {
        let rows = lines(out.join(file));
        assert_eq!(rows.len(), n + 1, "{file}");
        let label = |r: &String| r.split('\t').nth(1).unwrap().to_string();
        assert!(
            rows[1..]
                .iter()
                .map(label)
                .all(|l| ["entailment", "neutral", "contradiction"].contains(&l.as_str())),
            "{file}: {rows:?}"
        );
    }

    // STS-B: a score with three decimals; the Hugging Face export's test split (labels -1).
    let stsb = finetune("stsb", "STS-B", &["--do-predict"]);
    let rows = lines(stsb.join("STS-B.tsv"));
    assert_eq!(rows.len(), 3);
    assert!(
        rows[1..].iter().all(|r| r
            .split('\t')
            .nth(1)
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap()
            .len()
            == 3),
        "{rows:?}"
    );
    let out = predict_test(&sst2, "sst2", "hf/sst2", "hf-test");
    assert_eq!(
        lines(out.join("SST-2.tsv")).len(),
        6,
        "5 test sentences + header"
    );
}
