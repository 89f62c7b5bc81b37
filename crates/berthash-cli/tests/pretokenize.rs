//! `berthash pretokenize`, then `pretrain` on the shards: the same run as on the parquet files.

mod common;

use std::path::Path;

use common::{fails, ok, s};

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The training losses a run logged, in order.
fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("loss").and_then(|l| l.as_f64()))
        .collect()
}

#[test]
fn pretraining_on_shards_repeats_the_run_on_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let sample = repo().join("data/sample");
    let (wiki, books) = (sample.join("wikipedia"), sample.join("books"));
    let shards = dir.path().join("shards");
    let stdout = ok(&[
        "pretokenize",
        "--data",
        s(&wiki),
        s(&books),
        "--out",
        s(&shards),
    ]);
    let (wiki_shards, books_shards) = (shards.join("wikipedia"), shards.join("books"));
    let hint = format!("--data {} {}", s(&wiki_shards), s(&books_shards));
    assert!(stdout.contains(&hint), "{stdout}");
    assert!(
        stdout.contains("6000 documents (0 without text)"),
        "{stdout}"
    );
    // A second run finds them up to date.
    assert!(ok(&[
        "pretokenize",
        "--data",
        s(&wiki),
        s(&books),
        "--out",
        s(&shards)
    ])
    .contains("kept: up to date"));

    let pretrain = |data: [&Path; 2], out: &Path, extra: &[&str]| {
        let mut args = vec![
            "pretrain",
            "--size",
            "femto",
            "--max-steps",
            "4",
            "--batch-size",
            "8",
            "--warmup-steps",
            "2",
            "--log-every",
            "1",
            "--eval-every",
            "4",
            "--out",
            s(out),
            "--data",
            s(data[0]),
            s(data[1]),
        ];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (from_text, from_shards) = (dir.path().join("text"), dir.path().join("shards-run"));
    run(pretrain([&wiki, &books], &from_text, &[]));
    run(pretrain([&wiki_shards, &books_shards], &from_shards, &[]));
    let expected = losses(&from_text);
    assert_eq!(expected.len(), 4);
    assert_eq!(losses(&from_shards), expected);

    // `bench --one-pass` reads the corpus once from a fresh loader: as many batches from the
    // shards as from the parquet files.
    let one_pass = |data: [&Path; 2]| -> serde_json::Value {
        let stdout = ok(&[
            "bench",
            "--phase",
            "data",
            "--one-pass",
            "--json",
            "--batch",
            "32",
            "--seq",
            "128",
            "--data",
            s(data[0]),
            s(data[1]),
        ]);
        let line = stdout.lines().rev().find(|l| l.starts_with('{'));
        serde_json::from_str(line.expect("a JSON row")).unwrap()
    };
    let (text, tokens) = (
        one_pass([&wiki, &books]),
        one_pass([&wiki_shards, &books_shards]),
    );
    assert_eq!(text["variant"], "corpus-one-pass", "{text}");
    assert!(text["steps"].as_u64().unwrap() > 1, "{text}");
    assert_eq!(text["steps"], tokens["steps"], "{text}\n{tokens}");
    assert!(tokens["tokens_per_s"].as_f64().unwrap() > 0.0, "{tokens}");

    // Shards are read only with the tokenizer that made them, and that is checked up front.
    let json =
        std::fs::read_to_string(repo().join("data/tokenizer/bert-base-uncased/tokenizer.json"))
            .unwrap();
    let cased = dir.path().join("cased.json");
    std::fs::write(
        &cased,
        json.replacen("\"lowercase\":true", "\"lowercase\":false", 1),
    )
    .unwrap();
    let refused = dir.path().join("refused");
    // stderr of a pretrain run that must be refused before its run directory exists.
    let refuse = |data: [&Path; 2], extra: &[&str]| {
        let args = pretrain(data, &refused, extra);
        let stderr = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            !refused.exists(),
            "a refused run left {}",
            refused.display()
        );
        stderr
    };
    let stderr = refuse([&wiki_shards, &books_shards], &["--tokenizer", s(&cased)]);
    assert!(
        stderr.contains("train-00000-of-00001.bhtok") && stderr.contains("this run's tokenizer"),
        "{stderr}"
    );

    // So is a shard cut short (a copy that did not finish).
    let cut = dir.path().join("cut");
    std::fs::create_dir(&cut).unwrap();
    let whole = std::fs::read(books_shards.join("train-00000-of-00001.bhtok")).unwrap();
    std::fs::write(cut.join("books.bhtok"), &whole[..whole.len() / 2]).unwrap();
    let stderr = refuse([&wiki_shards, &cut], &[]);
    assert!(
        stderr.contains("books.bhtok") && stderr.contains("truncated"),
        "{stderr}"
    );

    // A missing input is named before anything is written.
    let stderr = fails(&[
        "pretokenize",
        "--data",
        "no/such/dir",
        "--out",
        s(&dir.path().join("x")),
    ]);
    assert!(stderr.contains("no/such/dir"), "{stderr}");
    assert!(!dir.path().join("x").exists());
}
