//! Throughput of the real training step, of inference and of the data pipeline, and the peak
//! memory of each configuration (`berthash bench`).
//!
//! - `train`: the [`Trainer`] step that `pretrain` runs (forward, backward, clipping, AdamW)
//!   with the MLM loss at the masked positions only, on synthetic batches (15% of the positions
//!   masked, ids uniform over the vocabulary). `full_vocab` computes the logits at every
//!   position instead (the vocab decoder over all `batch * seq` rows) and the loss of the masked
//!   rows among them: the work of Hugging Face's `BertForMaskedLM` + `Trainer` step.
//! - `infer`: the encoder forward (`last_hidden_state`) without autodiff, as `predict`, `eval`
//!   and sentence embedding run it.
//! - `data`: the pre-training loader (tokenize, pack, shuffle, mask) over a corpus, looping; at
//!   least 3 repetitions of 64 batches after draining its prefetch buffer.
//!
//! Timing: `warmup` steps, then `steps` steps in repetitions of `sync_every` steps; the loss is
//! read back (one host sync) only at the end of a repetition, as `pretrain` does every
//! `log_every` steps. The reported tokens/s is the median over the repetitions. `breakdown`
//! then times the parts of the step ([`crate::phases`]) in `steps` more steps.

use std::path::PathBuf;
use std::time::Instant;

use berthash_data::rng::SplitMix64;
use berthash_data::{CorpusConfig, CorpusSource, MlmBatch, PretrainLoader, PretrainStreamConfig};
use berthash_kernels::{Kernels, TrainBackend};
use berthash_model::loss::cross_entropy;
use berthash_model::pretrained::init_model;
use berthash_model::{BertHashConfig, BertHashForMaskedLM, ModelOptions};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::precision::{cast_params, check_precision, Precision};
use crate::pretrain::mlm_loss;
use crate::tensors::{mlm_tensors, MlmTensors};
use crate::trainer::{keep_freed_memory, to_f32, Trainer};
use crate::{AdamW, OptimizerConfig, ScheduleConfig, TrainConfig, TrainState};

type Mlm<B> = BertHashForMaskedLM<B>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Train,
    Infer,
    Data,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Train => "train",
            Phase::Infer => "infer",
            Phase::Data => "data",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub size: String,
    pub backend: String,
    pub precision: String,
    pub batch: usize,
    pub seq: usize,
    pub phase: Phase,
    /// `masked` (logits at masked positions) or `full-vocab` for train; `encoder` for infer;
    /// `sample-corpus` or `corpus` for data, ending in `-one-pass` for one cold pass.
    pub variant: String,
    /// Median over the repetitions.
    pub tokens_per_s: f64,
    pub tokens_per_s_min: f64,
    pub tokens_per_s_max: f64,
    /// Median milliseconds per step (per batch).
    pub ms_per_step: f64,
    pub steps: usize,
    pub repetitions: usize,
    /// Peak resident memory of the process (VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
    /// Threads of the CPU backend's kernels (the rayon pool: `--threads`, `RAYON_NUM_THREADS`).
    #[serde(default)]
    pub threads: usize,
    /// The last loss read (train only), a sanity check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Milliseconds per step in each part of the training step and their total, from steps
    /// timed after the throughput runs with a device sync after each part
    /// ([`crate::phases`]); with `breakdown` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases_ms: Option<std::collections::BTreeMap<String, f64>>,
    /// Seconds of the first warm-up step, to its result on the host (train and infer): on a GPU
    /// backend, the kernels' compilation and autotuning that a new shape costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_step_s: Option<f64>,
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A packed pre-training batch: random ids, 15% of the positions selected (exactly
/// `round(0.15 * batch * seq)`), 80% of those replaced by `[MASK]` as the collator does.
pub fn synthetic_batch(config: &BertHashConfig, batch: usize, seq: usize, seed: u64) -> MlmBatch {
    const MASK: u32 = 103;
    let mut rng = SplitMix64(seed);
    let mut below = |n: u64| rng.next_u64() % n;
    let n = batch * seq;
    let vocab = config.vocab_size as u64;
    let labels: Vec<u32> = (0..n).map(|_| (999 + below(vocab - 999)) as u32).collect();
    let mut input_ids = labels.clone();
    let masked = ((n as f64) * 0.15).round() as usize;
    // Partial Fisher-Yates over the positions.
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in 0..masked {
        let j = i + below((n - i) as u64) as usize;
        order.swap(i, j);
    }
    let mut positions = order[..masked].to_vec();
    positions.sort_unstable();
    for &p in &positions {
        if below(10) < 8 {
            input_ids[p as usize] = MASK;
        }
    }
    MlmBatch {
        batch_size: batch,
        seq_len: seq,
        input_ids,
        token_type_ids: vec![0; n],
        attention_mask: None,
        masked_labels: positions.iter().map(|&p| labels[p as usize]).collect(),
        masked_positions: positions,
    }
}

/// Hugging Face's step: logits at every position (the decoder over all `batch * seq` rows), the
/// masked rows' cross-entropy (what `CrossEntropyLoss(ignore_index=-100)` computes).
fn full_vocab_loss<B: Kernels>(model: &Mlm<B>, batch: MlmTensors<B>) -> Tensor<B, 1> {
    let (_, logits) = model.forward(batch.input);
    let [b, s, v] = logits.dims();
    let masked = to_f32(logits.reshape([b * s, v])).select(0, batch.positions);
    cross_entropy(masked, batch.labels)
}

/// Where the data phase reads from.
#[derive(Debug, Clone)]
pub struct DataSource {
    pub tokenizer: PathBuf,
    /// Parquet files or token shards, folders or globs.
    pub corpus: Vec<String>,
    /// The `variant` of the measurement (`sample-corpus`, `corpus`).
    pub variant: String,
    /// One pass over the corpus from a fresh loader, timed from its start to its last batch: the
    /// rate from cold data (each word tokenized when first met), not the looping rate once the
    /// tokenizer's word cache is hot. The variant then ends in `-one-pass`.
    pub one_pass: bool,
}

/// One configuration to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub size: String,
    pub batch: usize,
    pub seq: usize,
    pub phase: Phase,
    /// Train with logits at every position (Hugging Face's step) instead of the masked rows.
    pub full_vocab: bool,
    pub steps: usize,
    pub warmup: usize,
    pub sync_every: usize,
    pub precision: Precision,
    /// The backend's name, for the record.
    pub backend: String,
    /// The data phase's corpus and tokenizer.
    pub data: Option<DataSource>,
    /// Training: after the throughput runs, time the parts of the step in `steps` more steps.
    pub breakdown: bool,
}

impl BenchConfig {
    fn base(&self, variant: &str) -> Measurement {
        Measurement {
            size: self.size.clone(),
            backend: self.backend.clone(),
            precision: self.precision.to_string(),
            batch: self.batch,
            seq: self.seq,
            phase: self.phase,
            variant: variant.to_string(),
            tokens_per_s: f64::NAN,
            tokens_per_s_min: f64::NAN,
            tokens_per_s_max: f64::NAN,
            ms_per_step: f64::NAN,
            steps: self.steps,
            repetitions: 0,
            peak_rss_mib: None,
            threads: rayon::current_num_threads(),
            loss: None,
            phases_ms: None,
            first_step_s: None,
        }
    }

    /// Splits the timed steps into repetitions of `sync_every`.
    fn repetitions(&self) -> Vec<usize> {
        let per = self.sync_every.max(1);
        let mut reps = vec![per; self.steps / per];
        if !self.steps.is_multiple_of(per) {
            reps.push(self.steps % per);
        }
        reps
    }
}

fn summarize(mut m: Measurement, tokens_per_step: usize, reps: &[(usize, f64)]) -> Measurement {
    let rates: Vec<f64> = reps
        .iter()
        .map(|&(steps, secs)| (steps * tokens_per_step) as f64 / secs)
        .collect();
    let ms: Vec<f64> = reps
        .iter()
        .map(|&(steps, secs)| secs * 1e3 / steps as f64)
        .collect();
    m.tokens_per_s = median(&rates);
    m.tokens_per_s_min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    m.tokens_per_s_max = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m.ms_per_step = median(&ms);
    m.repetitions = reps.len();
    m.peak_rss_mib = peak_rss_mib();
    m
}

/// Measures one configuration on backend `B`.
pub fn measure<B: TrainBackend>(cfg: &BenchConfig, device: &B::Device) -> Result<Measurement> {
    let model_config = BertHashConfig::preset(&cfg.size)?;
    match cfg.phase {
        Phase::Train => bench_train::<B>(cfg, &model_config, device),
        Phase::Infer => bench_infer::<B>(cfg, &model_config, device),
        Phase::Data => bench_data(cfg),
    }
}

fn bench_train<B: TrainBackend>(
    cfg: &BenchConfig,
    model_config: &BertHashConfig,
    device: &B::Device,
) -> Result<Measurement> {
    check_precision::<B>(cfg.precision, device)?;
    let model: Mlm<B> = init_model(model_config, ModelOptions::default(), 0, device);
    let optimizer = AdamW::new(OptimizerConfig::pretraining(), &model);
    let total = (cfg.warmup + cfg.steps) as u64;
    let schedule = ScheduleConfig::pretraining().build(OptimizerConfig::pretraining().lr, total);
    let train = TrainConfig {
        batch_size: cfg.batch,
        precision: cfg.precision,
        ..TrainConfig::default()
    };
    let state = TrainState::default();
    let mut trainer = Trainer::new(model, optimizer, schedule, train, state, device.clone());
    // A few distinct host batches, cycled: the host-to-device copy is part of the step.
    let batches: Vec<MlmBatch> = (0..4)
        .map(|i| synthetic_batch(model_config, cfg.batch, cfg.seq, 17 + i))
        .collect();
    let tokens = (cfg.batch * cfg.seq) as u64;
    let loss_fn = if cfg.full_vocab {
        full_vocab_loss::<B>
    } else {
        mlm_loss::<B>
    };
    let mut i = 0usize;
    let mut step = |trainer: &mut Trainer<B, Mlm<B>>| -> Result<()> {
        let tensors = mlm_tensors::<B>(&batches[i % batches.len()], device);
        i += 1;
        trainer.step(vec![tensors], tokens, loss_fn)?;
        Ok(())
    };
    let mut first_step_s = None;
    for _ in 0..cfg.warmup {
        let start = Instant::now();
        step(&mut trainer)?;
        if first_step_s.is_none() {
            trainer.flush()?;
            first_step_s = Some(start.elapsed().as_secs_f64());
        }
    }
    trainer.flush()?;
    let mut reps = Vec::new();
    let mut loss = None;
    for n in cfg.repetitions() {
        let start = Instant::now();
        for _ in 0..n {
            step(&mut trainer)?;
        }
        // The one host sync of the repetition.
        if let Some(record) = trainer.flush()? {
            loss = Some(record.loss);
        }
        reps.push((n, start.elapsed().as_secs_f64()));
    }
    let variant = if cfg.full_vocab {
        "full-vocab"
    } else {
        "masked"
    };
    let mut m = summarize(cfg.base(variant), cfg.batch * cfg.seq, &reps);
    m.loss = loss;
    m.first_step_s = first_step_s;
    if cfg.breakdown {
        trainer.time_phases();
        for _ in 0..cfg.steps {
            step(&mut trainer)?;
        }
        trainer.flush()?;
        m.phases_ms = trainer.phase_times().map(|t| t.per_step_ms());
    }
    Ok(m)
}

fn bench_infer<B: TrainBackend>(
    cfg: &BenchConfig,
    model_config: &BertHashConfig,
    device: &B::Device,
) -> Result<Measurement> {
    type Inner<B> = <B as AutodiffBackend>::InnerBackend;
    keep_freed_memory();
    let model: Mlm<B> = init_model(model_config, ModelOptions::default(), 0, device);
    let model = model.valid();
    let model = match cfg.precision {
        Precision::F32 => model,
        half => cast_params(model, half.dtype()),
    };
    let batches: Vec<MlmBatch> = (0..4)
        .map(|i| synthetic_batch(model_config, cfg.batch, cfg.seq, 17 + i))
        .collect();
    let mut i = 0usize;
    let mut forward = || {
        let tensors = mlm_tensors::<Inner<B>>(&batches[i % batches.len()], device);
        i += 1;
        let hidden = model.bert.encode(tensors.input);
        // Keep the output alive until the sync.
        hidden.sum()
    };
    let mut first_step_s = None;
    for _ in 0..cfg.warmup {
        let start = Instant::now();
        forward().into_data();
        first_step_s.get_or_insert(start.elapsed().as_secs_f64());
    }
    let mut reps = Vec::new();
    for n in cfg.repetitions() {
        let start = Instant::now();
        let outs: Vec<_> = (0..n).map(|_| forward()).collect();
        Tensor::cat(outs, 0).into_data();
        reps.push((n, start.elapsed().as_secs_f64()));
    }
    let mut m = summarize(cfg.base("encoder"), cfg.batch * cfg.seq, &reps);
    m.first_step_s = first_step_s;
    Ok(m)
}

/// Batches per timed repetition of the data phase (the loader is fast: short repetitions would
/// time its prefetch buffer).
const DATA_BATCHES_PER_REPETITION: usize = 64;

fn bench_data(cfg: &BenchConfig) -> Result<Measurement> {
    let source = cfg.data.as_ref().ok_or_else(|| {
        TrainError::config("data", "the data phase needs a corpus and a tokenizer")
    })?;
    let corpus: Vec<&str> = source.corpus.iter().map(String::as_str).collect();
    let sources = vec![CorpusSource::new(&corpus)];
    let mut config =
        PretrainStreamConfig::new(CorpusConfig::new(sources), source.tokenizer.clone());
    config.max_length = cfg.seq;
    config.batch_size = cfg.batch;
    config.eval_documents = 0;
    config.epochs = None;
    if source.one_pass {
        return bench_data_one_pass(cfg, source, config);
    }
    let prefetch = config.prefetch_batches;
    let mut loader = PretrainLoader::new(config, None)?;
    let mut next = || -> Result<usize> {
        let (batch, _) = loader.next().ok_or_else(|| {
            TrainError::config("data", "the loader ended although it loops over the corpus")
        })??;
        Ok(batch.real_tokens())
    };
    // The loader tokenizes ahead on its threads: drain what it prefetched during the warm-up,
    // and time repetitions long enough that the pipeline, not its buffer, sets the rate.
    for _ in 0..cfg.warmup + 2 * prefetch {
        next()?;
    }
    let per_rep = DATA_BATCHES_PER_REPETITION.max(cfg.sync_every);
    let mut reps = Vec::new();
    for _ in 0..cfg.repetitions().len().max(3) {
        let start = Instant::now();
        let mut tokens = 0;
        for _ in 0..per_rep {
            tokens += next()?;
        }
        // Real tokens per batch may vary (the last rows of a pass); normalise by them.
        let full = (per_rep * cfg.batch * cfg.seq) as f64;
        reps.push((
            per_rep,
            start.elapsed().as_secs_f64() * full / tokens.max(1) as f64,
        ));
    }
    let mut m = cfg.base(&source.variant);
    m.size = "-".into();
    let mut m = summarize(m, cfg.batch * cfg.seq, &reps);
    m.steps = reps.iter().map(|r| r.0).sum();
    Ok(m)
}

/// [`DataSource::one_pass`]: every batch of one pass, from the loader's start.
fn bench_data_one_pass(
    cfg: &BenchConfig,
    source: &DataSource,
    mut config: PretrainStreamConfig,
) -> Result<Measurement> {
    config.epochs = Some(1);
    let start = Instant::now();
    let mut loader = PretrainLoader::new(config, None)?;
    let (mut batches, mut tokens) = (0usize, 0usize);
    for next in &mut loader {
        let (batch, _) = next?;
        batches += 1;
        tokens += batch.real_tokens();
    }
    if tokens == 0 {
        return Err(TrainError::config("data", "the corpus gave no tokens"));
    }
    // Rates per real token, as the looping measurement normalises them.
    let full = (batches * cfg.batch * cfg.seq) as f64;
    let secs = start.elapsed().as_secs_f64() * full / tokens as f64;
    let mut m = cfg.base(&format!("{}-one-pass", source.variant));
    m.size = "-".into();
    let mut m = summarize(m, cfg.batch * cfg.seq, &[(batches, secs)]);
    m.steps = batches;
    Ok(m)
}

impl std::str::FromStr for Phase {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        match name {
            "train" => Ok(Phase::Train),
            "infer" => Ok(Phase::Infer),
            "data" => Ok(Phase::Data),
            other => Err(format!("unknown phase {other:?} (train, infer or data)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    /// Two femto steps of 2 x 16 on the CPU, after one warm-up step.
    fn femto() -> BenchConfig {
        BenchConfig {
            size: "femto".into(),
            batch: 2,
            seq: 16,
            phase: Phase::Train,
            full_vocab: false,
            steps: 2,
            warmup: 1,
            sync_every: 1,
            precision: Precision::F32,
            backend: "cpu".into(),
            data: None,
            breakdown: false,
        }
    }

    #[test]
    fn a_training_breakdown_names_each_part_of_the_step() {
        let mut cfg = femto();
        let device = Default::default();
        let plain = measure::<Autodiff<Flex>>(&cfg, &device).unwrap();
        assert!(plain.phases_ms.is_none() && plain.tokens_per_s > 0.0);
        assert!(!serde_json::to_string(&plain).unwrap().contains("phases_ms"));
        cfg.breakdown = true;
        let m = measure::<Autodiff<Flex>>(&cfg, &device).unwrap();
        let ms = m.phases_ms.expect("a breakdown");
        let names: Vec<&str> = ms.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["backward", "cast", "clip", "forward", "optimizer", "total"]
        );
        let parts: f64 = ms
            .iter()
            .filter(|(k, _)| *k != "total")
            .map(|(_, v)| v)
            .sum();
        assert!((parts - ms["total"]).abs() < 1e-9 && ms["forward"] > 0.0 && ms["backward"] > 0.0);
    }

    #[test]
    fn the_first_step_is_timed_where_there_is_a_warm_up() {
        let mut cfg = femto();
        let device = Default::default();
        for phase in [Phase::Train, Phase::Infer] {
            cfg.phase = phase;
            cfg.warmup = 1;
            let m = measure::<Autodiff<Flex>>(&cfg, &device).unwrap();
            let first = m.first_step_s.expect("a first step");
            assert!(first > 0.0 && first.is_finite(), "{phase:?}: {first}");
            cfg.warmup = 0;
            let m = measure::<Autodiff<Flex>>(&cfg, &device).unwrap();
            assert!(m.first_step_s.is_none(), "{phase:?}");
            assert!(!serde_json::to_string(&m).unwrap().contains("first_step_s"));
        }
    }
}
