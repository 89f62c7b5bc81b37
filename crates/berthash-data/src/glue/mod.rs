//! GLUE fine-tuning data: task specs, readers for the original tsv layout and
//! the Hugging Face parquet export, and encoding into classification batches.

pub mod encode;
pub mod hf_parquet;
pub mod task;
pub mod tsv;

use std::path::{Path, PathBuf};

use crate::corpus::resolve_paths;
use crate::error::{DataError, OnBadInput, Result};

pub use encode::{
    encode_examples, BatchLabels, ClassificationBatch, EncodedExample, EncodedSplit, Padding,
};
pub use task::{
    builtin_task, Column, GlueExample, Label, LabelSpec, Metric, ParquetLayout, Split, SplitFiles,
    TaskSpec, TestSplit, TsvLayout, BUILTIN_TASKS,
};

/// The examples of a split and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitData {
    pub examples: Vec<GlueExample>,
    /// Rows skipped under [`OnBadInput::Skip`].
    pub skipped: usize,
    pub files: Vec<PathBuf>,
}

/// Reads test split `test` of a task from `data_dir`: `<tsv>` in GLUE's layout, else the
/// Hugging Face export's parquet split (labels -1 read as none). `None` for an optional split
/// whose files are absent.
pub fn read_test_split(
    spec: &TaskSpec,
    data_dir: impl AsRef<Path>,
    test: &TestSplit,
) -> Result<Option<Vec<GlueExample>>> {
    let dir = data_dir.as_ref();
    let tsv_path = dir.join(&test.tsv);
    if tsv_path.is_file() {
        let mut unlabelled = spec.clone();
        unlabelled.tsv = TsvLayout {
            has_header: true,
            num_fields: None,
            text_a: test.text_a.clone(),
            text_b: test.text_b.clone(),
            label: None,
        };
        let (examples, _) = tsv::read_tsv(&unlabelled, &tsv_path, OnBadInput::Error)?;
        return Ok(Some(examples));
    }
    let parquet = test.parquet.as_ref().filter(|_| spec.parquet.is_some());
    let files = parquet.map_or_else(Vec::new, |name| parquet_files(dir, name));
    if files.is_empty() {
        if test.optional {
            return Ok(None);
        }
        let mut tried = vec![test.tsv.clone()];
        tried.extend(parquet.map(|p| format!("{p}.parquet or {p}-*.parquet")));
        return Err(DataError::MissingSplit {
            task: spec.name.clone(),
            split: test.name.clone(),
            dir: dir.to_path_buf(),
            tried,
        });
    }
    let mut examples = Vec::new();
    for path in files {
        examples.extend(hf_parquet::read_parquet(spec, &path, OnBadInput::Error)?.0);
    }
    Ok(Some(examples))
}

/// The parquet files of split `name` in `dir`: `<name>.parquet` or `<name>-*.parquet`.
fn parquet_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let single = dir.join(format!("{name}.parquet"));
    if single.is_file() {
        return vec![single];
    }
    let pattern = format!(
        "{}/{}-*.parquet",
        glob::Pattern::escape(&dir.to_string_lossy()),
        glob::Pattern::escape(name)
    );
    resolve_paths(std::slice::from_ref(&pattern)).unwrap_or_default()
}

/// Reads a split of a task from `data_dir` (the task's folder), failing on any bad row.
pub fn read_split(
    spec: &TaskSpec,
    data_dir: impl AsRef<Path>,
    split: &Split,
) -> Result<Vec<GlueExample>> {
    read_split_with(spec, data_dir, split, OnBadInput::Error).map(|d| d.examples)
}

/// Reads a split, detecting the layout: `<split>.tsv` (GLUE) if present,
/// otherwise `<prefix>.parquet` or `<prefix>-*.parquet` (Hugging Face export,
/// shards in name order).
pub fn read_split_with(
    spec: &TaskSpec,
    data_dir: impl AsRef<Path>,
    split: &Split,
    on_bad_row: OnBadInput,
) -> Result<SplitData> {
    let dir = data_dir.as_ref();
    let files = spec.split_files(split)?;
    let tsv_path = dir.join(&files.tsv);
    if tsv_path.is_file() {
        let (examples, skipped) = tsv::read_tsv(spec, &tsv_path, on_bad_row)?;
        return Ok(SplitData {
            examples,
            skipped,
            files: vec![tsv_path],
        });
    }
    let parquet_files = parquet_files(dir, &files.parquet);
    if parquet_files.is_empty() || spec.parquet.is_none() {
        return Err(DataError::MissingSplit {
            task: spec.name.clone(),
            split: files.name.clone(),
            dir: dir.to_path_buf(),
            tried: vec![
                files.tsv.clone(),
                format!("{}.parquet", files.parquet),
                format!("{}-*.parquet", files.parquet),
            ],
        });
    }
    let mut data = SplitData {
        examples: Vec::new(),
        skipped: 0,
        files: Vec::new(),
    };
    for path in parquet_files {
        let (examples, skipped) = hf_parquet::read_parquet(spec, &path, on_bad_row)?;
        data.examples.extend(examples);
        data.skipped += skipped;
        data.files.push(path);
    }
    Ok(data)
}
