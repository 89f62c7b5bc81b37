//! The run directory:
//!
//! ```text
//! RUN/
//!   train_config.json     the resolved config (also train_config.toml when it has a TOML form)
//!   metrics.jsonl         one JSON record per logged step and per evaluation
//!   summary.json          written at the end
//!   checkpoints/step-00001000/   complete checkpoints (see `checkpoint`)
//!   model/                the final model, a Hugging Face directory
//!   inputs/               what the run generated for itself (sample corpus, tokenizer)
//!   best/                 fine-tuning: the best model by the run's metric
//!   eval_results.json     fine-tuning: the best model's dev metrics
//!   predictions.tsv       fine-tuning: the best model's dev predictions
//!   events.out.tfevents.* TensorBoard event files (unless `report_to = "none"`)
//! ```
//!
//! A new run refuses a directory that already holds a run unless told to overwrite it; an
//! overwrite removes everything listed above. This module is the one place that knows the
//! layout: it also says which model a path means ([`resolve_model`]) and finds a run's records.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berthash_model::pretrained::{CONFIG_FILE, WEIGHTS_FILE};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::Checkpoints;
use crate::error::{Result, TrainError};

pub const CONFIG_JSON: &str = "train_config.json";
pub const CONFIG_TOML: &str = "train_config.toml";
pub const METRICS: &str = "metrics.jsonl";
pub const SUMMARY: &str = "summary.json";
pub const CHECKPOINTS: &str = "checkpoints";
pub const MODEL: &str = "model";
pub const INPUTS: &str = "inputs";
pub const BEST: &str = "best";
pub const EVAL_RESULTS: &str = "eval_results.json";
pub const PREDICTIONS: &str = "predictions.tsv";

/// Everything a run writes (an overwrite removes all of it).
const OURS: [&str; 10] = [
    CONFIG_JSON,
    CONFIG_TOML,
    METRICS,
    SUMMARY,
    CHECKPOINTS,
    MODEL,
    INPUTS,
    BEST,
    EVAL_RESULTS,
    PREDICTIONS,
];
/// TensorBoard event files (`events.out.tfevents.*`).
pub const EVENTS_PREFIX: &str = "events.out.tfevents.";
/// What a fresh run generates itself before the run starts, and so may precede it.
const GENERATED: [&str; 1] = [INPUTS];
/// How to treat the run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// Start a run; refuse a directory that already holds one.
    #[default]
    New,
    /// Start a run, deleting what a previous run left in the directory.
    Overwrite,
    /// Continue from the newest complete checkpoint.
    Resume,
}

/// The lock file: held (an OS file lock) by the process that runs in the directory.
pub const LOCK: &str = ".lock";

#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
    /// The run's lock, held while this process uses the directory (released on drop).
    _lock: Option<Arc<File>>,
}

impl RunDir {
    /// Checks that `root` can be used for `mode`, without touching it: a new run refuses a
    /// directory that already holds one, a resume needs a checkpoints folder.
    pub fn check(root: &Path, mode: RunMode) -> Result<()> {
        if root.join(LOCK).exists() {
            drop(lock(root)?);
        }
        Self::check_contents(root, mode)
    }

    fn check_contents(root: &Path, mode: RunMode) -> Result<()> {
        let existing: Vec<&str> = OURS
            .iter()
            .copied()
            .filter(|n| !GENERATED.contains(n) && root.join(n).exists())
            .collect();
        match mode {
            RunMode::New if !existing.is_empty() => Err(TrainError::RunExists {
                path: root.to_path_buf(),
                what: existing.join(", "),
            }),
            RunMode::Resume if !root.join(CHECKPOINTS).is_dir() => Err(TrainError::NothingToResume {
                path: root.to_path_buf(),
                message: "no checkpoints/ folder (the run saved no checkpoint); start it again with overwrite"
                    .into(),
            }),
            _ => Ok(()),
        }
    }

    /// Opens `root` for `mode` (creating it for a new run; emptying it of a previous run's files
    /// for an overwrite, except the inputs this run generated).
    pub fn prepare(root: &Path, mode: RunMode) -> Result<Self> {
        Self::check(root, mode)?;
        std::fs::create_dir_all(root).map_err(|e| TrainError::io(root, e))?;
        let held = lock(root)?;
        Self::check_contents(root, mode)?;
        if mode == RunMode::Overwrite {
            let events = std::fs::read_dir(root)
                .map_err(|e| TrainError::io(root, e))?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|n| n.starts_with(EVENTS_PREFIX));
            let names: Vec<String> = OURS
                .iter()
                .filter(|n| !GENERATED.contains(n))
                .map(|n| n.to_string())
                .chain(events)
                .collect();
            for name in names {
                let path = root.join(name);
                let result = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else if path.exists() {
                    std::fs::remove_file(&path)
                } else {
                    Ok(())
                };
                result.map_err(|e| TrainError::io(&path, e))?;
            }
        }
        let run = Self {
            _lock: Some(Arc::new(held)),
            ..Self::at(root)
        };
        std::fs::create_dir_all(run.checkpoints())
            .map_err(|e| TrainError::io(run.checkpoints(), e))?;
        Ok(run)
    }

    /// The paths of the run in `root`, without checking or creating anything.
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            _lock: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join(METRICS)
    }

    pub fn summary(&self) -> PathBuf {
        self.root.join(SUMMARY)
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join(CHECKPOINTS)
    }

    pub fn model_dir(&self) -> PathBuf {
        self.root.join(MODEL)
    }

    pub fn best_dir(&self) -> PathBuf {
        self.root.join(BEST)
    }

    pub fn eval_results(&self) -> PathBuf {
        self.root.join(EVAL_RESULTS)
    }

    pub fn predictions(&self) -> PathBuf {
        self.root.join(PREDICTIONS)
    }

    /// Saves the resolved config as JSON, and as TOML when it has a TOML form.
    pub fn save_config<T: Serialize>(&self, config: &T) -> Result<()> {
        write_json(&self.root.join(CONFIG_JSON), config)?;
        let toml_path = self.root.join(CONFIG_TOML);
        match toml::to_string_pretty(config) {
            Ok(text) => write_file(&toml_path, text.as_bytes())?,
            Err(e) => tracing::debug!("no TOML form of the config ({e}); JSON only"),
        }
        Ok(())
    }
}

/// Takes `root`'s lock file, refusing a directory another process holds: two runs in one
/// directory would mix their checkpoints.
fn lock(root: &Path) -> Result<File> {
    let path = root.join(LOCK);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| TrainError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(TrainError::RunLocked {
            path: root.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(TrainError::io(&path, e)),
    }
}

/// Where a run keeps what it generated for itself (the built-in corpus, tokenizer).
pub fn inputs_dir(root: &Path) -> PathBuf {
    root.join(INPUTS)
}

/// The resolved config a run saved (`train_config.json`), to resume it as it started.
pub fn saved_config<C: DeserializeOwned>(root: &Path) -> Result<C> {
    let path = root.join(CONFIG_JSON);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Format {
        path,
        message: format!("not this command's run config: {e}"),
    })
}

fn is_model_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file() && dir.join(WEIGHTS_FILE).is_file()
}

/// The model directory a path means: a Hugging Face model directory itself, a fine-tuning run's
/// best model (`best/`), a run's final model (`model/`), or the newest complete checkpoint of a
/// run that has neither yet.
pub fn resolve_model(path: &Path) -> Result<PathBuf> {
    if is_model_dir(path) {
        return Ok(path.to_path_buf());
    }
    for name in [BEST, MODEL] {
        if is_model_dir(&path.join(name)) {
            return Ok(path.join(name));
        }
    }
    if let Some(newest) = Checkpoints::new(path.join(CHECKPOINTS), 1).latest()? {
        return Ok(newest.path);
    }
    if !path.exists() {
        return Err(TrainError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    }
    Err(TrainError::NoModel {
        path: path.to_path_buf(),
    })
}

/// What a run left beside a model: its resolved config, summary and evaluation results.
#[derive(Debug, Default)]
pub struct RunRecords {
    pub config: Option<serde_json::Value>,
    pub summary: Option<serde_json::Value>,
    pub eval_results: Option<serde_json::Value>,
}

impl RunRecords {
    /// Looks in `model_dir` and up to two parents (a checkpoint sits in `RUN/checkpoints/NAME`,
    /// a final or best model in `RUN/NAME`).
    pub fn find(model_dir: &Path) -> Self {
        let mut records = Self::default();
        for dir in model_dir.ancestors().take(3) {
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name))
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
            };
            records.config = records.config.or_else(|| read(CONFIG_JSON));
            records.summary = records.summary.or_else(|| read(SUMMARY));
            records.eval_results = records.eval_results.or_else(|| read(EVAL_RESULTS));
        }
        records
    }
}

/// Writes a file atomically (temp file, fsync, rename).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    berthash_model::fs::write_atomic(path, bytes).map_err(TrainError::from)
}

pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.push('\n');
    write_file(path, text.as_bytes())
}
