//! `berthash finetune`: fine-tune on a GLUE-style task described by a TOML config
//! (configs/glue/<task>.toml), evaluating every epoch and keeping the best model.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berthash_data::builtin_task;
use berthash_train::run_dir::saved_config;
use berthash_train::Precision;
use berthash_train::{resolve_model, FinetuneConfig, Init, RunMode};

use crate::recipe;
use crate::runs::RunFlags;

#[derive(Debug, Clone, clap::Args)]
pub struct TaskArgs {
    /// The task recipe (configs/glue/<task>.toml, or your own).
    #[arg(long)]
    pub config: PathBuf,
    /// The task's data: GLUE tsv files (train.tsv, dev.tsv) or a Hugging Face parquet export.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// Evaluate on the first N examples of each dev split.
    #[arg(long)]
    pub max_eval_samples: Option<usize>,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// The pre-trained model: a Hugging Face dir (ours or a published BERT Hash dir), a
    /// pre-training run or a checkpoint.
    #[arg(long, required_unless_present_any = ["scratch", "resume"])]
    pub model: Option<PathBuf>,
    /// Start from a freshly initialised preset instead of a pre-trained model (a baseline).
    #[arg(long, value_parser = ["femto", "pico", "nano"], conflicts_with = "model")]
    pub scratch: Option<String>,
    /// The run directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunFlags,
    #[arg(long)]
    pub epochs: Option<f64>,
    /// The peak learning rate (`sweep`: a comma-separated grid).
    #[arg(long, value_delimiter = ',')]
    pub lr: Vec<f64>,
    /// Rows per batch (`sweep`: a comma-separated grid).
    #[arg(long, value_delimiter = ',')]
    pub batch_size: Vec<usize>,
    /// The seed (`sweep`: comma-separated seeds, one run each).
    #[arg(long, alias = "seeds", value_delimiter = ',')]
    pub seed: Vec<u64>,
    /// Train on the first N training examples.
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Evaluate every N steps (besides every epoch).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Checkpoint every N steps (besides every evaluation).
    #[arg(long)]
    pub save_every: Option<u64>,
    /// Checkpoints kept (the newest).
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// The metric that picks the best model (run_glue's names, with or without `eval_`:
    /// accuracy, f1, matthews_correlation, pearson, spearmanr, combined_score, loss).
    #[arg(long)]
    pub metric_for_best_model: Option<String>,
    /// Whether a larger value of that metric is better (default: true, false for loss).
    #[arg(long)]
    pub greater_is_better: Option<bool>,
    /// After training, predict the task's test splits with the best model and write the GLUE
    /// leaderboard files (`SST-2.tsv`, …) into the run directory.
    #[arg(long)]
    pub do_predict: bool,
    /// Stop after N evaluations without improvement of the best-model metric.
    #[arg(long)]
    pub early_stopping_patience: Option<u64>,
    /// The improvement that resets the patience (default 0).
    #[arg(long)]
    pub early_stopping_threshold: Option<f64>,
    /// Where the curves go besides metrics.jsonl: tensorboard (event files in the run
    /// directory) or none.
    #[arg(long, value_parser = ["tensorboard", "none"])]
    pub report_to: Option<String>,
    /// Compute precision: f32, bf16 or f16 (f32 master weights).
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Write every training batch (safetensors) and the initial model (FILE.init/) here, to
    /// replay the run in PyTorch (tests/python/parity_checks/training.py).
    #[arg(long, value_name = "FILE")]
    pub dump_batches: Option<PathBuf>,
}

/// Reads a task recipe over the run_glue defaults, with `overlay` (flags) on top. `init` is
/// where the model comes from and `tokenizer` the resolved tokenizer file.
pub fn resolve_task(
    args: &TaskArgs,
    init: Init,
    tokenizer: &Path,
    overlay: toml::Table,
) -> anyhow::Result<FinetuneConfig> {
    let source = args.config.display().to_string();
    let mut file = recipe::read_table(&args.config)?;
    let task = match file.remove("task") {
        Some(toml::Value::String(name)) => builtin_task(&name).with_context(|| {
            format!("{source}: unknown task {name:?} (known: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli; or describe it in a [task] table)")
        })?,
        Some(toml::Value::Table(spec)) => recipe::from_table(spec, &format!("{source} [task]"))?,
        Some(other) => bail!("{source}: `task` must be a task name or a [task] table, found {}", other.type_str()),
        None => bail!("{source}: missing `task` (a task name such as \"sst2\", or a [task] table)"),
    };
    let data_dir = match (&args.data_dir, file.remove("data_dir")) {
        (Some(dir), _) => dir.clone(),
        (None, Some(toml::Value::String(dir))) => PathBuf::from(dir),
        _ => bail!("where is the task's data? pass --data-dir (a folder with train.tsv and dev.tsv, or a parquet export)"),
    };
    let mut defaults = FinetuneConfig::new(task, data_dir, tokenizer.to_path_buf(), PathBuf::new());
    defaults.init = init;
    let mut table = recipe::to_table(&defaults)?;
    let init = table.remove("init").expect("the defaults name the model");
    recipe::merge(&mut table, file);
    // The model comes from --model or --scratch, whatever the recipe says.
    table.insert("init".into(), init);
    let task_flags = recipe::Overlay::default()
        .set("max_seq_length", args.max_seq_length)
        .set("max_eval_samples", args.max_eval_samples);
    recipe::merge(&mut table, task_flags.into_table());
    recipe::merge(&mut table, overlay);
    recipe::from_table(table, &source)
}

impl FinetuneArgs {
    /// The flags as recipe keys.
    fn overlay(&self) -> toml::Table {
        recipe::Overlay::default()
            .set("epochs", self.epochs)
            .set("optimizer.lr", self.lr.first().copied())
            .set("train.batch_size", self.batch_size.first().copied())
            .set("train.seed", self.seed.first().copied())
            .set("max_train_samples", self.max_train_samples)
            .set("train.max_steps", self.max_steps)
            .set("train.eval_every", self.eval_every)
            .set("train.save_every", self.save_every)
            .set("train.keep_checkpoints", self.keep_checkpoints)
            .set(
                "metric_for_best_model",
                self.metric_for_best_model.as_deref(),
            )
            .set("greater_is_better", self.greater_is_better)
            .set("early_stopping_patience", self.early_stopping_patience)
            .set("early_stopping_threshold", self.early_stopping_threshold)
            .set("do_predict", self.do_predict.then_some(true))
            .set("train.precision", self.precision.map(Precision::name))
            .set("train.report_to", self.report_to.as_deref())
            .set("train.dump_batches", self.dump_batches.as_deref())
            .into_table()
    }
}

/// What `--resume` cannot change beside the recipe keys: the task, the data, the model.
fn resume_conflicts(args: &FinetuneArgs, saved: &FinetuneConfig) -> anyhow::Result<Vec<String>> {
    let mut conflicts = Vec::new();
    let task = recipe::read_table(&args.task.config)?
        .get("task")
        .and_then(|t| t.as_str().map(str::to_string));
    if task.as_ref().is_some_and(|t| *t != saved.task.name) {
        let (file, saved) = (args.task.config.display(), &saved.task.name);
        conflicts.push(format!(
            "--config {file} (task {task:?}; the run fine-tunes {saved})"
        ));
    }
    if let Some(dir) = args
        .task
        .data_dir
        .as_ref()
        .filter(|d| **d != saved.data_dir)
    {
        conflicts.push(format!(
            "--data-dir {} (the run reads {})",
            dir.display(),
            saved.data_dir.display()
        ));
    }
    let init = match (&args.model, &args.scratch) {
        (Some(path), _) => Some(Init::Model(resolve_model(path)?)),
        (None, Some(size)) => Some(Init::Scratch(size.clone())),
        (None, None) => None,
    };
    if init.as_ref().is_some_and(|i| *i != saved.init) {
        conflicts.push(format!(
            "--model/--scratch (the run started from {:?})",
            saved.init
        ));
    }
    if args
        .task
        .tokenizer
        .as_ref()
        .is_some_and(|t| *t != saved.tokenizer)
    {
        conflicts.push("--tokenizer (the run keeps its tokenizer)".into());
    }
    Ok(conflicts)
}

pub fn run(args: FinetuneArgs) -> anyhow::Result<()> {
    crate::backend::require(args.run.backend)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let task = args
            .task
            .config
            .file_stem()
            .map_or("task".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("runs/finetune-{task}"))
    });
    crate::runs::in_run_dir(&out, || finetune(&args, &out))
}

fn finetune(args: &FinetuneArgs, out: &Path) -> anyhow::Result<()> {
    for (flag, n) in [
        ("--lr", args.lr.len()),
        ("--batch-size", args.batch_size.len()),
        ("--seed", args.seed.len()),
    ] {
        if n > 1 {
            bail!("{flag} takes one value here; `berthash sweep` runs a grid of them");
        }
    }
    let mode = crate::runs::mode(out, &args.run)?;
    let inputs = crate::runs::Inputs::new(out, args.run.print_config)?;
    let config: FinetuneConfig = if mode == RunMode::Resume {
        let saved: FinetuneConfig = saved_config(out)?;
        let mut flags = args.overlay();
        let task = recipe::Overlay::default()
            .set("max_seq_length", args.task.max_seq_length)
            .set("max_eval_samples", args.task.max_eval_samples);
        recipe::merge(&mut flags, task.into_table());
        crate::runs::check_resume(&saved, &flags, resume_conflicts(args, &saved)?)?;
        saved
    } else {
        let (init, model_dir) = match (&args.model, &args.scratch) {
            (Some(path), _) => {
                let dir = resolve_model(path)?;
                (Init::Model(dir.clone()), Some(dir))
            }
            (None, Some(size)) => (Init::Scratch(size.clone()), None),
            (None, None) => unreachable!("clap requires --model or --scratch"),
        };
        let tokenizer = crate::tokenizer::file(
            args.task.tokenizer.as_deref(),
            model_dir.as_deref(),
            inputs.path(),
        )?;
        resolve_task(&args.task, init, &tokenizer, args.overlay())?
    };
    let Some(summary) = crate::runs::train(config, out, mode, &args.run)? else {
        return Ok(());
    };
    crate::runs::print_best(out, &summary);
    Ok(())
}
