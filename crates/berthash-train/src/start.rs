//! How a run begins and ends, the same for pre-training and fine-tuning: it starts from the
//! newest complete checkpoint (resume) or fresh, with the trainer and the metrics log set to
//! continue from that step; it ends with the final model and `summary.json`.

use berthash_model::weights::WeightLayout;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berthash_model::{pretrained, BertHashConfig, HfModel};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use crate::checkpoint::{restore, Checkpoints, TrainState};
use crate::error::{Result, TrainError};
use crate::log::{Logger, Summary};
use crate::optim::{AdamW, OptimizerConfig};
use crate::run_dir::{write_json, RunDir, RunMode};
use crate::schedule::ScheduleConfig;
use crate::trainer::Trainer;
use crate::TrainConfig;

pub(crate) struct Started<B: AutodiffBackend, M> {
    pub trainer: Trainer<B, M>,
    pub log: Logger,
    pub layout: WeightLayout,
    /// The step the run resumed at, if it resumed.
    pub resumed_at: Option<u64>,
}

/// What a run's loop needs to begin.
pub(crate) struct Plan<'a> {
    pub mode: RunMode,
    pub run: &'a RunDir,
    pub checkpoints: &'a Checkpoints,
    pub model: &'a BertHashConfig,
    pub optimizer: &'a OptimizerConfig,
    pub schedule: &'a ScheduleConfig,
    pub train: &'a TrainConfig,
    pub max_steps: u64,
}

/// Restores the newest complete checkpoint when resuming; otherwise takes the model `fresh`
/// gives with a new optimizer.
pub(crate) fn start<B, M>(
    plan: Plan<'_>,
    device: &B::Device,
    fresh: impl FnOnce() -> Result<(M, WeightLayout)>,
) -> Result<Started<B, M>>
where
    B: AutodiffBackend,
    M: HfModel<B> + AutodiffModule<B>,
{
    let (model, layout, optimizer, state, resumed_from) = if plan.mode == RunMode::Resume {
        let latest = plan
            .checkpoints
            .latest()?
            .ok_or_else(|| TrainError::NothingToResume {
                path: plan.run.root().to_path_buf(),
                message: "no complete checkpoint in checkpoints/".into(),
            })?;
        let restored = restore::<B, M>(&latest.path, plan.model, plan.optimizer.clone(), device)?;
        let step = restored.state.step;
        (
            restored.model,
            restored.layout,
            restored.optimizer,
            restored.state,
            Some((latest.path, step)),
        )
    } else {
        let (model, layout) = fresh()?;
        let optimizer = AdamW::new(plan.optimizer.clone(), &model);
        let state = TrainState {
            seed: plan.train.seed,
            ..TrainState::default()
        };
        (model, layout, optimizer, state, None)
    };

    let schedule = plan.schedule.build(plan.optimizer.lr, plan.max_steps);
    let mut trainer = Trainer::new(
        model,
        optimizer,
        schedule,
        plan.train.clone(),
        state,
        device.clone(),
    );
    trainer.padding_idx = Some(plan.model.pad_token_id);
    let log = Logger::open(
        &plan.run.metrics(),
        trainer.state.step,
        plan.max_steps,
        resumed_from.as_ref().map(|r| r.1),
    )?;
    if let Some((path, step)) = &resumed_from {
        trainer.last_checkpoint = Some(path.clone());
        log.note(&format!("resuming from {} (step {step})", path.display()));
    }
    Ok(Started {
        trainer,
        log,
        layout,
        resumed_at: resumed_from.map(|r| r.1),
    })
}

/// Saves the final model as `RUN/model` (with the tokenizer files beside `tokenizer`) and writes
/// `summary.json`.
pub(crate) fn finish<B, M>(
    trainer: &Trainer<B, M>,
    run: &RunDir,
    model_config: &BertHashConfig,
    layout: &WeightLayout,
    tokenizer: &Path,
    final_eval: BTreeMap<String, f64>,
    checkpoint: PathBuf,
    log: &Logger,
) -> Result<Summary>
where
    B: AutodiffBackend,
    M: HfModel<B> + AutodiffModule<B>,
{
    pretrained::save::<B, M>(&run.model_dir(), model_config, &trainer.model, layout)?;
    crate::pretrain::copy_tokenizer_files(tokenizer, &run.model_dir());
    log.finish();
    let state = &trainer.state;
    let summary = Summary {
        steps: state.step,
        tokens_seen: state.tokens_seen,
        wall_time_s: state.elapsed_s,
        tokens_per_s: state.tokens_seen as f64 / state.elapsed_s.max(1e-9),
        final_loss: state.last_loss,
        best_eval: state.best_eval.clone(),
        final_eval,
        skipped_steps: state.skipped_steps,
        precision: trainer.config.precision.to_string(),
        model_dir: run.model_dir(),
        checkpoint: Some(checkpoint),
    };
    write_json(&run.summary(), &summary)?;
    Ok(summary)
}

/// Writes a checkpoint and logs it (with the step record the save flushed, if any).
pub(crate) fn save_checkpoint<B, M>(
    trainer: &mut Trainer<B, M>,
    checkpoints: &Checkpoints,
    model_config: &BertHashConfig,
    layout: &WeightLayout,
    run_config: &serde_json::Value,
    log: &mut Logger,
) -> Result<PathBuf>
where
    B: AutodiffBackend,
    M: HfModel<B> + AutodiffModule<B>,
{
    let (path, record) = trainer.save(checkpoints, model_config, layout, run_config)?;
    if let Some(record) = record {
        log.step(record)?;
    }
    log.note(&format!("checkpoint {}", path.display()));
    Ok(path)
}
