//! Masked-LM pre-training, top to bottom: config and run directory, model and optimizer (fresh
//! or from the newest checkpoint), data, then the loop (step, log, evaluate, checkpoint), then
//! the final evaluation, checkpoint, model export and summary.

use std::collections::BTreeMap;
use std::path::Path;

use berthash_data::{MlmBatch, PretrainLoader, TokenizerHandle};
use berthash_kernels::{Kernels, TrainBackend};
use berthash_model::loss::cross_entropy;
use berthash_model::pretrained::{self, init_model};
use berthash_model::weights::WeightLayout;
use berthash_model::{BertHashForMaskedLM, ModelOptions};
use burn::module::AutodiffModule;
use burn::prelude::*;

use crate::batch::{mlm_tensors, MlmTensors};
use crate::checkpoint::{contiguous, BestEval, Checkpoints};
use crate::config::PretrainConfig;
use crate::dump::BatchDump;
use crate::error::{Result, TrainError};
use crate::log::{EvalRecord, Logger, Summary};
use crate::precision::check_precision;
use crate::run_dir::{RunDir, RunMode};
use crate::start::{finish, save_checkpoint, start, Plan, Started};
use crate::trainer::{to_f32, Trainer};

type Mlm<B> = BertHashForMaskedLM<B>;

/// Pre-trains `config.model` into `run_dir` (see [`crate::run_dir`] for what is written there).
/// `mode` says whether to start fresh (refusing an existing run), overwrite, or resume from the
/// newest complete checkpoint.
pub fn pretrain<B: TrainBackend>(
    config: PretrainConfig,
    run_dir: &Path,
    device: &B::Device,
    mode: RunMode,
) -> Result<Summary> {
    // Config and run directory.
    let config = config.resolve()?;
    let max_steps = config.max_steps();
    check_precision::<B>(config.train.precision, device)?;
    let run = RunDir::prepare(run_dir, mode)?;
    let checkpoints = Checkpoints::new(run.checkpoints(), config.train.keep_checkpoints);
    let run_config = serde_json::to_value(&config).expect("config serializes");
    run.save_config(&config)?;

    // Model, optimizer and where the run stands.
    let plan = Plan {
        mode,
        run: &run,
        checkpoints: &checkpoints,
        model: &config.model,
        optimizer: &config.optimizer,
        schedule: &config.schedule,
        train: &config.train,
        max_steps,
    };
    let Started {
        mut trainer,
        mut log,
        layout,
        resumed_at,
    } = start::<B, Mlm<B>>(plan, device, || {
        Ok(match &config.init_from {
            Some(dir) => {
                let loaded = pretrained::load::<B, Mlm<B>>(
                    dir,
                    Some(config.model.clone()),
                    config.train.seed,
                    device,
                )?;
                (contiguous(loaded.model, device), loaded.layout)
            }
            None => (
                init_model::<B, Mlm<B>>(
                    &config.model,
                    ModelOptions::default(),
                    config.train.seed,
                    device,
                ),
                WeightLayout::default(),
            ),
        })
    })?;

    // Data: the training stream (from the saved position) and the fixed held-out batches.
    let tokenizer = TokenizerHandle::from_file(&config.data.tokenizer)?;
    if tokenizer.vocab_size() > config.model.vocab_size {
        return Err(TrainError::config(
            "model.vocab_size",
            format!(
                "the tokenizer has {} tokens, the model's vocabulary only {}",
                tokenizer.vocab_size(),
                config.model.vocab_size
            ),
        ));
    }
    let eval_batches = PretrainLoader::eval_batches(&config.data, &tokenizer, config.eval_batches)?;
    let mut loader = PretrainLoader::with_tokenizer(
        config.data.clone(),
        tokenizer,
        trainer.state.stream_position.clone(),
    )?;
    let train = config.train.clone();
    let mut dump = BatchDump::for_run(train.dump_batches.as_deref(), mode, "mlm", &run_config);
    if let Some(dump) = &dump {
        dump.write_initial(&config.model, &trainer.model, &layout)?;
    }

    // The loop.
    while trainer.state.step < max_steps {
        let mut micro = Vec::with_capacity(train.grad_accum);
        let mut tokens = 0;
        for _ in 0..train.grad_accum {
            let (batch, position) = loader.next().ok_or(TrainError::DataExhausted {
                batches: trainer.state.micro_batches,
                step: trainer.state.step,
                max_steps,
            })??;
            if let Some(dump) = &mut dump {
                dump.push_mlm(trainer.state.step + 1, micro.len(), &batch);
            }
            tokens += batch.real_tokens() as u64;
            micro.push(mlm_tensors::<B>(&batch, device));
            trainer.state.stream_position = Some(position);
        }
        trainer.step(micro, tokens, mlm_loss)?;

        let step = trainer.state.step;
        let last = step == max_steps;
        if step % train.log_every == 0 || last {
            if let Some(record) = trainer.flush()? {
                log.step(record)?;
            }
        }
        if train.eval_every > 0 && step % train.eval_every == 0 && !last {
            evaluate_and_log(&mut trainer, &eval_batches, &mut log)?;
        }
        if train.save_every > 0 && step % train.save_every == 0 && !last {
            save_checkpoint(
                &mut trainer,
                &checkpoints,
                &config.model,
                &layout,
                &run_config,
                &mut log,
            )?;
        }
    }

    if let Some(dump) = dump {
        dump.finish()?;
    }

    // The end: evaluation, checkpoint, model export, summary.
    let final_eval = if trainer.state.step > resumed_at.unwrap_or(0) || mode != RunMode::Resume {
        evaluate_and_log(&mut trainer, &eval_batches, &mut log)?
    } else {
        BTreeMap::new()
    };
    let checkpoint = save_checkpoint(
        &mut trainer,
        &checkpoints,
        &config.model,
        &layout,
        &run_config,
        &mut log,
    )?;
    finish(
        &trainer,
        &run,
        &config.model,
        &layout,
        &config.data.tokenizer,
        final_eval,
        checkpoint,
        &log,
    )
}

/// Mean cross-entropy over the masked tokens, computed in f32.
fn mlm_loss<B: Kernels>(model: &Mlm<B>, batch: MlmTensors<B>) -> Tensor<B, 1> {
    let logits = model.forward_selected(batch.input, batch.positions);
    cross_entropy(to_f32(logits), batch.labels)
}

fn evaluate_and_log<B: TrainBackend>(
    trainer: &mut Trainer<B, Mlm<B>>,
    batches: &[MlmBatch],
    log: &mut Logger,
) -> Result<BTreeMap<String, f64>> {
    let metrics = evaluate_mlm(&trainer.model.valid(), batches, &trainer.device);
    let step = trainer.state.step;
    if let Some(&loss) = metrics.get("eval_loss") {
        let better = trainer
            .state
            .best_eval
            .as_ref()
            .is_none_or(|b| loss < b.value);
        if better && loss.is_finite() {
            trainer.state.best_eval = Some(BestEval {
                metric: "eval_loss".into(),
                value: loss,
                step,
            });
        }
    }
    log.eval(EvalRecord {
        step,
        split: "held_out".into(),
        metrics: metrics.clone(),
    })?;
    Ok(metrics)
}

/// MLM loss (mean over all masked tokens), accuracy on the masked tokens and perplexity, on
/// fixed held-out batches. Runs without autodiff (no dropout).
pub fn evaluate_mlm<B: Kernels>(
    model: &Mlm<B>,
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

/// Copies the tokenizer files found beside `tokenizer.json` into an exported model directory.
pub(crate) fn copy_tokenizer_files(tokenizer_json: &Path, model_dir: &Path) {
    let Some(dir) = tokenizer_json.parent() else {
        return;
    };
    let names = [
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ];
    for name in names {
        let from = if name == "tokenizer.json" {
            tokenizer_json.to_path_buf()
        } else {
            dir.join(name)
        };
        if from.is_file() {
            if let Err(e) = std::fs::copy(&from, model_dir.join(name)) {
                tracing::warn!(
                    "could not copy {} into {}: {e}",
                    from.display(),
                    model_dir.display()
                );
            }
        }
    }
}
