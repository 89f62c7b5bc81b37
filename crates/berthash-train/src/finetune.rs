//! Fine-tuning on a GLUE-style task, top to bottom like [`crate::pretrain`]: config and run
//! directory, data (train split shuffled per epoch from `(seed, epoch)`, dev splits), model
//! (a pre-trained directory with a fresh classifier, or the newest checkpoint), the loop, the
//! final evaluation, checkpoint, model export and summary.

use std::collections::BTreeMap;
use std::path::Path;

use berthash_data::glue::EncodedSplit;
use berthash_data::{encode_examples, read_split, LabelSpec, Split, TokenizerHandle};
use berthash_kernels::{Kernels, TrainBackend};
use berthash_model::loss::{cross_entropy, mse};
use berthash_model::pretrained;
use berthash_model::{BertHashConfig, BertHashForSequenceClassification, ClassificationTargets};
use burn::module::AutodiffModule;
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::batch::{classification_tensors, ClassificationTensors};
use crate::checkpoint::{contiguous, BestEval, Checkpoints};
use crate::config::FinetuneConfig;
use crate::dump::BatchDump;
use crate::error::{Result, TrainError};
use crate::log::{EvalRecord, Logger, Summary};
use crate::metrics::{task_metrics, Predictions};
use crate::precision::check_precision;
use crate::run_dir::{write_json, RunDir, RunMode};
use crate::start::{finish, save_checkpoint, start, Plan, Started};
use crate::trainer::{splitmix64, to_f32, Trainer};

type Classifier<B> = BertHashForSequenceClassification<B>;

/// Fine-tunes `config.model` on `config.task` into `run_dir`.
pub fn finetune<B: TrainBackend>(
    config: FinetuneConfig,
    run_dir: &Path,
    device: &B::Device,
    mode: RunMode,
) -> Result<Summary> {
    // Config and run directory.
    let mut config = config.resolve()?;
    check_precision::<B>(config.train.precision, device)?;

    // Data.
    let tokenizer = TokenizerHandle::from_file(&config.tokenizer)?;
    let train_split = encode_split(&config, &tokenizer, &Split::Train)?;
    if train_split.is_empty() {
        return Err(TrainError::config(
            "data_dir",
            format!("{}: the train split is empty", config.data_dir.display()),
        ));
    }
    let dev_splits = dev_splits(&config, &tokenizer)?;
    let batch_size = config.train.batch_size;
    let micro_per_epoch = train_split.len().div_ceil(batch_size) as u64;
    let steps_per_epoch = micro_per_epoch.div_ceil(config.train.grad_accum as u64);
    let max_steps = config
        .train
        .max_steps
        .unwrap_or_else(|| (config.epochs * steps_per_epoch as f64).ceil() as u64)
        .max(1);
    config.train.max_steps = Some(max_steps);

    // The model config: the pre-trained one with the task's labels.
    let mut model_config = pretrained::read_config(&config.model)?;
    match &config.task.labels {
        LabelSpec::Classes(classes) => model_config.set_labels(classes),
        LabelSpec::Regression => model_config.set_labels(&["LABEL_0".to_string()]),
    }

    let run = RunDir::prepare(run_dir, mode)?;
    let checkpoints = Checkpoints::new(run.checkpoints(), config.train.keep_checkpoints);
    let run_config = serde_json::to_value(&config).expect("config serializes");
    run.save_config(&config)?;

    // Model, optimizer and where the run stands.
    let plan = Plan {
        mode,
        run: &run,
        checkpoints: &checkpoints,
        model: &model_config,
        optimizer: &config.optimizer,
        schedule: &config.schedule,
        train: &config.train,
        max_steps,
    };
    let Started {
        mut trainer,
        mut log,
        layout,
        ..
    } = start::<B, Classifier<B>>(plan, device, || {
        let loaded = pretrained::load::<B, Classifier<B>>(
            &config.model,
            Some(model_config.clone()),
            config.train.seed,
            device,
        )?;
        if !loaded.report.initialized.is_empty() {
            tracing::info!(
                "freshly initialised: {}",
                loaded.report.initialized.join(", ")
            );
        }
        Ok((contiguous(loaded.model, device), loaded.layout))
    })?;
    let train = config.train.clone();
    let regression = config.task.is_regression();
    let mut order = EpochOrder::new(train.seed, train_split.len());
    let mut dump = BatchDump::for_run(
        train.dump_batches.as_deref(),
        mode,
        "classification",
        &run_config,
    );
    if let Some(dump) = &dump {
        dump.write_initial(&model_config, &trainer.model, &layout)?;
    }
    // The best model so far (tiny: kept in memory), written to `best/` as it improves.
    let mut best = BestModel {
        dir: run.root().join("best"),
        config: &model_config,
        layout: &layout,
        model: None,
    };

    // The loop.
    while trainer.state.step < max_steps {
        let mut micro = Vec::with_capacity(train.grad_accum);
        let mut tokens = 0;
        for _ in 0..train.grad_accum {
            let k = trainer.state.micro_batches + micro.len() as u64;
            let (epoch, index) = (k / micro_per_epoch, (k % micro_per_epoch) as usize);
            let rows = order.rows(epoch, index, batch_size);
            let batch = train_split.batch(rows)?;
            if let Some(dump) = &mut dump {
                dump.push_classification(trainer.state.step + 1, micro.len(), &batch);
            }
            let tensors = classification_tensors::<B>(&batch, device);
            tokens += tensors.tokens as u64;
            micro.push(tensors);
        }
        trainer.step(micro, tokens, |model, batch| {
            classification_loss(model, batch, regression)
        })?;

        let step = trainer.state.step;
        let last = step == max_steps;
        if step % train.log_every == 0 || last {
            if let Some(mut record) = trainer.flush()? {
                record.epoch = Some(trainer.state.micro_batches as f64 / micro_per_epoch as f64);
                log.step(record)?;
            }
        }
        let epoch_done = trainer.state.micro_batches / micro_per_epoch
            > (trainer.state.micro_batches - train.grad_accum as u64) / micro_per_epoch;
        let periodic = train.eval_every > 0 && step % train.eval_every == 0;
        if (periodic || (config.eval_each_epoch && epoch_done)) && !last {
            evaluate_and_log(&mut trainer, &config, &dev_splits, &mut log)?;
            keep_if_best(&trainer, &mut best)?;
        }
        if train.save_every > 0 && step % train.save_every == 0 && !last {
            save_checkpoint(
                &mut trainer,
                &checkpoints,
                &model_config,
                &layout,
                &run_config,
                &mut log,
            )?;
        }
    }

    if let Some(dump) = dump {
        dump.finish()?;
    }

    // The end: the final evaluation, then the best model's results and dev predictions.
    let final_eval = evaluate_and_log(&mut trainer, &config, &dev_splits, &mut log)?;
    keep_if_best(&trainer, &mut best)?;
    let best_model = best.model.clone().unwrap_or_else(|| trainer.model.valid());
    let (best_eval, predictions) =
        evaluate_splits(&best_model, &config, &dev_splits, &trainer.device);
    write_json(&run.root().join("eval_results.json"), &best_eval)?;
    write_predictions(
        &run.root().join("predictions.tsv"),
        &model_config,
        &predictions,
    )?;
    let checkpoint = save_checkpoint(
        &mut trainer,
        &checkpoints,
        &model_config,
        &layout,
        &run_config,
        &mut log,
    )?;
    finish(
        &trainer,
        &run,
        &model_config,
        &layout,
        &config.tokenizer,
        final_eval,
        checkpoint,
        &log,
    )
}

/// The shuffled order of the training examples in each epoch, a pure function of
/// `(seed, epoch)` (so resuming needs only the micro-batch counter).
struct EpochOrder {
    seed: u64,
    len: usize,
    epoch: Option<u64>,
    order: Vec<usize>,
}

impl EpochOrder {
    fn new(seed: u64, len: usize) -> Self {
        Self {
            seed,
            len,
            epoch: None,
            order: Vec::new(),
        }
    }

    /// The example indices of micro-batch `index` of `epoch` (the last one may be short).
    fn rows(&mut self, epoch: u64, index: usize, batch_size: usize) -> &[usize] {
        if self.epoch != Some(epoch) {
            let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(self.seed ^ splitmix64(epoch)));
            self.order = (0..self.len).collect();
            self.order.shuffle(&mut rng);
            self.epoch = Some(epoch);
        }
        let start = (index * batch_size).min(self.len);
        let end = (start + batch_size).min(self.len);
        &self.order[start..end]
    }
}

/// Cross-entropy for classes, MSE for scores, computed in f32.
fn classification_loss<B: Kernels>(
    model: &Classifier<B>,
    batch: ClassificationTensors<B>,
    regression: bool,
) -> Tensor<B, 1> {
    let (_, logits) = model.forward(batch.input);
    let logits = to_f32(logits);
    match batch.targets {
        Some(ClassificationTargets::Classes(classes)) if !regression => {
            cross_entropy(logits, classes)
        }
        Some(ClassificationTargets::Scores(scores)) => mse(logits, scores),
        _ => panic!("the training split must be labelled as the task says"),
    }
}

/// Evaluates every dev split; the first split's first metric decides the best evaluation.
/// Returns the metrics of all splits (a split other than `dev` gets its name as a suffix:
/// `eval_accuracy_dev_mismatched`).
fn evaluate_and_log<B: TrainBackend>(
    trainer: &mut Trainer<B, Classifier<B>>,
    config: &FinetuneConfig,
    splits: &[(String, EncodedSplit)],
    log: &mut Logger,
) -> Result<BTreeMap<String, f64>> {
    let model = trainer.model.valid();
    let step = trainer.state.step;
    let mut all = BTreeMap::new();
    for (i, (name, split)) in splits.iter().enumerate() {
        let metrics = evaluate_classifier(&model, config, split, &trainer.device);
        if i == 0 {
            if let Some(first) = config.task.metrics.first() {
                let key = metric_key(*first);
                if let Some(&value) = metrics.get(&key) {
                    let better = trainer
                        .state
                        .best_eval
                        .as_ref()
                        .is_none_or(|b| value > b.value);
                    if better && value.is_finite() {
                        trainer.state.best_eval = Some(BestEval {
                            metric: key,
                            value,
                            step,
                        });
                    }
                }
            }
        }
        for (k, v) in &metrics {
            all.insert(split_key(k, i, name), *v);
        }
        log.eval(EvalRecord {
            step,
            split: name.clone(),
            metrics,
        })?;
    }
    Ok(all)
}

/// Reads and tokenizes one split, limited to `max_train_samples` / `max_eval_samples`.
pub fn encode_split(
    config: &FinetuneConfig,
    tokenizer: &TokenizerHandle,
    split: &Split,
) -> Result<EncodedSplit> {
    let mut examples = read_split(&config.task, &config.data_dir, split)?;
    let limit = match split {
        Split::Train => config.max_train_samples,
        Split::Dev(_) => config.max_eval_samples,
    };
    examples.truncate(limit.unwrap_or(usize::MAX));
    Ok(encode_examples(
        tokenizer,
        &examples,
        config.max_seq_length,
        config.padding,
    )?)
}

/// The task's dev splits, named (`dev`, or MNLI's `dev_matched` and `dev_mismatched`).
pub fn dev_splits(
    config: &FinetuneConfig,
    tokenizer: &TokenizerHandle,
) -> Result<Vec<(String, EncodedSplit)>> {
    config
        .task
        .dev_splits()
        .iter()
        .map(|split| {
            let name = match split {
                Split::Dev(name) => name.clone(),
                Split::Train => "train".into(),
            };
            encode_split(config, tokenizer, split).map(|e| (name, e))
        })
        .collect()
}

/// The key of a metric of dev split `index`: run_glue's names for the first split, MNLI's
/// mismatched set gets `_mm` (`eval_accuracy_mm`), any other split its name as a suffix.
fn split_key(metric: &str, index: usize, split: &str) -> String {
    match index {
        0 => metric.to_string(),
        _ if split.ends_with("mismatched") => format!("{metric}_mm"),
        _ => format!("{metric}_{split}"),
    }
}

/// The best model of a run, by the first metric of the first dev split.
struct BestModel<'a, B: Backend> {
    dir: std::path::PathBuf,
    config: &'a BertHashConfig,
    layout: &'a berthash_model::weights::WeightLayout,
    model: Option<Classifier<B>>,
}

/// Saves the model as `best/` when the evaluation just made was the best so far.
fn keep_if_best<B: TrainBackend>(
    trainer: &Trainer<B, Classifier<B>>,
    best: &mut BestModel<'_, B::InnerBackend>,
) -> Result<()> {
    let improved = trainer
        .state
        .best_eval
        .as_ref()
        .is_some_and(|b| b.step == trainer.state.step);
    if improved || best.model.is_none() {
        let model = trainer.model.valid();
        pretrained::save::<B::InnerBackend, Classifier<B::InnerBackend>>(
            &best.dir,
            best.config,
            &model,
            best.layout,
        )?;
        best.model = Some(model);
    }
    Ok(())
}

/// Metrics of every dev split (keys as in `eval_results.json`) and each split's predictions.
pub fn evaluate_splits<B: Kernels>(
    model: &Classifier<B>,
    config: &FinetuneConfig,
    splits: &[(String, EncodedSplit)],
    device: &B::Device,
) -> (BTreeMap<String, f64>, Vec<(String, Predictions)>) {
    let mut all = BTreeMap::new();
    let mut predictions = Vec::new();
    for (i, (name, split)) in splits.iter().enumerate() {
        let (metrics, predicted) = evaluate_with_predictions(model, config, split, device);
        for (k, v) in &metrics {
            all.insert(split_key(k, i, name), *v);
        }
        predictions.extend(predicted.map(|p| (name.clone(), p)));
    }
    (all, predictions)
}

/// `predictions.tsv`: split, index, predicted label (name or score), gold label.
pub fn write_predictions(
    path: &Path,
    model_config: &BertHashConfig,
    splits: &[(String, Predictions)],
) -> Result<()> {
    let labels = model_config.labels();
    let name = |i: usize| labels.get(i).cloned().unwrap_or_else(|| i.to_string());
    let mut text = String::from("split\tindex\tprediction\tlabel\n");
    for (split, predictions) in splits {
        match predictions {
            Predictions::Classes {
                predictions,
                labels,
            } => {
                for (i, (p, l)) in predictions.iter().zip(labels).enumerate() {
                    text.push_str(&format!("{split}\t{i}\t{}\t{}\n", name(*p), name(*l)));
                }
            }
            Predictions::Scores {
                predictions,
                labels,
            } => {
                for (i, (p, l)) in predictions.iter().zip(labels).enumerate() {
                    text.push_str(&format!("{split}\t{i}\t{p:.6}\t{l}\n"));
                }
            }
        }
    }
    crate::run_dir::write_file(path, text.as_bytes())
}

/// run_glue's name of a metric.
pub fn metric_key(metric: berthash_data::Metric) -> String {
    use berthash_data::Metric;
    let name = match metric {
        Metric::Accuracy => "accuracy",
        Metric::F1 => "f1",
        Metric::MatthewsCorrelation => "matthews_correlation",
        Metric::Pearson => "pearson",
        Metric::Spearman => "spearmanr",
    };
    format!("eval_{name}")
}

/// `eval_loss` and the task's metrics on one split (without autodiff: no dropout).
pub fn evaluate_classifier<B: Kernels>(
    model: &Classifier<B>,
    config: &FinetuneConfig,
    split: &EncodedSplit,
    device: &B::Device,
) -> BTreeMap<String, f64> {
    evaluate_with_predictions(model, config, split, device).0
}

/// The metrics and the predictions (none for an unlabelled split).
pub fn evaluate_with_predictions<B: Kernels>(
    model: &Classifier<B>,
    config: &FinetuneConfig,
    split: &EncodedSplit,
    device: &B::Device,
) -> (BTreeMap<String, f64>, Option<Predictions>) {
    let regression = config.task.is_regression();
    let (mut loss_sum, mut rows) = (0.0f64, 0usize);
    let (mut classes, mut class_labels, mut scores, mut score_labels) =
        (vec![], vec![], vec![], vec![]);
    for batch in split.batches(config.eval_batch_size) {
        let tensors = classification_tensors::<B>(&batch, device);
        let (_, logits) = model.forward(tensors.input);
        let n = tensors.rows;
        match (tensors.targets, &batch.labels) {
            (
                Some(ClassificationTargets::Classes(t)),
                berthash_data::BatchLabels::Classes(labels),
            ) if !regression => {
                loss_sum += cross_entropy(logits.clone(), t).into_scalar().elem::<f64>() * n as f64;
                let predicted: Vec<i64> = logits
                    .argmax(1)
                    .reshape([n])
                    .into_data()
                    .convert::<i64>()
                    .to_vec()
                    .expect("ints");
                classes.extend(predicted.into_iter().map(|p| p as usize));
                class_labels.extend(labels.iter().copied());
            }
            (
                Some(ClassificationTargets::Scores(t)),
                berthash_data::BatchLabels::Scores(labels),
            ) => {
                loss_sum += mse(logits.clone(), t).into_scalar().elem::<f64>() * n as f64;
                let predicted: Vec<f64> = logits
                    .reshape([n])
                    .into_data()
                    .convert::<f64>()
                    .to_vec()
                    .expect("floats");
                scores.extend(predicted);
                score_labels.extend(labels.iter().map(|&l| l as f64));
            }
            _ => continue, // unlabelled split: nothing to score
        }
        rows += n;
    }
    let mut metrics = BTreeMap::new();
    if rows == 0 {
        return (metrics, None);
    }
    let predictions = if regression {
        Predictions::Scores {
            predictions: scores,
            labels: score_labels,
        }
    } else {
        Predictions::Classes {
            predictions: classes,
            labels: class_labels,
        }
    };
    metrics.extend(task_metrics(&config.task.metrics, &predictions));
    metrics.insert("eval_loss".into(), loss_sum / rows as f64);
    metrics.insert("eval_samples".into(), rows as f64);
    (metrics, Some(predictions))
}
