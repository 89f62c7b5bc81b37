//! A training step's memory, estimated before a run starts, so a batch far beyond the machine
//! is refused with the numbers instead of growing until the system kills the process.
//!
//! The estimate counts what autodiff keeps for the backward pass, in f32: per token and layer
//! about 24 hidden-sized vectors (projections, residuals, LayerNorms, dropout masks), 4
//! intermediate-sized ones (the feed-forward input and GELU) and 4 attention rows per head; the
//! masked-LM logits of the selected rows (15%); and a fixed 192 MiB for the model, optimizer,
//! runtime and what the allocator keeps in reserve. Measured peaks of the `berthash` binary on
//! the CPU (femto and nano at 8 to 64 x 128, nano at 32 x 64 and 32 x 256) are 56-87% of it.

use berthash_model::BertHashConfig;

use crate::error::{Result, TrainError};

const FIXED: u64 = 192 << 20;

/// Bytes a training step of `model` on `batch` rows of `seq` tokens needs (an estimate; `mlm`:
/// with the vocabulary logits of the masked rows).
pub fn training_step_bytes(model: &BertHashConfig, batch: usize, seq: usize, mlm: bool) -> u64 {
    let tokens = (batch as u64).saturating_mul(seq as u64);
    let per_layer =
        24 * model.hidden_size + 4 * model.intermediate_size + 4 * model.num_attention_heads * seq;
    let per_token = (model.num_hidden_layers * per_layer + 8 * model.hidden_size) as u64;
    let logits = if mlm {
        tokens.saturating_mul(15) / 100 * model.vocab_size as u64
    } else {
        0
    };
    FIXED.saturating_add(
        tokens
            .saturating_mul(per_token)
            .saturating_add(logits)
            .saturating_mul(4),
    )
}

/// The memory this machine has available now (`MemAvailable`), where the system says.
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses a step whose estimate exceeds the available memory, naming the batch.
pub fn check_fits(model: &BertHashConfig, batch: usize, seq: usize, mlm: bool) -> Result<()> {
    let (Some(available), need) = (
        available_bytes(),
        training_step_bytes(model, batch, seq, mlm),
    ) else {
        return Ok(());
    };
    if need <= available {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    Err(TrainError::config(
        "train.batch_size",
        format!(
            "a step of {batch} x {seq} tokens needs about {:.1} GiB (estimate), more than the {:.1} GiB available: lower the batch size (grad_accum keeps the effective batch)",
            gib(need),
            gib(available)
        ),
    ))
}
