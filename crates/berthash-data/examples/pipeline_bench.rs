//! Throughput and memory of the whole pre-training pipeline (parquet → tokens →
//! packed rows → shuffled, masked batches), one pass over a corpus.
//!
//! ```text
//! cargo run --release -p berthash-data --example pipeline_bench -- \
//!     [--corpus DIR] [--threads N] [--max-length 128] [--batch-size 64] \
//!     [--per-document] [--epochs 1] [--tokenizer PATH]
//! ```
//!
//! `--corpus` defaults to `$BERTHASH_SHARED/data/corpus` or `../shared/data/corpus`
//! (every `wikipedia/*.parquet` and `books/*.parquet` below it, mixed 1:1 by
//! documents). Prints tokens/s (tokens delivered in batches, padding excluded)
//! and the peak resident memory (`VmHWM` of /proc/self/status).

use std::path::{Path, PathBuf};
use std::time::Instant;

use berthash_data::{CorpusConfig, CorpusSource, PackMode, PretrainLoader, PretrainStreamConfig};

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn default_corpus(repo: &Path) -> PathBuf {
    match std::env::var_os("BERTHASH_SHARED") {
        Some(shared) => PathBuf::from(shared).join("data/corpus"),
        None => repo.join("../shared/data/corpus"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut corpus = default_corpus(&repo);
    let mut tokenizer = repo.join("data/tokenizer/bert-base-uncased/tokenizer.json");
    let (mut threads, mut max_length, mut batch_size, mut epochs) =
        (0usize, 128usize, 64usize, 1u64);
    let mut mode = PackMode::Packed;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--corpus" => corpus = PathBuf::from(value()?),
            "--tokenizer" => tokenizer = PathBuf::from(value()?),
            "--threads" => threads = value()?.parse()?,
            "--max-length" => max_length = value()?.parse()?,
            "--batch-size" => batch_size = value()?.parse()?,
            "--epochs" => epochs = value()?.parse()?,
            "--per-document" => mode = PackMode::PerDocument,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !corpus.is_dir() {
        println!("skipped: corpus {} not found", corpus.display());
        return Ok(());
    }
    let mut sources = Vec::new();
    for sub in ["wikipedia", "books"] {
        let dir = corpus.join(sub);
        if dir.is_dir() {
            sources.push(CorpusSource::new(&[&dir.to_string_lossy()]));
        }
    }
    if sources.is_empty() {
        sources.push(CorpusSource::new(&[&corpus.to_string_lossy()]));
    }
    let mut config = PretrainStreamConfig::new(CorpusConfig::new(sources), &tokenizer);
    config.max_length = max_length;
    config.batch_size = batch_size;
    config.pack_mode = mode;
    config.epochs = Some(epochs);
    config.threads = threads;
    config.eval_documents = 0;

    println!(
        "corpus {} | threads {} | max_length {max_length} | batch {batch_size} | {mode:?} | epochs {epochs}",
        corpus.display(),
        if threads == 0 { "all".to_string() } else { threads.to_string() },
    );
    let start = Instant::now();
    let loader = PretrainLoader::new(config, None)?;
    let (mut batches, mut tokens, mut masked) = (0u64, 0u64, 0u64);
    for item in loader {
        let (batch, _position) = item?;
        batches += 1;
        tokens += batch.real_tokens() as u64;
        masked += batch.masked_positions.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "batches {batches} | tokens {tokens} | masked {:.4} of tokens",
        masked as f64 / tokens.max(1) as f64
    );
    println!("time {secs:.2} s | {:.0} tokens/s", tokens as f64 / secs);
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS (VmHWM) {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS unavailable (no /proc/self/status)"),
    }
    Ok(())
}
