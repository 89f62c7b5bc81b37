//! Evaluation, the API that training and the CLI's `eval` share: GLUE dev splits (encoding,
//! run_glue's metric names, predictions) and the masked-LM held-out metrics.

use std::collections::BTreeMap;
use std::path::Path;

use berthash_data::glue::read_test_split;
use berthash_data::glue::EncodedSplit;
use berthash_data::{encode_examples, read_split, BatchLabels, MlmBatch, Split, TokenizerHandle};
use berthash_kernels::Kernels;
use berthash_model::loss::{cross_entropy, mse};
use berthash_model::{
    BertHashConfig, BertHashForMaskedLM, BertHashForSequenceClassification, ClassificationTargets,
};
use burn::prelude::*;

use crate::config::FinetuneConfig;
use crate::error::{Result, TrainError};
use crate::metrics::{task_metrics, Predictions};
use crate::tensors::{classification_tensors, mlm_tensors};

type Classifier<B> = BertHashForSequenceClassification<B>;

/// Refuses a classifier whose labels do not fit the task (another task's model, say).
pub fn check_labels(model: &BertHashConfig, config: &FinetuneConfig) -> Result<()> {
    let (have, want) = (model.num_labels(), config.task.num_labels());
    if have == want {
        return Ok(());
    }
    Err(TrainError::config(
        "task",
        format!(
            "the model has {have} labels but task {} has {want}",
            config.task.name
        ),
    ))
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
pub(crate) fn split_key(metric: &str, index: usize, split: &str) -> String {
    match index {
        0 => metric.to_string(),
        _ if split.ends_with("mismatched") => format!("{metric}_mm"),
        _ => format!("{metric}_{split}"),
    }
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

/// Predicts every test split of the task found in `config.data_dir` (none is an error unless
/// optional) and writes the GLUE leaderboard files into `out` (`SST-2.tsv`, …, header
/// `index<TAB>prediction`: label names, or a score with three decimals) and run_glue's
/// `predict_results_<split>.txt` beside them. Returns the files written.
pub fn predict_test_splits<B: Kernels>(
    model: &Classifier<B>,
    model_config: &BertHashConfig,
    config: &FinetuneConfig,
    tokenizer: &TokenizerHandle,
    out: &Path,
    device: &B::Device,
) -> Result<Vec<std::path::PathBuf>> {
    let labels = model_config.labels();
    let mut written = Vec::new();
    for test in &config.task.test {
        let Some(examples) = read_test_split(&config.task, &config.data_dir, test)? else {
            continue;
        };
        let split = encode_examples(tokenizer, &examples, config.max_seq_length, config.padding)?;
        let mut text = String::from("index\tprediction\n");
        let mut index = 0;
        for batch in split.batches(config.eval_batch_size) {
            let tensors = classification_tensors::<B>(&batch, device);
            let (_, logits) = model.forward(tensors.input);
            let rows: Vec<String> = if config.task.is_regression() {
                let scores = logits
                    .into_data()
                    .convert::<f64>()
                    .to_vec::<f64>()
                    .expect("f64");
                scores.iter().map(|s| format!("{s:.3}")).collect()
            } else {
                let classes = logits.argmax(1).into_data().convert::<i64>();
                let classes = classes.to_vec::<i64>().expect("ints");
                classes
                    .iter()
                    .map(|&c| labels[c as usize].clone())
                    .collect()
            };
            for row in rows {
                text.push_str(&format!("{index}\t{row}\n"));
                index += 1;
            }
        }
        let results = format!("predict_results_{}.txt", test.name);
        for name in [test.submission.as_str(), results.as_str()] {
            crate::run_dir::write_file(&out.join(name), text.as_bytes())?;
            written.push(out.join(name));
        }
    }
    Ok(written)
}

/// run_glue's name of a metric.
pub fn metric_key(metric: berthash_data::Metric) -> String {
    format!("eval_{}", metric.run_glue_name())
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
            (Some(ClassificationTargets::Classes(t)), BatchLabels::Classes(labels))
                if !regression =>
            {
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
            (Some(ClassificationTargets::Scores(t)), BatchLabels::Scores(labels)) => {
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

/// MLM loss (mean over all masked tokens), accuracy on the masked tokens and perplexity, on
/// fixed held-out batches. Runs without autodiff (no dropout).
pub fn evaluate_mlm<B: Kernels>(
    model: &BertHashForMaskedLM<B>,
    batches: &[MlmBatch],
    device: &B::Device,
) -> BTreeMap<String, f64> {
    let (mut loss_sum, mut correct, mut total) = (0.0f64, 0i64, 0usize);
    for batch in batches {
        let tensors = mlm_tensors::<B>(batch, device);
        if tensors.masked == 0 {
            continue;
        }
        let logits = model.forward_selected(tensors.input, tensors.positions);
        let loss = cross_entropy(logits.clone(), tensors.labels.clone());
        let hits = logits
            .argmax(1)
            .reshape([tensors.masked])
            .equal(tensors.labels)
            .int()
            .sum();
        loss_sum += loss.into_scalar().elem::<f64>() * tensors.masked as f64;
        correct += hits.into_scalar().elem::<i64>();
        total += tensors.masked;
    }
    let mut metrics = BTreeMap::new();
    if total > 0 {
        let loss = loss_sum / total as f64;
        metrics.insert("eval_loss".into(), loss);
        metrics.insert("eval_accuracy".into(), correct as f64 / total as f64);
        metrics.insert("eval_perplexity".into(), loss.exp());
        metrics.insert("eval_masked_tokens".into(), total as f64);
    }
    metrics
}
