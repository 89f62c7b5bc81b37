//! Checkpoints: everything a run needs to continue bit for bit.
//!
//! ```text
//! checkpoints/step-00001000/
//!   config.json, model.safetensors   the model, a Hugging Face directory (loadable as is,
//!                                    with the run's tokenizer files)
//!   optimizer.safetensors            AdamW step and moments, by parameter name
//!   state.json                       step, scheduler step, data position, seed, counters
//!   train_config.json                the run's resolved config
//!   best/                            fine-tuning: the best model so far (config.json and
//!                                    model.safetensors), so a resume restores the best model
//!                                    that goes with this state
//!   checksums.json                   the CRC32C of each file above
//! ```
//!
//! Writing is atomic: the files go to `checkpoints/.tmp-step-…`, each is fsynced, the folder is
//! fsynced and renamed into place, and the parent is fsynced; a failed write removes its
//! temporary folder. Resume only considers `step-*` folders whose files all exist and whose
//! `state.json` parses, so a crash mid-write leaves nothing it would pick up; it restores the
//! newest one whose checksums match and which loads, falling back to older ones (with a warning)
//! when a file was damaged later. Only the newest `keep` checkpoints are kept (older ones are
//! renamed away before deletion).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use berthash_data::tokenize::copy_tokenizer_files;
use berthash_data::StreamPosition;
use berthash_model::pretrained::{self, HfModel, CONFIG_FILE, WEIGHTS_FILE};
use berthash_model::weights::WeightLayout;
use berthash_model::BertHashConfig;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::best::BestEval;
use crate::error::{Result, TrainError};
use crate::optim::{AdamW, OptimizerConfig};
use crate::run_dir::CONFIG_JSON;

pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";
pub const CHECKSUMS_FILE: &str = "checksums.json";
pub const BEST_DIR: &str = "best";
const PREFIX: &str = "step-";
const TMP_PREFIX: &str = ".tmp-";
const DELETING_PREFIX: &str = ".deleting-";

/// Where a run stands: saved in `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken (including skipped ones).
    pub step: u64,
    /// The learning-rate schedule's step (equals `step`; kept explicit).
    pub scheduler_step: u64,
    /// Micro-batches consumed.
    pub micro_batches: u64,
    /// Non-padding tokens trained on.
    pub tokens_seen: u64,
    /// Training wall time so far, across resumes, in seconds.
    pub elapsed_s: f64,
    /// The run's seed. Dropout's backend RNG is reseeded from `(seed, step, micro-batch)`
    /// before every micro-batch and fine-tuning shuffles derive from `(seed, epoch)`, so the
    /// seed and the counters above are the whole RNG state.
    pub seed: u64,
    /// Pre-training: the data stream position after the last consumed batch.
    pub stream_position: Option<StreamPosition>,
    /// f16: the dynamic loss scale and the finite steps since it last changed.
    pub loss_scale: Option<f64>,
    #[serde(default)]
    pub loss_scale_good_steps: u64,
    /// Updates skipped for a non-finite loss or gradient.
    pub skipped_steps: u64,
    pub best_eval: Option<BestEval>,
    /// Early stopping: evaluations since the last one that improved the best by more than the
    /// threshold, and whether the run stopped for it.
    #[serde(default)]
    pub evals_without_improvement: u64,
    #[serde(default)]
    pub stopped_early: bool,
    /// Mean loss of the last logged interval.
    pub last_loss: Option<f64>,
}

/// A complete checkpoint on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub step: u64,
    pub path: PathBuf,
}

/// Step-numbered checkpoints in a folder.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
    keep: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::io(path, e)
}

fn sync_dir(path: &Path) -> Result<()> {
    // Directories can be opened and fsynced on Unix; elsewhere this is best effort.
    match std::fs::File::open(path) {
        Ok(dir) => {
            let _ = dir.sync_all();
            Ok(())
        }
        Err(e) => Err(TrainError::io(path, e)),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::File::create(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

impl Checkpoints {
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Self {
            dir: dir.into(),
            keep: keep.max(1),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder name of the checkpoint at `step`.
    pub fn name(step: u64) -> String {
        format!("{PREFIX}{step:08}")
    }

    /// Complete checkpoints, oldest first. Leftover temporary folders and incomplete
    /// `step-*` folders are ignored.
    pub fn list(&self) -> Result<Vec<CheckpointInfo>> {
        let mut found = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(TrainError::io(&self.dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(step) = name
                .strip_prefix(PREFIX)
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            if is_complete(&path) {
                found.push(CheckpointInfo { step, path });
            } else {
                tracing::warn!("ignoring incomplete checkpoint {}", path.display());
            }
        }
        found.sort_by_key(|c| c.step);
        Ok(found)
    }

    /// The newest complete checkpoint.
    pub fn latest(&self) -> Result<Option<CheckpointInfo>> {
        Ok(self.list()?.pop())
    }

    /// Writes a checkpoint atomically and prunes old ones; returns its folder.
    pub fn save<B, M>(&self, snapshot: &Snapshot<'_, B, M>) -> Result<PathBuf>
    where
        B: AutodiffBackend,
        M: HfModel<B> + AutodiffModule<B>,
    {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let name = Self::name(snapshot.state.step);
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{name}-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let written = snapshot.write(&tmp);
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        sync_dir(&tmp)?;
        let dest = self.dir.join(&name);
        if dest.exists() {
            // The same step saved again (e.g. the final save right after a periodic one).
            let old = self.dir.join(format!("{DELETING_PREFIX}{name}"));
            std::fs::rename(&dest, &old).map_err(io(&dest))?;
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        sync_dir(&self.dir)?;
        self.prune()?;
        Ok(dest)
    }

    /// Restores the newest complete checkpoint whose checksums match and which loads, for a run
    /// whose model is `current`; an older one (with a warning) when newer ones are damaged.
    pub fn restore_newest<B, M>(
        &self,
        current: &BertHashConfig,
        optimizer: &OptimizerConfig,
        device: &B::Device,
    ) -> Result<Restored<B, M>>
    where
        B: AutodiffBackend,
        M: HfModel<B> + AutodiffModule<B>,
    {
        let mut first_error = None;
        for candidate in self.list()?.iter().rev() {
            let restored = verify(&candidate.path).and_then(|()| {
                restore::<B, M>(&candidate.path, current, optimizer.clone(), device)
            });
            match restored {
                Ok(restored) => {
                    if first_error.is_some() {
                        tracing::warn!("resuming from {}", candidate.path.display());
                    }
                    return Ok(restored);
                }
                Err(e @ TrainError::ShapeMismatch { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!("skipping a damaged checkpoint: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| TrainError::NothingToResume {
            path: self.dir.clone(),
            message: "no complete checkpoint".into(),
        }))
    }

    /// Deletes all but the newest `keep` complete checkpoints, and stale temporary folders.
    fn prune(&self) -> Result<()> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(self.keep);
        for old in &all[..excess] {
            let name = old
                .path
                .file_name()
                .expect("named")
                .to_string_lossy()
                .into_owned();
            let doomed = self.dir.join(format!("{DELETING_PREFIX}{name}"));
            // Renamed first, so an interrupted deletion leaves no half `step-*` folder.
            std::fs::rename(&old.path, &doomed).map_err(io(&old.path))?;
            std::fs::remove_dir_all(&doomed).map_err(io(&doomed))?;
        }
        let own = format!("-{}", std::process::id());
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name.starts_with(DELETING_PREFIX)
                || (name.starts_with(TMP_PREFIX) && !name.ends_with(&own));
            if stale && entry.path().is_dir() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }
}

/// What a checkpoint holds of the run, beside the trainer's model, optimizer and state.
pub struct RunFiles<'a> {
    pub model_config: &'a BertHashConfig,
    pub layout: &'a WeightLayout,
    /// The run's resolved config.
    pub run_config: &'a serde_json::Value,
    /// The run's tokenizer (`tokenizer.json`), copied in with its companion files.
    pub tokenizer: Option<&'a Path>,
    /// The run's best model directory, copied in (fine-tuning).
    pub best: Option<&'a Path>,
}

/// What a checkpoint holds.
pub struct Snapshot<'a, B: AutodiffBackend, M> {
    pub files: &'a RunFiles<'a>,
    pub model: &'a M,
    pub optimizer: &'a AdamW<B>,
    pub state: &'a TrainState,
}

impl<B: AutodiffBackend, M: HfModel<B> + AutodiffModule<B>> Snapshot<'_, B, M> {
    /// Writes the files into `dir`: the model (with the tokenizer), the optimizer, the run's
    /// config, the best model, their checksums, and `state.json` last (its presence marks the checkpoint complete).
    fn write(&self, dir: &Path) -> Result<()> {
        // The model as a Hugging Face directory (its files are written and fsynced atomically).
        let files = self.files;
        pretrained::save::<B, M>(dir, files.model_config, self.model, files.layout)?;
        if let Some(tokenizer) = files.tokenizer {
            copy_tokenizer_files(tokenizer, dir);
        }
        self.optimizer.save(&dir.join(OPTIMIZER_FILE))?;
        let config_json = serde_json::to_vec_pretty(files.run_config).expect("config serializes");
        write_synced(&dir.join(CONFIG_JSON), &config_json)?;
        let mut checked: Vec<String> = CHECKED.iter().map(|n| n.to_string()).collect();
        if let Some(best) = files.best {
            std::fs::create_dir_all(dir.join(BEST_DIR)).map_err(io(dir))?;
            for name in [CONFIG_FILE, WEIGHTS_FILE] {
                let bytes = std::fs::read(best.join(name)).map_err(io(&best.join(name)))?;
                write_synced(&dir.join(BEST_DIR).join(name), &bytes)?;
                checked.push(format!("{BEST_DIR}/{name}"));
            }
        }
        let mut sums = BTreeMap::new();
        for name in checked {
            let sum = checksum(&dir.join(&name))?;
            sums.insert(name, sum);
        }
        let sums_json = serde_json::to_vec_pretty(&sums).expect("checksums serialize");
        write_synced(&dir.join(CHECKSUMS_FILE), &sums_json)?;
        let state_json = serde_json::to_vec_pretty(self.state).expect("state serializes");
        write_synced(&dir.join(STATE_FILE), &state_json)
    }
}

/// The files whose checksums a checkpoint records.
const CHECKED: [&str; 4] = [CONFIG_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, CONFIG_JSON];

fn checksum(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(format!("{:08x}", crc32c::crc32c(&bytes)))
}

/// Checks a checkpoint's files against its `checksums.json` (a checkpoint written without one
/// passes unchecked).
pub fn verify(path: &Path) -> Result<()> {
    let file = path.join(CHECKSUMS_FILE);
    let Ok(text) = std::fs::read_to_string(&file) else {
        tracing::warn!(
            "{}: written without checksums; resuming from it unchecked",
            path.display()
        );
        return Ok(());
    };
    let sums: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
            path: file.clone(),
            message: format!("checksums.json does not parse: {e}"),
        })?;
    for (name, expected) in &sums {
        let found = checksum(&path.join(name))?;
        if &found != expected {
            return Err(TrainError::Checkpoint {
                path: path.join(name),
                message: format!("checksum {found} does not match the recorded {expected}: the file was damaged after it was written"),
            });
        }
    }
    Ok(())
}

fn is_complete(path: &Path) -> bool {
    let files = [
        CONFIG_FILE,
        WEIGHTS_FILE,
        OPTIMIZER_FILE,
        STATE_FILE,
        CONFIG_JSON,
    ];
    files.iter().all(|f| path.join(f).is_file()) && read_state(path).is_ok()
}

/// Reads `state.json` of a checkpoint.
pub fn read_state(path: &Path) -> Result<TrainState> {
    let file = path.join(STATE_FILE);
    let text = std::fs::read_to_string(&file).map_err(io(&file))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: file,
        message: format!("state.json does not parse: {e}"),
    })
}

/// The model shape fields that must agree between a checkpoint and a run.
pub fn shape_difference(
    checkpoint: &BertHashConfig,
    current: &BertHashConfig,
) -> Option<(String, String, String)> {
    let fields: [(&str, usize, usize); 9] = [
        ("vocab_size", checkpoint.vocab_size, current.vocab_size),
        ("hidden_size", checkpoint.hidden_size, current.hidden_size),
        (
            "num_hidden_layers",
            checkpoint.num_hidden_layers,
            current.num_hidden_layers,
        ),
        (
            "num_attention_heads",
            checkpoint.num_attention_heads,
            current.num_attention_heads,
        ),
        (
            "intermediate_size",
            checkpoint.intermediate_size,
            current.intermediate_size,
        ),
        ("projections", checkpoint.projections, current.projections),
        (
            "max_position_embeddings",
            checkpoint.max_position_embeddings,
            current.max_position_embeddings,
        ),
        (
            "type_vocab_size",
            checkpoint.type_vocab_size,
            current.type_vocab_size,
        ),
        ("num_labels", checkpoint.num_labels(), current.num_labels()),
    ];
    fields
        .into_iter()
        .find(|(_, a, b)| a != b)
        .map(|(field, a, b)| (field.to_string(), a.to_string(), b.to_string()))
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Restored<B: AutodiffBackend, M> {
    pub model: M,
    pub layout: WeightLayout,
    pub optimizer: AdamW<B>,
    pub state: TrainState,
    pub path: PathBuf,
}

/// Loads the checkpoint at `path` for a run whose model is `current`. A checkpoint of another
/// shape is refused, naming the first differing field.
pub fn restore<B, M>(
    path: &Path,
    current: &BertHashConfig,
    optimizer: OptimizerConfig,
    device: &B::Device,
) -> Result<Restored<B, M>>
where
    B: AutodiffBackend,
    M: HfModel<B> + AutodiffModule<B>,
{
    let saved = pretrained::read_config(path)?;
    if let Some((field, checkpoint, current)) = shape_difference(&saved, current) {
        return Err(TrainError::ShapeMismatch {
            path: path.to_path_buf(),
            field,
            checkpoint,
            current,
        });
    }
    let state = read_state(path)?;
    let loaded = pretrained::load::<B, M>(path, Some(saved), 0, device)?;
    let model = loaded.model;
    let optimizer = AdamW::load(optimizer, &model, &path.join(OPTIMIZER_FILE), device)?;
    if optimizer.step_count() != state.step - state.skipped_steps {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "optimizer step {} does not match state step {} minus {} skipped",
                optimizer.step_count(),
                state.step,
                state.skipped_steps
            ),
        });
    }
    Ok(Restored {
        model,
        layout: loaded.layout,
        optimizer,
        state,
        path: path.to_path_buf(),
    })
}
