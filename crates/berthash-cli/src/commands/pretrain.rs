//! `berthash pretrain`: masked-LM pre-training of femto / pico / nano. The recipe is the preset's
//! `configs/pretrain/<size>.toml` (built in), then `--config`, then the flags.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berthash_data::{CorpusConfig, CorpusSource, PretrainStreamConfig};
use berthash_model::BertHashConfig;
use berthash_train::run_dir::saved_config;
use berthash_train::Precision;
use berthash_train::{PretrainConfig, RunMode};

use crate::assets;
use crate::recipe;
use crate::runs::{LoopFlags, RunFlags};

#[derive(Debug, clap::Args)]
pub struct PretrainArgs {
    /// Model size (a preset); may also come from the config file's `size`.
    #[arg(long, value_parser = ["femto", "pico", "nano"])]
    pub size: Option<String>,
    /// A TOML recipe overriding the preset's (see configs/pretrain/).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Parquet files, token shards (`berthash pretokenize`), folders or globs (repeatable).
    /// Default: the small sample built into berthash.
    #[arg(long, num_args = 1..)]
    pub data: Vec<String>,
    /// The text column of --data (wikipedia and bookcorpus: `text`).
    #[arg(long)]
    pub text_column: Option<String>,
    /// A tokenizer.json (default: the built-in bert-base-uncased).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The run directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunFlags,
    /// Where the curves go besides metrics.jsonl: tensorboard (event files in the run
    /// directory) or none.
    #[arg(long, value_parser = ["tensorboard", "none"])]
    pub report_to: Option<String>,
    /// Compute precision: f32, bf16 or f16 (f32 master weights).
    #[arg(long)]
    pub precision: Option<Precision>,
    #[command(flatten)]
    pub steps: LoopFlags,
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Log (loss, lr, tokens/s) every N steps.
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Write every training batch (safetensors) and the initial model (FILE.init/) here, to
    /// replay the run in PyTorch (tests/python/parity_checks/training.py).
    #[arg(long, value_name = "FILE")]
    pub dump_batches: Option<PathBuf>,
}

impl PretrainArgs {
    /// The flags as recipe keys.
    fn overlay(&self) -> toml::Table {
        self.steps
            .overlay()
            .set("schedule.warmup_steps", self.warmup_steps)
            .set("optimizer.weight_decay", self.weight_decay)
            .set("train.grad_accum", self.grad_accum)
            .set("train.log_every", self.log_every)
            .set("train.precision", self.precision.map(Precision::name))
            .set("train.report_to", self.report_to.as_deref())
            .set("train.dump_batches", self.dump_batches.as_deref())
            .into_table()
    }
}

/// What `--resume` cannot change beside the recipe keys: the model, the recipe file, the data.
fn resume_conflicts(args: &PretrainArgs, saved: &PretrainConfig) -> anyhow::Result<Vec<String>> {
    let mut conflicts = Vec::new();
    if let Some(size) = &args.size {
        let preset = BertHashConfig::preset(size)?;
        if berthash_train::checkpoint::shape_difference(&preset, &saved.model).is_some() {
            conflicts.push(format!("--size {size} (the run trains another model)"));
        }
    }
    if let Some(path) = &args.config {
        conflicts.push(format!(
            "--config {} (the run keeps its own recipe)",
            path.display()
        ));
    }
    let sources: Vec<&String> = saved
        .data
        .corpus
        .sources
        .iter()
        .flat_map(|s| &s.paths_or_globs)
        .collect();
    if !args.data.is_empty() && args.data.iter().collect::<Vec<_>>() != sources {
        conflicts.push(format!(
            "--data {} (the run reads {sources:?})",
            args.data.join(" ")
        ));
    }
    if args
        .tokenizer
        .as_ref()
        .is_some_and(|t| *t != saved.data.tokenizer)
    {
        conflicts.push("--tokenizer (the run keeps its tokenizer)".into());
    }
    Ok(conflicts)
}

/// Builds the resolved config: defaults, the preset's recipe, `--config`, the flags.
pub fn resolve(args: &PretrainArgs, inputs: &Path) -> anyhow::Result<PretrainConfig> {
    let mut file = match &args.config {
        Some(path) => Some((recipe::read_table(path)?, path.display().to_string())),
        None => None,
    };
    let file_size = file
        .as_mut()
        .and_then(|(t, _)| t.remove("size"))
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .context("`size` must be a string")
        })
        .transpose()?;
    let Some(size) = args.size.clone().or(file_size) else {
        bail!("choose a model size: --size femto|pico|nano (or `size = \"…\"` in --config)");
    };
    let model = BertHashConfig::preset(&size)?;

    // Data the recipe does not name: the built-in sample corpus and tokenizer, written into the
    // run directory so the run is self-contained.
    let tokenizer = match &args.tokenizer {
        Some(path) => path.clone(),
        None => assets::write_tokenizer(&inputs.join("tokenizer"))
            .with_context(|| format!("writing the tokenizer into {}", inputs.display()))?,
    };
    let sources = if args.data.is_empty() {
        let dir = assets::write_sample_corpus(&inputs.join("sample"))
            .with_context(|| format!("writing the sample corpus into {}", inputs.display()))?;
        vec![CorpusSource::new(&[&dir.display().to_string()])]
    } else {
        let paths: Vec<&str> = args.data.iter().map(String::as_str).collect();
        vec![CorpusSource::new(&paths)]
    };
    let mut sources = sources;
    if let Some(column) = &args.text_column {
        sources
            .iter_mut()
            .for_each(|s| s.text_column = column.clone());
    }
    let data = PretrainStreamConfig::new(CorpusConfig::new(sources), tokenizer);

    let mut table = recipe::to_table(&PretrainConfig::new(model, data))?;
    let mut builtin = recipe::parse_table(
        assets::pretrain_recipe(&size).expect("a preset has a recipe"),
        &format!("configs/pretrain/{size}.toml"),
    )?;
    builtin.remove("size");
    recipe::merge(&mut table, builtin);
    let mut source = "the built-in recipe".to_string();
    if let Some((user, name)) = file {
        recipe::merge(&mut table, user);
        source = name;
    }
    recipe::merge(&mut table, args.overlay());
    let config: PretrainConfig = recipe::from_table(table, &source)?;
    recipe::check_model_keys(&config.model.extra, &source)?;
    Ok(config)
}

pub fn run(args: PretrainArgs) -> anyhow::Result<()> {
    crate::backend::require(args.run.backend)?;
    let size = args.size.clone().unwrap_or_else(|| "model".into());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/pretrain-{size}")));
    crate::runs::in_run_dir(&out, || pretrain(&args, &out))
}

fn pretrain(args: &PretrainArgs, out: &Path) -> anyhow::Result<()> {
    let mode = crate::runs::mode(out, &args.run)?;
    let inputs = crate::runs::Inputs::new(out, args.run.print_config)?;
    let config = if mode == RunMode::Resume {
        let saved: PretrainConfig = saved_config(out)?;
        crate::runs::check_resume(&saved, &args.overlay(), resume_conflicts(args, &saved)?)?;
        saved
    } else {
        resolve(args, inputs.path())?
    };
    let Some(summary) = crate::runs::train(config, out, mode, &args.run)? else {
        return Ok(());
    };
    println!(
        "done: {} steps, {} tokens in {:.1}s ({:.0} tokens/s), final loss {:.4}",
        summary.steps,
        summary.tokens_seen,
        summary.wall_time_s,
        summary.tokens_per_s,
        summary.final_loss.unwrap_or(f64::NAN)
    );
    println!("model: {}", summary.model_dir.display());
    Ok(())
}
