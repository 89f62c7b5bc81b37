//! Fine-tuning on a GLUE-style task, top to bottom like [`crate::pretrain()`]: config, data
//! (the train split shuffled per epoch from `(seed, epoch)`, the dev splits), the run (a
//! pre-trained model with a fresh classifier, a fresh preset, or the newest checkpoint), the
//! loop, then the best model's dev results and the final model.

use std::collections::BTreeMap;
use std::path::Path;

use berthash_data::glue::EncodedSplit;
use berthash_data::tokenize::copy_tokenizer_files;
use berthash_data::{Split, TokenizerHandle};
use berthash_kernels::{Kernels, TrainBackend};
use berthash_model::loss::{cross_entropy, mse};
use berthash_model::pretrained::{self, init_model};
use berthash_model::weights::WeightLayout;
use berthash_model::{
    BertHashConfig, BertHashForSequenceClassification, ClassificationTargets, ModelOptions,
};
use burn::module::AutodiffModule;
use burn::prelude::*;

use crate::config::{FinetuneConfig, Init};
use crate::epoch_order::EpochOrder;
use crate::error::{Result, TrainError};
use crate::eval::{
    dev_splits, encode_split, evaluate_classifier, evaluate_splits, metric_key,
    predict_test_splits, split_key, write_predictions,
};
use crate::log::Summary;
use crate::precision::check_precision;
use crate::run::{Run, RunSpec};
use crate::run_dir::{write_json, RunMode};
use crate::tensors::{classification_tensors, ClassificationTensors};
use crate::trainer::to_f32;

type Classifier<B> = BertHashForSequenceClassification<B>;

/// Fine-tunes the model `config.init` names on `config.task` into `run_dir`.
pub fn finetune<B: TrainBackend>(
    config: FinetuneConfig,
    run_dir: &Path,
    device: &B::Device,
    mode: RunMode,
) -> Result<Summary> {
    let mut config = config.resolve()?;
    check_precision::<B>(config.train.precision, device)?;
    let model_config = config.model_config()?;
    let tokenizer = TokenizerHandle::from_file(&config.tokenizer)?;
    config.check_model(&model_config, &tokenizer)?;
    let train_split = train_split(&config, &tokenizer)?;
    let dev = dev_splits(&config, &tokenizer)?;
    let mut order = EpochOrder::new(&config.train, train_split.len());
    config.train.max_steps = Some(config.max_steps(order.micro_per_epoch()));
    let spec = RunSpec {
        dir: run_dir,
        mode,
        config: &config,
        model: model_config.clone(),
        criterion: config.criterion()?,
        micro_per_epoch: Some(order.micro_per_epoch()),
        checkpoint_at_eval: true,
        patience: patience(&config),
    };
    let mut run = Run::<B, Classifier<B>>::start(spec, device, || init(&config, device))?;
    let mut best = BestModel::new(&run);
    let regression = config.task.is_regression();
    while !run.done() {
        let (mut micro, mut tokens) = (Vec::with_capacity(config.train.grad_accum), 0);
        for index in 0..config.train.grad_accum {
            let batch =
                train_split.batch(order.rows(run.trainer.state.micro_batches + index as u64))?;
            if let Some(dump) = &mut run.dump {
                dump.push_classification(run.trainer.state.step + 1, index, &batch);
            }
            let tensors = classification_tensors::<B>(&batch, device);
            tokens += tensors.tokens as u64;
            micro.push(tensors);
        }
        run.train_step(micro, tokens, |m, b| classification_loss(m, b, regression))?;
        if run.due(config.train.eval_every) || (config.eval_each_epoch && run.epoch_ended()) {
            evaluate(&mut run, &config, &dev, &mut best)?;
        }
        run.checkpoint_if_due()?;
    }
    let final_eval = evaluate(&mut run, &config, &dev, &mut best)?;
    write_results(&run, &config, &best, &dev, &tokenizer)?;
    run.finish(final_eval, BTreeMap::new())
}

/// The best model's results in the run directory: `eval_results.json` (with the rule that chose
/// it), `predictions.tsv` and, with `do_predict`, the test splits' leaderboard files.
fn write_results<B: TrainBackend>(
    run: &Run<B, Classifier<B>>,
    config: &FinetuneConfig,
    best: &BestModel<B::InnerBackend>,
    dev: &[(String, EncodedSplit)],
    tokenizer: &TokenizerHandle,
) -> Result<()> {
    let (model, device) = (best.model(run)?, &run.trainer.device);
    let (results, predictions) = evaluate_splits(&model, config, dev, device);
    write_json(
        &run.dir.eval_results(),
        &config
            .criterion()?
            .results_json(&results, run.trainer.state.best_eval.as_ref()),
    )?;
    write_predictions(&run.dir.predictions(), &run.model_config, &predictions)?;
    if config.do_predict {
        let root = run.dir.root();
        for file in predict_test_splits(&model, &run.model_config, config, tokenizer, root, device)?
        {
            tracing::info!("test predictions: {}", file.display());
        }
    }
    Ok(())
}

/// Early stopping's patience and threshold, when asked for.
fn patience(config: &FinetuneConfig) -> Option<(u64, f64)> {
    let threshold = config.early_stopping_threshold;
    config.early_stopping_patience.map(|n| (n, threshold))
}

/// The encoded training split; an empty one is an error naming the data folder.
fn train_split(config: &FinetuneConfig, tokenizer: &TokenizerHandle) -> Result<EncodedSplit> {
    let split = encode_split(config, tokenizer, &Split::Train)?;
    if split.is_empty() {
        return Err(TrainError::config(
            "data_dir",
            format!("{}: the train split is empty", config.data_dir.display()),
        ));
    }
    Ok(split)
}

/// The model a fresh run starts from: the pre-trained weights with a classifier initialised
/// from the seed (logged), or a fresh preset.
fn init<B: TrainBackend>(
    config: &FinetuneConfig,
    device: &B::Device,
) -> Result<(Classifier<B>, WeightLayout)> {
    let (model_config, seed) = (config.model_config()?, config.train.seed);
    match &config.init {
        Init::Model(dir) => {
            let loaded =
                pretrained::load::<B, Classifier<B>>(dir, Some(model_config), seed, device)?;
            if !loaded.report.initialized.is_empty() {
                let fresh = loaded.report.initialized.join(", ");
                tracing::info!("freshly initialised: {fresh}");
            }
            Ok((loaded.model, loaded.layout))
        }
        Init::Scratch(_) => {
            let model = init_model(&model_config, ModelOptions::default(), seed, device);
            Ok((model, WeightLayout::default()))
        }
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

/// Evaluates and logs every dev split; the criterion metric, averaged over the splits, decides
/// the best model (kept in `best`). Returns the metrics of all splits under `eval_results.json`'s
/// keys. An evaluation already made at this step (the one that stopped the run early) is not
/// repeated.
fn evaluate<B: TrainBackend>(
    run: &mut Run<B, Classifier<B>>,
    config: &FinetuneConfig,
    splits: &[(String, EncodedSplit)],
    best: &mut BestModel<B::InnerBackend>,
) -> Result<BTreeMap<String, f64>> {
    if run.evaluated_now() {
        return Ok(best.last.clone());
    }
    let model = run.trainer.model().valid();
    let criterion = config.criterion()?;
    let (mut all, mut values) = (BTreeMap::new(), Vec::new());
    for (i, (name, split)) in splits.iter().enumerate() {
        let metrics = evaluate_classifier(&model, config, split, &run.trainer.device);
        all.extend(metrics.iter().map(|(k, v)| (split_key(k, i, name), *v)));
        values.extend(criterion_value(config, &criterion.metric, &metrics));
        run.record_eval(name, metrics)?;
    }
    let value = values.iter().sum::<f64>() / values.len().max(1) as f64;
    if !values.is_empty() && run.offer_best(value) {
        best.keep(model)?;
    }
    best.last = all.clone();
    Ok(all)
}

/// The criterion `metric` in one split's `metrics`; `eval_combined_score` of a task with one
/// metric is that metric.
fn criterion_value(
    config: &FinetuneConfig,
    metric: &str,
    metrics: &BTreeMap<String, f64>,
) -> Option<f64> {
    let single = || {
        config
            .task
            .metrics
            .first()
            .and_then(|m| metrics.get(&metric_key(*m)))
    };
    match metrics.get(metric) {
        Some(&value) => Some(value),
        None if metric == "eval_combined_score" => single().copied(),
        None => None,
    }
}

/// The best model of a run, saved to `best/` as it improves and kept in memory (it is tiny).
struct BestModel<B: Backend> {
    /// The metrics of the last evaluation (all splits).
    last: BTreeMap<String, f64>,
    dir: std::path::PathBuf,
    tokenizer: std::path::PathBuf,
    config: BertHashConfig,
    layout: WeightLayout,
    model: Option<Classifier<B>>,
}

impl<B: Backend> BestModel<B> {
    fn new<A: TrainBackend<InnerBackend = B>>(run: &Run<A, Classifier<A>>) -> Self {
        Self {
            last: BTreeMap::new(),
            dir: run.dir.best_dir(),
            tokenizer: run.tokenizer().to_path_buf(),
            config: run.model_config.clone(),
            layout: run.layout.clone(),
            model: None,
        }
    }

    fn keep(&mut self, model: Classifier<B>) -> Result<()> {
        self.save(&model)?;
        self.model = Some(model);
        Ok(())
    }

    /// Writes `best/`: the model and the run's tokenizer files.
    fn save(&self, model: &Classifier<B>) -> Result<()> {
        pretrained::save::<B, Classifier<B>>(&self.dir, &self.config, model, &self.layout)?;
        copy_tokenizer_files(&self.tokenizer, &self.dir);
        Ok(())
    }

    /// The best model: kept in memory, else the one an earlier process of a resumed run saved
    /// in `best/`, else (no evaluation was ever finite) the current model.
    fn model<A: TrainBackend<InnerBackend = B>>(
        &self,
        run: &Run<A, Classifier<A>>,
    ) -> Result<Classifier<B>> {
        if let Some(model) = &self.model {
            return Ok(model.clone());
        }
        let device = &run.trainer.device;
        if run.trainer.state.best_eval.is_some()
            && self.dir.join(pretrained::WEIGHTS_FILE).is_file()
        {
            let saved = pretrained::load::<A, Classifier<A>>(&self.dir, None, 0, device)?;
            return Ok(saved.model.valid());
        }
        let current = run.trainer.model().valid();
        self.save(&current)?;
        Ok(current)
    }
}
