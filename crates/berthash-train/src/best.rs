//! The best evaluation of a run: which metric decides, in which direction, and the one rule
//! for "better".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether a metric improves upwards (accuracy) or downwards (loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    Maximize,
    Minimize,
}

/// The metric that picks a run's best evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// The metric's key in an evaluation (`eval_loss`, `eval_accuracy`, …).
    pub metric: String,
    pub goal: Goal,
}

/// The best evaluation so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestEval {
    pub metric: String,
    pub value: f64,
    pub step: u64,
}

impl Criterion {
    pub fn new(metric: impl Into<String>, goal: Goal) -> Self {
        Self {
            metric: metric.into(),
            goal,
        }
    }

    /// Whether `value` beats `best` by more than `threshold` (early stopping's notion of an
    /// improvement, as the Trainer's EarlyStoppingCallback).
    pub fn improves_by(&self, value: f64, best: f64, threshold: f64) -> bool {
        match self.goal {
            Goal::Maximize => value > best && value - best > threshold,
            Goal::Minimize => value < best && best - value > threshold,
        }
    }

    /// Whether a larger value is better.
    pub fn greater_is_better(&self) -> bool {
        self.goal == Goal::Maximize
    }

    /// `eval_results.json`: the best model's `metrics`, with this rule and the step it chose.
    pub fn results_json(
        &self,
        metrics: &BTreeMap<String, f64>,
        best: Option<&BestEval>,
    ) -> serde_json::Value {
        let mut json = serde_json::json!(metrics);
        json["metric_for_best_model"] = serde_json::json!(self.metric);
        json["greater_is_better"] = serde_json::json!(self.greater_is_better());
        json["best_step"] = serde_json::json!(best.map(|b| b.step));
        json
    }

    /// Records `value` at `step` in `best` when it is finite and strictly better than the best so
    /// far (ties keep the earlier evaluation, as the Trainer does); returns whether it was.
    pub fn update(&self, best: &mut Option<BestEval>, value: f64, step: u64) -> bool {
        let better = best.as_ref().is_none_or(|b| match self.goal {
            Goal::Maximize => value > b.value,
            Goal::Minimize => value < b.value,
        });
        if better && value.is_finite() {
            *best = Some(BestEval {
                metric: self.metric.clone(),
                value,
                step,
            });
            return true;
        }
        false
    }
}
