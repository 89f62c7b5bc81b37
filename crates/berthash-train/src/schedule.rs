//! Learning-rate schedules, as Hugging Face `transformers` defines them (`get_*_schedule_with_warmup`).
//!
//! `step` is the number of optimizer steps already taken: the first update uses `lr_at(0)`, so
//! with warmup the very first update has learning rate 0, exactly as with a `LambdaLR` in PyTorch.

use serde::{Deserialize, Serialize};

/// The shape of the schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// `get_linear_schedule_with_warmup`: linear warmup, then linear decay to 0 at `total_steps`.
    #[default]
    Linear,
    /// `get_constant_schedule_with_warmup`: linear warmup, then constant.
    Constant,
    /// `get_cosine_schedule_with_warmup` (half a cosine period): warmup, then cosine decay to 0.
    Cosine,
}

/// How the learning rate moves over training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default)]
    pub kind: ScheduleKind,
    #[serde(default)]
    pub warmup_steps: u64,
    /// Optimizer steps the decay runs over; `None` = the run's total steps.
    #[serde(default)]
    pub total_steps: Option<u64>,
}

impl ScheduleConfig {
    /// The pre-training recipe: 2,500 warmup steps, then linear decay.
    pub fn pretraining() -> Self {
        Self {
            kind: ScheduleKind::Linear,
            warmup_steps: 2500,
            total_steps: None,
        }
    }

    /// `run_glue` defaults: no warmup, linear decay.
    pub fn finetuning() -> Self {
        Self {
            kind: ScheduleKind::Linear,
            warmup_steps: 0,
            total_steps: None,
        }
    }

    /// The schedule for a peak learning rate and a run of `run_steps` optimizer steps.
    pub fn build(&self, base_lr: f64, run_steps: u64) -> Schedule {
        Schedule {
            kind: self.kind,
            base_lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.total_steps.unwrap_or(run_steps),
        }
    }
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self::pretraining()
    }
}

/// A resolved schedule: a pure function of the step (so resuming needs only the step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl Schedule {
    /// The multiplier of the base learning rate (HF's `lr_lambda`).
    pub fn factor(&self, step: u64) -> f64 {
        let (step, warmup, total) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if step < warmup {
            return step / warmup.max(1.0);
        }
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => ((total - step) / (total - warmup).max(1.0)).max(0.0),
            ScheduleKind::Cosine => {
                let progress = (step - warmup) / (total - warmup).max(1.0);
                let num_cycles = 0.5;
                (0.5 * (1.0 + (std::f64::consts::PI * num_cycles * 2.0 * progress).cos())).max(0.0)
            }
        }
    }

    /// The learning rate of the update made after `step` updates.
    pub fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind, warmup: u64, total: u64) -> Schedule {
        Schedule {
            kind,
            base_lr: 1e-3,
            warmup_steps: warmup,
            total_steps: total,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-15, "{a} != {b}");
    }

    #[test]
    fn linear_warmup_then_decay() {
        // warmup 4, total 10: 0, 1/4, 2/4, 3/4, then (10-s)/6.
        let s = schedule(ScheduleKind::Linear, 4, 10);
        let expected = [
            0.0,
            0.25,
            0.5,
            0.75,
            1.0,
            5.0 / 6.0,
            4.0 / 6.0,
            0.5,
            2.0 / 6.0,
            1.0 / 6.0,
            0.0,
            0.0,
        ];
        for (step, e) in expected.iter().enumerate() {
            close(s.lr(step as u64), 1e-3 * e);
        }
    }

    #[test]
    fn linear_without_warmup_starts_at_full_rate() {
        // run_glue: no warmup, 4 steps: 1, 3/4, 1/2, 1/4.
        let s = schedule(ScheduleKind::Linear, 0, 4);
        for (step, e) in [1.0, 0.75, 0.5, 0.25, 0.0].iter().enumerate() {
            close(s.factor(step as u64), *e);
        }
    }

    #[test]
    fn constant_with_warmup() {
        let s = schedule(ScheduleKind::Constant, 2, 100);
        for (step, e) in [0.0, 0.5, 1.0, 1.0, 1.0].iter().enumerate() {
            close(s.factor(step as u64), *e);
        }
        close(s.factor(1000), 1.0);
    }

    #[test]
    fn cosine_with_warmup() {
        // warmup 2, total 6: decay over 4 steps, factor 0.5 * (1 + cos(pi * p)), p = (s-2)/4.
        let s = schedule(ScheduleKind::Cosine, 2, 6);
        let half_sqrt2 = std::f64::consts::FRAC_1_SQRT_2;
        let expected = [
            0.0,
            0.5,
            1.0,
            0.5 * (1.0 + half_sqrt2), // p = 1/4: cos(pi/4)
            0.5,                      // p = 1/2
            0.5 * (1.0 - half_sqrt2), // p = 3/4
            0.0,                      // p = 1
        ];
        for (step, e) in expected.iter().enumerate() {
            assert!((s.factor(step as u64) - e).abs() < 1e-12, "step {step}");
        }
    }

    #[test]
    fn config_total_defaults_to_run_steps() {
        let built = ScheduleConfig::finetuning().build(1e-4, 40);
        assert_eq!(built.total_steps, 40);
        let fixed = ScheduleConfig {
            total_steps: Some(7),
            ..ScheduleConfig::finetuning()
        }
        .build(1e-4, 40);
        assert_eq!(fixed.total_steps, 7);
    }
}
