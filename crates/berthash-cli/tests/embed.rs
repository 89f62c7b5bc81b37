//! `berthash embed` through the binary: JSONL and safetensors outputs agree with each other and
//! with stdout, `--similarity` prints the cosine table, and bad input names what is wrong.

use std::path::Path;

mod common;
use common::{fails, ok, s, write_model};

use berthash_model::weights::TensorFile;

const TEXTS: [&str; 3] = [
    "a cat sits on the mat",
    "the dog sleeps",
    "stock markets fell sharply on monday after the report",
];

/// (text, embedding) of each JSONL line.
fn parse_jsonl(text: &str) -> Vec<(String, Vec<f32>)> {
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let embedding = v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (v["text"].as_str().unwrap().to_string(), embedding)
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn embeds_to_jsonl_safetensors_and_stdout_and_prints_similarities() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), None);
    let jsonl = dir.path().join("out.jsonl");
    let mut args = vec!["embed", "--model", s(&model), "--output", s(&jsonl)];
    args.extend(TEXTS);
    ok(&args);
    let rows = parse_jsonl(&std::fs::read_to_string(&jsonl).unwrap());
    assert_eq!(rows.len(), 3);
    for ((text, embedding), want) in rows.iter().zip(TEXTS) {
        assert_eq!(text, want);
        assert_eq!(embedding.len(), 16);
    }

    // The same texts from a JSONL column, batch size 1, as safetensors.
    let input = dir.path().join("texts.jsonl");
    let lines: Vec<String> = TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": i, "sentence": t}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let tensors = dir.path().join("out.safetensors");
    ok(&[
        "embed",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--column",
        "sentence",
        "--batch-size",
        "1",
        "--output",
        s(&tensors),
    ]);
    let file = TensorFile::read(&tensors).unwrap();
    assert_eq!(file.tensors.len(), 1);
    let t = &file.tensors["embeddings"];
    assert_eq!(t.shape, vec![3, 16]);
    let values: Vec<f32> = t
        .bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for (i, (_, embedding)) in rows.iter().enumerate() {
        let diff = embedding
            .iter()
            .zip(&values[i * 16..(i + 1) * 16])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-6,
            "text {i}: safetensors and JSONL differ by {diff}"
        );
    }

    // Without --output, the same JSONL on stdout; a text file gives one text per line.
    let lines_file = dir.path().join("texts.txt");
    std::fs::write(&lines_file, TEXTS.join("\n") + "\n").unwrap();
    let stdout = ok(&["embed", "--model", s(&model), "--input", s(&lines_file)]);
    assert_eq!(stdout, std::fs::read_to_string(&jsonl).unwrap());

    // --similarity: a header, then one row per text ending with the text.
    let mut args = vec!["embed", "--model", s(&model), "--similarity", "--normalize"];
    args.extend(TEXTS);
    let table = ok(&args);
    let table: Vec<&str> = table.lines().collect();
    assert_eq!(table.len(), 4, "{table:?}");
    for (i, line) in table[1..].iter().enumerate() {
        assert!(line.ends_with(TEXTS[i]), "{line}");
        let cells: Vec<f32> = line
            .split_whitespace()
            .skip(1)
            .take(3)
            .map(|c| c.parse().unwrap())
            .collect();
        for (j, cell) in cells.iter().enumerate() {
            let want = cosine(&rows[i].1, &rows[j].1);
            assert!((cell - want).abs() < 1e-3, "[{i}][{j}] {cell} vs {want}");
        }
    }
}

#[test]
fn bad_input_is_an_error_naming_the_flag_file_or_row() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), None);
    let m = s(&model);

    let err = fails(&["embed", "--model", m, "--output", "out.csv", "hello"]);
    assert!(
        err.contains("--output out.csv") && err.contains(".safetensors"),
        "{err}"
    );

    let blank = dir.path().join("blank.txt");
    std::fs::write(&blank, "one\n\nthree\n").unwrap();
    let err = fails(&["embed", "--model", m, "--input", s(&blank)]);
    assert!(err.contains("blank.txt line 2: empty text"), "{err}");

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let err = fails(&["embed", "--model", m, "--input", s(&empty)]);
    assert!(err.contains("empty.txt: no texts"), "{err}");

    let jsonl = dir.path().join("rows.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"fine\"}\n{\"body\": \"no text\"}\n").unwrap();
    let err = fails(&["embed", "--model", m, "--input", s(&jsonl)]);
    assert!(err.contains("rows.jsonl: line 2: no `text` field"), "{err}");

    let parquet = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sample/books/train-00000-of-00001.parquet");
    let err = fails(&[
        "embed",
        "--model",
        m,
        "--input",
        s(&parquet),
        "--column",
        "sentence",
    ]);
    assert!(
        err.contains("sentence") && err.contains("train-00000-of-00001.parquet"),
        "{err}"
    );

    let err = fails(&["embed", "--model", m, "--max-seq-length", "65", "hello"]);
    assert!(
        err.contains("max_seq_length 65") && err.contains("64 positions"),
        "{err}"
    );

    // The golden tiny model has 1000 tokens; the embedded tokenizer 30522.
    let small = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden/tiny/base");
    let err = fails(&["embed", "--model", s(&small), "hello"]);
    assert!(err.contains("30522") && err.contains("1000"), "{err}");
}

/// `export --sentence-transformers` writes the files sentence-transformers loads, the exported
/// directory embeds with its own pooling, normalisation and length by default, and the
/// sentence-embedding flags need `--sentence-transformers`.
#[test]
fn sentence_transformers_export_embeds_with_its_own_settings() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), None);
    let out = dir.path().join("st");
    let printed = ok(&[
        "export",
        "--from",
        s(&model),
        "--out",
        s(&out),
        "--sentence-transformers",
        "--pooling",
        "cls",
        "--normalize",
        "--max-seq-length",
        "32",
    ]);
    assert!(
        printed.contains("cls pooling, normalised, 32 tokens"),
        "{printed}"
    );
    for file in [
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("library_name: sentence-transformers"),
        "{card}"
    );
    // The export is the encoder alone: no MLM head.
    let weights = TensorFile::read(&out.join("model.safetensors")).unwrap();
    assert!(!weights.tensors.keys().any(|k| k.starts_with("cls.")));

    let embed = |model: &Path, extra: &[&str]| {
        let file = dir.path().join("e.safetensors");
        let mut args = vec!["embed", "--model", s(model), "--output", s(&file)];
        args.extend_from_slice(extra);
        args.extend_from_slice(&TEXTS);
        ok(&args);
        let tensors = TensorFile::read(&file).unwrap();
        tensors.tensors["embeddings"]
            .to_f32(&file, "embeddings")
            .unwrap()
    };
    let own = embed(&out, &[]);
    let flags = embed(
        &model,
        &["--pooling", "cls", "--normalize", "--max-seq-length", "32"],
    );
    assert_eq!(own, flags);
    let mean = embed(&model, &[]);
    assert_ne!(own, mean);
    for row in own.chunks(16) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    // Exported again without flags, the settings come with it.
    let again = dir.path().join("st2");
    let printed = ok(&["export", "--from", s(&out), "--out", s(&again)]);
    assert!(
        printed.contains("cls pooling, normalised, 32 tokens"),
        "{printed}"
    );

    let err = fails(&[
        "export",
        "--from",
        s(&model),
        "--out",
        s(&dir.path().join("x")),
        "--pooling",
        "max",
    ]);
    assert!(err.contains("--sentence-transformers"), "{err}");
    let err = fails(&[
        "export",
        "--from",
        s(&model),
        "--out",
        s(&dir.path().join("y")),
        "--sentence-transformers",
        "--max-seq-length",
        "65",
    ]);
    assert!(
        err.contains("max_seq_length 65") && err.contains("64"),
        "{err}"
    );
    assert!(!dir.path().join("y").exists());
}
