//! `berthash train-embeddings`: a sentence-embedding model from a pre-trained encoder, trained on
//! text pairs with sentence-transformers' losses (configs/embeddings/*.toml), evaluated every
//! epoch by the Spearman correlation of cosine similarity with the gold scores.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berthash_train::run_dir::saved_config;
use berthash_train::sentence_loss::SentenceLoss;
use berthash_train::{resolve_model, EmbeddingsConfig, PairData, RunMode};

use crate::recipe;
use crate::runs::{LoopFlags, RunFlags};

#[derive(Debug, Clone, clap::Args)]
pub struct TrainEmbeddingsArgs {
    /// The recipe: `[data]` (files and columns), `[loss]`, pooling and the training keys.
    #[arg(long)]
    pub config: PathBuf,
    /// The pre-trained model: a model dir, a run (its best or final model) or a checkpoint.
    #[arg(long, required_unless_present = "resume")]
    pub model: Option<PathBuf>,
    /// The folder holding the pair files the recipe names.
    #[arg(long, required_unless_present = "resume")]
    pub data_dir: Option<PathBuf>,
    /// The run directory [default: runs/embeddings-<config name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunFlags,
    /// Passes over the training pairs.
    #[arg(long)]
    pub epochs: Option<f64>,
    #[command(flatten)]
    pub steps: LoopFlags,
}

impl TrainEmbeddingsArgs {
    /// The flags as recipe keys.
    fn overlay(&self) -> toml::Table {
        self.steps.overlay().set("epochs", self.epochs).into_table()
    }
}

pub fn run(args: TrainEmbeddingsArgs) -> anyhow::Result<()> {
    crate::backend::require(args.run.backend)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let name = args
            .config
            .file_stem()
            .map_or("pairs".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("runs/embeddings-{name}"))
    });
    crate::runs::in_run_dir(&out, || train(&args, &out))
}

fn train(args: &TrainEmbeddingsArgs, out: &Path) -> anyhow::Result<()> {
    let mode = crate::runs::mode(out, &args.run)?;
    let inputs = crate::runs::Inputs::new(out, args.run.print_config)?;
    let config = if mode == RunMode::Resume {
        let saved: EmbeddingsConfig = saved_config(out)?;
        let mut conflicts = Vec::new();
        if let Some(model) = &args.model {
            if resolve_model(model)? != saved.model {
                conflicts.push(format!(
                    "--model (the run starts from {})",
                    saved.model.display()
                ));
            }
        }
        if args.data_dir.as_ref().is_some_and(|d| *d != saved.data_dir) {
            conflicts.push(format!(
                "--data-dir (the run reads {})",
                saved.data_dir.display()
            ));
        }
        crate::runs::check_resume(&saved, &args.overlay(), conflicts)?;
        saved
    } else {
        resolve(args, inputs.path())?
    };
    let Some(summary) = crate::runs::train(config, out, mode, &args.run)? else {
        return Ok(());
    };
    crate::runs::print_best(out, &summary);
    Ok(())
}

/// The recipe file, the model and data the flags name, then the flags.
fn resolve(args: &TrainEmbeddingsArgs, inputs: &Path) -> anyhow::Result<EmbeddingsConfig> {
    let source = args.config.display().to_string();
    let mut file = recipe::read_table(&args.config)?;
    let (Some(model), Some(data_dir)) = (&args.model, &args.data_dir) else {
        bail!("--model and --data-dir are needed to start a run");
    };
    let model = resolve_model(model)?;
    let tokenizer = crate::tokenizer::file(None, Some(&model), inputs)?;
    let data: PairData = match file.remove("data") {
        Some(toml::Value::Table(t)) => recipe::from_table(t, &format!("{source} [data]"))?,
        _ => bail!("{source}: needs a [data] table (train, text_a, text_b, score, ...)"),
    };
    let loss: SentenceLoss = match file.remove("loss") {
        Some(toml::Value::Table(t)) => recipe::from_table(t, &format!("{source} [loss]"))?,
        _ => bail!("{source}: needs a [loss] table (kind = \"cosent\", \"cosine_similarity\" or \"multiple_negatives_ranking\")"),
    };
    if !data_dir.join(&data.train).is_file() {
        bail!(
            "{source} [data] train: no file {}",
            data_dir.join(&data.train).display()
        );
    }
    let defaults = EmbeddingsConfig::new(model, tokenizer, data_dir.clone(), data, loss);
    let mut table = recipe::to_table(&defaults)?;
    recipe::merge(&mut table, file);
    recipe::merge(&mut table, args.overlay());
    recipe::from_table(table, &source).context("the resolved config")
}
