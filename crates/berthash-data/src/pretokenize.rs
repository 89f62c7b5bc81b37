//! A parquet corpus tokenized once into token shards (one `.bhtok` per parquet file, see
//! [`crate::token_shard`]), so that pre-training reads ids instead of text.
//!
//! A file is read by the loader's own reader, so a shard holds exactly the documents the loader
//! would tokenize, each encoded as the loader encodes it; rows without text become empty
//! documents, which keeps a document's index equal to its row. A shard that is already there,
//! made from the same source file (name, size, modification time), column and tokenizer, is
//! kept: an interrupted run continues where it stopped. A shard is assembled in memory before it
//! is written: about 2 bytes per token of the largest file (4 above a 65,536-token vocabulary).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::bounded;

use crate::corpus::{
    resolve_paths, row_groups, Content, CorpusConfig, SkipCounter, SourceCursor, SourceReader,
};
use crate::error::{DataError, OnBadInput, Result};
use crate::token_shard::{self, is_token_shard, ShardMeta, ShardWriter};
use crate::tokenize::TokenizerHandle;

/// Documents, or bytes of text, per chunk handed to the tokenizer threads.
const CHUNK_DOCS: usize = 4096;
const CHUNK_BYTES: usize = 1 << 20;

/// One parquet file and the shard it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardJob {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Rows, from the footer (0 for a file that cannot be read, under `skip`).
    pub rows: u64,
}

/// What [`pretokenize`] reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// More rows of the current file are done.
    Rows(u64),
    /// A file is finished.
    Done(&'a ShardJob, &'a ShardOutcome),
}

/// How the files are read and tokenized.
#[derive(Debug, Clone)]
pub struct PretokenizeOptions {
    pub text_column: String,
    /// `skip`: a file that cannot be read is left out (no shard), and reported.
    pub on_bad_input: OnBadInput,
    /// Tokenizer threads; 0 = one per core.
    pub threads: usize,
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardOutcome {
    Written {
        docs: usize,
        tokens: u64,
        empty_rows: u64,
        bytes: u64,
    },
    /// An up-to-date shard was already there.
    Kept { docs: usize, tokens: u64 },
    /// Under `skip`: the file could not be read.
    Skipped { reason: String },
}

/// The shards that `paths_or_globs` (parquet files, directories or globs, as a corpus source
/// takes them) become under `out`. A directory's files keep their place below it, under the
/// directory's name (`corpus/wikipedia` gives `out/wikipedia/…`), so each directory is one
/// source again; a named file or a glob's match goes to `out` itself. Two inputs that would
/// write one shard are refused, and so is a file whose footer or text column cannot be read
/// (under `skip`, it is kept with 0 rows and reported when its turn comes): all before anything
/// is written.
pub fn shard_jobs(
    paths_or_globs: &[String],
    out: &Path,
    options: &PretokenizeOptions,
) -> Result<Vec<ShardJob>> {
    let mut jobs: Vec<ShardJob> = Vec::new();
    for entry in paths_or_globs {
        let files = resolve_paths(std::slice::from_ref(entry))?;
        let dir = Path::new(entry);
        for input in files {
            if is_token_shard(&input) {
                return Err(DataError::Format {
                    path: input,
                    message: "already a token shard; pre-tokenizing reads parquet files"
                        .to_string(),
                });
            }
            let place = match input.strip_prefix(dir) {
                Ok(rel) if dir.is_dir() => {
                    let name = std::fs::canonicalize(dir)
                        .ok()
                        .and_then(|d| d.file_name().map(PathBuf::from))
                        .unwrap_or_else(|| PathBuf::from("corpus"));
                    name.join(rel)
                }
                _ => PathBuf::from(input.file_name().unwrap_or(input.as_os_str())),
            };
            let output = out.join(place).with_extension(token_shard::EXTENSION);
            if let Some(other) = jobs.iter().find(|j| j.output == output) {
                return Err(DataError::Format {
                    message: format!(
                        "both {} and {} would become this shard: pass their folders instead",
                        other.input.display(),
                        input.display()
                    ),
                    path: output,
                });
            }
            let rows = match row_groups(&input, &options.text_column) {
                Ok(groups) => groups.iter().sum::<usize>() as u64,
                Err(_) if options.on_bad_input == OnBadInput::Skip => 0,
                Err(e) => return Err(e),
            };
            jobs.push(ShardJob {
                input,
                output,
                rows,
            });
        }
    }
    Ok(jobs)
}

/// Tokenizes each job's file into its shard, in order, telling `progress` of the rows done and
/// of each file as it ends. A bad file stops the run with an error naming it (under `skip`: it
/// is reported and left out).
pub fn pretokenize(
    jobs: &[ShardJob],
    tokenizer: &TokenizerHandle,
    options: &PretokenizeOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Vec<ShardOutcome>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .thread_name(|i| format!("berthash-tokenize-{i}"))
        .build()
        .map_err(|e| DataError::config("threads", e.to_string()))?;
    let fingerprint = tokenizer.fingerprint()?;
    let mut outcomes = Vec::new();
    for job in jobs {
        let meta = source_meta(job, tokenizer, &fingerprint, options)?;
        let mut rows_done = 0;
        let mut rows = |n: u64| {
            rows_done += n;
            progress(Progress::Rows(n));
        };
        let outcome = match up_to_date(&job.output, &meta) {
            Some(kept) => kept,
            None => match write_shard(job, tokenizer, &pool, meta, options, &mut rows) {
                Ok(written) => written,
                // Reported once, by the caller, with the outcome.
                Err(e) if options.on_bad_input == OnBadInput::Skip => ShardOutcome::Skipped {
                    reason: e.to_string(),
                },
                Err(e) => return Err(e),
            },
        };
        progress(Progress::Rows(job.rows.saturating_sub(rows_done)));
        progress(Progress::Done(job, &outcome));
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The metadata a shard of `job` records (its empty-row count filled in when written).
fn source_meta(
    job: &ShardJob,
    tokenizer: &TokenizerHandle,
    fingerprint: &str,
    options: &PretokenizeOptions,
) -> Result<ShardMeta> {
    let stat = std::fs::metadata(&job.input).map_err(|e| DataError::reading(&job.input, e))?;
    let modified = stat
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(ShardMeta {
        tokenizer: fingerprint.to_string(),
        vocab_size: tokenizer.vocab_size(),
        source_file: job
            .input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source_bytes: stat.len(),
        source_modified_ns: modified,
        text_column: options.text_column.clone(),
        empty_rows: 0,
    })
}

/// The shard at `output` when it was made from this source with this tokenizer.
fn up_to_date(output: &Path, meta: &ShardMeta) -> Option<ShardOutcome> {
    let info = token_shard::read_info(output).ok()?;
    let same = ShardMeta {
        empty_rows: info.meta.empty_rows,
        ..meta.clone()
    };
    (info.meta == same).then_some(ShardOutcome::Kept {
        docs: info.docs,
        tokens: info.tokens as u64,
    })
}

/// Reads the file on one thread while the pool tokenizes the previous chunk.
fn write_shard(
    job: &ShardJob,
    tokenizer: &TokenizerHandle,
    pool: &rayon::ThreadPool,
    mut meta: ShardMeta,
    options: &PretokenizeOptions,
    rows_done: &mut dyn FnMut(u64),
) -> Result<ShardOutcome> {
    let path = &job.input;
    // The first row of each row group, then the file's rows.
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            row_groups(path, &options.text_column)?
                .iter()
                .scan(0, |n, rows| {
                    *n += rows;
                    Some(*n)
                }),
        )
        .collect();
    let rows = starts[starts.len() - 1];
    // The row a document was read from, from the cursor after it.
    let row_of = |after: SourceCursor| match after.file {
        0 => starts[after.row_group] + after.row - 1,
        _ => rows - 1,
    };
    let skips = Arc::new(SkipCounter::default());
    let mut config = CorpusConfig::new(Vec::new());
    config.on_bad_input = OnBadInput::Error;
    let mut reader = SourceReader::new(
        0,
        Arc::new(vec![path.clone()]),
        &options.text_column,
        &config,
        SourceCursor::default(),
        skips.clone(),
    );
    let mut shard = ShardWriter::new(&job.output, tokenizer.vocab_size());
    let (tx, rx) = bounded::<Vec<(usize, String)>>(2);
    std::thread::scope(|scope| {
        let read = scope.spawn(move || -> Result<()> {
            let (mut chunk, mut bytes) = (Vec::new(), 0);
            while let Some(doc) = reader.next_doc()? {
                let Content::Text(text) = doc.content else {
                    unreachable!("a parquet file gives text")
                };
                bytes += text.len();
                chunk.push((row_of(doc.after), text));
                if chunk.len() >= CHUNK_DOCS || bytes >= CHUNK_BYTES {
                    bytes = 0;
                    if tx.send(std::mem::take(&mut chunk)).is_err() {
                        return Ok(());
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            Ok(())
        });
        let mut tokenized = Ok(());
        for chunk in &rx {
            let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
            match pool.install(|| tokenizer.encode_batch(&texts, true)) {
                Ok(ids) => {
                    let before = shard.docs();
                    for ((row, _), ids) in chunk.iter().zip(ids) {
                        while shard.docs() < *row {
                            shard.push(&[]);
                        }
                        shard.push(&ids);
                    }
                    rows_done((shard.docs() - before) as u64);
                }
                Err(e) => {
                    tokenized = Err(e);
                    break;
                }
            }
        }
        drop(rx);
        let read = read.join().unwrap_or_else(|_| {
            Err(DataError::Worker {
                thread: "pretokenize reader".to_string(),
            })
        });
        read.and(tokenized)
    })?;
    while shard.docs() < rows {
        shard.push(&[]);
    }
    let (docs, tokens) = (shard.docs(), shard.tokens());
    meta.empty_rows = skips.empty();
    let bytes = shard.finish(&meta)?;
    Ok(ShardOutcome::Written {
        docs,
        tokens,
        empty_rows: meta.empty_rows,
        bytes,
    })
}
