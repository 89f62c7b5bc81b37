//! `berthash eval`: dev-set metrics of a fine-tuned model (no training).

use std::path::PathBuf;

use anyhow::Context;
use berthash_data::TokenizerHandle;
use berthash_model::{load_trained, BertHashForSequenceClassification};
use berthash_train::eval::{check_labels, dev_splits, evaluate_splits, write_predictions};
use berthash_train::run_dir::{write_json, EVAL_RESULTS, PREDICTIONS};
use berthash_train::{resolve_model, Init, RunRecords};
use burn::backend::Flex;

use crate::commands::finetune::{resolve_task, TaskArgs};

type B = Flex;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A fine-tuned model: a model dir, a fine-tuning run (its best model) or a checkpoint.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub task: TaskArgs,
    /// Also write the metrics (eval_results.json layout) and dev predictions here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let dir = resolve_model(&args.model)?;
    let scratch = crate::runs::scratch_dir("eval")?;
    let tokenizer_file =
        crate::tokenizer::file(args.task.tokenizer.as_deref(), Some(&dir), scratch.path())?;
    let init = Init::Model(dir.clone());
    let config = resolve_task(&args.task, init, &tokenizer_file, toml::Table::new())?;
    let tokenizer = TokenizerHandle::from_file(&tokenizer_file)?;
    let device = Default::default();
    let loaded = load_trained::<B, BertHashForSequenceClassification<B>>(&dir, &device)?;
    check_labels(&loaded.config, &config)?;
    let trained_on = RunRecords::find(&dir).config;
    let trained_on = trained_on.as_ref().and_then(|c| c["task"]["name"].as_str());
    if let Some(task) = trained_on.filter(|t| *t != config.task.name) {
        tracing::warn!(
            "{} was fine-tuned on {task}, and is evaluated on {}",
            dir.display(),
            config.task.name
        );
    }
    config.check_model(&loaded.config, &tokenizer)?;
    let splits = dev_splits(&config, &tokenizer)?;
    let (metrics, predictions) = evaluate_splits(&loaded.model, &config, &splits, &device);
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    if let Some(out) = args.out {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        write_json(&out.join(EVAL_RESULTS), &metrics)?;
        write_predictions(&out.join(PREDICTIONS), &loaded.config, &predictions)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
