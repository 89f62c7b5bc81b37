//! `berthash bench`: throughput and peak memory of the training step, inference and the data
//! pipeline (the measurements are [`berthash_train::bench`]'s). Each configuration (size x
//! batch x seq x phase) runs in a fresh child process (this binary re-invoked with `--child`),
//! so the peak resident memory (`VmHWM`) is that configuration's own.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use berthash_kernels::TrainBackend;
use berthash_model::BertHashConfig;
use berthash_train::bench::{measure, BenchConfig, DataSource, Measurement, Phase};
use berthash_train::Precision;

use crate::assets;
use crate::backend::{BackendKind, BackendTask};

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
    /// Phases to measure (comma-separated): train, infer, data.
    #[arg(long, value_delimiter = ',', default_values = ["train", "infer", "data"])]
    pub phase: Vec<Phase>,
    /// Train with logits (and the log-softmax) at every position, as Hugging Face's Trainer does,
    /// instead of at the masked positions only.
    #[arg(long)]
    pub full_vocab: bool,
    /// Measure both the masked-only and the full-vocab training step.
    #[arg(long, conflicts_with = "full_vocab")]
    pub both_losses: bool,
    /// Training: after the throughput runs, time the parts of the step (cast, forward, backward,
    /// clip, optimizer) over --steps more steps, with a device sync after each part.
    #[arg(long)]
    pub breakdown: bool,
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    /// Run on wgpu's no-op device, which accepts every command and runs none: the time is the
    /// host's own work per step (autodiff, Burn's fusion, kernel launches), the floor no GPU can
    /// go below. Needs `--backend wgpu` (no GPU or Vulkan loader needed), f32 or f16, and the
    /// train or infer phase; losses and outputs are meaningless. Rows say `wgpu-noop`.
    #[arg(long)]
    pub host_only: bool,
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// The data phase's corpus: parquet files or token shards, folders or globs (default: the
    /// built-in sample).
    #[arg(long, num_args = 1..)]
    pub data: Vec<String>,
    /// The data phase reads the corpus once from a fresh loader, timed from its start (the rate
    /// from cold data), instead of looping over it after a warm-up.
    #[arg(long)]
    pub one_pass: bool,
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

struct Bench(BenchConfig);

impl BackendTask for Bench {
    type Output = Measurement;

    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<Measurement> {
        Ok(measure::<B>(&self.0, &device)?)
    }
}

fn print_table(rows: &[Measurement]) {
    println!(
        "{:<6} {:<5} {:<22} {:<9} {:<5} {:>5} {:>5} {:>11} {:>19} {:>9} {:>9}",
        "size",
        "phase",
        "variant",
        "backend",
        "prec",
        "batch",
        "seq",
        "tokens/s",
        "(min-max)",
        "ms/step",
        "peak MiB"
    );
    for m in rows {
        println!(
            "{:<6} {:<5} {:<22} {:<9} {:<5} {:>5} {:>5} {:>11.0} {:>19} {:>9.1} {:>9}",
            m.size,
            m.phase.name(),
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
    for m in rows {
        let Some(ms) = &m.phases_ms else { continue };
        let parts: Vec<String> = berthash_train::phases::PART_NAMES
            .iter()
            .filter_map(|p| ms.get(*p).map(|v| format!("{p} {v:.2}")))
            .collect();
        println!(
            "{} {} {}x{} ms per step, each part synced: {} (total {:.2})",
            m.size,
            m.variant,
            m.batch,
            m.seq,
            parts.join(", "),
            ms.get("total").copied().unwrap_or(f64::NAN)
        );
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.host_only {
        check_host_only(&args)?;
    } else {
        crate::backend::require(args.backend)?;
    }
    for size in &args.size {
        BertHashConfig::preset(size)?;
    }
    let default_batch = if args.backend == BackendKind::Cpu {
        32
    } else {
        256
    };
    let batches = match args.batch.is_empty() {
        true => vec![default_batch],
        false => args.batch.clone(),
    };
    if args.steps == 0 || batches.contains(&0) || args.seq.contains(&0) {
        bail!("--steps, --batch and --seq must be positive");
    }
    let losses: &[bool] = match (args.both_losses, args.full_vocab) {
        (true, _) => &[false, true],
        (false, full) => &[full][..],
    };
    let data_dir = crate::runs::scratch_dir("bench")?;
    let mut configs = Vec::new();
    for &phase in &args.phase {
        let sizes = match phase {
            Phase::Data => &args.size[..1],
            _ => &args.size[..],
        };
        let data = match phase {
            Phase::Data => Some(data_source(&args, data_dir.path())?),
            _ => None,
        };
        let variants = if phase == Phase::Train {
            losses
        } else {
            &[false]
        };
        for size in sizes {
            for &batch in &batches {
                for &seq in &args.seq {
                    for &full_vocab in variants {
                        configs.push(BenchConfig {
                            size: size.clone(),
                            batch,
                            seq,
                            phase,
                            full_vocab,
                            steps: args.steps,
                            warmup: args.warmup,
                            sync_every: args.sync_every,
                            precision: args.precision,
                            backend: match args.host_only {
                                true => "wgpu-noop".into(),
                                false => args.backend.name().into(),
                            },
                            data: data.clone(),
                            breakdown: args.breakdown,
                        });
                    }
                }
            }
        }
    }
    if args.child && configs.len() != 1 {
        bail!("--child runs exactly one configuration");
    }
    let rows = measure_all(&args, configs);
    let rows = rows?;
    if !args.json {
        print_table(&rows);
    }
    Ok(())
}

/// `--host-only`'s flags, checked before anything runs.
fn check_host_only(args: &BenchArgs) -> anyhow::Result<()> {
    if args.backend != BackendKind::Wgpu {
        bail!("--host-only runs on wgpu's no-op device: add --backend wgpu");
    }
    if args.precision == Precision::Bf16 {
        bail!("--host-only compiles WGSL kernels, which have no bf16: use --precision f32 or f16");
    }
    if args.phase.contains(&Phase::Data) {
        bail!("--host-only measures the train and infer phases: drop data from --phase");
    }
    Ok(())
}

/// The data phase's corpus: `--data`, else the built-in sample; the built-in tokenizer.
fn data_source(args: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<DataSource> {
    let tokenizer = assets::write_tokenizer(&dir.join("tokenizer"))
        .with_context(|| format!("writing the tokenizer into {}", dir.display()))?;
    if !args.data.is_empty() {
        return Ok(DataSource {
            tokenizer,
            corpus: args.data.clone(),
            variant: "corpus".into(),
            one_pass: args.one_pass,
        });
    }
    let sample = assets::write_sample_corpus(&dir.join("sample"))
        .with_context(|| format!("writing the sample corpus into {}", dir.display()))?;
    Ok(DataSource {
        tokenizer,
        corpus: vec![sample.display().to_string()],
        variant: "sample-corpus".into(),
        one_pass: args.one_pass,
    })
}

fn measure_all(args: &BenchArgs, configs: Vec<BenchConfig>) -> anyhow::Result<Vec<Measurement>> {
    let mut rows = Vec::new();
    for cfg in configs {
        let m = if !(args.in_process || args.child) {
            run_child(args, &cfg)?
        } else if args.host_only {
            crate::backend::run_host_only(Bench(cfg))?
        } else {
            crate::backend::run(args.backend, Bench(cfg))?
        };
        if args.json || args.child {
            println!("{}", serde_json::to_string(&m)?);
        } else {
            eprintln!(
                "{} {} {} {}x{}: {:.0} tokens/s",
                m.size,
                m.phase.name(),
                m.variant,
                m.batch,
                m.seq,
                m.tokens_per_s
            );
        }
        rows.push(m);
    }
    Ok(rows)
}

/// Runs one configuration in a fresh process (its own peak memory) and reads its JSON line.
fn run_child(args: &BenchArgs, cfg: &BenchConfig) -> anyhow::Result<Measurement> {
    let exe: PathBuf = std::env::current_exe().context("finding the berthash executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--child", "--json"])
        .args(["--size", &cfg.size])
        .args(["--batch", &cfg.batch.to_string()])
        .args(["--seq", &cfg.seq.to_string()])
        .args(["--phase", cfg.phase.name()])
        .args(["--steps", &cfg.steps.to_string()])
        .args(["--warmup", &cfg.warmup.to_string()])
        .args(["--sync-every", &cfg.sync_every.to_string()])
        .args(["--precision", cfg.precision.name()])
        .args(["--backend", args.backend.name()]);
    if args.host_only {
        cmd.arg("--host-only");
    }
    if cfg.full_vocab {
        cmd.arg("--full-vocab");
    }
    if cfg.breakdown {
        cmd.arg("--breakdown");
    }
    if !args.data.is_empty() {
        cmd.arg("--data").args(&args.data);
    }
    if args.one_pass {
        cmd.arg("--one-pass");
    }
    let output = cmd.output().context("running the bench child process")?;
    if !output.status.success() {
        bail!(
            "bench child ({} {} {}x{}) failed: {}",
            cfg.size,
            cfg.phase.name(),
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
