//! Streaming parquet corpora.
//!
//! A corpus is one or more *sources* (each a list of parquet files or globs and
//! the name of its text column). Files are read one record batch at a time, only
//! the text column is decoded, so memory stays bounded by the read batch size
//! whatever the shard size. Several sources are mixed document by document with
//! a deterministic weighted schedule, so the mixed stream is a pure function of
//! the per-source cursors (which is what makes resuming exact).
//!
//! The same code reads Hugging Face `wikimedia/wikipedia` shards (`id`, `url`,
//! `title`, `text`) and `bookcorpus` shards (`text`), and token shards (`.bhtok`,
//! [`crate::token_shard`]): the same rows tokenized once, which give the same documents
//! as token ids.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef};

use crate::arrow_text::{is_text_type, text_value};
use crate::parquet_guard::next_batch;
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, OnBadInput, Result};
use crate::token_shard::{self, is_token_shard, TokenShard};

/// One corpus: files (paths, directories or glob patterns) and the column holding the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusSource {
    /// Parquet files or token shards, directories (all `*.parquet` below, or all `*.bhtok`,
    /// sorted) or glob patterns (matches sorted). Order is kept; it is the reading order.
    pub paths_or_globs: Vec<String>,
    /// The text column (`text` for wikipedia and bookcorpus); token shards have no columns.
    #[serde(default = "default_text_column")]
    pub text_column: String,
    /// Relative share of documents when several sources are mixed.
    #[serde(default = "default_weight")]
    pub weight: f32,
}

fn default_text_column() -> String {
    "text".to_string()
}

fn default_weight() -> f32 {
    1.0
}

impl CorpusSource {
    /// A source with the `text` column and weight 1.
    pub fn new(paths_or_globs: &[&str]) -> Self {
        CorpusSource {
            paths_or_globs: paths_or_globs.iter().map(|s| s.to_string()).collect(),
            text_column: default_text_column(),
            weight: default_weight(),
        }
    }
}

/// How a corpus is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusConfig {
    pub sources: Vec<CorpusSource>,
    /// `error` (default) stops at a missing/corrupt/empty file or a null text;
    /// `skip` skips it, counts it (see [`SkipCounter`]) and logs a warning.
    #[serde(default)]
    pub on_bad_input: OnBadInput,
    /// Rows decoded per parquet read; bounds the text held in memory per lane.
    #[serde(default = "default_read_batch_rows")]
    pub read_batch_rows: usize,
    /// How each source's files are read: one after another (`sequential`, the default) or side
    /// by side (`interleaved`).
    #[serde(default)]
    pub file_order: FileOrder,
}

/// The order in which the files of a source are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOrder {
    /// One file after another, in the listed order.
    #[default]
    Sequential,
    /// All files at once, each giving a share of the documents in proportion to its rows (from
    /// the parquet footers), so every stretch of a pass draws on every file. Shards of different
    /// kinds (books, then Wikipedia) are then mixed throughout the pass, as a global shuffle
    /// would mix them; the shuffle window alone mixes only neighbouring rows.
    Interleaved,
}

/// One document stream of the mix: a whole source (`sequential`) or one file of it
/// (`interleaved`). Stream positions hold one cursor per lane.
#[derive(Debug, Clone)]
pub struct Lane {
    /// Index of the source in [`CorpusConfig::sources`].
    pub source: usize,
    pub files: Arc<Vec<PathBuf>>,
    pub text_column: String,
    /// Share of documents relative to the other lanes.
    pub weight: f64,
}

fn default_read_batch_rows() -> usize {
    256
}

impl CorpusConfig {
    pub fn new(sources: Vec<CorpusSource>) -> Self {
        CorpusConfig {
            sources,
            on_bad_input: OnBadInput::Error,
            read_batch_rows: default_read_batch_rows(),
            file_order: FileOrder::default(),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.sources.is_empty() {
            return Err(DataError::config(
                "corpus.sources",
                "no corpus source given",
            ));
        }
        for (i, s) in self.sources.iter().enumerate() {
            if s.paths_or_globs.is_empty() {
                return Err(DataError::config(
                    &format!("corpus.sources[{i}].paths_or_globs"),
                    "empty",
                ));
            }
            if !(s.weight.is_finite() && s.weight > 0.0) {
                return Err(DataError::config(
                    &format!("corpus.sources[{i}].weight"),
                    format!("must be a positive number, got {}", s.weight),
                ));
            }
        }
        if self.read_batch_rows == 0 {
            return Err(DataError::config("corpus.read_batch_rows", "must be > 0"));
        }
        Ok(())
    }

    /// The files of every source, in reading order.
    pub fn resolve(&self) -> Result<Vec<Arc<Vec<PathBuf>>>> {
        self.validate()?;
        self.sources
            .iter()
            .map(|s| resolve_paths(&s.paths_or_globs).map(Arc::new))
            .collect()
    }

    /// The lanes of the mix, from the files [`CorpusConfig::resolve`] gave. Interleaved lanes
    /// read the row counts of the footers; a file whose footer cannot be read is an error, or
    /// under `skip` a lane of one row that is skipped when it is opened.
    pub fn lanes(&self, files: &[Arc<Vec<PathBuf>>]) -> Result<Vec<Lane>> {
        let mut lanes = Vec::new();
        for (i, (source, files)) in self.sources.iter().zip(files).enumerate() {
            let weight = f64::from(source.weight);
            let lane = |files: Vec<PathBuf>, weight: f64| Lane {
                source: i,
                files: Arc::new(files),
                text_column: source.text_column.clone(),
                weight,
            };
            match self.file_order {
                FileOrder::Sequential => lanes.push(lane(files.to_vec(), weight)),
                FileOrder::Interleaved => {
                    let rows = files
                        .iter()
                        .map(|path| match file_rows(path, &source.text_column) {
                            Ok(n) => Ok(n.max(1) as f64),
                            Err(_) if self.on_bad_input == OnBadInput::Skip => Ok(1.0),
                            Err(e) => Err(e),
                        })
                        .collect::<Result<Vec<f64>>>()?;
                    let total: f64 = rows.iter().sum();
                    for (path, n) in files.iter().zip(rows) {
                        lanes.push(lane(vec![path.clone()], weight * n / total));
                    }
                }
            }
        }
        Ok(lanes)
    }
}

/// Rows of a corpus file, from its footer or header.
fn file_rows(path: &Path, column: &str) -> Result<usize> {
    Ok(row_groups(path, column)?.iter().sum())
}

/// The row counts of a file's row groups (a token shard is one group of all its documents);
/// a file without rows is an error.
pub(crate) fn row_groups(path: &Path, column: &str) -> Result<Vec<usize>> {
    if is_token_shard(path) {
        let docs = token_shard::read_info(path)?.docs;
        if docs == 0 {
            return Err(DataError::EmptyFile {
                path: path.to_path_buf(),
                detail: "token shard without documents".to_string(),
            });
        }
        return Ok(vec![docs]);
    }
    let (builder, _) = open_parquet(path, column)?;
    row_group_rows(path, &builder)
}

/// The files below a directory: its parquet files or its token shards, sorted.
fn files_below(dir: &str) -> Result<Vec<PathBuf>> {
    let below = |ext: &str| -> Result<Vec<PathBuf>> {
        let pattern = format!("{}/**/*.{ext}", glob::Pattern::escape(dir));
        Ok(glob::glob(&pattern)
            .map_err(|e| DataError::Pattern {
                pattern: pattern.clone(),
                message: e.to_string(),
            })?
            .filter_map(std::result::Result::ok)
            .collect())
    };
    let (parquet, shards) = (below("parquet")?, below(token_shard::EXTENSION)?);
    if !parquet.is_empty() && !shards.is_empty() {
        return Err(DataError::Pattern {
            pattern: dir.to_string(),
            message: format!(
                "holds both parquet files ({}) and token shards ({}): name one kind, e.g. \
                 `{dir}/**/*.{}`",
                parquet.len(),
                shards.len(),
                token_shard::EXTENSION
            ),
        });
    }
    Ok(if shards.is_empty() { parquet } else { shards })
}

/// Expands paths, directories and glob patterns into a file list, in the given
/// order (each directory or pattern sorted). A pattern matching nothing or a
/// missing path is an error, not an empty corpus.
pub fn resolve_paths(paths_or_globs: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in paths_or_globs {
        let is_pattern = entry.contains(['*', '?', '[']);
        let mut found: Vec<PathBuf> = if is_pattern {
            let paths = glob::glob(entry).map_err(|e| DataError::Pattern {
                pattern: entry.clone(),
                message: e.to_string(),
            })?;
            paths
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| DataError::Pattern {
                    pattern: entry.clone(),
                    message: e.to_string(),
                })?
        } else {
            let path = PathBuf::from(entry);
            if path.is_dir() {
                files_below(entry)?
            } else if path.exists() {
                vec![path]
            } else {
                return Err(DataError::MissingFile { path });
            }
        };
        if found.is_empty() {
            return Err(DataError::Pattern {
                pattern: entry.clone(),
                message: "matched no parquet files or token shards (.bhtok)".to_string(),
            });
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Where one source stands: the next document is row `row` of row group
/// `row_group` of file `file`; `docs_read` documents were taken from it this epoch.
/// `file == number of files` means the source is finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceCursor {
    pub file: usize,
    pub row_group: usize,
    pub row: usize,
    pub docs_read: u64,
}

/// One document of the mixed stream.
#[derive(Debug, Clone)]
pub struct Document {
    /// Index of the lane it came from.
    pub lane: usize,
    pub content: Content,
    /// The source's cursor after this document.
    pub after: SourceCursor,
}

/// A document's text (from a parquet file), or its token ids (from a token shard: what the
/// tokenizer gives for the text, `[CLS]` and `[SEP]` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    Ids(Vec<u32>),
}

impl Content {
    /// The text, `None` for token ids.
    pub fn text(&self) -> Option<&str> {
        match self {
            Content::Text(t) => Some(t),
            Content::Ids(_) => None,
        }
    }
}

/// Counts of rows and files skipped under [`OnBadInput::Skip`], and of rows without text
/// (null or blank: data, not errors, and skipped whatever `on_bad_input` says); shared by
/// threads.
#[derive(Debug, Default)]
pub struct SkipCounter {
    rows: AtomicU64,
    files: AtomicU64,
    empty: AtomicU64,
}

impl SkipCounter {
    /// Rows skipped for having no text (null, empty or only white space).
    pub fn empty(&self) -> u64 {
        self.empty.load(Ordering::Relaxed)
    }
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }
    fn skip_file(&self, err: &DataError) {
        tracing::warn!("skipping file: {err}");
        self.files.fetch_add(1, Ordering::Relaxed);
    }
}

/// An open corpus file positioned at the cursor.
struct OpenShard {
    rg_rows: Vec<usize>,
    rows: Rows,
}

enum Rows {
    Parquet {
        reader: ParquetRecordBatchReader,
        /// The text column of the current record batch.
        batch: Option<ArrayRef>,
        next: usize,
    },
    /// Documents are read at the cursor's row (its row group is always 0).
    Tokens(TokenShard),
}

/// Refuses column chunks whose footer gives a negative offset or size, or one past the end of
/// the file: the parquet reader would panic on them, not return an error.
fn check_chunk_ranges(path: &Path, builder: &ParquetRecordBatchReaderBuilder<File>) -> Result<()> {
    for (rg, group) in builder.metadata().row_groups().iter().enumerate() {
        for chunk in group.columns() {
            let start = chunk
                .dictionary_page_offset()
                .unwrap_or(chunk.data_page_offset());
            if start < 0 || chunk.compressed_size() < 0 {
                return Err(DataError::Parquet {
                    path: path.to_path_buf(),
                    row_group: Some(rg),
                    message: format!(
                        "column `{}` has a negative offset or size in the footer",
                        chunk.column_path()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Opens a parquet file for reading one column; checks emptiness and the column.
/// Returns the builder and the column's root index.
pub(crate) fn open_parquet(
    path: &Path,
    column: &str,
) -> Result<(ParquetRecordBatchReaderBuilder<File>, usize)> {
    let file = File::open(path).map_err(|e| DataError::reading(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    if len == 0 {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
            detail: "0 bytes".to_string(),
        });
    }
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| DataError::Parquet {
            path: path.to_path_buf(),
            row_group: None,
            message: e.to_string(),
        })?;
    check_chunk_ranges(path, &builder)?;
    let schema = builder.schema().clone();
    let Some((index, field)) = schema.column_with_name(column) else {
        return Err(DataError::MissingColumn {
            path: path.to_path_buf(),
            column: column.to_string(),
            available: schema.fields().iter().map(|f| f.name().clone()).collect(),
        });
    };
    check_text_type(path, column, field.data_type())?;
    Ok((builder, index))
}

fn check_text_type(path: &Path, column: &str, dt: &DataType) -> Result<()> {
    if is_text_type(dt) {
        Ok(())
    } else {
        Err(DataError::ColumnType {
            path: path.to_path_buf(),
            column: column.to_string(),
            found: dt.to_string(),
            expected: "string".to_string(),
        })
    }
}

/// Row counts of each row group of a file; errors on a file without rows.
fn row_group_rows(
    path: &Path,
    builder: &ParquetRecordBatchReaderBuilder<File>,
) -> Result<Vec<usize>> {
    let rows: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| usize::try_from(rg.num_rows()).unwrap_or(0))
        .collect();
    if rows.iter().sum::<usize>() == 0 {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
            detail: "parquet file has no rows".to_string(),
        });
    }
    Ok(rows)
}

/// The cursor at row `row_in_file` of the first file of `files` (used to start
/// training after held-out documents). Past the end of that file it is the start
/// of the second file.
pub(crate) fn cursor_at_row(
    files: &[PathBuf],
    column: &str,
    row_in_file: usize,
    on_bad: OnBadInput,
) -> Result<SourceCursor> {
    if row_in_file == 0 || files.is_empty() {
        return Ok(SourceCursor::default());
    }
    let rows = match row_groups(&files[0], column) {
        Ok(rows) => rows,
        // The reader will skip (and count) this file; nothing is held out of it.
        Err(_) if on_bad == OnBadInput::Skip => return Ok(SourceCursor::default()),
        Err(e) => return Err(e),
    };
    let mut left = row_in_file;
    for (rg, &n) in rows.iter().enumerate() {
        if left < n {
            return Ok(SourceCursor {
                file: 0,
                row_group: rg,
                row: left,
                docs_read: 0,
            });
        }
        left -= n;
    }
    Ok(SourceCursor {
        file: 1,
        ..SourceCursor::default()
    })
}

/// Reads the files of one lane document by document from a cursor.
pub struct SourceReader {
    lane: usize,
    files: Arc<Vec<PathBuf>>,
    column: String,
    batch_rows: usize,
    on_bad: OnBadInput,
    skips: Arc<SkipCounter>,
    cursor: SourceCursor,
    shard: Option<OpenShard>,
}

impl SourceReader {
    /// A reader of `files`, whose documents carry the lane index `lane`.
    pub fn new(
        lane: usize,
        files: Arc<Vec<PathBuf>>,
        column: &str,
        config: &CorpusConfig,
        start: SourceCursor,
        skips: Arc<SkipCounter>,
    ) -> Self {
        SourceReader {
            lane,
            files,
            column: column.to_string(),
            batch_rows: config.read_batch_rows,
            on_bad: config.on_bad_input,
            skips,
            cursor: start,
            shard: None,
        }
    }

    /// The position of the next document.
    pub fn cursor(&self) -> SourceCursor {
        self.cursor
    }

    fn path(&self) -> &Path {
        &self.files[self.cursor.file]
    }

    fn open_shard(&mut self) -> Result<OpenShard> {
        let path = self.files[self.cursor.file].clone();
        if is_token_shard(&path) {
            let shard = TokenShard::open(&path)?;
            let docs = shard.docs();
            if self.cursor.row_group != 0 || self.cursor.row >= docs {
                return Err(DataError::Position {
                    message: format!(
                        "{}: row group {}, row {} is past the end of the shard ({docs} documents)",
                        path.display(),
                        self.cursor.row_group,
                        self.cursor.row
                    ),
                });
            }
            return Ok(OpenShard {
                rg_rows: vec![docs],
                rows: Rows::Tokens(shard),
            });
        }
        let (builder, index) = open_parquet(&path, &self.column)?;
        let rg_rows = row_group_rows(&path, &builder)?;
        // A cursor at the start of a group may sit on empty groups: move past them.
        while self.cursor.row == 0
            && self.cursor.row_group < rg_rows.len()
            && rg_rows[self.cursor.row_group] == 0
        {
            self.cursor.row_group += 1;
        }
        let (rg, row) = (self.cursor.row_group, self.cursor.row);
        if rg >= rg_rows.len() || row >= rg_rows[rg] {
            return Err(DataError::Position {
                message: format!(
                    "{}: row group {rg}, row {row} is past the end of the file",
                    path.display()
                ),
            });
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        let reader = builder
            .with_projection(mask)
            .with_row_groups((rg..rg_rows.len()).collect())
            .with_offset(row)
            .with_batch_size(self.batch_rows)
            .build()
            .map_err(|e| DataError::Parquet {
                path: path.clone(),
                row_group: Some(rg),
                message: e.to_string(),
            })?;
        Ok(OpenShard {
            rg_rows,
            rows: Rows::Parquet {
                reader,
                batch: None,
                next: 0,
            },
        })
    }

    /// Moves the cursor past the current row (to the next row group or file at the ends).
    fn advance(&mut self) {
        self.cursor.row += 1;
        let Some(shard) = &self.shard else { return };
        while self.cursor.row_group < shard.rg_rows.len()
            && self.cursor.row >= shard.rg_rows[self.cursor.row_group]
        {
            self.cursor.row_group += 1;
            self.cursor.row = 0;
        }
        if self.cursor.row_group >= shard.rg_rows.len() {
            self.next_file();
        }
    }

    fn next_file(&mut self) {
        self.shard = None;
        self.cursor.file += 1;
        self.cursor.row_group = 0;
        self.cursor.row = 0;
    }

    /// Handles a bad file: an error, or (with `skip`) a counted skip to the next file.
    fn bad_file(&mut self, err: DataError) -> Result<()> {
        match self.on_bad {
            OnBadInput::Error => Err(err),
            OnBadInput::Skip => {
                self.skips.skip_file(&err);
                self.next_file();
                Ok(())
            }
        }
    }

    /// The next document, `None` at the end of the source.
    pub fn next_doc(&mut self) -> Result<Option<Document>> {
        loop {
            if self.cursor.file >= self.files.len() {
                return Ok(None);
            }
            if self.shard.is_none() {
                match self.open_shard() {
                    Ok(shard) => self.shard = Some(shard),
                    Err(e @ DataError::Position { .. }) => return Err(e),
                    Err(e) => {
                        self.bad_file(e)?;
                        continue;
                    }
                }
            }
            let rg = self.cursor.row_group;
            let Some(shard) = self.shard.as_mut() else {
                continue;
            };
            let content = match &mut shard.rows {
                Rows::Tokens(tokens) => {
                    let ids = tokens.doc(self.cursor.row);
                    (!ids.is_empty()).then_some(Content::Ids(ids))
                }
                Rows::Parquet {
                    reader,
                    batch,
                    next,
                } => {
                    if batch.as_ref().is_none_or(|b| *next >= b.len()) {
                        let err = match next_batch(reader) {
                            Some(Ok(read)) => {
                                let column = read.column(0);
                                if is_text_type(column.data_type()) {
                                    *batch = Some(column.clone());
                                    *next = 0;
                                    continue;
                                }
                                DataError::ColumnType {
                                    path: self.path().to_path_buf(),
                                    column: self.column.clone(),
                                    found: column.data_type().to_string(),
                                    expected: "string".to_string(),
                                }
                            }
                            Some(Err(message)) => DataError::Parquet {
                                path: self.path().to_path_buf(),
                                row_group: Some(rg),
                                message,
                            },
                            // Fewer rows than the footer promised: the file is damaged.
                            None => DataError::Parquet {
                                path: self.path().to_path_buf(),
                                row_group: Some(rg),
                                message: "file ended before the rows its footer lists".to_string(),
                            },
                        };
                        self.bad_file(err)?;
                        continue;
                    }
                    let i = *next;
                    *next += 1;
                    batch
                        .as_ref()
                        .and_then(|b| text_value(b, i))
                        .filter(|text| !text.trim().is_empty())
                        .map(|text| Content::Text(text.to_string()))
                }
            };
            match content {
                Some(content) => {
                    self.cursor.docs_read += 1;
                    self.advance();
                    return Ok(Some(Document {
                        lane: self.lane,
                        content,
                        after: self.cursor,
                    }));
                }
                None => {
                    self.skips.empty.fetch_add(1, Ordering::Relaxed);
                    self.advance();
                }
            }
        }
    }
}

/// Several lanes mixed by weight into one document stream.
///
/// The next document comes from the unfinished lane with the smallest
/// `(docs_read + 1) / weight` (ties: lowest index), so the mix depends only on
/// the cursors, never on timing. An epoch ends when every lane is finished.
pub struct CorpusStream {
    readers: Vec<SourceReader>,
    weights: Vec<f64>,
    finished: Vec<bool>,
}

impl CorpusStream {
    /// Opens every lane at its cursor (`start[i]` for lane `i`).
    pub fn new(
        config: &CorpusConfig,
        lanes: &[Lane],
        start: &[SourceCursor],
        skips: Arc<SkipCounter>,
    ) -> Self {
        let readers = lanes
            .iter()
            .zip(start)
            .enumerate()
            .map(|(i, (lane, c))| {
                SourceReader::new(
                    i,
                    lane.files.clone(),
                    &lane.text_column,
                    config,
                    *c,
                    skips.clone(),
                )
            })
            .collect();
        CorpusStream {
            readers,
            weights: lanes.iter().map(|l| l.weight).collect(),
            finished: vec![false; lanes.len()],
        }
    }

    /// The next document, `None` when every lane is finished.
    pub fn next_doc(&mut self) -> Result<Option<Document>> {
        loop {
            let pick = (0..self.readers.len())
                .filter(|&i| !self.finished[i])
                .min_by(|&a, &b| {
                    let ka = (self.readers[a].cursor.docs_read + 1) as f64 / self.weights[a];
                    let kb = (self.readers[b].cursor.docs_read + 1) as f64 / self.weights[b];
                    ka.total_cmp(&kb).then(a.cmp(&b))
                });
            let Some(i) = pick else { return Ok(None) };
            match self.readers[i].next_doc()? {
                Some(doc) => return Ok(Some(doc)),
                None => self.finished[i] = true,
            }
        }
    }
}

impl Iterator for CorpusStream {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_doc().transpose()
    }
}
