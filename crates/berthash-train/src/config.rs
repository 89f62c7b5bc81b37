//! The public configuration the CLI maps its flags onto. Every struct is serde with
//! `deny_unknown_fields`; defaults are the reference recipes (model card pre-training run,
//! `run_glue` fine-tuning). The resolved config of a run is saved in its run directory.

use std::path::{Path, PathBuf};

use berthash_data::{LabelSpec, Padding, PretrainStreamConfig, TaskSpec, TokenizerHandle};
use berthash_model::BertHashConfig;
use serde::{Deserialize, Serialize};

use crate::best::{Criterion, Goal};
use crate::embed::Pooling;
use crate::error::{Result, TrainError};
use crate::optim::OptimizerConfig;
use crate::precision::Precision;
use crate::run::Recipe;
use crate::schedule::ScheduleConfig;
use crate::sentence_loss::SentenceLoss;

/// What to do when a step's loss (or gradient norm) is not finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// Stop with an error; the last checkpoint (all of whose steps were finite) stays.
    #[default]
    Stop,
    /// Skip the update (no parameter or optimizer-state change), log it, go on. Costs one host
    /// sync per step (the loss is read every step instead of every `log_every` steps).
    Skip,
}

/// Where a run reports its curves besides `metrics.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportTo {
    /// TensorBoard event files in the run directory.
    #[default]
    Tensorboard,
    None,
}

/// The loop's knobs, shared by pre-training and fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps. Pre-training needs it; fine-tuning derives it from `epochs` when absent.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Rows per micro-batch (the effective batch is `batch_size * grad_accum`).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step; each micro-batch loss is scaled by `1 / grad_accum`.
    #[serde(default = "default_one")]
    pub grad_accum: usize,
    /// Seeds model initialisation, dropout and fine-tuning shuffles.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Checkpoint every N steps (0 = only at the end).
    #[serde(default = "default_save_every")]
    pub save_every: u64,
    /// Evaluate every N steps (0 = only at the end).
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// Read the loss and write a metrics line every N steps.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Checkpoints kept (the newest ones); at least 1.
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    #[serde(default)]
    pub precision: Precision,
    #[serde(default)]
    pub on_nonfinite: OnNonFinite,
    /// `tensorboard` (event files in the run directory) or `none`.
    #[serde(default)]
    pub report_to: ReportTo,
    /// Write every training batch and the initial model here, for replaying the run in PyTorch
    /// (see [`crate::dump`]; fresh runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_batches: Option<PathBuf>,
}

fn default_batch_size() -> usize {
    64
}
fn default_one() -> usize {
    1
}
fn default_seed() -> u64 {
    42
}
fn default_save_every() -> u64 {
    1000
}
fn default_eval_every() -> u64 {
    1000
}
fn default_log_every() -> u64 {
    50
}
fn default_keep() -> usize {
    3
}

impl TrainConfig {
    /// The model card's pre-training run: batch 64, seed 42 (`max_steps` must be set).
    pub fn pretraining() -> Self {
        Self {
            max_steps: None,
            batch_size: default_batch_size(),
            grad_accum: 1,
            seed: default_seed(),
            save_every: default_save_every(),
            eval_every: default_eval_every(),
            log_every: default_log_every(),
            keep_checkpoints: default_keep(),
            precision: Precision::F32,
            on_nonfinite: OnNonFinite::Stop,
            report_to: ReportTo::Tensorboard,
            dump_batches: None,
        }
    }

    /// `run_glue` with the card's flags: batch 32, seed 42, f32, evaluation at the end,
    /// checkpoints every 500 steps (`save_steps`); the loss logged every 10 steps, so short runs
    /// have curves too.
    pub fn finetuning() -> Self {
        Self {
            batch_size: 32,
            save_every: 500,
            eval_every: 0,
            log_every: 10,
            ..Self::pretraining()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &str, message: &str| Err(TrainError::config(format!("train.{field}"), message));
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.grad_accum == 0 {
            return bad("grad_accum", "must be at least 1");
        }
        if self.log_every == 0 {
            return bad("log_every", "must be at least 1");
        }
        if self.keep_checkpoints == 0 {
            return bad("keep_checkpoints", "must be at least 1 (resume needs one)");
        }
        if self.max_steps == Some(0) {
            return bad("max_steps", "must be at least 1");
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::pretraining()
    }
}

/// Masked-LM pre-training of a BERT Hash model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// The model shape (e.g. `BertHashConfig::preset("pico")`).
    pub model: BertHashConfig,
    /// Start from the weights of this Hugging Face model directory instead of a fresh init.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// The batch stream; its `batch_size` is set to `train.batch_size`.
    pub data: PretrainStreamConfig,
    #[serde(default = "OptimizerConfig::pretraining")]
    pub optimizer: OptimizerConfig,
    #[serde(default = "ScheduleConfig::pretraining")]
    pub schedule: ScheduleConfig,
    #[serde(default = "TrainConfig::pretraining")]
    pub train: TrainConfig,
    /// Held-out batches evaluated (MLM loss and accuracy on the masked tokens).
    #[serde(default = "default_eval_batches")]
    pub eval_batches: usize,
}

fn default_eval_batches() -> usize {
    16
}

impl PretrainConfig {
    /// The reference recipe for `model` on `data`; set `train.max_steps`.
    pub fn new(model: BertHashConfig, data: PretrainStreamConfig) -> Self {
        Self {
            model,
            init_from: None,
            data,
            optimizer: OptimizerConfig::pretraining(),
            schedule: ScheduleConfig::pretraining(),
            train: TrainConfig::pretraining(),
            eval_batches: default_eval_batches(),
        }
    }

    /// Checks the config and makes the data stream's batch size the training batch size.
    pub fn resolve(mut self) -> Result<Self> {
        self.train.validate()?;
        self.optimizer.validate()?;
        self.model.validate()?;
        if self.train.max_steps.is_none() {
            return Err(TrainError::config(
                "train.max_steps",
                "pre-training needs a number of steps (the corpus stream may be endless)",
            ));
        }
        if self.data.max_length > self.model.max_position_embeddings {
            return Err(TrainError::config(
                "data.max_length",
                format!(
                    "{} tokens per row exceed the model's max_position_embeddings {}",
                    self.data.max_length, self.model.max_position_embeddings
                ),
            ));
        }
        self.data.batch_size = self.train.batch_size;
        Ok(self)
    }

    pub fn max_steps(&self) -> u64 {
        self.train.max_steps.unwrap_or(0)
    }

    /// Refuses a tokenizer with ids beyond the model's vocabulary.
    pub fn check_vocab(&self, tokenizer: &TokenizerHandle) -> Result<()> {
        check_vocab(tokenizer, &self.model)
    }
}

/// Refuses a tokenizer whose ids reach beyond `model`'s vocabulary (an index error later).
pub fn check_vocab(tokenizer: &TokenizerHandle, model: &BertHashConfig) -> Result<()> {
    if tokenizer.vocab_size() > model.vocab_size {
        return Err(TrainError::config(
            "model.vocab_size",
            format!(
                "the tokenizer has {} tokens, the model's vocabulary only {}",
                tokenizer.vocab_size(),
                model.vocab_size
            ),
        ));
    }
    Ok(())
}

/// Where a fine-tuning run's model comes from (`init = { model = "DIR" }` or
/// `init = { scratch = "femto" }` in a recipe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Init {
    /// A pre-trained model directory (any BERT Hash model: encoder, MLM or classifier); its
    /// classifier head is initialised from `train.seed` when it has none.
    Model(PathBuf),
    /// A freshly initialised preset (`femto`, `pico`, `nano`) from `train.seed`: the
    /// no-pre-training baseline.
    Scratch(String),
}

/// Fine-tuning a pre-trained model on a GLUE-style task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// The task (`berthash_data::builtin_task("sst2")` or a user's spec).
    pub task: TaskSpec,
    /// The task's data folder (GLUE tsv files or the Hugging Face parquet export).
    pub data_dir: PathBuf,
    /// A Hugging Face `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Where the model starts: a pre-trained directory or a fresh preset.
    pub init: Init,
    #[serde(default = "default_max_seq_length")]
    pub max_seq_length: usize,
    #[serde(default)]
    pub padding: Padding,
    /// Passes over the training set (used when `train.max_steps` is absent).
    #[serde(default = "default_epochs")]
    pub epochs: f64,
    #[serde(default = "default_eval_batch_size")]
    pub eval_batch_size: usize,
    /// Train on the first N training examples only (run_glue's `--max_train_samples`).
    #[serde(default)]
    pub max_train_samples: Option<usize>,
    /// Evaluate on the first N examples of each dev split (run_glue's `--max_eval_samples`).
    #[serde(default)]
    pub max_eval_samples: Option<usize>,
    /// Evaluate at the end of every epoch (and keep the best model in `best/`).
    #[serde(default = "default_true")]
    pub eval_each_epoch: bool,
    /// The metric that picks the best model, as run_glue names it, with or without `eval_`:
    /// `accuracy`, `f1`, `matthews_correlation`, `pearson`, `spearmanr`, `combined_score` (the
    /// mean of the task's metrics) or `loss`; averaged over the dev splits (MNLI's matched and
    /// mismatched). Default: the task's headline metric (its first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_for_best_model: Option<String>,
    /// Whether a larger value of that metric is better; default: true, false for `loss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greater_is_better: Option<bool>,
    /// Stop after this many evaluations without an improvement of more than
    /// `early_stopping_threshold` in the best-model metric (the Trainer's EarlyStoppingCallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping_patience: Option<u64>,
    #[serde(default)]
    pub early_stopping_threshold: f64,
    /// After training, predict the task's test splits with the best model and write the GLUE
    /// leaderboard files into the run directory.
    #[serde(default)]
    pub do_predict: bool,
    #[serde(default = "OptimizerConfig::finetuning")]
    pub optimizer: OptimizerConfig,
    #[serde(default = "ScheduleConfig::finetuning")]
    pub schedule: ScheduleConfig,
    #[serde(default = "TrainConfig::finetuning")]
    pub train: TrainConfig,
}

fn default_max_seq_length() -> usize {
    128
}
fn default_epochs() -> f64 {
    4.0
}
fn default_eval_batch_size() -> usize {
    64
}
fn default_true() -> bool {
    true
}

impl FinetuneConfig {
    /// run_glue's recipe (lr 1e-4, batch 32, 4 epochs, 128 tokens padded, seed 42).
    pub fn new(task: TaskSpec, data_dir: PathBuf, tokenizer: PathBuf, model: PathBuf) -> Self {
        Self {
            task,
            data_dir,
            tokenizer,
            init: Init::Model(model),
            max_seq_length: default_max_seq_length(),
            padding: Padding::Fixed,
            epochs: default_epochs(),
            eval_batch_size: default_eval_batch_size(),
            max_train_samples: None,
            max_eval_samples: None,
            eval_each_epoch: true,
            metric_for_best_model: None,
            greater_is_better: None,
            early_stopping_patience: None,
            early_stopping_threshold: 0.0,
            do_predict: false,
            optimizer: OptimizerConfig::finetuning(),
            schedule: ScheduleConfig::finetuning(),
            train: TrainConfig::finetuning(),
        }
    }

    pub fn resolve(self) -> Result<Self> {
        check_epoch_loop(
            &self.train,
            &self.optimizer,
            self.epochs,
            self.eval_batch_size,
        )?;
        if let Init::Scratch(size) = &self.init {
            BertHashConfig::preset(size)?;
        }
        self.criterion()?;
        if self.early_stopping_patience.is_some()
            && !self.eval_each_epoch
            && self.train.eval_every == 0
        {
            return Err(TrainError::config(
                "early_stopping_patience",
                "needs evaluations: set eval_each_epoch = true or train.eval_every",
            ));
        }
        if !(self.early_stopping_threshold.is_finite() && self.early_stopping_threshold >= 0.0) {
            return Err(TrainError::config(
                "early_stopping_threshold",
                format!("must be >= 0, got {}", self.early_stopping_threshold),
            ));
        }
        Ok(self)
    }

    /// The metric that picks the best model and its direction.
    pub fn criterion(&self) -> Result<Criterion> {
        let task: Vec<&str> = self
            .task
            .metrics
            .iter()
            .map(|m| m.run_glue_name())
            .collect();
        let name = match &self.metric_for_best_model {
            Some(name) => name.strip_prefix("eval_").unwrap_or(name),
            None => task.first().copied().unwrap_or("loss"),
        };
        if !(task.contains(&name) || name == "combined_score" || name == "loss") {
            return Err(TrainError::config(
                "metric_for_best_model",
                format!(
                    "{name:?} is not a metric of task {} (choose from {}, combined_score, loss)",
                    self.task.name,
                    task.join(", ")
                ),
            ));
        }
        let greater = self.greater_is_better.unwrap_or(name != "loss");
        let goal = if greater {
            Goal::Maximize
        } else {
            Goal::Minimize
        };
        Ok(Criterion::new(format!("eval_{name}"), goal))
    }

    /// The model's config: the pre-trained one (or the preset's) with the task's labels.
    pub fn model_config(&self) -> Result<BertHashConfig> {
        let mut config = match &self.init {
            Init::Model(dir) => berthash_model::read_config(dir)?,
            Init::Scratch(size) => BertHashConfig::preset(size)?,
        };
        match &self.task.labels {
            LabelSpec::Classes(classes) => config.set_labels(classes),
            LabelSpec::Regression => config.set_labels(&["LABEL_0".to_string()]),
        }
        Ok(config)
    }

    /// Refuses a model the task's inputs do not fit: sequences longer than its positions, a
    /// tokenizer with ids beyond its vocabulary.
    pub fn check_model(&self, model: &BertHashConfig, tokenizer: &TokenizerHandle) -> Result<()> {
        check_fit(self.max_seq_length, model, tokenizer)
    }

    /// Optimizer steps (see [`steps_for`]).
    pub fn max_steps(&self, micro_per_epoch: u64) -> u64 {
        steps_for(&self.train, self.epochs, micro_per_epoch)
    }
}

/// Optimizer steps: `train.max_steps`, else `epochs` passes of `micro_per_epoch` micro-batches.
pub fn steps_for(train: &TrainConfig, epochs: f64, micro_per_epoch: u64) -> u64 {
    let steps_per_epoch = micro_per_epoch.div_ceil(train.grad_accum as u64);
    train
        .max_steps
        .unwrap_or_else(|| (epochs * steps_per_epoch as f64).ceil() as u64)
        .max(1)
}

/// The checks of a loop that counts epochs and evaluates in batches (fine-tuning, embeddings).
fn check_epoch_loop(
    train: &TrainConfig,
    optimizer: &OptimizerConfig,
    epochs: f64,
    eval_batch_size: usize,
) -> Result<()> {
    train.validate()?;
    optimizer.validate()?;
    if !(epochs.is_finite() && epochs > 0.0) && train.max_steps.is_none() {
        return Err(TrainError::config(
            "epochs",
            format!("must be > 0, got {epochs}"),
        ));
    }
    if eval_batch_size == 0 {
        return Err(TrainError::config("eval_batch_size", "must be at least 1"));
    }
    Ok(())
}

/// Refuses a model the inputs do not fit: sequences longer than its positions, a tokenizer with
/// ids beyond its vocabulary.
fn check_fit(
    max_seq_length: usize,
    model: &BertHashConfig,
    tokenizer: &TokenizerHandle,
) -> Result<()> {
    if max_seq_length > model.max_position_embeddings {
        return Err(TrainError::config(
            "max_seq_length",
            format!(
                "{max_seq_length} exceeds the model's max_position_embeddings {}",
                model.max_position_embeddings
            ),
        ));
    }
    check_vocab(tokenizer, model)
}

/// Training a sentence-embedding model (sentence-transformers' recipe) from a pre-trained
/// encoder, on text pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// The pre-trained model directory (its encoder; any head is dropped).
    pub model: PathBuf,
    /// A Hugging Face `tokenizer.json`: the model's own.
    pub tokenizer: PathBuf,
    /// The folder holding the pair files.
    pub data_dir: PathBuf,
    pub data: PairData,
    pub loss: SentenceLoss,
    /// How token vectors become the sentence embedding (the model's Pooling module).
    #[serde(default)]
    pub pooling: Pooling,
    /// Whether the exported model normalises its embeddings (the losses use cosines, so
    /// training is the same either way).
    #[serde(default)]
    pub normalize: bool,
    /// Texts are truncated to this many tokens, special tokens included.
    #[serde(default = "default_max_seq_length")]
    pub max_seq_length: usize,
    /// Passes over the training pairs (used when `train.max_steps` is absent).
    #[serde(default = "default_embedding_epochs")]
    pub epochs: f64,
    #[serde(default = "default_eval_batch_size")]
    pub eval_batch_size: usize,
    #[serde(default = "OptimizerConfig::finetuning")]
    pub optimizer: OptimizerConfig,
    #[serde(default = "ScheduleConfig::finetuning")]
    pub schedule: ScheduleConfig,
    #[serde(default = "TrainConfig::finetuning")]
    pub train: TrainConfig,
}

fn default_embedding_epochs() -> f64 {
    1.0
}

/// Where the pairs are: files of `data_dir` (`.tsv` with a header, `.parquet` or `.jsonl`) and
/// the columns to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairData {
    /// The training file.
    pub train: String,
    /// The dev file, scored pairs; when it is absent from `data_dir` (or not set), a held-out
    /// fraction of the training file is evaluated instead, and the saved config says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// The first text of a pair (the anchor, for ranking losses).
    pub text_a: String,
    /// The second text (the positive).
    pub text_b: String,
    /// The gold similarity of a pair; needed by the scored losses and by evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<String>,
    /// The range scores lie in (`[0, 5]` for STS-B): a score outside it is an error; scores are
    /// mapped onto [0, 1] linearly, the targets of `CosineSimilarityLoss`.
    #[serde(default = "default_score_range")]
    pub score_range: [f64; 2],
    /// Without a dev file: the fraction of the training pairs held out for evaluation.
    #[serde(default = "default_held_out_fraction")]
    pub held_out_fraction: f64,
    /// Without a dev file: the seed of the held-out draw.
    #[serde(default = "default_held_out_seed")]
    pub held_out_seed: u64,
}

fn default_score_range() -> [f64; 2] {
    [0.0, 1.0]
}
fn default_held_out_fraction() -> f64 {
    0.1
}
fn default_held_out_seed() -> u64 {
    42
}

impl EmbeddingsConfig {
    /// sentence-transformers' defaults (mean pooling, 128 tokens, linear decay without warm-up,
    /// AdamW eps 1e-8, clip 1.0) with one epoch of batches of 16 at lr 1e-4.
    pub fn new(
        model: PathBuf,
        tokenizer: PathBuf,
        data_dir: PathBuf,
        data: PairData,
        loss: SentenceLoss,
    ) -> Self {
        Self {
            model,
            tokenizer,
            data_dir,
            data,
            loss,
            pooling: Pooling::Mean,
            normalize: false,
            max_seq_length: default_max_seq_length(),
            epochs: default_embedding_epochs(),
            eval_batch_size: default_eval_batch_size(),
            optimizer: OptimizerConfig::finetuning(),
            schedule: ScheduleConfig::finetuning(),
            train: TrainConfig {
                batch_size: 16,
                ..TrainConfig::finetuning()
            },
        }
    }

    /// Checks the values and settles the dev split: `data.dev` is cleared (logged) when its file
    /// is absent, so the saved config says which pairs were evaluated.
    pub fn resolve(mut self) -> Result<Self> {
        check_epoch_loop(
            &self.train,
            &self.optimizer,
            self.epochs,
            self.eval_batch_size,
        )?;
        if self.train.dump_batches.is_some() {
            return Err(TrainError::config(
                "train.dump_batches",
                "the PyTorch replay covers pre-training and fine-tuning, not embedding training",
            ));
        }
        let data = &mut self.data;
        let [low, high] = data.score_range;
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(TrainError::config(
                "data.score_range",
                format!("must be [low, high] with low < high, got [{low}, {high}]"),
            ));
        }
        if !(data.held_out_fraction > 0.0 && data.held_out_fraction < 1.0) {
            return Err(TrainError::config(
                "data.held_out_fraction",
                format!("must be in (0, 1), got {}", data.held_out_fraction),
            ));
        }
        // Evaluation ranks pairs by their gold score (the scored losses train on it too).
        if data.score.is_none() {
            return Err(TrainError::config(
                "data.score",
                "evaluation ranks pairs by their gold score: name the score column",
            ));
        }
        if let Some(dev) = data.dev.as_deref() {
            if !self.data_dir.join(dev).is_file() {
                tracing::info!(
                    "no dev file {}: evaluating on {:.0}% of the training pairs, held out (seed {})",
                    self.data_dir.join(dev).display(),
                    100.0 * data.held_out_fraction,
                    data.held_out_seed
                );
                data.dev = None;
            }
        }
        Ok(self)
    }

    /// Refuses a model the inputs do not fit (see [`FinetuneConfig::check_model`]).
    pub fn check_model(&self, model: &BertHashConfig, tokenizer: &TokenizerHandle) -> Result<()> {
        check_fit(self.max_seq_length, model, tokenizer)
    }
}

/// `Recipe` for a config with `optimizer`, `schedule` and `train` fields and its tokenizer at
/// `$($tokenizer).+`.
macro_rules! recipe {
    ($config:ty, $($tokenizer:ident).+) => {
        impl Recipe for $config {
            fn optimizer(&self) -> &OptimizerConfig {
                &self.optimizer
            }
            fn schedule(&self) -> &ScheduleConfig {
                &self.schedule
            }
            fn train(&self) -> &TrainConfig {
                &self.train
            }
            fn tokenizer(&self) -> &Path {
                &self.$($tokenizer).+
            }
        }
    };
}

recipe!(PretrainConfig, data.tokenizer);
recipe!(FinetuneConfig, tokenizer);
recipe!(EmbeddingsConfig, tokenizer);
