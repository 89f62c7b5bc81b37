//! Data pipeline of berthash.
//!
//! * [`corpus`]: parquet corpora streamed record batch by record batch (Hugging
//!   Face `wikimedia/wikipedia` and `bookcorpus` shards as they are), several
//!   sources mixed by weight.
//! * [`tokenize`]: the Hugging Face `tokenizers` crate on a local `tokenizer.json`,
//!   batches encoded in parallel.
//! * [`token_shard`], [`pretokenize`]: a corpus tokenized once into memory-mapped shards of
//!   token ids, which the loader reads in place of the parquet files.
//! * [`pack`]: documents as `[CLS] … [SEP]`, concatenated and cut into exact
//!   `max_length` rows (or one padded row per document).
//! * [`mlm`]: 15% masking, 80/10/10, labels only at the selected positions.
//! * [`loader`]: shuffle windows, background prefetch, and a [`StreamPosition`]
//!   that resumes the exact batch sequence.
//! * [`glue`]: the nine GLUE tasks described as data, read from the GLUE tsv
//!   layout or the Hugging Face parquet export, encoded into batches.
//!
//! Bad input (missing, corrupt or empty files, missing columns, malformed rows,
//! unknown labels) is an error naming file and row, or — when the user opts in
//! with [`OnBadInput::Skip`] — a counted skip; never a panic, never a silent drop.

mod arrow_text;
pub mod columns;
pub mod config;
pub mod corpus;
pub mod error;
pub mod glue;
pub mod loader;
pub mod mlm;
pub mod pack;
pub mod pairs;
mod parquet_guard;
pub mod pretokenize;
pub mod rng;
pub mod token_shard;
pub mod tokenize;

pub use config::PretrainStreamConfig;
pub use corpus::{
    Content, CorpusConfig, CorpusSource, CorpusStream, Document, FileOrder, Lane, SkipCounter,
    SourceCursor, SourceReader,
};
pub use error::{DataError, OnBadInput, Result};
pub use glue::{
    builtin_task, encode_examples, read_split, read_split_with, BatchLabels, ClassificationBatch,
    GlueExample, Label, LabelSpec, Metric, Padding, Split, TaskSpec,
};
pub use loader::{PretrainLoader, StreamPosition};
pub use mlm::{Masker, MaskingConfig, MlmBatch};
pub use pack::{pack_documents, PackMode, PackedRows};
pub use tokenize::{SpecialIds, TokenizerHandle};
