//! `berthash train-embeddings` through the binary: a run evaluates the encoder before and after
//! training, keeps the best model as a sentence-transformers directory that `embed` and `export`
//! use as configured, resumes exactly, and refuses bad input before creating its run directory.

use std::path::{Path, PathBuf};

mod common;
use common::{fails, ok, s, write_model};

use berthash_model::weights::TensorFile;

const SENTENCES: [(&str, &str, f32); 12] = [
    ("a plane is taking off", "an air plane is taking off", 5.0),
    ("a man is playing a flute", "a man plays a flute", 4.6),
    ("a woman is slicing an onion", "a woman cuts an onion", 4.2),
    ("a cat sits on the mat", "a dog sleeps on the sofa", 1.0),
    (
        "stocks fall on weak data",
        "markets rise after earnings",
        0.4,
    ),
    (
        "the children are playing outside",
        "kids play in the garden",
        3.8,
    ),
    ("a man is riding a horse", "a person rides a horse", 4.4),
    ("the sun is shining", "it is raining heavily", 0.2),
    (
        "two dogs run on the beach",
        "dogs are running along the sand",
        4.0,
    ),
    ("a girl is reading a book", "a boy kicks a ball", 0.6),
    (
        "the train arrives at noon",
        "the train comes at twelve",
        4.8,
    ),
    ("he bought a new car", "she sold her old bike", 1.2),
];

fn write_data(dir: &Path) -> PathBuf {
    let data = dir.join("pairs");
    std::fs::create_dir_all(&data).unwrap();
    let mut train = String::from("id\tsentence1\tsentence2\tscore\n");
    for (i, (a, b, score)) in SENTENCES.iter().enumerate() {
        train.push_str(&format!("{i}\t{a}\t{b}\t{score}\n"));
    }
    std::fs::write(data.join("train.tsv"), train).unwrap();
    let mut dev = String::new();
    for (a, b, score) in SENTENCES.iter().rev().take(6) {
        dev.push_str(&format!(
            "{{\"s1\": \"{b}\", \"s2\": \"{a}\", \"label\": {score}}}\n"
        ));
    }
    std::fs::write(data.join("dev.jsonl"), dev).unwrap();
    data
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("pairs.toml");
    std::fs::write(
        &path,
        format!(
            "pooling = \"cls\"\nnormalize = true\nmax_seq_length = 32\nepochs = 2.0\n{extra}\n\
[data]\ntrain = \"train.tsv\"\ntext_a = \"sentence1\"\ntext_b = \"sentence2\"\nscore = \"score\"\n\
score_range = [0.0, 5.0]\nheld_out_fraction = 0.25\n\n[loss]\nkind = \"cosent\"\n\n\
[optimizer]\nlr = 1e-3\n\n[train]\nbatch_size = 4\nsave_every = 2\nlog_every = 1\n"
        ),
    )
    .unwrap();
    path
}

/// `train-embeddings` with a recipe, a model, a data folder and a run directory.
fn run_args<'a>(config: &'a Path, model: &'a Path, data: &'a Path, out: &'a Path) -> [&'a str; 9] {
    [
        "train-embeddings",
        "--config",
        s(config),
        "--model",
        s(model),
        "--data-dir",
        s(data),
        "--out",
        s(out),
    ]
}

fn weights(dir: &Path) -> Vec<f32> {
    let file = TensorFile::read(&dir.join("model.safetensors")).unwrap();
    file.tensors
        .iter()
        .flat_map(|(k, t)| t.to_f32(&dir.join("model.safetensors"), k).unwrap())
        .collect()
}

#[test]
fn trains_evaluates_keeps_the_best_and_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), None);
    let data = write_data(dir.path());
    let config = write_config(dir.path(), "");
    let out = dir.path().join("run");
    let args = run_args(&config, &model, &data, &out);
    let printed = ok(&args);
    assert!(printed.contains("eval_spearman_cosine"), "{printed}");

    // Evaluated before training and after each epoch, on the held-out quarter (no dev file).
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["kind"] == "eval")
        .collect();
    let steps: Vec<u64> = evals.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 3, 6], "{metrics}");
    assert!(evals.iter().all(|e| e["split"] == "held_out"));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train_config.json")).unwrap())
            .unwrap();
    assert!(saved["data"].get("dev").is_none());

    // best/ and model/ are sentence-transformers models with the recipe's pooling.
    for model_dir in ["best", "model"] {
        let modules = std::fs::read_to_string(out.join(model_dir).join("modules.json")).unwrap();
        assert!(modules.contains("Normalize"), "{modules}");
        let pooling =
            std::fs::read_to_string(out.join(model_dir).join("1_Pooling/config.json")).unwrap();
        assert!(
            pooling.contains("\"pooling_mode_cls_token\": true"),
            "{pooling}"
        );
    }
    let embedded = ok(&["embed", "--model", s(&out), "a plane is taking off"]);
    let line: serde_json::Value = serde_json::from_str(embedded.trim()).unwrap();
    let norm: f64 = line["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap().powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    let exported = dir.path().join("export");
    let printed = ok(&["export", "--from", s(&out), "--out", s(&exported)]);
    assert!(
        printed.contains("cls pooling, normalised, 32 tokens"),
        "{printed}"
    );

    // Resuming a finished run with another recipe value is refused, naming the key.
    let err = fails(&[args.as_slice(), &["--resume", "--lr", "0.5"]].concat());
    assert!(err.contains("optimizer.lr"), "{err}");

    // A dev file, in another format with other column names: evaluated on it instead.
    let config = dir.path().join("dev.toml");
    let text = std::fs::read_to_string(write_config(dir.path(), "")).unwrap();
    std::fs::write(
        &config,
        text.replace("score_range", "dev = \"dev.jsonl\"\nscore_range"),
    )
    .unwrap();
    let with_dev = dir.path().join("with-dev");
    let err = fails(&run_args(&config, &model, &data, &with_dev));
    assert!(
        err.contains("dev.jsonl") && err.contains("no `sentence1` field"),
        "{err}"
    );
    assert!(!with_dev.exists());
}

#[test]
fn resumed_run_ends_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), None);
    let data = write_data(dir.path());
    let config = write_config(dir.path(), "");
    let run = |out: &Path, extra: &[&str]| {
        ok(&[run_args(&config, &model, &data, out).as_slice(), extra].concat());
    };
    let whole = dir.path().join("whole");
    run(&whole, &[]);
    // Killed after its checkpoint at step 4: the checkpoint is all that is left.
    let cut = dir.path().join("cut");
    run(&cut, &[]);
    for name in ["summary.json", "eval_results.json"] {
        std::fs::remove_file(cut.join(name)).unwrap();
    }
    std::fs::remove_dir_all(cut.join("model")).unwrap();
    std::fs::remove_dir_all(cut.join("checkpoints/step-00000006")).unwrap();
    let metrics = std::fs::read_to_string(cut.join("metrics.jsonl")).unwrap();
    let kept: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            r["step"].as_u64().unwrap() <= 4
        })
        .collect();
    std::fs::write(cut.join("metrics.jsonl"), kept.join("\n") + "\n").unwrap();
    run(&cut, &["--resume"]);
    assert_eq!(weights(&whole.join("model")), weights(&cut.join("model")));
    assert_eq!(
        std::fs::read_to_string(whole.join("eval_results.json")).unwrap(),
        std::fs::read_to_string(cut.join("eval_results.json")).unwrap()
    );
}

#[test]
fn bad_input_names_the_file_row_column_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), None);
    let data = write_data(dir.path());
    let out = dir.path().join("never");
    let attempt =
        |config: &Path, model: &Path, data: &Path| fails(&run_args(config, model, data, &out));
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    let variant = |name: &str, from: &str, to: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace(from, to)).unwrap();
        path
    };
    let cases = [
        (
            variant("col.toml", "text_b = \"sentence2\"", "text_b = \"s2\""),
            "no column `s2`",
        ),
        (
            variant("range.toml", "[0.0, 5.0]", "[0.0, 4.0]"),
            "line 2: `score` 5 is outside the score range [0, 4]",
        ),
        (
            variant("loss.toml", "kind = \"cosent\"", "kind = \"triplet\""),
            "triplet",
        ),
        (
            variant(
                "key.toml",
                "pooling = \"cls\"",
                "pooling = \"cls\"\npoolng = \"max\"",
            ),
            "poolng",
        ),
        (
            variant("noscore.toml", "score = \"score\"\n", ""),
            "data.score",
        ),
        (
            variant(
                "file.toml",
                "train = \"train.tsv\"",
                "train = \"train.csv\"",
            ),
            "train.csv",
        ),
    ];
    for (config, expected) in &cases {
        let err = attempt(config, &model, &data);
        assert!(err.contains(expected), "{}: {err}", config.display());
        assert!(!out.exists(), "{}", config.display());
    }
    let train = data.join("train.tsv");
    let good = std::fs::read_to_string(&train).unwrap();
    std::fs::write(&train, good.replace("a cat sits on the mat", " ")).unwrap();
    let err = attempt(&config, &model, &data);
    assert!(
        err.contains("train.tsv") && err.contains("line 5: `sentence1` is empty"),
        "{err}"
    );
    std::fs::write(&train, good).unwrap();
    // A model whose vocabulary the tokenizer does not fit.
    let small = write_model(dir.path(), Some(1000));
    let err = attempt(&config, &small, &data);
    assert!(err.contains("vocab"), "{err}");
    assert!(!out.exists());
}
