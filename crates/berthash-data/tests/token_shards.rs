//! Token shards: a pre-tokenized corpus gives the loader the same batches as its parquet files.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use berthash_data::pretokenize::{
    pretokenize, shard_jobs, PretokenizeOptions, Progress, ShardOutcome,
};
use berthash_data::{
    CorpusSource, FileOrder, MlmBatch, OnBadInput, PackMode, PretrainLoader, PretrainStreamConfig,
    StreamPosition, TokenizerHandle,
};

fn options() -> PretokenizeOptions {
    PretokenizeOptions {
        text_column: "text".to_string(),
        on_bad_input: OnBadInput::Error,
        threads: 2,
    }
}

fn sample_dirs() -> Vec<String> {
    ["wikipedia", "books"]
        .map(|d| {
            common::repo()
                .join("data/sample")
                .join(d)
                .display()
                .to_string()
        })
        .to_vec()
}

/// The built-in sample's two directories, pre-tokenized into `out`; the progress it reported
/// adds up to their rows.
fn pretokenized(out: &Path) -> Vec<ShardOutcome> {
    let jobs = shard_jobs(&sample_dirs(), out, &options()).unwrap();
    assert_eq!(jobs.iter().map(|j| j.rows).collect::<Vec<_>>(), [300, 6000]);
    let (mut rows, mut done) = (0, 0);
    let outcomes = pretokenize(&jobs, &common::tokenizer(), &options(), |p| match p {
        Progress::Rows(n) => rows += n,
        Progress::Done(..) => done += 1,
    })
    .unwrap();
    assert_eq!((rows, done), (6300, 2));
    outcomes
}

fn collect(
    cfg: &PretrainStreamConfig,
    start: Option<StreamPosition>,
) -> Vec<(MlmBatch, StreamPosition)> {
    PretrainLoader::new(cfg.clone(), start)
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// A position without the fingerprint (which names the files) and with each cursor as
/// (file, documents read): a shard is one row group where its parquet file may have several.
fn place(p: &StreamPosition) -> (u64, u64, Vec<(usize, u64)>, usize, u64) {
    let cursors = p.sources.iter().map(|c| (c.file, c.docs_read)).collect();
    (p.epoch, p.window, cursors, p.offset, p.batches)
}

#[test]
fn the_loader_gives_the_same_batches_from_shards_as_from_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = pretokenized(dir.path());
    assert!(
        matches!(outcomes[0], ShardOutcome::Written { docs: 300, .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], ShardOutcome::Written { docs: 6000, .. }),
        "{outcomes:?}"
    );
    let shards = ["wikipedia", "books"].map(|d| dir.path().join(d).display().to_string());
    assert!(dir
        .path()
        .join("books/train-00000-of-00001.bhtok")
        .is_file());

    for (order, pack) in [
        (FileOrder::Sequential, PackMode::Packed),
        (FileOrder::Interleaved, PackMode::Packed),
        (FileOrder::Sequential, PackMode::PerDocument),
    ] {
        let config = |dirs: &[String]| {
            let mut cfg = common::stream_config(match order {
                FileOrder::Sequential => dirs.iter().map(|d| CorpusSource::new(&[d])).collect(),
                FileOrder::Interleaved => vec![CorpusSource::new(&[&dirs[0], &dirs[1]])],
            });
            cfg.corpus.file_order = order;
            cfg.pack_mode = pack;
            cfg.shuffle_buffer = 50;
            cfg.batch_size = 24;
            cfg.max_length = 64;
            cfg.eval_documents = 7;
            cfg.epochs = Some(2);
            cfg
        };
        let (text, tokens) = (config(&sample_dirs()), config(&shards));
        let from_text = collect(&text, None);
        let from_tokens = collect(&tokens, None);
        assert!(from_text.len() > 300, "{}", from_text.len());
        assert_eq!(from_text.len(), from_tokens.len());
        for (i, (a, b)) in from_text.iter().zip(&from_tokens).enumerate() {
            assert!(a.0 == b.0, "{order:?} {pack:?}: batch {i} differs");
            assert_eq!(place(&a.1), place(&b.1), "{order:?} {pack:?}: batch {i}");
        }
        let tok = common::tokenizer();
        assert_eq!(
            PretrainLoader::eval_batches(&text, &tok, 100).unwrap(),
            PretrainLoader::eval_batches(&tokens, &tok, 100).unwrap()
        );
        // Resuming mid-way through the shards repeats the uninterrupted stream.
        let k = from_tokens.len() / 2 + 3;
        let resumed = collect(&tokens, Some(from_tokens[k].1.clone()));
        assert!(resumed[..5] == from_tokens[k + 1..k + 6]);
    }
}

#[test]
fn shards_are_kept_when_current_and_remade_when_their_source_changes() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    // Rows without text become empty documents, so a document's index stays its row.
    let text: ArrayRef = Arc::new(StringArray::from(vec![
        Some("The first row."),
        None,
        Some("   "),
        Some("The fourth row has words."),
    ]));
    let file = corpus.join("a.parquet");
    let write = |texts: ArrayRef| {
        let batch = RecordBatch::try_from_iter([("text", texts)]).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&file).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    };
    write(text.clone());
    let out = dir.path().join("shards");
    let jobs = shard_jobs(&[corpus.display().to_string()], &out, &options()).unwrap();
    assert_eq!(jobs[0].output, out.join("corpus/a.bhtok"));
    let tok = common::tokenizer();
    let run = || pretokenize(&jobs, &tok, &options(), |_| {}).unwrap();
    let ShardOutcome::Written {
        docs,
        tokens,
        empty_rows,
        ..
    } = run()[0].clone()
    else {
        panic!("written")
    };
    let expected = [
        tok.encode("The first row.", true).unwrap(),
        tok.encode("The fourth row has words.", true).unwrap(),
    ];
    assert_eq!((docs, empty_rows), (4, 2));
    assert_eq!(tokens as usize, expected[0].len() + expected[1].len());
    let shard = berthash_data::token_shard::TokenShard::open(&jobs[0].output).unwrap();
    let got: Vec<Vec<u32>> = (0..4).map(|d| shard.doc(d)).collect();
    assert_eq!(
        got,
        vec![expected[0].clone(), vec![], vec![], expected[1].clone()]
    );
    drop(shard);

    assert_eq!(run()[0], ShardOutcome::Kept { docs, tokens });
    // Another column name, or another source, makes it again.
    let other_column = PretokenizeOptions {
        text_column: "content".into(),
        ..options()
    };
    let err = pretokenize(&jobs, &tok, &other_column, |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("a.parquet") && err.contains("no column `content`"),
        "{err}"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(Arc::new(StringArray::from(vec!["Only one row now."])));
    assert!(matches!(run()[0], ShardOutcome::Written { docs: 1, .. }));

    // Under `error` a bad file is refused before anything is written; under `skip` it is
    // reported and left out.
    std::fs::write(corpus.join("b.parquet"), b"not parquet").unwrap();
    let dirs = [corpus.display().to_string()];
    let err = shard_jobs(&dirs, &out, &options()).unwrap_err().to_string();
    assert!(err.contains("b.parquet"), "{err}");
    let skip = PretokenizeOptions {
        on_bad_input: OnBadInput::Skip,
        ..options()
    };
    let jobs = shard_jobs(&dirs, &out, &skip).unwrap();
    assert_eq!(jobs[1].rows, 0);
    let outcomes = pretokenize(&jobs, &tok, &skip, |_| {}).unwrap();
    assert!(
        matches!(&outcomes[1], ShardOutcome::Skipped { reason } if reason.contains("b.parquet"))
    );
    assert!(!out.join("corpus/b.bhtok").exists());
}

#[test]
fn shards_of_another_tokenizer_and_mixed_or_clashing_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    pretokenized(dir.path());
    let shards = dir.path().join("books").display().to_string();

    // The same vocabulary without lower-casing is another tokenizer.
    let json = std::fs::read_to_string(common::tokenizer_path()).unwrap();
    let cased = json.replacen("\"lowercase\":true", "\"lowercase\":false", 1);
    assert_ne!(cased, json, "the shipped tokenizer lower-cases");
    let cased_path = dir.path().join("cased.json");
    std::fs::write(&cased_path, cased).unwrap();
    let cased = TokenizerHandle::from_file(&cased_path).unwrap();
    assert_ne!(
        cased.fingerprint().unwrap(),
        common::tokenizer().fingerprint().unwrap()
    );
    assert_eq!(
        common::tokenizer().fingerprint().unwrap(),
        TokenizerHandle::from_file(common::tokenizer_path())
            .unwrap()
            .fingerprint()
            .unwrap()
    );
    let mut cfg = common::stream_config(vec![CorpusSource::new(&[&shards])]);
    cfg.tokenizer = cased_path.clone();
    let err = PretrainLoader::new(cfg, None).err().unwrap().to_string();
    assert!(
        err.contains("train-00000-of-00001.bhtok") && err.contains("this run's tokenizer"),
        "{err}"
    );

    // A folder with both kinds of file; two files that would make one shard.
    let mixed = dir.path().join("books");
    std::fs::copy(common::books_sample(), mixed.join("x.parquet")).unwrap();
    let err = berthash_data::corpus::resolve_paths(&[mixed.display().to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("both parquet files (1) and token shards (1)"),
        "{err}"
    );
    let clash: Vec<String> = [
        common::books_sample(),
        mixed.join("x.parquet").display().to_string(),
    ]
    .to_vec();
    std::fs::copy(
        common::books_sample(),
        dir.path().join("train-00000-of-00001.parquet"),
    )
    .unwrap();
    let two = [
        common::books_sample(),
        dir.path()
            .join("train-00000-of-00001.parquet")
            .display()
            .to_string(),
    ];
    let err = shard_jobs(&two, &dir.path().join("out"), &options())
        .unwrap_err()
        .to_string();
    assert!(err.contains("would become this shard"), "{err}");
    assert_eq!(
        shard_jobs(&clash, &dir.path().join("out"), &options())
            .unwrap()
            .len(),
        2
    );
    let shard: PathBuf = dir.path().join("books/train-00000-of-00001.bhtok");
    let err = shard_jobs(
        &[shard.display().to_string()],
        &dir.path().join("out"),
        &options(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("already a token shard"), "{err}");
}
