//! Masked-LM pre-training, top to bottom: config, data, the run (fresh or resumed), the loop
//! (step, evaluate, checkpoint), the final evaluation and model.

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

use crate::best::{Criterion, Goal};
use crate::config::PretrainConfig;
use crate::error::{Result, TrainError};
use crate::eval::evaluate_mlm;
use crate::log::Summary;
use crate::precision::check_precision;
use crate::run::{Run, RunSpec};
use crate::run_dir::RunMode;
use crate::tensors::{mlm_tensors, MlmTensors};
use crate::trainer::to_f32;

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
    let config = config.resolve()?;
    check_precision::<B>(config.train.precision, device)?;
    let tokenizer = TokenizerHandle::from_file(&config.data.tokenizer)?;
    config.check_vocab(&tokenizer)?;
    let held_out = PretrainLoader::eval_batches(&config.data, &tokenizer, config.eval_batches)?;

    let spec = RunSpec {
        dir: run_dir,
        mode,
        config: &config,
        model: config.model.clone(),
        criterion: Criterion::new("eval_loss", Goal::Minimize),
        micro_per_epoch: None,
        checkpoint_at_eval: false,
        patience: None,
    };
    let mut run = Run::<B, Mlm<B>>::start(spec, device, || init(&config, device))?;
    let position = run.trainer.state.stream_position.clone();
    let mut loader = PretrainLoader::with_tokenizer(config.data.clone(), tokenizer, position)?;

    while !run.done() {
        let mut micro = Vec::with_capacity(config.train.grad_accum);
        let mut tokens = 0;
        for index in 0..config.train.grad_accum {
            let (batch, position) = loader.next().ok_or(TrainError::DataExhausted {
                batches: run.trainer.state.micro_batches,
                step: run.step(),
                max_steps: config.max_steps(),
            })??;
            if let Some(dump) = &mut run.dump {
                dump.push_mlm(run.trainer.state.step + 1, index, &batch);
            }
            tokens += batch.real_tokens() as u64;
            micro.push(mlm_tensors::<B>(&batch, device));
            run.trainer.state.stream_position = Some(position);
        }
        run.train_step(micro, tokens, mlm_loss)?;
        if run.due(config.train.eval_every) {
            evaluate(&mut run, &held_out)?;
        }
        run.checkpoint_if_due()?;
    }

    let final_eval = match run.trained() {
        true => evaluate(&mut run, &held_out)?,
        false => BTreeMap::new(),
    };
    run.finish(final_eval, loader.skip_report())
}

/// The model a fresh run starts from: `init_from`'s weights, or a seeded initialisation.
fn init<B: TrainBackend>(
    config: &PretrainConfig,
    device: &B::Device,
) -> Result<(Mlm<B>, WeightLayout)> {
    let (model, seed) = (config.model.clone(), config.train.seed);
    Ok(match &config.init_from {
        Some(dir) => {
            let loaded = pretrained::load::<B, Mlm<B>>(dir, Some(model), seed, device)?;
            (loaded.model, loaded.layout)
        }
        None => {
            let fresh = init_model::<B, Mlm<B>>(&model, ModelOptions::default(), seed, device);
            (fresh, WeightLayout::default())
        }
    })
}

/// Mean cross-entropy over the masked tokens, computed in f32.
pub(crate) fn mlm_loss<B: Kernels>(model: &Mlm<B>, batch: MlmTensors<B>) -> Tensor<B, 1> {
    let logits = model.forward_selected(batch.input, batch.positions);
    cross_entropy(to_f32(logits), batch.labels)
}

/// The held-out metrics, logged; the loss decides the best evaluation.
fn evaluate<B: TrainBackend>(
    run: &mut Run<B, Mlm<B>>,
    held_out: &[MlmBatch],
) -> Result<BTreeMap<String, f64>> {
    let metrics = evaluate_mlm(&run.trainer.model().valid(), held_out, &run.trainer.device);
    run.record_eval("held_out", metrics.clone())?;
    if let Some(&loss) = metrics.get("eval_loss") {
        run.offer_best(loss);
    }
    Ok(metrics)
}
