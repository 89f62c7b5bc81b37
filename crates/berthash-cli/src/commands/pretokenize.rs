//! `berthash pretokenize`: a parquet corpus tokenized once into token shards, which `pretrain
//! --data` reads in place of the text.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use berthash_data::pretokenize::{
    pretokenize, shard_jobs, PretokenizeOptions, Progress, ShardOutcome,
};
use berthash_data::OnBadInput;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, clap::Args)]
pub struct PretokenizeArgs {
    /// Parquet files, folders or globs (repeatable). A folder's files keep their place below
    /// `--out/<folder name>/`.
    #[arg(long, num_args = 1.., required = true)]
    pub data: Vec<String>,
    /// Where the shards go (`.bhtok`, one per parquet file).
    #[arg(long)]
    pub out: PathBuf,
    /// The text column (wikipedia and bookcorpus: `text`).
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// A tokenizer.json (default: the built-in bert-base-uncased); training must use the same.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Leave out files that cannot be read (reported) instead of stopping.
    #[arg(long)]
    pub skip_bad_files: bool,
}

pub fn run(args: PretokenizeArgs) -> anyhow::Result<()> {
    let tokenizer = crate::tokenizer::load(args.tokenizer.as_deref(), None)?;
    let options = PretokenizeOptions {
        text_column: args.text_column.clone(),
        on_bad_input: match args.skip_bad_files {
            true => OnBadInput::Skip,
            false => OnBadInput::Error,
        },
        // One per core, or the global --threads.
        threads: 0,
    };
    let jobs = shard_jobs(&args.data, &args.out, &options).context("--data")?;
    // Drawn on standard error when it is a terminal, hidden otherwise.
    let bar = ProgressBar::new(jobs.iter().map(|j| j.rows).sum());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
        )
        .expect("valid template"),
    );
    let start = Instant::now();
    let outcomes = pretokenize(&jobs, &tokenizer, &options, |progress| {
        let (job, outcome) = match progress {
            Progress::Rows(n) => return bar.inc(n),
            Progress::Done(job, outcome) => (job, outcome),
        };
        let what = match outcome {
            ShardOutcome::Written {
                docs,
                tokens,
                empty_rows,
                bytes,
            } => format!(
                "{docs} documents ({empty_rows} without text), {tokens} tokens, {:.1} MiB",
                *bytes as f64 / (1 << 20) as f64
            ),
            ShardOutcome::Kept { docs, tokens } => {
                format!("kept: up to date ({docs} documents, {tokens} tokens)")
            }
            ShardOutcome::Skipped { reason } => format!("skipped: {reason}"),
        };
        bar.suspend(|| println!("{}: {what}", job.output.display()));
    })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let written: u64 = outcomes
        .iter()
        .map(|o| match o {
            ShardOutcome::Written { tokens, .. } => *tokens,
            _ => 0,
        })
        .sum();
    let skipped = outcomes
        .iter()
        .filter(|o| matches!(o, ShardOutcome::Skipped { .. }))
        .count();
    println!(
        "{} files, {written} tokens written in {seconds:.1} s ({:.0} tokens/s){}",
        jobs.len(),
        written as f64 / seconds.max(1e-9),
        match skipped {
            0 => String::new(),
            n => format!(", {n} skipped"),
        }
    );
    // The shards' folders, in the order of --data: one source each, as before.
    let mut folders: Vec<String> = Vec::new();
    for job in &jobs {
        let dir = job
            .output
            .parent()
            .unwrap_or(&args.out)
            .display()
            .to_string();
        if !folders.contains(&dir) {
            folders.push(dir);
        }
    }
    println!(
        "train on them: berthash pretrain --data {}{}",
        folders.join(" "),
        match &args.tokenizer {
            Some(t) => format!(" --tokenizer {}", t.display()),
            None => String::new(),
        }
    );
    Ok(())
}
