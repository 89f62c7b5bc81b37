//! Streaming parquet corpora: real-schema shards, cursors, mixing, bad input.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, LargeStringArray, RecordBatch, StringArray};
use berthash_data::corpus::resolve_paths;
use berthash_data::{
    Content, CorpusConfig, CorpusSource, CorpusStream, DataError, FileOrder, OnBadInput,
    SkipCounter, SourceCursor, SourceReader,
};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

fn read_all(cfg: &CorpusConfig, start: &[SourceCursor]) -> Result<Vec<(usize, String)>, DataError> {
    let lanes = cfg.lanes(&cfg.resolve()?)?;
    CorpusStream::new(cfg, &lanes, start, Arc::default())
        .map(|d| d.map(|d| (lanes[d.lane].source, text(d.content))))
        .collect()
}

/// A parquet document's text.
fn text(content: Content) -> String {
    match content {
        Content::Text(text) => text,
        Content::Ids(_) => panic!("a parquet file gives text"),
    }
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>, rows_per_group: usize) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn texts(prefix: &str, n: usize) -> ArrayRef {
    Arc::new(StringArray::from(
        (0..n).map(|i| format!("{prefix} {i}")).collect::<Vec<_>>(),
    ))
}

#[test]
fn reads_the_wikipedia_and_bookcorpus_schemas() {
    let wiki = CorpusConfig::new(vec![CorpusSource::new(&[&common::wiki_sample()])]);
    let docs = read_all(&wiki, &[SourceCursor::default()]).unwrap();
    assert_eq!(docs.len(), 300);
    assert!(docs.iter().all(|(s, t)| *s == 0 && !t.is_empty()));

    let books = CorpusConfig::new(vec![CorpusSource::new(&[&common::books_sample()])]);
    let docs = read_all(&books, &[SourceCursor::default()]).unwrap();
    assert_eq!(docs.len(), 6000);
    assert_eq!(docs[0].1, "ALICE’S ADVENTURES IN WONDERLAND");
}

#[test]
fn directories_and_globs_resolve_sorted() {
    let sample = common::repo().join("data/sample");
    let all = resolve_paths(&[sample.to_string_lossy().into_owned()]).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].ends_with("books/train-00000-of-00001.parquet"));
    let pattern = format!("{}/*/train-*.parquet", sample.display());
    assert_eq!(resolve_paths(&[pattern]).unwrap(), all);

    let none = format!("{}/*/nothing-*.parquet", sample.display());
    let err = resolve_paths(std::slice::from_ref(&none)).unwrap_err();
    assert!(
        err.to_string().contains(&none) && err.to_string().contains("matched no"),
        "{err}"
    );
    let err = resolve_paths(&["/no/such/shard.parquet".to_string()]).unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err}");
}

#[test]
fn a_cursor_resumes_exactly_across_row_groups() {
    let cfg = CorpusConfig {
        read_batch_rows: 7,
        ..CorpusConfig::new(vec![CorpusSource::new(&[
            &common::wiki_sample(),
            &common::books_sample(),
        ])])
    };
    let files = cfg.resolve().unwrap();
    let mut reader = SourceReader::new(
        0,
        files[0].clone(),
        "text",
        &cfg,
        SourceCursor::default(),
        Arc::default(),
    );
    let mut all = Vec::new();
    let mut cursors = Vec::new();
    while let Some(doc) = reader.next_doc().unwrap() {
        cursors.push(doc.after);
        all.push(text(doc.content));
    }
    assert_eq!(all.len(), 6300);
    // Wikipedia has row groups of 100: doc 99 ends group 0.
    assert_eq!(
        cursors[99],
        SourceCursor {
            file: 0,
            row_group: 1,
            row: 0,
            docs_read: 100
        }
    );
    assert_eq!(
        cursors[299],
        SourceCursor {
            file: 1,
            row_group: 0,
            row: 0,
            docs_read: 300
        }
    );
    assert_eq!(
        cursors[6299],
        SourceCursor {
            file: 2,
            row_group: 0,
            row: 0,
            docs_read: 6300
        }
    );
    for k in [0usize, 57, 99, 150, 299, 2299, 6298] {
        let mut resumed = SourceReader::new(
            0,
            files[0].clone(),
            "text",
            &cfg,
            cursors[k],
            Arc::default(),
        );
        for expected in &all[k + 1..(k + 30).min(all.len())] {
            assert_eq!(
                &text(resumed.next_doc().unwrap().unwrap().content),
                expected,
                "resume after doc {k}"
            );
        }
    }
}

#[test]
fn sources_mix_by_weight_deterministically() {
    let mut books = CorpusSource::new(&[&common::books_sample()]);
    books.weight = 3.0;
    let cfg = CorpusConfig::new(vec![CorpusSource::new(&[&common::wiki_sample()]), books]);
    let docs = read_all(&cfg, &[SourceCursor::default(); 2]).unwrap();
    assert_eq!(docs.len(), 6300);
    let order: Vec<usize> = docs.iter().take(8).map(|d| d.0).collect();
    assert_eq!(order, vec![1, 1, 0, 1, 1, 1, 0, 1]);
    // 300 wiki docs run out after ~1200 documents; books continue alone.
    let last_wiki = docs.iter().rposition(|d| d.0 == 0).unwrap();
    assert!((1195..1205).contains(&last_wiki), "{last_wiki}");
    assert_eq!(read_all(&cfg, &[SourceCursor::default(); 2]).unwrap(), docs);
}

#[test]
fn interleaved_files_mix_in_proportion_to_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
    write_parquet(&a, vec![("text", texts("a", 10))], 4);
    write_parquet(&b, vec![("text", texts("b", 30))], 7);
    let pattern = format!("{}/*.parquet", dir.path().display());
    let sequential = CorpusConfig::new(vec![CorpusSource::new(&[&pattern])]);
    let interleaved = CorpusConfig {
        file_order: FileOrder::Interleaved,
        ..sequential.clone()
    };
    let lanes = interleaved.lanes(&interleaved.resolve().unwrap()).unwrap();
    assert_eq!(lanes.len(), 2);
    assert_eq!((lanes[0].weight, lanes[1].weight), (0.25, 0.75));

    let seq = read_all(&sequential, &[SourceCursor::default()]).unwrap();
    let mixed = read_all(&interleaved, &[SourceCursor::default(); 2]).unwrap();
    // The same documents, each file in its own order, the files side by side: one `a` in every
    // four documents, from the first four to the last.
    let sorted = |docs: &[(usize, String)]| {
        let mut t: Vec<String> = docs.iter().map(|d| d.1.clone()).collect();
        t.sort();
        t
    };
    assert_eq!(sorted(&mixed), sorted(&seq));
    let from_a: Vec<usize> = mixed
        .iter()
        .enumerate()
        .filter(|(_, d)| d.1.starts_with('a'))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(from_a.len(), 10);
    assert!(from_a.windows(2).all(|w| w[1] - w[0] == 4), "{from_a:?}");
    let a_texts: Vec<&str> = from_a.iter().map(|&i| mixed[i].1.as_str()).collect();
    assert_eq!(
        a_texts,
        (0..10).map(|i| format!("a {i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        read_all(&interleaved, &[SourceCursor::default(); 2]).unwrap(),
        mixed
    );

    // An unreadable file is an error when the lanes are planned, or a one-row lane under `skip`.
    std::fs::write(dir.path().join("c.parquet"), b"not parquet").unwrap();
    let err = interleaved
        .lanes(&interleaved.resolve().unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("c.parquet"), "{err}");
    let skipping = CorpusConfig {
        on_bad_input: OnBadInput::Skip,
        ..interleaved
    };
    let lanes = skipping.lanes(&skipping.resolve().unwrap()).unwrap();
    assert_eq!(lanes[2].weight, 1.0 / 41.0);
    assert_eq!(
        read_all(&skipping, &[SourceCursor::default(); 3])
            .unwrap()
            .len(),
        40
    );
}

#[test]
fn large_string_columns_and_other_text_columns_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.parquet");
    let body: ArrayRef = Arc::new(LargeStringArray::from(vec!["one", "two", "three"]));
    write_parquet(
        &path,
        vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            ("body", body),
        ],
        2,
    );
    let mut src = CorpusSource::new(&[&path.to_string_lossy()]);
    src.text_column = "body".to_string();
    let docs = read_all(&CorpusConfig::new(vec![src]), &[SourceCursor::default()]).unwrap();
    let texts: Vec<&str> = docs.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
}

/// Writes the bad files used below; returns (good, corrupt, truncated, empty, no_text, zero_rows, nulls, int_text).
fn bad_files(dir: &Path) -> Vec<PathBuf> {
    let good = dir.join("a-good.parquet");
    write_parquet(&good, vec![("text", texts("good", 10))], 4);
    let corrupt = dir.join("b-corrupt.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not parquet at all PAR1").unwrap();
    let truncated = dir.join("c-truncated.parquet");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let empty = dir.join("d-empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    let no_text = dir.join("e-no-text.parquet");
    write_parquet(
        &no_text,
        vec![("id", texts("x", 3)), ("title", texts("t", 3))],
        10,
    );
    let zero = dir.join("f-zero-rows.parquet");
    write_parquet(&zero, vec![("text", texts("z", 0))], 10);
    let nulls = dir.join("g-nulls.parquet");
    let with_null: ArrayRef = Arc::new(StringArray::from(vec![
        Some("a"),
        Some("b"),
        None,
        Some("d"),
        Some(""),
        Some("  \n"),
    ]));
    write_parquet(&nulls, vec![("text", with_null)], 2);
    let int_text = dir.join("h-int-text.parquet");
    write_parquet(
        &int_text,
        vec![("text", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)],
        2,
    );
    vec![
        good, corrupt, truncated, empty, no_text, zero, nulls, int_text,
    ]
}

fn one_file(path: &Path) -> CorpusConfig {
    CorpusConfig::new(vec![CorpusSource::new(&[&path.to_string_lossy()])])
}

#[test]
fn bad_input_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = bad_files(dir.path());
    let err_of = |p: &Path| read_all(&one_file(p), &[SourceCursor::default()]).unwrap_err();

    let e = err_of(&f[1]);
    assert!(
        matches!(e, DataError::Parquet { .. }) && e.to_string().contains("b-corrupt.parquet"),
        "{e}"
    );
    let e = err_of(&f[2]);
    assert!(
        matches!(e, DataError::Parquet { .. }) && e.to_string().contains("c-truncated.parquet"),
        "{e}"
    );
    let e = err_of(&f[3]);
    assert!(
        matches!(e, DataError::EmptyFile { .. }) && e.to_string().contains("d-empty.parquet"),
        "{e}"
    );
    let e = err_of(&f[4]);
    assert_eq!(
        e.to_string(),
        format!("{}: no column `text` (columns: id, title)", f[4].display())
    );
    let e = err_of(&f[5]);
    assert!(
        matches!(e, DataError::EmptyFile { .. }) && e.to_string().contains("no rows"),
        "{e}"
    );
    // Null and blank rows are data, not errors: skipped and counted.
    let cfg = one_file(&f[6]);
    let lanes = cfg.lanes(&cfg.resolve().unwrap()).unwrap();
    let skips = Arc::new(SkipCounter::default());
    let docs: Vec<String> =
        CorpusStream::new(&cfg, &lanes, &[SourceCursor::default()], skips.clone())
            .map(|d| text(d.unwrap().content))
            .collect();
    assert_eq!(docs, ["a", "b", "d"]);
    assert_eq!((skips.empty(), skips.rows()), (3, 0));
    let e = err_of(&f[7]);
    assert!(
        matches!(e, DataError::ColumnType { .. }) && e.to_string().contains("Int64"),
        "{e}"
    );

    // A missing shard among existing ones.
    let missing = dir.path().join("gone.parquet");
    let cfg = CorpusConfig::new(vec![CorpusSource::new(&[
        &f[0].to_string_lossy(),
        &missing.to_string_lossy(),
    ])]);
    assert!(matches!(
        cfg.resolve().unwrap_err(),
        DataError::MissingFile { .. }
    ));
}

#[test]
fn skipping_bad_input_is_counted_not_silent() {
    let dir = tempfile::tempdir().unwrap();
    let f = bad_files(dir.path());
    let pattern = format!("{}/*.parquet", dir.path().display());
    let cfg = CorpusConfig {
        on_bad_input: OnBadInput::Skip,
        ..CorpusConfig::new(vec![CorpusSource::new(&[&pattern])])
    };
    let files = cfg.resolve().unwrap();
    assert_eq!(files[0].len(), f.len());
    let skips = Arc::new(SkipCounter::default());
    let lanes = cfg.lanes(&files).unwrap();
    let docs: Vec<String> =
        CorpusStream::new(&cfg, &lanes, &[SourceCursor::default()], skips.clone())
            .map(|d| text(d.unwrap().content))
            .collect();
    // 10 good rows + 3 non-null rows of the null file.
    assert_eq!(docs.len(), 13);
    assert_eq!(&docs[10..], ["a", "b", "d"]);
    assert_eq!(skips.empty(), 3);
    assert_eq!(skips.rows(), 0);
    assert_eq!(skips.files(), 6);
}

#[test]
fn real_shards_read_unchanged() {
    let Some(shared) = common::shared() else {
        return;
    };
    let corpus = shared.join("data/corpus");
    let cfg = CorpusConfig::new(vec![
        CorpusSource::new(&[&format!("{}/wikipedia/*.parquet", corpus.display())]),
        CorpusSource::new(&[&format!("{}/books/*.parquet", corpus.display())]),
    ]);
    let files = cfg.resolve().unwrap();
    assert_eq!((files[0].len(), files[1].len()), (3, 3));
    let mut counts = [0usize; 2];
    let mut bytes = 0usize;
    let lanes = cfg.lanes(&files).unwrap();
    for doc in CorpusStream::new(&cfg, &lanes, &[SourceCursor::default(); 2], Arc::default()) {
        let doc = doc.unwrap();
        counts[lanes[doc.lane].source] += 1;
        bytes += text(doc.content).len();
    }
    assert_eq!(counts, [3129, 433_268]);
    assert_eq!(bytes, 45_898_808 + 42_494_827);
}

#[test]
fn a_corpus_without_text_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.parquet");
    let blank: ArrayRef = Arc::new(StringArray::from(vec![None, Some(""), Some(" ")]));
    write_parquet(&path, vec![("text", blank)], 2);
    let mut config = common::stream_config(vec![CorpusSource::new(&[&path.to_string_lossy()])]);
    config.eval_documents = 0;
    let err = berthash_data::PretrainLoader::new(config, None)
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, DataError::NoText { files: 1, empty: 3 }),
        "{err}"
    );
    assert!(err.to_string().contains("no text"), "{err}");
}
