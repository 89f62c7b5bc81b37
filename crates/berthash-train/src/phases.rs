//! Where a training step's time goes (`berthash bench --breakdown`): each part of the step ends
//! with a device sync, so that its clock stops when its work is done. GPU backends queue work
//! and let the host run ahead; the syncs take that overlap away and cost time of their own, so
//! the parts are timed in steps of their own, never inside a throughput figure.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::prelude::Backend;

/// A part of the optimizer step (declared in the order of [`PART_NAMES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The compute copy in bf16 or f16 taken (cast from the f32 weights only where no update
    /// has written it: a run's first step).
    Cast,
    /// The loss of each micro-batch: embeddings, encoder, head, cross-entropy.
    Forward,
    /// Each micro-batch's backward pass and its gradients added up.
    Backward,
    /// The padding row's gradient, the gradients gathered into the optimizer's flat vectors,
    /// their norm and the factor that removes a loss scale and clips (applied in the
    /// optimizer's update).
    Clip,
    /// The AdamW update, the gradients multiplied by that factor first (and the finite check,
    /// when a step makes one).
    Optimizer,
}

/// The parts' names, in the order of the step, indexed by `Part as usize`.
pub const PART_NAMES: [&str; 5] = ["cast", "forward", "backward", "clip", "optimizer"];

/// Seconds spent in each part over `steps` timed steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseTimes {
    seconds: [f64; PART_NAMES.len()],
    pub steps: u64,
}

impl PhaseTimes {
    /// Milliseconds per step by part, and their `total`.
    pub fn per_step_ms(&self) -> BTreeMap<String, f64> {
        let per = |s: f64| s * 1e3 / self.steps.max(1) as f64;
        let mut ms: BTreeMap<String, f64> = PART_NAMES
            .iter()
            .zip(self.seconds)
            .map(|(name, s)| (name.to_string(), per(s)))
            .collect();
        ms.insert("total".to_string(), per(self.seconds.iter().sum()));
        ms
    }
}

/// The clock of the step being timed.
#[derive(Debug)]
pub(crate) struct Laps {
    times: PhaseTimes,
    last: Instant,
}

impl Laps {
    pub(crate) fn new() -> Self {
        Laps {
            times: PhaseTimes::default(),
            last: Instant::now(),
        }
    }

    pub(crate) fn times(&self) -> &PhaseTimes {
        &self.times
    }

    /// A step starts: earlier work is finished first.
    pub(crate) fn start<B: Backend>(&mut self, device: &B::Device) {
        let _ = B::sync(device);
        self.times.steps += 1;
        self.last = Instant::now();
    }

    /// `part` ends: its work is finished, and its time added.
    pub(crate) fn end<B: Backend>(&mut self, part: Part, device: &B::Device) {
        let _ = B::sync(device);
        let now = Instant::now();
        self.times.seconds[part as usize] += (now - self.last).as_secs_f64();
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_to_the_total_per_step() {
        let times = PhaseTimes {
            seconds: [0.0, 0.3, 0.5, 0.1, 0.1],
            steps: 10,
        };
        let ms = times.per_step_ms();
        assert_eq!(ms["forward"], 30.0);
        assert_eq!(ms["backward"], 50.0);
        assert!((ms["total"] - 100.0).abs() < 1e-9);
        assert_eq!(ms.len(), 6);
    }
}
