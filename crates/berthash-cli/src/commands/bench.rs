//! `berthash bench`: throughput of the real training step, of inference and of the data
//! pipeline, and the peak memory of each configuration.
//!
//! - `train`: berthash-train's [`Trainer`] step (forward, backward, clipping, AdamW) with the
//!   pre-training MLM loss at the masked positions only, on synthetic batches (15% of the
//!   positions masked, ids uniform over the vocabulary). `--full-vocab` computes the logits at
//!   every position instead (the vocab decoder over all `batch * seq` rows) and the loss of the
//!   masked rows among them — the work of Hugging Face's `BertForMaskedLM` + `Trainer` step.
//! - `infer`: the encoder forward (`last_hidden_state`) without autodiff.
//! - `data`: the pre-training loader (tokenize, pack, shuffle, mask) over the built-in sample
//!   corpus, looping; at least 3 repetitions of 64 batches after draining its prefetch buffer.
//!
//! Each configuration (size x batch x seq x phase) runs in a fresh child process (this binary
//! re-invoked with `--child`), so the peak resident memory (`VmHWM`) is that configuration's own.
//! Timing: `--warmup` steps, then `--steps` steps in repetitions of `--sync-every` steps; the
//! loss is read back (one host sync) only at the end of a repetition, as `pretrain` does every
//! `log_every` steps. The reported tokens/s is the median over the repetitions.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use berthash_data::{CorpusConfig, CorpusSource, MlmBatch, PretrainLoader, PretrainStreamConfig};
use berthash_kernels::{Kernels, TrainBackend};
use berthash_model::loss::cross_entropy;
use berthash_model::pretrained::init_model;
use berthash_model::{BertHashConfig, BertHashForMaskedLM, ModelOptions};
use berthash_train::batch::{mlm_tensors, MlmTensors};
use berthash_train::precision::check_precision;
use berthash_train::trainer::{to_f32, Trainer};
use berthash_train::{AdamW, OptimizerConfig, Precision, ScheduleConfig, TrainConfig, TrainState};
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::assets;
use crate::backend::{BackendKind, BackendTask};

type Mlm<B> = BertHashForMaskedLM<B>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Train,
    Infer,
    Data,
}

/// Measure training, inference and data-pipeline throughput and peak memory.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model sizes (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values_t = ["femto".to_string(), "pico".to_string(), "nano".to_string()])]
    pub size: Vec<String>,
    /// Rows per batch (comma-separated for a sweep). Default: 32 on CPU, 256 on a GPU.
    #[arg(long, value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Sequence lengths (comma-separated for a sweep).
    #[arg(long, value_delimiter = ',', default_values_t = [128usize])]
    pub seq: Vec<usize>,
    /// Timed steps per configuration (after the warm-up).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Steps per timed repetition; the loss is read back (a host sync) once per repetition.
    #[arg(long, default_value_t = 2)]
    pub sync_every: usize,
    /// Phases to measure (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Phase::Train, Phase::Infer, Phase::Data])]
    pub phase: Vec<Phase>,
    /// Train with logits (and the log-softmax) at every position, as Hugging Face's Trainer does,
    /// instead of at the masked positions only.
    #[arg(long)]
    pub full_vocab: bool,
    /// Measure both the masked-only and the full-vocab training step.
    #[arg(long, conflicts_with = "full_vocab")]
    pub both_losses: bool,
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    #[arg(long, value_parser = ["f32", "bf16", "f16"], default_value = "f32")]
    pub precision: String,
    /// One JSON object per measurement (one per line) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run every configuration in this process (peak memory is then the running maximum).
    #[arg(long)]
    pub in_process: bool,
    /// Internal: run exactly one configuration and print its JSON line.
    #[arg(long, hide = true)]
    pub child: bool,
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
    /// `sample-corpus` for data.
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
    /// The last loss read (train only), a sanity check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
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

/// splitmix64: the synthetic batches are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A packed pre-training batch: random ids, 15% of the positions selected (exactly
/// `round(0.15 * batch * seq)`), 80% of those replaced by [MASK] as the collator does.
pub fn synthetic_batch(config: &BertHashConfig, batch: usize, seq: usize, seed: u64) -> MlmBatch {
    const MASK: u32 = 103;
    let mut rng = Rng(seed);
    let n = batch * seq;
    let vocab = config.vocab_size as u64;
    let labels: Vec<u32> = (0..n)
        .map(|_| (999 + rng.below(vocab - 999)) as u32)
        .collect();
    let mut input_ids = labels.clone();
    let masked = ((n as f64) * 0.15).round() as usize;
    // Partial Fisher-Yates over the positions.
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in 0..masked {
        let j = i + rng.below((n - i) as u64) as usize;
        order.swap(i, j);
    }
    let mut positions = order[..masked].to_vec();
    positions.sort_unstable();
    for &p in &positions {
        if rng.below(10) < 8 {
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

/// The pre-training loss: logits at the masked rows only (as `pretrain`).
fn masked_loss<B: Kernels>(model: &Mlm<B>, batch: MlmTensors<B>) -> Tensor<B, 1> {
    let logits = model.forward_selected(batch.input, batch.positions);
    cross_entropy(to_f32(logits), batch.labels)
}

/// Hugging Face's step: logits at every position (the decoder over all `batch * seq` rows), the
/// masked rows' cross-entropy (what `CrossEntropyLoss(ignore_index=-100)` computes).
fn full_vocab_loss<B: Kernels>(model: &Mlm<B>, batch: MlmTensors<B>) -> Tensor<B, 1> {
    let (_, logits) = model.forward(batch.input);
    let [b, s, v] = logits.dims();
    let masked = to_f32(logits.reshape([b * s, v])).select(0, batch.positions);
    cross_entropy(masked, batch.labels)
}

struct Config {
    size: String,
    batch: usize,
    seq: usize,
    phase: Phase,
    full_vocab: bool,
    steps: usize,
    warmup: usize,
    sync_every: usize,
    precision: Precision,
    backend: BackendKind,
}

impl Config {
    fn base(&self, variant: &str) -> Measurement {
        Measurement {
            size: self.size.clone(),
            backend: format!("{:?}", self.backend).to_lowercase(),
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
            loss: None,
        }
    }

    /// Splits the timed steps into repetitions of `sync_every`.
    fn repetitions(&self) -> Vec<usize> {
        let per = self.sync_every.max(1);
        let mut reps = vec![per; self.steps / per];
        if self.steps % per != 0 {
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

impl BackendTask for Config {
    type Output = Measurement;

    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<Measurement> {
        let model_config = BertHashConfig::preset(&self.size)?;
        match self.phase {
            Phase::Train => bench_train::<B>(&self, &model_config, &device),
            Phase::Infer => bench_infer::<B>(&self, &model_config, &device),
            Phase::Data => bench_data(&self),
        }
    }
}

fn bench_train<B: TrainBackend>(
    cfg: &Config,
    model_config: &BertHashConfig,
    device: &B::Device,
) -> anyhow::Result<Measurement> {
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
    let mut trainer = Trainer::new(
        model,
        optimizer,
        schedule,
        train,
        TrainState::default(),
        device.clone(),
    );
    // A few distinct host batches, cycled: the host-to-device copy is part of the step.
    let batches: Vec<MlmBatch> = (0..4)
        .map(|i| synthetic_batch(model_config, cfg.batch, cfg.seq, 17 + i))
        .collect();
    let tokens = (cfg.batch * cfg.seq) as u64;
    let loss_fn = if cfg.full_vocab {
        full_vocab_loss::<B>
    } else {
        masked_loss::<B>
    };
    let mut i = 0usize;
    let mut step = |trainer: &mut Trainer<B, Mlm<B>>| -> anyhow::Result<()> {
        let tensors = mlm_tensors::<B>(&batches[i % batches.len()], device);
        i += 1;
        trainer.step(vec![tensors], tokens, loss_fn)?;
        Ok(())
    };
    for _ in 0..cfg.warmup {
        step(&mut trainer)?;
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
    Ok(m)
}

fn bench_infer<B: TrainBackend>(
    cfg: &Config,
    model_config: &BertHashConfig,
    device: &B::Device,
) -> anyhow::Result<Measurement> {
    type Inner<B> = <B as AutodiffBackend>::InnerBackend;
    berthash_train::trainer::keep_freed_memory();
    let model: Mlm<B> = init_model(model_config, ModelOptions::default(), 0, device);
    let model = model.valid();
    let model = match cfg.precision {
        Precision::F32 => model,
        half => berthash_train::precision::cast_params(model, half.dtype()),
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
    for _ in 0..cfg.warmup {
        forward().into_data();
    }
    let mut reps = Vec::new();
    for n in cfg.repetitions() {
        let start = Instant::now();
        let outs: Vec<_> = (0..n).map(|_| forward()).collect();
        Tensor::cat(outs, 0).into_data();
        reps.push((n, start.elapsed().as_secs_f64()));
    }
    Ok(summarize(cfg.base("encoder"), cfg.batch * cfg.seq, &reps))
}

/// Batches per timed repetition of the data phase (the loader is fast: short repetitions would
/// time its prefetch buffer).
const DATA_BATCHES_PER_REPETITION: usize = 64;

fn bench_data(cfg: &Config) -> anyhow::Result<Measurement> {
    let dir = std::env::temp_dir().join(format!("berthash-bench-{}", std::process::id()));
    let result = (|| {
        let tokenizer = assets::write_tokenizer(&dir.join("tokenizer"))?;
        let corpus = assets::write_sample_corpus(&dir.join("sample"))?;
        let source = CorpusSource::new(&[&corpus.display().to_string()]);
        let mut config = PretrainStreamConfig::new(CorpusConfig::new(vec![source]), tokenizer);
        config.max_length = cfg.seq;
        config.batch_size = cfg.batch;
        config.eval_documents = 0;
        config.epochs = None;
        let prefetch = config.prefetch_batches;
        let mut loader = PretrainLoader::new(config, None)?;
        let mut next = || -> anyhow::Result<usize> {
            let (batch, _) = loader.next().context("the loader ended")??;
            Ok(batch.real_tokens())
        };
        // The loader tokenizes ahead on its threads: drain what it prefetched during the warm-up,
        // and time repetitions long enough that the pipeline, not its buffer, sets the rate.
        for _ in 0..cfg.warmup + 2 * prefetch {
            next()?;
        }
        let mut rates = Vec::new();
        let per_rep = DATA_BATCHES_PER_REPETITION.max(cfg.sync_every);
        for _ in 0..cfg.repetitions().len().max(3) {
            let n = per_rep;
            let start = Instant::now();
            let mut tokens = 0;
            for _ in 0..n {
                tokens += next()?;
            }
            rates.push((n, tokens, start.elapsed().as_secs_f64()));
        }
        anyhow::Ok(rates)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let rates = result?;
    // Real tokens per batch may vary (the last rows of a pass); normalise by them.
    let reps: Vec<(usize, f64)> = rates
        .iter()
        .map(|&(n, tokens, secs)| {
            (
                n,
                secs * (n * cfg.batch * cfg.seq) as f64 / tokens.max(1) as f64,
            )
        })
        .collect();
    let mut m = cfg.base("sample-corpus");
    m.size = "-".into();
    let mut m = summarize(m, cfg.batch * cfg.seq, &reps);
    m.steps = reps.iter().map(|r| r.0).sum();
    Ok(m)
}

fn precision_of(name: &str) -> anyhow::Result<Precision> {
    Ok(match name {
        "f32" => Precision::F32,
        "bf16" => Precision::Bf16,
        "f16" => Precision::F16,
        other => bail!("unknown precision {other}"),
    })
}

fn print_table(rows: &[Measurement]) {
    println!(
        "{:<6} {:<5} {:<13} {:<5} {:<5} {:>5} {:>5} {:>11} {:>19} {:>9} {:>9}",
        "size",
        "phase",
        "variant",
        "back",
        "prec",
        "batch",
        "seq",
        "tokens/s",
        "(min-max)",
        "ms/step",
        "peak MiB"
    );
    for m in rows {
        let phase = match m.phase {
            Phase::Train => "train",
            Phase::Infer => "infer",
            Phase::Data => "data",
        };
        println!(
            "{:<6} {:<5} {:<13} {:<5} {:<5} {:>5} {:>5} {:>11.0} {:>19} {:>9.1} {:>9}",
            m.size,
            phase,
            m.variant,
            m.backend,
            m.precision,
            m.batch,
            m.seq,
            m.tokens_per_s,
            format!("({:.0}-{:.0})", m.tokens_per_s_min, m.tokens_per_s_max),
            m.ms_per_step,
            m.peak_rss_mib.map_or("-".into(), |v| format!("{v:.1}")),
        );
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let precision = precision_of(&args.precision)?;
    for size in &args.size {
        BertHashConfig::preset(size)?;
    }
    let batches = if args.batch.is_empty() {
        vec![if args.backend == BackendKind::Cpu {
            32
        } else {
            256
        }]
    } else {
        args.batch.clone()
    };
    if args.steps == 0 || batches.contains(&0) || args.seq.contains(&0) {
        bail!("--steps, --batch and --seq must be positive");
    }
    let losses: Vec<bool> = if args.both_losses {
        vec![false, true]
    } else {
        vec![args.full_vocab]
    };
    let mut configs = Vec::new();
    for &phase in &args.phase {
        let sizes: Vec<String> = if phase == Phase::Data {
            vec![args.size[0].clone()]
        } else {
            args.size.clone()
        };
        for size in &sizes {
            for &batch in &batches {
                for &seq in &args.seq {
                    let variants: &[bool] = if phase == Phase::Train {
                        &losses
                    } else {
                        &[false]
                    };
                    for &full_vocab in variants {
                        configs.push(Config {
                            size: size.clone(),
                            batch,
                            seq,
                            phase,
                            full_vocab,
                            steps: args.steps,
                            warmup: args.warmup,
                            sync_every: args.sync_every,
                            precision,
                            backend: args.backend,
                        });
                    }
                }
            }
        }
    }
    if args.child && configs.len() != 1 {
        bail!("--child runs exactly one configuration");
    }

    let mut rows = Vec::new();
    for cfg in configs {
        let m = if args.in_process || args.child {
            crate::backend::run(args.backend, cfg)?
        } else {
            run_child(&args, &cfg)?
        };
        if args.child {
            println!("{}", serde_json::to_string(&m)?);
            return Ok(());
        }
        if args.json {
            println!("{}", serde_json::to_string(&m)?);
        } else {
            eprintln!(
                "{} {:?} {} {}x{}: {:.0} tokens/s",
                m.size, m.phase, m.variant, m.batch, m.seq, m.tokens_per_s
            );
        }
        rows.push(m);
    }
    if !args.json {
        print_table(&rows);
    }
    Ok(())
}

/// Runs one configuration in a fresh process (its own peak memory) and reads its JSON line.
fn run_child(args: &BenchArgs, cfg: &Config) -> anyhow::Result<Measurement> {
    let exe: PathBuf = std::env::current_exe().context("finding the berthash executable")?;
    let phase = match cfg.phase {
        Phase::Train => "train",
        Phase::Infer => "infer",
        Phase::Data => "data",
    };
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--child", "--json"])
        .args(["--size", &cfg.size])
        .args(["--batch", &cfg.batch.to_string()])
        .args(["--seq", &cfg.seq.to_string()])
        .args(["--phase", phase])
        .args(["--steps", &cfg.steps.to_string()])
        .args(["--warmup", &cfg.warmup.to_string()])
        .args(["--sync-every", &cfg.sync_every.to_string()])
        .args(["--precision", &args.precision])
        .args(["--backend", &format!("{:?}", cfg.backend).to_lowercase()]);
    if cfg.full_vocab {
        cmd.arg("--full-vocab");
    }
    let output = cmd.output().context("running the bench child process")?;
    if !output.status.success() {
        bail!(
            "bench child ({} {phase} {}x{}) failed: {}",
            cfg.size,
            cfg.batch,
            cfg.seq,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the bench child printed no measurement")?;
    Ok(serde_json::from_str(line)?)
}
