//! Masked-language-model masking (the BERT / Hugging Face collator recipe).
//!
//! Each non-special token is selected with probability `mlm_probability`
//! (0.15); a selected token becomes `[MASK]` with probability `mask` (0.8), a
//! uniformly random vocabulary id with probability `random` (0.1), and stays as
//! it is otherwise (0.1). Labels exist only at selected positions: the batch
//! carries the flat positions and the original ids, so the model can gather
//! those hidden states and compute logits there only.
//!
//! Special tokens (`[CLS] [SEP] [PAD] [MASK] [UNK]`, the collator's
//! `all_special_ids`) and padding are never selected. A batch in which nothing
//! was selected gets one selected position, so the loss is always defined.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::rng;
use crate::tokenize::SpecialIds;

/// Masking probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// Share of eligible tokens selected for prediction.
    #[serde(default = "default_mlm_probability")]
    pub mlm_probability: f64,
    /// Of the selected: share replaced by `[MASK]`.
    #[serde(default = "default_mask")]
    pub mask: f64,
    /// Of the selected: share replaced by a random id.
    #[serde(default = "default_random")]
    pub random: f64,
    /// Of the selected: share left unchanged.
    #[serde(default = "default_keep")]
    pub keep: f64,
}

fn default_mlm_probability() -> f64 {
    0.15
}
fn default_mask() -> f64 {
    0.8
}
fn default_random() -> f64 {
    0.1
}
fn default_keep() -> f64 {
    0.1
}

impl Default for MaskingConfig {
    fn default() -> Self {
        MaskingConfig {
            mlm_probability: default_mlm_probability(),
            mask: default_mask(),
            random: default_random(),
            keep: default_keep(),
        }
    }
}

impl MaskingConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        let in_unit = |v: f64| (0.0..=1.0).contains(&v);
        if !(self.mlm_probability > 0.0 && in_unit(self.mlm_probability)) {
            return Err(DataError::config(
                "masking.mlm_probability",
                format!("must be in (0, 1], got {}", self.mlm_probability),
            ));
        }
        let sum = self.mask + self.random + self.keep;
        if ![self.mask, self.random, self.keep].into_iter().all(in_unit) || (sum - 1.0).abs() > 1e-9
        {
            return Err(DataError::config(
                "masking",
                format!(
                    "mask/random/keep must be in [0, 1] and sum to 1, got {}/{}/{}",
                    self.mask, self.random, self.keep
                ),
            ));
        }
        Ok(())
    }
}

/// One pre-training batch. All vectors are flat and row-major `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlmBatch {
    pub batch_size: usize,
    pub seq_len: usize,
    /// Input ids after masking.
    pub input_ids: Vec<u32>,
    /// All 0 (one segment).
    pub token_type_ids: Vec<u32>,
    /// `None` for packed rows (no padding); 1 = real token, 0 = padding.
    pub attention_mask: Option<Vec<u32>>,
    /// Flat indices `row * seq_len + col` of the selected tokens, ascending.
    pub masked_positions: Vec<u32>,
    /// The original id at each selected position.
    pub masked_labels: Vec<u32>,
}

impl MlmBatch {
    /// Number of tokens in the batch (padding excluded).
    pub fn real_tokens(&self) -> usize {
        self.attention_mask
            .as_ref()
            .map_or(self.input_ids.len(), |m| {
                m.iter().filter(|&&v| v == 1).count()
            })
    }
}

/// Applies masking to unmasked rows.
#[derive(Debug, Clone, Copy)]
pub struct Masker {
    config: MaskingConfig,
    special: SpecialIds,
    vocab_size: u64,
}

impl Masker {
    pub fn new(config: MaskingConfig, special: SpecialIds, vocab_size: usize) -> Result<Self> {
        config.validate()?;
        if vocab_size == 0 {
            return Err(DataError::config("vocab_size", "must be > 0"));
        }
        Ok(Masker {
            config,
            special,
            vocab_size: vocab_size as u64,
        })
    }

    fn eligible(&self, input_ids: &[u32], mask: Option<&[u32]>, i: usize) -> bool {
        !self.special.is_special(input_ids[i]) && mask.is_none_or(|m| m[i] == 1)
    }

    /// Replaces a selected token by `[MASK]`, a random id, or keeps it.
    fn corrupt(&self, id: &mut u32, rng: &mut ChaCha8Rng) {
        let r = rng::unit(rng);
        if r < self.config.mask {
            *id = self.special.mask;
        } else if r < self.config.mask + self.config.random {
            *id = rng::below(rng, self.vocab_size) as u32;
        }
    }

    /// Masks `input_ids` (flat `[batch_size, seq_len]`) and builds the batch.
    pub fn apply(
        &self,
        mut input_ids: Vec<u32>,
        batch_size: usize,
        seq_len: usize,
        attention_mask: Option<Vec<u32>>,
        rng: &mut ChaCha8Rng,
    ) -> MlmBatch {
        let mask = attention_mask.as_deref();
        let mut positions = Vec::new();
        let mut labels = Vec::new();
        let mut eligible_count = 0u64;
        for i in 0..input_ids.len() {
            if !self.eligible(&input_ids, mask, i) {
                continue;
            }
            eligible_count += 1;
            if rng::unit(rng) < self.config.mlm_probability {
                positions.push(i as u32);
                labels.push(input_ids[i]);
                self.corrupt(&mut input_ids[i], rng);
            }
        }
        if positions.is_empty() && eligible_count > 0 {
            // Select the k-th eligible token so the batch still has a target.
            let k = rng::below(rng, eligible_count);
            if let Some(i) = (0..input_ids.len())
                .filter(|&i| self.eligible(&input_ids, mask, i))
                .nth(k as usize)
            {
                positions.push(i as u32);
                labels.push(input_ids[i]);
                self.corrupt(&mut input_ids[i], rng);
            }
        }
        MlmBatch {
            batch_size,
            seq_len,
            token_type_ids: vec![0; input_ids.len()],
            input_ids,
            attention_mask,
            masked_positions: positions,
            masked_labels: labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECIAL: SpecialIds = SpecialIds {
        cls: 101,
        sep: 102,
        pad: 0,
        mask: 103,
        unk: 100,
    };

    #[test]
    fn config_is_validated() {
        let bad = MaskingConfig {
            mask: 0.9,
            ..MaskingConfig::default()
        };
        assert!(Masker::new(bad, SPECIAL, 10).is_err());
        let bad = MaskingConfig {
            mlm_probability: 0.0,
            ..MaskingConfig::default()
        };
        assert!(Masker::new(bad, SPECIAL, 10).is_err());
    }

    #[test]
    fn a_batch_always_gets_a_target() {
        let cfg = MaskingConfig {
            mlm_probability: 1e-9,
            ..MaskingConfig::default()
        };
        let m = Masker::new(cfg, SPECIAL, 30522).unwrap();
        let ids = vec![101, 2000, 2001, 102];
        let b = m.apply(
            ids,
            1,
            4,
            None,
            &mut rng::derive(1, rng::Domain::Mask, 0, 0),
        );
        assert_eq!(b.masked_positions.len(), 1);
        assert!(b.masked_positions[0] == 1 || b.masked_positions[0] == 2);
    }

    #[test]
    fn only_special_tokens_means_no_target() {
        let m = Masker::new(MaskingConfig::default(), SPECIAL, 30522).unwrap();
        let b = m.apply(
            vec![101, 102, 0, 0],
            1,
            4,
            Some(vec![1, 1, 0, 0]),
            &mut rng::derive(1, rng::Domain::Mask, 0, 0),
        );
        assert!(b.masked_positions.is_empty());
        assert_eq!(b.input_ids, vec![101, 102, 0, 0]);
    }
}
