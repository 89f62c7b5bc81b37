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
    TaskSpec, TsvLayout, BUILTIN_TASKS,
};

/// The examples of a split and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitData {
    pub examples: Vec<GlueExample>,
    /// Rows skipped under [`OnBadInput::Skip`].
    pub skipped: usize,
    pub files: Vec<PathBuf>,
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
    let single = dir.join(format!("{}.parquet", files.parquet));
    let pattern = format!(
        "{}/{}-*.parquet",
        glob::Pattern::escape(&dir.to_string_lossy()),
        glob::Pattern::escape(&files.parquet)
    );
    let parquet_files = if single.is_file() {
        vec![single]
    } else {
        resolve_paths(std::slice::from_ref(&pattern)).unwrap_or_default()
    };
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
