//! The order of the training examples: shuffled anew each epoch from `(seed, epoch)`, cut into
//! micro-batches counted across epochs, so a resumed run needs only the micro-batch counter.

use berthash_data::rng::splitmix64;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::TrainConfig;

/// The shuffled order of the training examples in each epoch, a pure function of
/// `(seed, epoch)` (so resuming needs only the micro-batch counter).
pub struct EpochOrder {
    seed: u64,
    len: usize,
    batch_size: usize,
    epoch: Option<u64>,
    order: Vec<usize>,
}

impl EpochOrder {
    pub fn new(train: &TrainConfig, len: usize) -> Self {
        Self {
            seed: train.seed,
            len,
            batch_size: train.batch_size,
            epoch: None,
            order: Vec::new(),
        }
    }

    /// Micro-batches per epoch (the last one may be short).
    pub fn micro_per_epoch(&self) -> u64 {
        self.len.div_ceil(self.batch_size) as u64
    }

    /// The example indices of the run's micro-batch `k` (counted across epochs).
    pub fn rows(&mut self, k: u64) -> &[usize] {
        let (epoch, index) = (k / self.micro_per_epoch(), k % self.micro_per_epoch());
        if self.epoch != Some(epoch) {
            let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(self.seed ^ splitmix64(epoch)));
            self.order = (0..self.len).collect();
            self.order.shuffle(&mut rng);
            self.epoch = Some(epoch);
        }
        let start = (index as usize * self.batch_size).min(self.len);
        let end = (start + self.batch_size).min(self.len);
        &self.order[start..end]
    }
}
