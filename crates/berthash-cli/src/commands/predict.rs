//! `berthash predict`: labels and scores of a fine-tuned classifier for texts given on the
//! command line or in a file (one example a line; a tab separates the two texts of a pair).

use std::path::PathBuf;

use anyhow::{bail, Context};
use berthash_data::{encode_examples, GlueExample, Padding, TokenizerHandle};
use berthash_model::{load_trained, BertHashForSequenceClassification};
use berthash_train::config::check_vocab;
use berthash_train::eval::{check_labels, predict_test_splits};
use berthash_train::{resolve_model, Init};

use crate::commands::finetune::{resolve_task, TaskArgs};
use berthash_train::tensors::classification_tensors;
use burn::backend::Flex;
use burn::tensor::activation::softmax;

type B = Flex;

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// A fine-tuned model: a model dir, a fine-tuning run (its best model) or a checkpoint.
    #[arg(long)]
    pub model: PathBuf,
    /// The task recipe, for max_seq_length (default 128).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A file with one example per line (`text` or `text_a<TAB>text_b`).
    #[arg(long, conflicts_with = "texts")]
    pub input: Option<PathBuf>,
    /// Examples (`text_a<TAB>text_b` for pairs).
    #[arg(required_unless_present_any = ["input", "split"])]
    pub texts: Vec<String>,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Predict a split of the task instead of texts: `test` (GLUE's test files or the Hugging
    /// Face export's test split in --data-dir) writes the GLUE leaderboard files into --out.
    #[arg(long, value_parser = ["test"], requires_all = ["config", "data_dir", "out"])]
    pub split: Option<String>,
    /// The task's data folder (with --split).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where the leaderboard files go (with --split).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let dir = resolve_model(&args.model)?;
    if args.split.is_some() {
        return predict_test(&args, &dir);
    }
    let tokenizer = crate::tokenizer::load(args.tokenizer.as_deref(), Some(&dir))?;
    let max_seq_length = match &args.config {
        Some(path) => crate::recipe::read_table(path)?
            .get("max_seq_length")
            .and_then(toml::Value::as_integer)
            .map_or(128, |n| n as usize),
        None => 128,
    };
    let lines: Vec<String> = match &args.input {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        None => args.texts.clone(),
    };
    let examples: Vec<GlueExample> = lines
        .iter()
        .map(|line| {
            let (a, b) = match line.split_once('\t') {
                Some((a, b)) => (a.to_string(), Some(b.to_string())),
                None => (line.clone(), None),
            };
            GlueExample {
                text_a: a,
                text_b: b,
                label: None,
            }
        })
        .collect();
    if examples.is_empty() {
        bail!("nothing to predict: give texts or --input FILE");
    }
    let device = Default::default();
    let loaded = load_trained::<B, BertHashForSequenceClassification<B>>(&dir, &device)?;
    check_vocab(&tokenizer, &loaded.config)?;
    let positions = loaded.config.max_position_embeddings;
    if max_seq_length > positions {
        bail!("max_seq_length {max_seq_length} exceeds the model's max_position_embeddings {positions}");
    }
    let labels = loaded.config.labels();
    let regression = loaded.config.is_regression();
    let encoded = encode_examples(&tokenizer, &examples, max_seq_length, Padding::Longest)?;
    let mut row = 0;
    for batch in encoded.batches(64) {
        let tensors = classification_tensors::<B>(&batch, &device);
        let (_, logits) = loaded.model.forward(tensors.input);
        let n = tensors.rows;
        if regression {
            let scores = logits.into_data().to_vec::<f32>().expect("f32 scores");
            for score in scores {
                println!("{score:.4}\t{}", lines[row]);
                row += 1;
            }
        } else {
            let probs = softmax(logits, 1)
                .into_data()
                .to_vec::<f32>()
                .expect("f32 probabilities");
            for p in probs.chunks(labels.len()).take(n) {
                let (best, score) = p.iter().copied().enumerate().fold((0, f32::MIN), |a, b| {
                    if b.1 > a.1 {
                        b
                    } else {
                        a
                    }
                });
                println!("{}\t{score:.4}\t{}", labels[best], lines[row]);
                row += 1;
            }
        }
    }
    Ok(())
}

/// `--split test`: the task's test splits, as GLUE leaderboard files in `--out`.
fn predict_test(args: &PredictArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let (Some(config), Some(out)) = (&args.config, &args.out) else {
        bail!("--split needs --config and --out");
    };
    let scratch = crate::runs::scratch_dir("predict")?;
    let tokenizer_file =
        crate::tokenizer::file(args.tokenizer.as_deref(), Some(dir), scratch.path())?;
    let task = TaskArgs {
        config: config.clone(),
        data_dir: args.data_dir.clone(),
        max_seq_length: None,
        max_eval_samples: None,
        tokenizer: args.tokenizer.clone(),
    };
    let init = Init::Model(dir.to_path_buf());
    let config = resolve_task(&task, init, &tokenizer_file, toml::Table::new())?;
    let tokenizer = TokenizerHandle::from_file(&tokenizer_file)?;
    let device = Default::default();
    let loaded = load_trained::<B, BertHashForSequenceClassification<B>>(dir, &device)?;
    check_labels(&loaded.config, &config)?;
    config.check_model(&loaded.config, &tokenizer)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let written = predict_test_splits(
        &loaded.model,
        &loaded.config,
        &config,
        &tokenizer,
        out,
        &device,
    )?;
    if written.is_empty() {
        bail!(
            "{}: no test split of task {} found",
            config.data_dir.display(),
            config.task.name
        );
    }
    for file in written {
        println!("wrote {}", file.display());
    }
    Ok(())
}
