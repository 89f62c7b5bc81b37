//! Finding models and their records in what users point commands at: a Hugging Face model
//! directory, a run directory, or one checkpoint of a run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::Value;

fn is_model_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file() && dir.join("model.safetensors").is_file()
}

/// The model directory inside `path`: `path` itself, a fine-tuning run's `best/`, a run's
/// `model/`, or the newest complete checkpoint of a run.
pub fn resolve_model_dir(path: &Path) -> anyhow::Result<PathBuf> {
    if is_model_dir(path) {
        return Ok(path.to_path_buf());
    }
    // A fine-tuning run keeps its best model in `best/`; every run has its last in `model/`.
    for name in ["best", "model"] {
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

/// How a training command treats its run directory, from its flags; a new run refuses a
/// directory that already holds one.
pub fn run_mode(
    out: &Path,
    resume: bool,
    overwrite: bool,
) -> anyhow::Result<berthash_train::RunMode> {
    use berthash_train::RunMode;
    let mode = match (resume, overwrite) {
        (true, _) => RunMode::Resume,
        (false, true) => RunMode::Overwrite,
        (false, false) => RunMode::New,
    };
    if mode == RunMode::New && out.join("train_config.json").exists() {
        bail!(
            "{} already holds a run: pass --resume to continue it or --overwrite to replace it",
            out.display()
        );
    }
    Ok(mode)
}

/// The resolved config a run saved, to resume it exactly as it started.
pub fn saved_config<C: serde::de::DeserializeOwned>(out: &Path, what: &str) -> anyhow::Result<C> {
    let saved = out.join("train_config.json");
    let text = std::fs::read_to_string(&saved)
        .with_context(|| format!("reading {} to resume", saved.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a {what} config", saved.display()))
}

/// Where a command writes the inputs it generates (built-in corpus, tokenizer): the run
/// directory, or a scratch directory when it only prints its config.
pub fn inputs_dir(out: &Path, print_only: bool) -> PathBuf {
    if print_only {
        std::env::temp_dir().join(format!("berthash-config-{}", std::process::id()))
    } else {
        out.join("inputs")
    }
}

/// Loads `dir` as `M` on the CPU, refusing a model whose `head` (key prefix, e.g. `classifier.`)
/// the file does not hold: a freshly initialised head would give noise, not an answer.
pub fn load_trained<M: berthash_model::HfModel<burn::backend::Flex>>(
    dir: &Path,
    head: &str,
    hint: &str,
) -> anyhow::Result<berthash_model::Pretrained<M>> {
    let loaded = berthash_model::load::<burn::backend::Flex, M>(dir, None, 0, &Default::default())
        .with_context(|| format!("loading {}", dir.display()))?;
    if let Some(key) = loaded
        .report
        .initialized
        .iter()
        .find(|k| k.starts_with(head))
    {
        bail!("{} has no `{key}`: {hint}", dir.display());
    }
    Ok(loaded)
}
