//! `berthash eval`: dev-set metrics of a fine-tuned model (no training).

use std::path::PathBuf;

use berthash_data::TokenizerHandle;
use berthash_model::BertHashForSequenceClassification;
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
    let dir = crate::runs::resolve_model_dir(&args.model)?;
    let scratch = std::env::temp_dir().join(format!("berthash-eval-{}", std::process::id()));
    let tokenizer_file =
        crate::tokenizer::file(args.task.tokenizer.as_deref(), Some(&dir), &scratch)?;
    let config = resolve_task(&args.task, &dir, &tokenizer_file, toml::Table::new())?;
    let tokenizer = TokenizerHandle::from_file(&tokenizer_file)?;
    let device = Default::default();
    let loaded = crate::runs::load_trained::<BertHashForSequenceClassification<B>>(
        &dir,
        "classifier.",
        "no trained classifier; fine-tune it first",
    )?;
    if loaded.config.num_labels() != config.task.num_labels() {
        anyhow::bail!(
            "{} has {} labels but task {} has {}",
            dir.display(),
            loaded.config.num_labels(),
            config.task.name,
            config.task.num_labels()
        );
    }
    let splits = berthash_train::finetune::dev_splits(&config, &tokenizer)?;
    let (metrics, predictions) =
        berthash_train::finetune::evaluate_splits(&loaded.model, &config, &splits, &device);
    let _ = std::fs::remove_dir_all(&scratch);
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    if let Some(out) = args.out {
        std::fs::create_dir_all(&out)?;
        berthash_train::run_dir::write_json(&out.join("eval_results.json"), &metrics)?;
        berthash_train::finetune::write_predictions(
            &out.join("predictions.tsv"),
            &loaded.config,
            &predictions,
        )?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
