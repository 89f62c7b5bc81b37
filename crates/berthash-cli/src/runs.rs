//! How a training command runs: the mode its flags ask for, checked before anything is written;
//! where it puts the inputs it generates; the loop on the chosen backend, stopped gracefully by
//! a signal.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use berthash_kernels::TrainBackend;
use berthash_train::memory;
use berthash_train::run_dir::{inputs_dir as run_inputs, RunDir, CONFIG_JSON};
use berthash_train::{
    EmbeddingsConfig, FinetuneConfig, PretrainConfig, RunMode, Summary, TrainError,
};

use crate::backend::{BackendKind, BackendTask};

/// The flags every training command takes: the backend, and what to do with an earlier run.
#[derive(Debug, Clone, clap::Args)]
pub struct RunFlags {
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    /// Continue the run in --out from its newest complete checkpoint.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace an earlier run in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the resolved config (defaults, recipe, --config, flags) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// The loop's flags `pretrain` and `train-embeddings` share (`finetune` takes lists of some, for
/// `sweep`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoopFlags {
    /// Optimizer steps in all (instead of the recipe's length).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Rows per micro-batch (pairs, for embeddings).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// The seed of every random choice of the run (initialisation, data order, masks, dropout).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Checkpoint every N steps (0: only at the end).
    #[arg(long)]
    pub save_every: Option<u64>,
    /// Evaluate every N steps (0: only at the end, or each epoch where the run counts them).
    #[arg(long)]
    pub eval_every: Option<u64>,
}

impl LoopFlags {
    /// These flags as recipe keys.
    pub fn overlay(&self) -> crate::recipe::Overlay {
        crate::recipe::Overlay::default()
            .set("train.max_steps", self.max_steps)
            .set("optimizer.lr", self.lr)
            .set("train.batch_size", self.batch_size)
            .set("train.seed", self.seed)
            .set("train.save_every", self.save_every)
            .set("train.eval_every", self.eval_every)
    }
}

/// The mode `--resume` / `--overwrite` ask for, refused now if the directory does not allow it
/// (a new run over an existing one, a resume with nothing to resume).
pub fn mode(out: &Path, flags: &RunFlags) -> anyhow::Result<RunMode> {
    let mode = match (flags.resume, flags.overwrite) {
        (true, _) => RunMode::Resume,
        (false, true) => RunMode::Overwrite,
        (false, false) => RunMode::New,
    };
    RunDir::check(out, mode)?;
    Ok(mode)
}

/// A temporary directory `berthash-<purpose>-*`, removed on drop (an error return included).
pub fn scratch_dir(purpose: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = std::env::temp_dir();
    tempfile::Builder::new()
        .prefix(&format!("berthash-{purpose}-"))
        .tempdir_in(&dir)
        .with_context(|| format!("creating a scratch directory in {}", dir.display()))
}

/// Where a command writes the inputs it generates (built-in corpus, tokenizer): the run
/// directory, or, when it only prints its config, a scratch directory removed on drop.
pub struct Inputs {
    path: PathBuf,
    _scratch: Option<tempfile::TempDir>,
}

impl Inputs {
    pub fn new(out: &Path, print_only: bool) -> anyhow::Result<Self> {
        if print_only {
            let scratch = scratch_dir("config")?;
            Ok(Self {
                path: scratch.path().to_path_buf(),
                _scratch: Some(scratch),
            })
        } else {
            Ok(Self {
                path: run_inputs(out),
                _scratch: None,
            })
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Makes Ctrl-C (SIGINT) and SIGTERM stop a training run gracefully: the loop finishes its step
/// and writes a checkpoint; a second signal exits at once with 128 + the signal's number.
/// Returns the flag each signal sets, to pick the exit code.
fn stop_gracefully_on_signal() -> anyhow::Result<[(i32, Arc<AtomicBool>); 2]> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = berthash_train::interrupt::flag();
    let seen = [SIGINT, SIGTERM].map(|signal| (signal, Arc::new(AtomicBool::new(false))));
    for (signal, flag) in &seen {
        // Registered first, so it sees the state before this signal's own flags are set.
        signal_hook::flag::register_conditional_shutdown(*signal, 128 + signal, stop.clone())?;
        signal_hook::flag::register(*signal, stop.clone())?;
        signal_hook::flag::register(*signal, flag.clone())?;
    }
    Ok(seen)
}

/// Runs `command` for the run directory `out`. When `out` did not exist before and the run
/// never started (an input error found before the library wrote its config), what the command
/// generated there is removed again: a refused command leaves no run directory behind.
pub fn in_run_dir<T>(out: &Path, command: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let created = !out.exists();
    let result = command();
    if result.is_err() && created && !out.join(CONFIG_JSON).exists() {
        let _ = std::fs::remove_dir_all(out);
    }
    result
}

/// A training loop's config: which loop it runs.
pub trait TrainLoop: serde::Serialize + Sized {
    /// The config validated and completed, as the run will use it.
    fn resolved(self) -> berthash_train::Result<Self>;
    /// Refuses a batch whose training step would not fit in this machine's memory.
    fn check_memory(&self) -> berthash_train::Result<()>;
    fn train<B: TrainBackend>(
        self,
        out: &Path,
        device: &B::Device,
        mode: RunMode,
    ) -> berthash_train::Result<Summary>;
}

impl TrainLoop for PretrainConfig {
    fn resolved(self) -> berthash_train::Result<Self> {
        self.resolve()
    }

    fn check_memory(&self) -> berthash_train::Result<()> {
        let (batch, seq) = (self.train.batch_size, self.data.max_length);
        memory::check_fits(&self.model, batch, seq, true)
    }

    fn train<B: TrainBackend>(
        self,
        out: &Path,
        device: &B::Device,
        mode: RunMode,
    ) -> berthash_train::Result<Summary> {
        berthash_train::pretrain::<B>(self, out, device, mode)
    }
}

impl TrainLoop for EmbeddingsConfig {
    fn resolved(self) -> berthash_train::Result<Self> {
        self.resolve()
    }

    fn check_memory(&self) -> berthash_train::Result<()> {
        // Both texts of each pair go through the encoder.
        let (batch, seq) = (2 * self.train.batch_size, self.max_seq_length);
        memory::check_fits(
            &berthash_model::read_config(&self.model)?,
            batch,
            seq,
            false,
        )
    }

    fn train<B: TrainBackend>(
        self,
        out: &Path,
        device: &B::Device,
        mode: RunMode,
    ) -> berthash_train::Result<Summary> {
        berthash_train::train_embeddings::<B>(self, out, device, mode)
    }
}

impl TrainLoop for FinetuneConfig {
    fn resolved(self) -> berthash_train::Result<Self> {
        self.resolve()
    }

    fn check_memory(&self) -> berthash_train::Result<()> {
        let (batch, seq) = (self.train.batch_size, self.max_seq_length);
        memory::check_fits(&self.model_config()?, batch, seq, false)
    }

    fn train<B: TrainBackend>(
        self,
        out: &Path,
        device: &B::Device,
        mode: RunMode,
    ) -> berthash_train::Result<Summary> {
        berthash_train::finetune::<B>(self, out, device, mode)
    }
}

struct Train<C> {
    config: C,
    out: PathBuf,
    mode: RunMode,
}

impl<C: TrainLoop> BackendTask for Train<C> {
    type Output = Summary;

    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<Summary> {
        Ok(self.config.train::<B>(&self.out, &device, self.mode)?)
    }
}

/// Runs the training loop `config` names in `out` on `backend`, stopping gracefully on a
/// signal; with `print_config`, prints the resolved config as TOML instead (`None`).
pub fn train<C: TrainLoop>(
    config: C,
    out: &Path,
    mode: RunMode,
    flags: &RunFlags,
) -> anyhow::Result<Option<Summary>> {
    let backend = flags.backend;
    if flags.print_config {
        print!("{}", toml::to_string(&config.resolved()?)?);
        return Ok(None);
    }
    if backend == BackendKind::Cpu {
        config.check_memory()?;
    }
    let signals = stop_gracefully_on_signal()?;
    let out = out.to_path_buf();
    let result = crate::backend::run(backend, Train { config, out, mode });
    if let Err(e) = &result {
        if let Some(TrainError::Interrupted { .. }) = e.downcast_ref::<TrainError>() {
            eprintln!("error: {e:#}\nrun the same command with --resume to continue");
            let code = signals.iter().find(|(_, seen)| seen.load(Ordering::SeqCst));
            std::process::exit(code.map_or(130, |(signal, _)| 128 + signal));
        }
    }
    result.map(Some)
}

/// Refuses flags that contradict the run being resumed: `--resume` continues a run exactly as
/// it was configured (`saved`). `flags` are the flags as recipe keys; `others` are contradictions
/// the command found itself (a different model, say). Lists every one.
pub fn check_resume<C: serde::Serialize>(
    saved: &C,
    flags: &toml::Table,
    mut others: Vec<String>,
) -> anyhow::Result<()> {
    let saved = crate::recipe::to_table(saved)?;
    let mut given = Vec::new();
    crate::recipe::flatten("", flags, &mut given);
    for (key, value) in given {
        let have = crate::recipe::lookup(&saved, &key);
        if have != Some(&value) {
            let have = have.map_or("nothing".to_string(), ToString::to_string);
            others.push(format!("{key} = {value} (the run has {have})"));
        }
    }
    if others.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "--resume continues the run as it was configured, and these flags contradict it:\n  {}\n\
         drop them to resume; to train longer or differently, start a new run from the run's model \
         (pretrain: `init_from` in a --config recipe; finetune: --model RUN)",
        others.join("\n  ")
    )
}

/// The end of a run that keeps a best model: its length and the best model's results.
pub fn print_best(out: &Path, summary: &Summary) {
    println!(
        "done: {} steps in {:.1}s",
        summary.steps, summary.wall_time_s
    );
    let run = RunDir::at(out);
    let results = std::fs::read_to_string(run.eval_results()).unwrap_or_default();
    println!(
        "eval_results.json (best model, in {}):\n{results}",
        run.best_dir().display()
    );
}
