//! GLUE readers (tsv and parquet export), task specs, encoding, bad rows.

mod common;

use std::path::{Path, PathBuf};

use berthash_data::glue::{read_split_with, BUILTIN_TASKS};
use berthash_data::{
    builtin_task, encode_examples, read_split, BatchLabels, DataError, GlueExample, Label,
    OnBadInput, Padding, Split, TaskSpec,
};

fn dir(task: &str) -> PathBuf {
    common::glue_fixtures().join(task)
}

fn task(name: &str) -> TaskSpec {
    builtin_task(name).unwrap()
}

fn class(i: usize) -> Option<Label> {
    Some(Label::Class(i))
}

#[test]
fn every_task_reads_its_tsv_layout() {
    type Case = (&'static str, &'static str, &'static [(&'static str, usize)]);
    let cases: [Case; 9] = [
        ("cola", "CoLA", &[("train", 6), ("dev", 4)]),
        ("sst2", "SST-2", &[("train", 200), ("dev", 200)]),
        ("mrpc", "MRPC", &[("train", 200), ("dev", 200)]),
        ("stsb", "STS-B", &[("train", 4), ("dev", 3)]),
        ("qqp", "QQP", &[("train", 4), ("dev", 3)]),
        (
            "mnli",
            "MNLI",
            &[("train", 8), ("dev_matched", 4), ("dev_mismatched", 4)],
        ),
        ("qnli", "QNLI", &[("train", 4), ("dev", 2)]),
        ("rte", "RTE", &[("train", 3), ("dev", 2)]),
        ("wnli", "WNLI", &[("train", 4), ("dev", 2)]),
    ];
    assert_eq!(cases.len(), BUILTIN_TASKS.len());
    for (name, folder, splits) in cases {
        let spec = task(name);
        for &(split, n) in splits {
            let s = if split == "train" {
                Split::Train
            } else {
                Split::Dev(split.to_string())
            };
            let ex = read_split(&spec, dir(folder), &s)
                .unwrap_or_else(|e| panic!("{name} {split}: {e}"));
            assert_eq!(ex.len(), n, "{name} {split}");
            assert!(ex
                .iter()
                .all(|e| e.text_b.is_some() == spec.is_pair() && e.label.is_some()));
        }
    }
}

#[test]
fn fields_land_where_the_layouts_say() {
    let cola = read_split(&task("cola"), dir("CoLA"), &Split::Train).unwrap();
    assert_eq!(
        cola[2],
        GlueExample {
            text_a: "They drank the pub.".into(),
            text_b: None,
            label: class(0)
        }
    );

    let sst = read_split(&task("sst2"), dir("SST-2"), &Split::Train).unwrap();
    assert_eq!(
        sst[0].text_a,
        "hide new secretions from the parental units "
    );
    assert_eq!(sst[0].label, class(0));

    // MRPC dev begins with a byte-order mark; the header is still recognized.
    let mrpc = read_split(&task("mrpc"), dir("MRPC"), &Split::dev()).unwrap();
    assert_eq!(mrpc[0].label, class(1));
    assert!(mrpc[0]
        .text_a
        .starts_with("He said the foodservice pie business"));

    // STS-B: `\r\n` line ends, literal quotes, the score is the last column.
    let sts = read_split(&task("stsb"), dir("STS-B"), &Split::dev()).unwrap();
    assert_eq!(sts[2].text_a, "Stocks fall on \"weak\" data");
    assert_eq!(sts[2].label, Some(Label::Score(0.4)));
    assert_eq!(sts[1].text_b.as_deref(), Some("A man is playing a flute."));

    // MNLI: gold label is the last column in 12- and 16-column files.
    let mnli = task("mnli");
    let train = read_split(&mnli, dir("MNLI"), &Split::Train).unwrap();
    assert_eq!(train[7].label, class(0)); // contradiction
    let m = read_split(&mnli, dir("MNLI"), &Split::Dev("dev_matched".into())).unwrap();
    assert_eq!(m[0].label, class(2)); // neutral
    assert_eq!(
        m[0].text_b.as_deref(),
        Some("Product and geography are what make cream skimming work.")
    );

    let qnli = read_split(&task("qnli"), dir("QNLI"), &Split::Train).unwrap();
    assert_eq!(qnli[2].label, class(0)); // entailment
    assert_eq!(qnli[0].text_a, "When did the third Digimon series begin?");
}

#[test]
fn the_parquet_export_reads_the_same_examples() {
    let mnli = task("mnli");
    for (tsv, hf) in [
        ("dev_matched", "dev_matched"),
        ("dev_mismatched", "validation_mismatched"),
        ("train", "train"),
    ] {
        let split = |name: &str| {
            if name == "train" {
                Split::Train
            } else {
                Split::Dev(name.to_string())
            }
        };
        let a = read_split(&mnli, dir("MNLI"), &split(tsv)).unwrap();
        let b = read_split(&mnli, dir("hf/mnli"), &split(hf)).unwrap();
        assert_eq!(
            a, b,
            "MNLI {tsv}: integer labels map entailment/neutral/contradiction by name"
        );
    }
    let sts_tsv = read_split(&task("stsb"), dir("STS-B"), &Split::Train).unwrap();
    let sts_hf = read_split(&task("stsb"), dir("hf/stsb"), &Split::Train).unwrap();
    assert_eq!(sts_tsv, sts_hf);

    let sst_tsv = read_split(&task("sst2"), dir("SST-2"), &Split::dev()).unwrap();
    let sst_hf = read_split_with(
        &task("sst2"),
        dir("hf/sst2"),
        &Split::dev(),
        OnBadInput::Error,
    )
    .unwrap();
    assert_eq!(sst_hf.examples[..], sst_tsv[..30]);
    assert!(sst_hf.files[0].ends_with("validation-00000-of-00001.parquet"));

    // A task described by data: the unlabelled test split (labels -1) as a dev split.
    let mut spec = task("sst2");
    spec.dev[0].parquet = "test".to_string();
    let test = read_split(&spec, dir("hf/sst2"), &Split::dev()).unwrap();
    assert_eq!(test.len(), 5);
    assert!(test.iter().all(|e| e.label.is_none()));
}

#[test]
fn a_task_spec_from_toml() {
    let toml = r#"
        name = "my-sentiment"
        labels = ["neg", "pos"]
        metrics = ["accuracy", "f1"]
        [tsv]
        text_a = "review"
        label = "stars"
        [train]
        name = "train"
        tsv = "reviews.tsv"
        parquet = "reviews"
    "#;
    let spec = TaskSpec::from_toml_str(toml, "my.toml").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("reviews.tsv"),
        "id\treview\tstars\n1\tgreat \"fun\"\tpos\n2\tdull\tneg\n",
    )
    .unwrap();
    let ex = read_split(&spec, tmp.path(), &Split::Train).unwrap();
    assert_eq!(
        ex[0],
        GlueExample {
            text_a: "great \"fun\"".into(),
            text_b: None,
            label: class(1)
        }
    );
    assert_eq!(ex[1].label, class(0));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_rows_are_errors_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let rte = task("rte");
    let p = write(
        tmp.path(),
        "train.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\n",
    );
    let err = read_split(&rte, tmp.path(), &Split::Train).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: expected 4 tab-separated fields, found 3",
            p.display()
        )
    );

    write(
        tmp.path(),
        "train.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n",
    );
    let err = read_split(&rte, tmp.path(), &Split::Train).unwrap_err();
    assert!(matches!(err, DataError::UnknownLabel { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 3: unknown label `maybe` (known: entailment, not_entailment)",
            p.display()
        )
    );

    write(tmp.path(), "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n2\tx\n3\tc\td\tnot_entailment\n");
    let data = read_split_with(&rte, tmp.path(), &Split::Train, OnBadInput::Skip).unwrap();
    assert_eq!((data.examples.len(), data.skipped), (2, 2));

    let sts = task("stsb");
    write(
        tmp.path(),
        "dev.tsv",
        &format!(
            "{}\n0\tg\tf\ty\t1\ts\ts\ta\tb\tfive\n",
            ["h"; 10].join("\t")
        ),
    );
    let err = read_split(&sts, tmp.path(), &Split::dev()).unwrap_err();
    assert!(
        err.to_string()
            .contains("line 2: label `five` is not a number"),
        "{err}"
    );

    write(tmp.path(), "dev.tsv", "");
    let err = read_split(&sts, tmp.path(), &Split::dev()).unwrap_err();
    assert!(matches!(err, DataError::EmptyFile { .. }), "{err}");

    let empty_dir = tempfile::tempdir().unwrap();
    let err = read_split(&task("qqp"), empty_dir.path(), &Split::dev()).unwrap_err();
    assert!(
        matches!(err, DataError::MissingSplit { .. })
            && err.to_string().contains("validation-*.parquet"),
        "{err}"
    );

    let err = read_split(&task("mnli"), tmp.path(), &Split::dev()).unwrap_err();
    assert!(matches!(err, DataError::UnknownSplit { .. }), "{err}");
}

#[test]
fn bad_parquet_exports_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // A MNLI-shaped file read as QNLI: the question column is missing.
    std::fs::copy(
        dir("hf/mnli").join("train-00000-of-00001.parquet"),
        tmp.path().join("train-00000-of-00001.parquet"),
    )
    .unwrap();
    let err = read_split(&task("qnli"), tmp.path(), &Split::Train).unwrap_err();
    assert!(
        err.to_string().contains("no column `question`") && err.to_string().contains("premise"),
        "{err}"
    );
    // Class 2 does not exist in SST-2's two labels.
    let err = read_split(&task("sst2"), tmp.path(), &Split::Train).unwrap_err();
    assert!(err.to_string().contains("no column `sentence`"), "{err}");
    let mut spec = task("rte");
    spec.parquet.as_mut().unwrap().text_a = "premise".into();
    spec.parquet.as_mut().unwrap().text_b = Some("hypothesis".into());
    let err = read_split(&spec, tmp.path(), &Split::Train).unwrap_err();
    assert!(
        matches!(err, DataError::UnknownLabel { .. })
            && err.to_string().contains("row 7: unknown label `2`"),
        "{err}"
    );
    let data = read_split_with(&spec, tmp.path(), &Split::Train, OnBadInput::Skip).unwrap();
    assert_eq!((data.examples.len(), data.skipped), (7, 1));
}

#[test]
fn encoding_truncates_longest_first_and_pads() {
    let tok = common::tokenizer();
    let mrpc = read_split(&task("mrpc"), dir("MRPC"), &Split::dev()).unwrap();
    let enc = encode_examples(&tok, &mrpc[..10], 32, Padding::Fixed).unwrap();
    let b = enc.batch(&[3, 1, 4]).unwrap();
    assert_eq!((b.batch_size, b.seq_len, b.input_ids.len()), (3, 32, 96));
    let want: Vec<usize> = [3, 1, 4]
        .iter()
        .map(|&i| match mrpc[i].label {
            Some(Label::Class(c)) => c,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(b.labels, BatchLabels::Classes(want));
    for row in 0..3 {
        let ids = &b.input_ids[row * 32..(row + 1) * 32];
        let types = &b.token_type_ids[row * 32..(row + 1) * 32];
        let mask = &b.attention_mask[row * 32..(row + 1) * 32];
        let len = mask.iter().filter(|&&m| m == 1).count();
        assert!(len <= 32 && ids[0] == 101 && ids[len - 1] == 102);
        assert_eq!(
            ids.iter().filter(|&&t| t == 102).count(),
            2,
            "two [SEP] in a pair"
        );
        let first_sep = ids.iter().position(|&t| t == 102).unwrap();
        assert!(types[..=first_sep].iter().all(|&t| t == 0));
        assert!(types[first_sep + 1..len].iter().all(|&t| t == 1));
        assert!(ids[len..].iter().all(|&t| t == 0) && types[len..].iter().all(|&t| t == 0));
    }
    // MRPC sentences are longer than 32 tokens together: both were cut to about half.
    let e = &enc.examples[0];
    assert_eq!(e.input_ids.len(), 32);

    let longest = encode_examples(&tok, &mrpc[..10], 128, Padding::Longest).unwrap();
    let batches: Vec<_> = longest.batches(4).collect();
    assert_eq!(
        batches.iter().map(|b| b.batch_size).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    for (i, b) in batches.iter().enumerate() {
        let max = longest.examples[i * 4..(i * 4 + b.batch_size)]
            .iter()
            .map(|e| e.input_ids.len())
            .max()
            .unwrap();
        assert_eq!(b.seq_len, max);
    }

    let sts = read_split(&task("stsb"), dir("STS-B"), &Split::Train).unwrap();
    let enc = encode_examples(&tok, &sts, 16, Padding::Fixed).unwrap();
    assert_eq!(
        enc.batch(&[0, 1]).unwrap().labels,
        BatchLabels::Scores(vec![5.0, 3.8])
    );

    let mut mixed = sts.clone();
    mixed[1].label = None;
    assert!(encode_examples(&tok, &mixed, 16, Padding::Fixed).is_err());
    assert!(encode_examples(&tok, &sts, 3, Padding::Fixed).is_err());
    assert!(enc.batch(&[99]).is_err());
}

#[test]
fn full_sst2_and_mrpc_from_shared() {
    let Some(shared) = common::shared() else {
        return;
    };
    let glue = shared.join("data/glue");
    let sst = task("sst2");
    assert_eq!(
        read_split(&sst, glue.join("SST-2"), &Split::Train)
            .unwrap()
            .len(),
        67_349
    );
    assert_eq!(
        read_split(&sst, glue.join("SST-2"), &Split::dev())
            .unwrap()
            .len(),
        872
    );
    let mrpc = task("mrpc");
    assert_eq!(
        read_split(&mrpc, glue.join("MRPC"), &Split::Train)
            .unwrap()
            .len(),
        3_668
    );
    let dev = read_split(&mrpc, glue.join("MRPC"), &Split::dev()).unwrap();
    assert_eq!(dev.len(), 408);
    let tok = common::tokenizer();
    let enc = encode_examples(&tok, &dev, 128, Padding::Fixed).unwrap();
    assert!(enc.examples.iter().all(|e| e.input_ids.len() <= 128));
}
