//! The run directory:
//!
//! ```text
//! RUN/
//!   train_config.json     the resolved config (also train_config.toml when it has a TOML form)
//!   metrics.jsonl         one JSON record per logged step and per evaluation
//!   summary.json          written at the end
//!   checkpoints/step-00001000/   complete checkpoints (see `checkpoint`)
//!   model/                the final model, a Hugging Face directory
//! ```
//!
//! A new run refuses a directory that already holds a run unless told to overwrite it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Result, TrainError};

pub const CONFIG_JSON: &str = "train_config.json";
pub const CONFIG_TOML: &str = "train_config.toml";
pub const METRICS: &str = "metrics.jsonl";
pub const SUMMARY: &str = "summary.json";
pub const CHECKPOINTS: &str = "checkpoints";
pub const MODEL: &str = "model";

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

#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens `root` for `mode` (creating it for a new run).
    pub fn prepare(root: &Path, mode: RunMode) -> Result<Self> {
        let run = Self {
            root: root.to_path_buf(),
        };
        let ours = [
            CONFIG_JSON,
            CONFIG_TOML,
            METRICS,
            SUMMARY,
            CHECKPOINTS,
            MODEL,
        ];
        let existing: Vec<&str> = ours
            .iter()
            .copied()
            .filter(|n| root.join(n).exists())
            .collect();
        match mode {
            RunMode::New if !existing.is_empty() => {
                return Err(TrainError::RunExists {
                    path: root.to_path_buf(),
                    what: existing.join(", "),
                })
            }
            RunMode::Overwrite => {
                for name in existing {
                    let path = root.join(name);
                    let result = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    result.map_err(|e| TrainError::io(&path, e))?;
                }
            }
            RunMode::Resume if !root.join(CHECKPOINTS).is_dir() => {
                return Err(TrainError::NothingToResume {
                    path: root.to_path_buf(),
                    message: "no checkpoints/ folder (the run saved no checkpoint); start it again with overwrite"
                        .into(),
                })
            }
            _ => {}
        }
        std::fs::create_dir_all(run.checkpoints())
            .map_err(|e| TrainError::io(run.checkpoints(), e))?;
        Ok(run)
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

/// Writes a file atomically (temp file, fsync, rename).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    berthash_model::io::write_atomic(path, bytes).map_err(TrainError::from)
}

pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.push('\n');
    write_file(path, text.as_bytes())
}
