//! Finding models and their records in what users point commands at: a Hugging Face model
//! directory, a run directory, or one checkpoint of a run.

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::Value;

fn is_model_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file() && dir.join("model.safetensors").is_file()
}

/// The model directory inside `path`: `path` itself, its `model/`, or the newest complete
/// checkpoint of a run.
pub fn resolve_model_dir(path: &Path) -> anyhow::Result<PathBuf> {
    if is_model_dir(path) {
        return Ok(path.to_path_buf());
    }
    if is_model_dir(&path.join("model")) {
        return Ok(path.join("model"));
    }
    for name in ["best", "final"] {
        if is_model_dir(&path.join(name)) {
            return Ok(path.join(name));
        }
    }
    let checkpoints = path.join("checkpoints");
    if checkpoints.is_dir() {
        let mut candidates: Vec<PathBuf> = std::fs::read_dir(&checkpoints)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_model_dir(p) || is_model_dir(&p.join("model")))
            .collect();
        candidates.sort();
        if let Some(newest) = candidates.pop() {
            return resolve_model_dir(&newest);
        }
    }
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    bail!(
        "{}: not a model directory (config.json + model.safetensors), a run directory or a checkpoint",
        path.display()
    )
}

/// What a run left beside its model, for model cards: resolved config, summary, eval results.
#[derive(Debug, Default)]
pub struct RunRecords {
    pub config: Option<Value>,
    pub summary: Option<Value>,
    pub eval_results: Option<Value>,
}

impl RunRecords {
    /// Looks in `path` and up to two parents (a checkpoint sits in `RUN/checkpoints/NAME`).
    pub fn find(path: &Path) -> Self {
        let mut records = Self::default();
        for dir in path.ancestors().take(3) {
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            };
            records.config = records.config.or_else(|| read("train_config.json"));
            records.summary = records.summary.or_else(|| read("summary.json"));
            records.eval_results = records.eval_results.or_else(|| read("eval_results.json"));
        }
        records
    }
}
