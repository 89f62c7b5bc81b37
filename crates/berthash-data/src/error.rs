//! The one error type of the crate.
//!
//! Every variant that comes from input data names the file and the place in it
//! (tsv line, parquet row group / row, column), so a user can find the bad input
//! without a debugger.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, tokenizing or batching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    // The io error is part of the message (not a `#[source]`) so it is printed exactly once.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A listed path does not exist.
    #[error("{path}: file not found")]
    MissingFile { path: PathBuf },

    /// A glob pattern is malformed or matched nothing.
    #[error("corpus pattern `{pattern}`: {message}")]
    Pattern { pattern: String, message: String },

    /// A zero-byte file, or a parquet file without rows.
    #[error("{path}: empty file ({detail})")]
    EmptyFile { path: PathBuf, detail: String },

    /// A whole pass over the corpus found no text to train on.
    #[error(
        "the corpus has no text: a whole pass over its {files} file(s) found only null or blank rows ({empty} of them); check the files and the text column"
    )]
    NoText { files: usize, empty: u64 },

    /// Parquet could not decode a file (corrupt footer, page, or compression).
    #[error("{path}{}: corrupt or unreadable parquet: {message}", at_row_group(*row_group))]
    Parquet {
        path: PathBuf,
        row_group: Option<usize>,
        message: String,
    },

    /// The configured column is not in the file.
    #[error("{path}: no column `{column}` (columns: {})", available.join(", "))]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: Vec<String>,
    },

    /// The column exists but holds the wrong kind of values.
    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    ColumnType {
        path: PathBuf,
        column: String,
        found: String,
        expected: String,
    },

    /// A null where text or a label is required (row is 0-based within the file).
    #[error("{path}: row group {row_group}, row {row}: column `{column}` is null")]
    NullValue {
        path: PathBuf,
        row_group: usize,
        row: usize,
        column: String,
    },

    /// A tsv line with a different number of fields than the header (line is 1-based).
    #[error("{path}:{line}: expected {expected} tab-separated fields, found {found}")]
    FieldCount {
        path: PathBuf,
        line: usize,
        expected: usize,
        found: usize,
    },

    /// A tsv column index or name that the file does not have.
    #[error("{path}:{line}: column {column} does not exist ({fields} fields)")]
    NoSuchField {
        path: PathBuf,
        line: usize,
        column: String,
        fields: usize,
    },

    /// A class label that is not in the task's label list. `place` is `line N` (tsv) or
    /// `row N` (parquet, 0-based).
    #[error("{path}: {place}: unknown label `{label}` (known: {})", known.join(", "))]
    UnknownLabel {
        path: PathBuf,
        place: String,
        label: String,
        known: Vec<String>,
    },

    /// A regression target that is not a number.
    #[error("{path}: {place}: label `{value}` is not a number")]
    BadScore {
        path: PathBuf,
        place: String,
        value: String,
    },

    /// A GLUE split whose files are in neither layout.
    #[error("task {task}, split {split}: no data in {dir} (looked for {})", tried.join(", "))]
    MissingSplit {
        task: String,
        split: String,
        dir: PathBuf,
        tried: Vec<String>,
    },

    /// A split name the task does not define.
    #[error("task {task}: no split `{split}` (splits: {})", available.join(", "))]
    UnknownSplit {
        task: String,
        split: String,
        available: Vec<String>,
    },

    /// The tokenizer file could not be loaded or lacks a required token.
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: String, message: String },

    /// Encoding a text failed; `origin` says where the text came from.
    #[error("tokenizing {origin}: {message}")]
    Encode { origin: String, message: String },

    /// A file, or a place in it, that is not what the reader expects (`message` says where).
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },

    /// An invalid configuration value.
    #[error("config `{field}`: {message}")]
    Config { field: String, message: String },

    /// A task spec file that does not parse.
    #[error("task spec {path}: {message}")]
    TaskSpec { path: String, message: String },

    /// A saved stream position that does not belong to this configuration.
    #[error("stream position does not match this configuration: {message}")]
    Position { message: String },

    /// A loader thread stopped without reporting why (it panicked).
    #[error("data loader thread `{thread}` stopped unexpectedly")]
    Worker { thread: String },
}

fn at_row_group(row_group: Option<usize>) -> String {
    row_group.map_or_else(String::new, |rg| format!(" (row group {rg})"))
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            cause: source,
        }
    }

    /// An error opening or reading `path`: a missing file is named as such.
    pub(crate) fn reading(path: &std::path::Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            DataError::io(path, source)
        }
    }

    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        DataError::Config {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// What to do with a bad row or file: fail (default) or skip it and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadInput {
    #[default]
    Error,
    Skip,
}
