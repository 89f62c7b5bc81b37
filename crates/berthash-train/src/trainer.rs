//! The optimizer step shared by pre-training and fine-tuning: micro-batches with gradient
//! accumulation, optional half-precision compute, clipping, the non-finite guard, AdamW, and the
//! lazily read loss/gradient-norm that the logs report.
//!
//! Nothing here reads a tensor back to the host except [`Trainer::flush`] (every `log_every`
//! steps and before a checkpoint), unless `on_nonfinite = skip` or f16 loss scaling asks for a
//! per-step check.

use std::collections::HashMap;
use std::time::Instant;

use berthash_data::rng::splitmix64;
use berthash_kernels::TrainBackend;
use berthash_model::pretrained::HfModel;
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType};

use crate::checkpoint::{Checkpoints, RunFiles, Snapshot, TrainState};
use crate::clip::{clip_grad_norm, Clipped};
use crate::config::{OnNonFinite, TrainConfig};
use crate::error::{Result, TrainError};
use crate::log::StepRecord;
use crate::optim::AdamW;
use crate::phases::{Laps, Part, PhaseTimes};
use crate::precision::{compute_copy, grads_to_f32, LossScaler, Precision};
use crate::schedule::Schedule;

/// The seed of the backend RNG (dropout) for one micro-batch: a hash of the run's seed, the
/// step and the micro-batch, so a resumed run draws the same masks as an uninterrupted one.
pub fn micro_batch_seed(seed: u64, step: u64, micro: u64) -> u64 {
    let mut h = splitmix64(seed);
    h = splitmix64(h ^ step);
    splitmix64(h ^ micro.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Tells glibc's allocator to keep freed memory for reuse instead of handing it back to the
/// kernel. A training step allocates and frees the same tensors every step, several of them
/// above glibc's 32 MiB mmap limit (the MLM logits, say): by default each of those is a fresh
/// `mmap`, page-faulted and zeroed by the kernel, then `munmap`ed — on the CPU backend that was a
/// third of the step. With mmap off and trimming off, the heap grows to the step's peak once and
/// is reused (peak memory unchanged). Process-wide; called by [`Trainer::new`]; a no-op
/// elsewhere than glibc Linux.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only sets allocator parameters; it is safe to call at any time.
            unsafe {
                libc::mallopt(libc::M_MMAP_MAX, 0);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
                libc::mallopt(libc::M_TOP_PAD, 64 << 20);
            }
        });
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Updated,
    /// Non-finite loss or gradient: no update (`on_nonfinite = skip`, or an f16 overflow).
    Skipped,
}

/// Lazily read values of the steps since the last flush.
struct Pending<B: Backend> {
    losses: Vec<Tensor<B, 1>>,
    norms: Vec<Tensor<B, 1>>,
    /// Steps (1-based, after the update) the entries belong to.
    steps: Vec<u64>,
    lr: f64,
    tokens: u64,
    skipped: u64,
    since: Instant,
}

pub struct Trainer<B: AutodiffBackend, M> {
    /// The f32 model (master weights); read it with [`Trainer::model`].
    model: M,
    /// In half precision, the compute copy of `model` the next step runs and its dtype (see
    /// [`crate::precision`]): written by the last update, `None` before the first step.
    compute: Option<(FloatDType, M)>,
    pub optimizer: AdamW<B>,
    pub schedule: Schedule,
    pub config: TrainConfig,
    pub max_grad_norm: Option<f64>,
    /// The token table row whose gradient is zeroed after backward (`padding_idx` semantics,
    /// see [`crate::padding_idx`]); pretrain/finetune set it to the model's `pad_token_id`.
    pub padding_idx: Option<usize>,
    pub state: TrainState,
    pub device: B::Device,
    scaler: Option<LossScaler>,
    pending: Pending<B::InnerBackend>,
    /// `state.elapsed_s` when this process took the run over, and when.
    elapsed_base: f64,
    started: Instant,
    /// The newest checkpoint written or resumed from.
    pub last_checkpoint: Option<std::path::PathBuf>,
    /// Times the parts of each step when set ([`Trainer::time_phases`]).
    laps: Option<Laps>,
}

impl<B: TrainBackend, M: AutodiffModule<B> + HfModel<B>> Trainer<B, M> {
    pub fn new(
        model: M,
        optimizer: AdamW<B>,
        schedule: Schedule,
        config: TrainConfig,
        state: TrainState,
        device: B::Device,
    ) -> Self {
        keep_freed_memory();
        let max_grad_norm = optimizer.config().max_grad_norm;
        let scaler = (config.precision == Precision::F16).then(|| LossScaler::from_state(&state));
        let elapsed_base = state.elapsed_s;
        Self {
            model,
            compute: None,
            optimizer,
            schedule,
            config,
            max_grad_norm,
            padding_idx: None,
            state,
            device,
            scaler,
            pending: Pending {
                losses: Vec::new(),
                norms: Vec::new(),
                steps: Vec::new(),
                lr: 0.0,
                tokens: 0,
                skipped: 0,
                since: Instant::now(),
            },
            elapsed_base,
            started: Instant::now(),
            last_checkpoint: None,
            laps: None,
        }
    }

    /// The model being trained, with its f32 weights.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Times the parts of every step from now on, with a device sync after each part (for
    /// `bench --breakdown`: the syncs slow the steps down).
    pub fn time_phases(&mut self) {
        self.laps = Some(Laps::new());
    }

    /// What [`Trainer::time_phases`] measured so far.
    pub fn phase_times(&self) -> Option<&PhaseTimes> {
        self.laps.as_ref().map(Laps::times)
    }

    fn lap(&mut self, part: Part) {
        if let Some(laps) = &mut self.laps {
            laps.end::<B>(part, &self.device);
        }
    }

    /// Wall time of the run so far (every process that trained it).
    pub fn elapsed_s(&self) -> f64 {
        self.elapsed_base + self.started.elapsed().as_secs_f64()
    }

    /// One optimizer step over `micro_batches` (one backward each, loss scaled by
    /// `1 / micro_batches.len()`). `loss` computes an f32 `[1]` loss on the (possibly half
    /// precision) compute model. `tokens`: non-padding tokens in the micro-batches.
    pub fn step<T>(
        &mut self,
        micro_batches: Vec<T>,
        tokens: u64,
        loss: impl Fn(&M, T) -> Tensor<B, 1>,
    ) -> Result<StepOutcome> {
        if let Some(laps) = &mut self.laps {
            laps.start::<B>(&self.device);
        }
        let lr = self.schedule.lr(self.state.step);
        let n = micro_batches.len();
        let half = (self.config.precision != Precision::F32).then(|| self.config.precision.dtype());
        let compute = half.map(|dtype| match self.compute.take() {
            Some((copied, copy)) if copied == dtype => copy,
            _ => compute_copy(&self.model, dtype, HashMap::new()),
        });
        self.lap(Part::Cast);
        let loss_scale = self.scaler.as_ref().map_or(1.0, |s| s.scale);
        let mut accumulator = GradientsAccumulator::<M>::new();
        let mut losses = Vec::with_capacity(n);
        for (micro, batch) in micro_batches.into_iter().enumerate() {
            B::seed(
                &self.device,
                micro_batch_seed(self.state.seed, self.state.step, micro as u64),
            );
            let value = loss(compute.as_ref().unwrap_or(&self.model), batch);
            self.lap(Part::Forward);
            losses.push(value.clone().detach().inner());
            let grads = value.mul_scalar(loss_scale / n as f64).backward();
            let model = compute.as_ref().unwrap_or(&self.model);
            // The gradients are found by the compute copy's tensors and kept under the ids it
            // shares with the master model.
            let mut grads = GradientsParams::from_grads(grads, model);
            if n > 1 && half.is_some() {
                grads_to_f32(model, &mut grads);
            }
            accumulator.accumulate(model, grads);
            self.lap(Part::Backward);
        }
        let mut grads = accumulator.grads();
        let loss = Tensor::cat(losses, 0).mean();
        if let Some(pad) = self.padding_idx {
            crate::padding_idx::zero_padding_grad(&self.model, &mut grads, pad);
        }
        let grads = self.optimizer.gather(&self.model, grads);
        // The loss scale's removal and the clipping are one factor the optimizer step applies.
        let Clipped { norm, grad_scale } =
            clip_grad_norm(&grads, 1.0 / loss_scale, self.max_grad_norm);
        self.lap(Part::Clip);

        self.state.step += 1;
        self.state.scheduler_step = self.state.step;
        self.state.micro_batches += n as u64;
        self.state.tokens_seen += tokens;
        self.pending.tokens += tokens;
        self.pending.lr = lr;

        let check_now = self.config.on_nonfinite == OnNonFinite::Skip || self.scaler.is_some();
        let finite = if check_now {
            let values = Tensor::cat(vec![loss.clone(), norm.clone()], 0)
                .into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .expect("f64 values");
            let finite = values.iter().all(|v| v.is_finite());
            if let Some(scaler) = &mut self.scaler {
                scaler.update(finite);
                scaler.save_to(&mut self.state);
            }
            if !finite && self.config.on_nonfinite == OnNonFinite::Stop && self.scaler.is_none() {
                return Err(self.nonfinite_error(self.state.step, values[0] as f32));
            }
            finite
        } else {
            true
        };
        self.pending.losses.push(loss);
        self.pending.norms.push(norm);
        self.pending.steps.push(self.state.step);
        if !finite {
            // The weights did not change, nor does their compute copy.
            self.compute = half.zip(compute);
            self.state.skipped_steps += 1;
            self.pending.skipped += 1;
            tracing::warn!(
                "step {}: non-finite loss or gradient norm, update skipped",
                self.state.step
            );
            return Ok(StepOutcome::Skipped);
        }
        // The update writes the next copy: this one goes first.
        drop(compute);
        let model = self.model.clone();
        self.model = match half {
            None => self.optimizer.step(lr, model, grads, grad_scale),
            Some(dtype) => {
                let (model, copy) = self
                    .optimizer
                    .step_and_cast(lr, model, grads, grad_scale, dtype);
                self.compute = Some((dtype, copy));
                model
            }
        };
        self.lap(Part::Optimizer);
        Ok(StepOutcome::Updated)
    }

    fn nonfinite_error(&self, step: u64, value: f32) -> TrainError {
        TrainError::NonFinite {
            step,
            value,
            last_checkpoint: self.last_checkpoint.clone(),
        }
    }

    /// Reads the losses and norms since the last flush (one host sync) and returns the record to
    /// log, or `None` if no step happened or every one of them was skipped. Under
    /// `on_nonfinite = stop`, a non-finite loss is an error naming its step.
    pub fn flush(&mut self) -> Result<Option<StepRecord>> {
        if self.pending.steps.is_empty() {
            return Ok(None);
        }
        let read = |tensors: Vec<Tensor<B::InnerBackend, 1>>| -> Vec<f64> {
            Tensor::cat(tensors, 0)
                .into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .expect("f64 values")
        };
        let losses = read(std::mem::take(&mut self.pending.losses));
        let norms = read(std::mem::take(&mut self.pending.norms));
        let steps = std::mem::take(&mut self.pending.steps);
        if self.config.on_nonfinite == OnNonFinite::Stop && self.scaler.is_none() {
            if let Some(i) =
                (0..losses.len()).find(|&i| !losses[i].is_finite() || !norms[i].is_finite())
            {
                return Err(self.nonfinite_error(steps[i], losses[i] as f32));
            }
        }
        let finite: Vec<usize> = (0..losses.len())
            .filter(|&i| losses[i].is_finite() && norms[i].is_finite())
            .collect();
        let seconds = self.pending.since.elapsed().as_secs_f64();
        let tokens = std::mem::take(&mut self.pending.tokens);
        let skipped = std::mem::take(&mut self.pending.skipped);
        self.pending.since = Instant::now();
        self.state.elapsed_s = self.elapsed_s();
        if finite.is_empty() {
            return Ok(None);
        }
        let mean = |v: &[f64]| finite.iter().map(|&i| v[i]).sum::<f64>() / finite.len() as f64;
        let loss = mean(&losses);
        self.state.last_loss = Some(loss);
        Ok(Some(StepRecord {
            step: self.state.step,
            loss,
            lr: self.pending.lr,
            grad_norm: mean(&norms),
            tokens_per_s: if seconds > 0.0 {
                tokens as f64 / seconds
            } else {
                0.0
            },
            tokens_seen: self.state.tokens_seen,
            elapsed_s: self.state.elapsed_s,
            skipped,
            epoch: None,
            loss_scale: self.scaler.as_ref().map(|s| s.scale),
        }))
    }

    /// Writes a checkpoint of the current state (after checking the pending losses) with the
    /// run's `files`.
    pub fn save(
        &mut self,
        checkpoints: &Checkpoints,
        files: &RunFiles<'_>,
    ) -> Result<(std::path::PathBuf, Option<StepRecord>)> {
        let record = self.flush()?;
        self.state.elapsed_s = self.elapsed_s();
        let path = checkpoints.save(&Snapshot {
            files,
            model: &self.model,
            optimizer: &self.optimizer,
            state: &self.state,
        })?;
        self.last_checkpoint = Some(path.clone());
        Ok((path, record))
    }
}

/// The loss in f32 whatever the compute dtype (the cast is tracked, so gradients flow back).
pub fn to_f32<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Tensor<B, D> {
    if tensor.dtype() == DType::F32 {
        tensor
    } else {
        tensor.cast(burn::tensor::FloatDType::F32)
    }
}
