//! `berthash`: pre-train, fine-tune, inspect and export BERT Hash models.
// The flags' doc comments are the `--help` text, where `[CLS]`, `[batch][seq]` and
// `configs/glue/<task>.toml` are meant literally, not as links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod assets;
mod backend;
mod commands;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod kernel_cache;
mod recipe;
mod runs;
mod tokenizer;

use clap::{Parser, Subcommand};

/// A training step allocates and frees the same large buffers (activations, gradients, the
/// logits at the masked rows) every step. With mimalloc nano's CPU training step measured about
/// a quarter faster than with glibc's allocator, even with glibc told to keep freed memory
/// (`Trainer::new` does); at inference glibc was 1-2% faster and smaller (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "berthash",
    version,
    about = "Tiny BERT models with hashed token embeddings"
)]
struct Cli {
    /// Threads for the CPU backend's kernels [default: RAYON_NUM_THREADS, else one per logical
    /// CPU].
    #[arg(long, global = true, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pre-train a femto/pico/nano model with masked-LM (default data: a built-in sample).
    Pretrain(commands::pretrain::PretrainArgs),
    /// Tokenize a parquet corpus once into token shards (.bhtok) that pretrain reads directly.
    Pretokenize(commands::pretokenize::PretokenizeArgs),
    /// Fine-tune on a GLUE-style task (configs/glue/<task>.toml).
    Finetune(commands::finetune::FinetuneArgs),
    /// Fine-tune over a grid of learning rates, batch sizes and seeds (each a resumable run).
    Sweep(commands::finetune::FinetuneArgs),
    /// Dev-set metrics of a fine-tuned model.
    Eval(commands::eval::EvalArgs),
    /// Labels and scores of a fine-tuned model for texts.
    Predict(commands::predict::PredictArgs),
    /// Show a model's config and parameter counts by module.
    Info(commands::info::InfoArgs),
    /// Run a model on a batch of token ids and write its outputs as safetensors.
    Forward(commands::forward::ForwardArgs),
    /// Write a Hugging Face model directory (loadable with trust_remote_code=True).
    Export(commands::export::ExportArgs),
    /// Train a sentence-embedding model on text pairs (configs/embeddings/*.toml).
    TrainEmbeddings(commands::train_embeddings::TrainEmbeddingsArgs),
    /// Sentence embeddings of texts (mean, CLS or max pooling), or their cosine similarities.
    Embed(commands::embed::EmbedArgs),
    /// Show the most likely tokens at each [MASK] of a text.
    FillMask(commands::fill_mask::FillMaskArgs),
    /// Print the token ids of texts, one JSON array per line.
    Tokenize(commands::tokenize::TokenizeArgs),
    /// Draw a run's loss, learning-rate and eval curves (SVG).
    Plot(commands::plot::PlotArgs),
    Bench(commands::bench::BenchArgs),
}

fn main() {
    // berthash's own records at info; other crates (Burn, CubeCL's autotuner, which logs each
    // kernel it tunes, wgpu) only from warn. RUST_LOG replaces this.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,berthash=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Some(threads) = cli.threads {
        // Read by rayon when it starts the global pool the CPU backend's kernels (and gemm's)
        // run on, here before any work, and inherited by child processes (bench).
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    // The command runs on a worker of the pool the CPU kernels use: each parallel operation is
    // then a fork from inside the pool instead of a hand-over from outside it, which puts the
    // calling thread to sleep and wakes it again (a third of the time of a small batch). The
    // workers get the main thread's stack size.
    if let Err(err) = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global()
    {
        eprintln!("error: starting the worker threads: {err}");
        std::process::exit(1);
    }
    let result = rayon::scope(|_| run(cli.command));
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Pretrain(args) => commands::pretrain::run(args),
        Command::Pretokenize(args) => commands::pretokenize::run(args),
        Command::Finetune(args) => commands::finetune::run(args),
        Command::Sweep(args) => commands::sweep::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Forward(args) => commands::forward::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::TrainEmbeddings(args) => commands::train_embeddings::run(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::FillMask(args) => commands::fill_mask::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Bench(args) => commands::bench::run(args),
    }
}
