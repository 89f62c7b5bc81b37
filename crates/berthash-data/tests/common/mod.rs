//! Paths shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use berthash_data::{CorpusConfig, CorpusSource, PretrainStreamConfig, TokenizerHandle};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn tokenizer_path() -> PathBuf {
    repo().join("data/tokenizer/bert-base-uncased/tokenizer.json")
}

pub fn tokenizer() -> TokenizerHandle {
    TokenizerHandle::from_file(tokenizer_path()).expect("shipped tokenizer")
}

pub fn wiki_sample() -> String {
    repo()
        .join("data/sample/wikipedia/train-00000-of-00001.parquet")
        .to_string_lossy()
        .into_owned()
}

pub fn books_sample() -> String {
    repo()
        .join("data/sample/books/train-00000-of-00001.parquet")
        .to_string_lossy()
        .into_owned()
}

pub fn glue_fixtures() -> PathBuf {
    repo().join("tests/fixtures/glue")
}

/// `$BERTHASH_SHARED` or `<repo>/../shared`, if present; otherwise prints why the test is skipped.
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("BERTHASH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"));
    if dir.join("data").is_dir() {
        Some(dir)
    } else {
        println!("skipped: ../shared not found (set BERTHASH_SHARED)");
        None
    }
}

/// A stream over the given sources with small windows, for fast tests.
pub fn stream_config(sources: Vec<CorpusSource>) -> PretrainStreamConfig {
    let mut c = PretrainStreamConfig::new(CorpusConfig::new(sources), tokenizer_path());
    c.batch_size = 16;
    c.shuffle_buffer = 64;
    c.eval_documents = 0;
    c.threads = 2;
    c
}
