//! `berthash finetune`: fine-tune on a GLUE-style task described by a TOML config
//! (configs/glue/<task>.toml), evaluating every epoch and keeping the best model.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berthash_data::builtin_task;
use berthash_kernels::TrainBackend;
use berthash_model::pretrained::{init_model, WEIGHTS_FILE};
use berthash_model::{save, BertHashConfig, BertHashForMaskedLM, ModelOptions};
use berthash_train::{FinetuneConfig, RunMode};
use burn::backend::Flex;

use crate::backend::{BackendKind, BackendTask};
use crate::recipe;

#[derive(Debug, clap::Args)]
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

#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// The pre-trained model: a Hugging Face dir (ours or a published BERT Hash dir), a
    /// pre-training run or a checkpoint.
    #[arg(long, required_unless_present = "scratch")]
    pub model: Option<PathBuf>,
    /// Start from a freshly initialised preset instead of a pre-trained model (a baseline).
    #[arg(long, value_parser = ["femto", "pico", "nano"], conflicts_with = "model")]
    pub scratch: Option<String>,
    /// The run directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    #[arg(long)]
    pub epochs: Option<f64>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train on the first N training examples.
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    #[arg(long)]
    pub max_steps: Option<u64>,
    #[arg(long, value_parser = ["f32", "bf16", "f16"])]
    pub precision: Option<String>,
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    #[arg(long)]
    pub overwrite: bool,
    /// Print the resolved config (defaults, recipe, --config, flags) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Write every training batch (safetensors) and the initial model (FILE.init/) here, to
    /// replay the run in PyTorch (tests/python/parity_checks/training.py).
    #[arg(long, value_name = "FILE")]
    pub dump_batches: Option<PathBuf>,
}

/// Reads a task recipe over the run_glue defaults, with `overlay` (flags) on top.
/// `model` and `tokenizer` are the resolved paths.
pub fn resolve_task(
    args: &TaskArgs,
    model: &Path,
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
    let defaults =
        FinetuneConfig::new(task, data_dir, tokenizer.to_path_buf(), model.to_path_buf());
    let mut table = recipe::to_table(&defaults)?;
    recipe::merge(&mut table, file);
    let mut overlay = overlay;
    if let Some(n) = args.max_seq_length {
        recipe::set(&mut overlay, "max_seq_length", n as i64);
    }
    if let Some(n) = args.max_eval_samples {
        recipe::set(&mut overlay, "max_eval_samples", n as i64);
    }
    recipe::merge(&mut table, overlay);
    recipe::from_table(table, &source)
}

impl FinetuneArgs {
    fn overlay(&self) -> toml::Table {
        let mut t = toml::Table::new();
        if let Some(v) = self.epochs {
            recipe::set(&mut t, "epochs", v);
        }
        if let Some(v) = self.lr {
            recipe::set(&mut t, "optimizer.lr", v);
        }
        if let Some(v) = self.batch_size {
            recipe::set(&mut t, "train.batch_size", v as i64);
        }
        if let Some(v) = self.seed {
            recipe::set(&mut t, "train.seed", v as i64);
        }
        if let Some(v) = self.max_train_samples {
            recipe::set(&mut t, "max_train_samples", v as i64);
        }
        if let Some(v) = self.max_steps {
            recipe::set(&mut t, "train.max_steps", v as i64);
        }
        if let Some(v) = &self.precision {
            recipe::set(&mut t, "train.precision", v.as_str());
        }
        if let Some(v) = &self.dump_batches {
            recipe::set(&mut t, "train.dump_batches", v.display().to_string());
        }
        t
    }
}

/// A freshly initialised preset, saved as a model dir (the from-scratch baseline).
fn scratch_model(size: &str, seed: u64, dir: &Path) -> anyhow::Result<PathBuf> {
    let config = BertHashConfig::preset(size)?;
    let model: BertHashForMaskedLM<Flex> =
        init_model(&config, ModelOptions::default(), seed, &Default::default());
    save(dir, &config, &model, &Default::default())?;
    Ok(dir.to_path_buf())
}

struct Finetune {
    config: FinetuneConfig,
    out: PathBuf,
    mode: RunMode,
}

impl BackendTask for Finetune {
    type Output = berthash_train::Summary;

    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<Self::Output> {
        Ok(berthash_train::finetune::<B>(
            self.config,
            &self.out,
            &device,
            self.mode,
        )?)
    }
}

pub fn run(args: FinetuneArgs) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| {
        let task = args
            .task
            .config
            .file_stem()
            .map_or("task".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("runs/finetune-{task}"))
    });
    let mode = crate::runs::run_mode(&out, args.resume, args.overwrite)?;
    let config: FinetuneConfig = if mode == RunMode::Resume {
        crate::runs::saved_config(&out, "fine-tuning")?
    } else {
        let inputs = crate::runs::inputs_dir(&out, args.print_config);
        let model = match (&args.model, &args.scratch) {
            (Some(path), _) => crate::runs::resolve_model_dir(path)?,
            (None, Some(size)) => {
                scratch_model(size, args.seed.unwrap_or(42), &inputs.join("scratch-model"))?
            }
            (None, None) => unreachable!("clap requires --model or --scratch"),
        };
        let tokenizer =
            crate::tokenizer::file(args.task.tokenizer.as_deref(), Some(&model), &inputs)?;
        resolve_task(&args.task, &model, &tokenizer, args.overlay())?
    };
    if args.print_config {
        print!("{}", toml::to_string(&config.resolve()?)?);
        let _ = std::fs::remove_dir_all(crate::runs::inputs_dir(&out, true));
        return Ok(());
    }
    if !config.model.join(WEIGHTS_FILE).is_file() {
        bail!("{}: no model.safetensors", config.model.display());
    }
    let summary = crate::backend::run(
        args.backend,
        Finetune {
            config,
            out: out.clone(),
            mode,
        },
    )?;
    println!(
        "done: {} steps in {:.1}s",
        summary.steps, summary.wall_time_s
    );
    let results = std::fs::read_to_string(out.join("eval_results.json")).unwrap_or_default();
    println!(
        "eval_results.json (best model, in {}):\n{results}",
        out.join("best").display()
    );
    Ok(())
}
