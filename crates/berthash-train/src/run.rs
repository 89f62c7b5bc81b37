//! A training run, the skeleton pre-training and fine-tuning share: it starts fresh or from the
//! newest complete checkpoint, takes optimizer steps and logs them, records evaluations against
//! the run's criterion, writes checkpoints when due, and finishes with the final model and
//! `summary.json`. It owns the trainer, the metrics log, the checkpoints and the run directory;
//! the entry points ([`crate::pretrain()`], [`crate::finetune()`]) own the data and the loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berthash_data::tokenize::copy_tokenizer_files;
use berthash_kernels::TrainBackend;
use berthash_model::pretrained::{self, HfModel, CONFIG_FILE, WEIGHTS_FILE};
use berthash_model::weights::WeightLayout;
use berthash_model::{Architecture, BertHashConfig};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;

use crate::best::Criterion;
use crate::checkpoint::BEST_DIR;
use crate::checkpoint::{Checkpoints, RunFiles, TrainState};
use crate::dump::BatchDump;
use crate::error::{Result, TrainError};
use crate::log::{EvalRecord, Logger, Summary};
use crate::optim::{AdamW, OptimizerConfig};
use crate::run_dir::{write_file, write_json, RunDir, RunMode};
use crate::schedule::ScheduleConfig;
use crate::trainer::Trainer;
use crate::TrainConfig;

/// A run's resolved config, as the run loop reads it.
pub trait Recipe: Serialize {
    fn optimizer(&self) -> &OptimizerConfig;
    fn schedule(&self) -> &ScheduleConfig;
    /// The loop's knobs; `max_steps` must be set.
    fn train(&self) -> &TrainConfig;
    /// The tokenizer, copied beside the final model.
    fn tokenizer(&self) -> &Path;
}

/// What a run is made of.
pub struct RunSpec<'a, C: Recipe> {
    pub dir: &'a Path,
    pub mode: RunMode,
    /// The resolved config, saved in the run directory and in every checkpoint.
    pub config: &'a C,
    pub model: BertHashConfig,
    /// Decides the best evaluation.
    pub criterion: Criterion,
    /// Micro-batches per epoch, for runs that count epochs (logged with each step).
    pub micro_per_epoch: Option<u64>,
    /// Write a checkpoint at every evaluation (fine-tuning: every evaluated epoch can resume).
    pub checkpoint_at_eval: bool,
    /// Early stopping: stop after this many evaluations without an improvement of more than the
    /// threshold.
    pub patience: Option<(u64, f64)>,
}

pub struct Run<B: AutodiffBackend, M> {
    pub trainer: Trainer<B, M>,
    pub dir: RunDir,
    pub model_config: BertHashConfig,
    pub layout: WeightLayout,
    /// The batch recorder of `train.dump_batches`, if asked for.
    pub dump: Option<BatchDump>,
    log: Logger,
    checkpoints: Checkpoints,
    run_config: serde_json::Value,
    tokenizer: PathBuf,
    criterion: Criterion,
    max_steps: u64,
    micro_per_epoch: Option<u64>,
    checkpoint_at_eval: bool,
    patience: Option<(u64, f64)>,
    /// The step of the last evaluation.
    evaluated_at: Option<u64>,
    resumed_at: Option<u64>,
}

impl<B: TrainBackend, M: HfModel<B> + AutodiffModule<B>> Run<B, M> {
    /// Opens the run directory and restores the newest complete checkpoint when resuming;
    /// otherwise takes the model `fresh` gives, with a new optimizer.
    pub fn start<C: Recipe>(
        spec: RunSpec<'_, C>,
        device: &B::Device,
        fresh: impl FnOnce() -> Result<(M, WeightLayout)>,
    ) -> Result<Self> {
        let max_steps = spec.config.train().max_steps.unwrap_or(0);
        let dir = RunDir::prepare(spec.dir, spec.mode)?;
        let checkpoints = Checkpoints::new(dir.checkpoints(), spec.config.train().keep_checkpoints);
        let run_config = serde_json::to_value(spec.config).expect("config serializes");
        dir.save_config(spec.config)?;
        let (model, layout, optimizer, state, resumed) = if spec.mode == RunMode::Resume {
            let r =
                checkpoints.restore_newest::<B, M>(&spec.model, spec.config.optimizer(), device)?;
            restore_best(&r.path, &dir.best_dir(), spec.config.tokenizer())?;
            let resumed = Some((r.path, r.state.step));
            (r.model, r.layout, r.optimizer, r.state, resumed)
        } else {
            let (model, layout) = fresh()?;
            let optimizer = AdamW::new(spec.config.optimizer().clone(), &model);
            let state = TrainState {
                seed: spec.config.train().seed,
                ..TrainState::default()
            };
            (model, layout, optimizer, state, None)
        };
        let schedule = spec
            .config
            .schedule()
            .build(spec.config.optimizer().lr, max_steps);
        let mut trainer = Trainer::new(
            model,
            optimizer,
            schedule,
            spec.config.train().clone(),
            state,
            device.clone(),
        );
        trainer.padding_idx = Some(spec.model.pad_token_id);
        let resumed_at = resumed.as_ref().map(|r| r.1);
        let report = spec.config.train().report_to;
        let log = Logger::open(
            &dir.metrics(),
            trainer.state.step,
            max_steps,
            resumed_at,
            report,
        )?;
        if spec.config.schedule().warmup_steps > max_steps {
            log.warn(&format!(
                "the warm-up ({} steps) is longer than the run ({} steps): the learning rate never reaches its peak",
                spec.config.schedule().warmup_steps, max_steps
            ));
        }
        if let Some((path, step)) = resumed {
            log.note(&format!("resuming from {} (step {step})", path.display()));
            trainer.last_checkpoint = Some(path);
        }
        let dump = BatchDump::for_run(
            spec.config.train().dump_batches.as_deref(),
            spec.mode,
            match M::ARCHITECTURE {
                Architecture::MaskedLm => "mlm",
                _ => "classification",
            },
            &run_config,
        );
        if let Some(dump) = &dump {
            dump.write_initial(&spec.model, trainer.model(), &layout)?;
        }
        Ok(Self {
            trainer,
            dir,
            model_config: spec.model,
            layout,
            dump,
            log,
            checkpoints,
            run_config,
            tokenizer: spec.config.tokenizer().to_path_buf(),
            criterion: spec.criterion,
            max_steps,
            micro_per_epoch: spec.micro_per_epoch,
            checkpoint_at_eval: spec.checkpoint_at_eval,
            patience: spec.patience,
            evaluated_at: None,
            resumed_at,
        })
    }

    /// The run's tokenizer (`tokenizer.json`).
    pub fn tokenizer(&self) -> &Path {
        &self.tokenizer
    }

    /// Optimizer steps taken.
    pub fn step(&self) -> u64 {
        self.trainer.state.step
    }

    /// Whether the run has taken its steps, or stopped early.
    pub fn done(&self) -> bool {
        self.step() >= self.max_steps || self.trainer.state.stopped_early
    }

    /// Whether the last evaluation was made at this step.
    pub fn evaluated_now(&self) -> bool {
        self.evaluated_at == Some(self.step())
    }

    /// Whether something done every `every` steps (0: never) is due now; the last step is left
    /// to the end of the run, which evaluates and checkpoints anyway.
    pub fn due(&self, every: u64) -> bool {
        every > 0 && self.step().is_multiple_of(every) && !self.done()
    }

    /// Whether the last step finished an epoch (runs that count epochs).
    pub fn epoch_ended(&self) -> bool {
        let (Some(per), n) = (self.micro_per_epoch, self.trainer.state.micro_batches) else {
            return false;
        };
        let before = n.saturating_sub(self.trainer.config.grad_accum as u64);
        n / per > before / per && !self.done()
    }

    /// Whether this process has trained (a resumed run that was already complete has not).
    pub fn trained(&self) -> bool {
        self.resumed_at.is_none_or(|at| self.step() > at)
    }

    /// One optimizer step over `micro` (see [`Trainer::step`]); the losses are read and logged
    /// every `log_every` steps and at the last.
    pub fn train_step<T>(
        &mut self,
        micro: Vec<T>,
        tokens: u64,
        loss: impl Fn(&M, T) -> Tensor<B, 1>,
    ) -> Result<()> {
        self.trainer.step(micro, tokens, loss)?;
        if self.step().is_multiple_of(self.trainer.config.log_every) || self.done() {
            self.flush_log()?;
        }
        if crate::interrupt::stop_requested() {
            let checkpoint = self.checkpoint()?;
            self.log.finish();
            return Err(TrainError::Interrupted {
                step: self.step(),
                checkpoint,
            });
        }
        Ok(())
    }

    fn flush_log(&mut self) -> Result<()> {
        if let Some(mut record) = self.trainer.flush()? {
            if let Some(per) = self.micro_per_epoch {
                record.epoch = Some(self.trainer.state.micro_batches as f64 / per as f64);
            }
            self.log.step(record)?;
        }
        Ok(())
    }

    /// Logs an evaluation of one split.
    pub fn record_eval(&mut self, split: &str, metrics: BTreeMap<String, f64>) -> Result<()> {
        let step = self.step();
        self.evaluated_at = Some(step);
        self.log.eval(EvalRecord {
            step,
            split: split.to_string(),
            metrics,
        })
    }

    /// Offers the criterion metric's `value` from the evaluation just made: returns whether it
    /// is the best so far, and counts evaluations without improvement for early stopping.
    pub fn offer_best(&mut self, value: f64) -> bool {
        let state = &mut self.trainer.state;
        let previous = state.best_eval.as_ref().map(|b| b.value);
        let improved = self
            .criterion
            .update(&mut state.best_eval, value, state.step);
        if let Some((patience, threshold)) = self.patience {
            if previous.is_none_or(|p| self.criterion.improves_by(value, p, threshold)) {
                state.evals_without_improvement = 0;
            } else {
                state.evals_without_improvement += 1;
            }
            if state.evals_without_improvement >= patience {
                state.stopped_early = true;
                let (metric, n) = (&self.criterion.metric, state.evals_without_improvement);
                self.log.note(&format!(
                    "stopping early at step {}: {metric} has not improved in {n} evaluations",
                    state.step
                ));
            }
        }
        improved
    }

    /// Writes a checkpoint when one is due: every `save_every` steps, and after an evaluation at
    /// this step when the run checkpoints at evaluations.
    pub fn checkpoint_if_due(&mut self) -> Result<()> {
        let evaluated = self.checkpoint_at_eval && self.evaluated_now();
        if self.due(self.trainer.config.save_every) || (evaluated && !self.done()) {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Writes a checkpoint of the current state, and logs it.
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        let best = self.dir.best_dir();
        let best = best.join(WEIGHTS_FILE).is_file().then_some(best);
        let files = RunFiles {
            model_config: &self.model_config,
            layout: &self.layout,
            run_config: &self.run_config,
            tokenizer: Some(&self.tokenizer),
            best: best.as_deref(),
        };
        let (path, record) = self.trainer.save(&self.checkpoints, &files)?;
        if let Some(record) = record {
            self.log.step(record)?;
        }
        self.log.note(&format!("checkpoint {}", path.display()));
        Ok(path)
    }

    /// Writes the final checkpoint, the final model as `RUN/model` (with the tokenizer files)
    /// and `summary.json`; `data_skipped` is what the data stream skipped (see [`Summary`]).
    pub fn finish(
        mut self,
        final_eval: BTreeMap<String, f64>,
        data_skipped: BTreeMap<String, u64>,
    ) -> Result<Summary> {
        for (what, n) in &data_skipped {
            self.log
                .warn(&format!("the data stream skipped {n} ({what})"));
        }
        if let Some(dump) = self.dump.take() {
            dump.finish()?;
        }
        let checkpoint = self.checkpoint()?;
        let model_dir = self.dir.model_dir();
        pretrained::save::<B, M>(
            &model_dir,
            &self.model_config,
            self.trainer.model(),
            &self.layout,
        )?;
        copy_tokenizer_files(&self.tokenizer, &model_dir);
        self.log.finish();
        let state = &self.trainer.state;
        let summary = Summary {
            steps: state.step,
            tokens_seen: state.tokens_seen,
            wall_time_s: state.elapsed_s,
            tokens_per_s: state.tokens_seen as f64 / state.elapsed_s.max(1e-9),
            final_loss: state.last_loss,
            best_eval: state.best_eval.clone(),
            metric_for_best_model: self.criterion.metric.clone(),
            greater_is_better: self.criterion.greater_is_better(),
            stopped_early: state.stopped_early,
            final_eval,
            skipped_steps: state.skipped_steps,
            data_skipped,
            precision: self.trainer.config.precision.to_string(),
            backend: B::name(&self.trainer.device),
            model_dir,
            checkpoint: Some(checkpoint),
        };
        write_json(&self.dir.summary(), &summary)?;
        Ok(summary)
    }
}

/// Makes the run's `best/` the best model that goes with `checkpoint`'s state: the copy the
/// checkpoint holds, or none (a `best/` written after the checkpoint belongs to steps the
/// resumed run takes again).
fn restore_best(checkpoint: &Path, best: &Path, tokenizer: &Path) -> Result<()> {
    let saved = checkpoint.join(BEST_DIR);
    if !saved.join(WEIGHTS_FILE).is_file() {
        if best.exists() {
            std::fs::remove_dir_all(best).map_err(|e| TrainError::io(best, e))?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(best).map_err(|e| TrainError::io(best, e))?;
    for name in [CONFIG_FILE, WEIGHTS_FILE] {
        let bytes =
            std::fs::read(saved.join(name)).map_err(|e| TrainError::io(saved.join(name), e))?;
        write_file(&best.join(name), &bytes)?;
    }
    copy_tokenizer_files(tokenizer, best);
    Ok(())
}
