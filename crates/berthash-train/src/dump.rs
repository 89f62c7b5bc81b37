//! `--dump-batches FILE`: the exact batches a run trains on, for replaying the run in PyTorch
//! (`tests/python/parity_checks/training.py`).
//!
//! Two things are written:
//!
//! - `FILE` (safetensors), every micro-batch of every optimizer step, keyed
//!   `step{S:06}.micro{M}.{field}` with `S` the 1-based step the micro-batch belongs to:
//!   `input_ids`, `token_type_ids`, `attention_mask` (absent for packed MLM rows) as I64
//!   `[batch, seq]`; for masked-LM `masked_positions` (flat `row * seq + col`) and
//!   `masked_labels` (I64 `[n]`); for classification `labels` (I64 classes or F32 scores,
//!   `[batch]`). The metadata holds `format`, `kind` (`mlm` or `classification`), `steps`,
//!   `grad_accum`, `init_dir` and `config` (the run's resolved config as JSON).
//! - `FILE.init/`, a Hugging Face model directory of the model before the first update (the
//!   weights the replay must start from, fresh heads included).
//!
//! The batches are kept in memory and written when the run ends (a dump is for short runs).
//! Only fresh runs dump: a resumed run would start from an optimizer state the replay lacks.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use berthash_data::{BatchLabels, ClassificationBatch, MlmBatch};
use berthash_model::pretrained::{self, HfModel};
use berthash_model::weights::{RawTensor, TensorFile, WeightLayout};
use berthash_model::BertHashConfig;
use burn::prelude::*;
use safetensors::Dtype;

use crate::error::Result;
use crate::run_dir::RunMode;

pub const FORMAT: &str = "berthash-batches-v1";

/// Collects the batches of a run and writes them with [`BatchDump::finish`].
#[derive(Debug)]
pub struct BatchDump {
    path: PathBuf,
    kind: &'static str,
    run_config: serde_json::Value,
    tensors: BTreeMap<String, RawTensor>,
    steps: u64,
    grad_accum: usize,
}

impl BatchDump {
    /// A dump of a masked-LM (`kind = "mlm"`) or classification run into `path`.
    pub fn new(path: &Path, kind: &'static str, run_config: &serde_json::Value) -> Self {
        Self {
            path: path.to_path_buf(),
            kind,
            run_config: run_config.clone(),
            tensors: BTreeMap::new(),
            steps: 0,
            grad_accum: 0,
        }
    }

    /// The dump a run asked for (`train.dump_batches`), if any; `None` with a warning when the
    /// run resumes (the replay could not start from the restored optimizer state).
    pub fn for_run(
        path: Option<&Path>,
        mode: RunMode,
        kind: &'static str,
        run_config: &serde_json::Value,
    ) -> Option<Self> {
        let path = path?;
        if mode == RunMode::Resume {
            tracing::warn!(
                "not dumping batches to {}: only fresh runs can be replayed",
                path.display()
            );
            return None;
        }
        Some(Self::new(path, kind, run_config))
    }

    /// Where the initial model goes: `FILE.init/`.
    pub fn init_dir(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".init");
        self.path.with_file_name(name)
    }

    /// Writes the model as it is before the first update.
    pub fn write_initial<B: Backend, M: HfModel<B>>(
        &self,
        config: &BertHashConfig,
        model: &M,
        layout: &WeightLayout,
    ) -> Result<()> {
        let dir = self.init_dir();
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| crate::TrainError::io(parent, e))?;
        }
        pretrained::save::<B, M>(&dir, config, model, layout)?;
        Ok(())
    }

    fn key(step: u64, micro: usize, field: &str) -> String {
        format!("step{step:06}.micro{micro}.{field}")
    }

    fn put_ints(
        &mut self,
        step: u64,
        micro: usize,
        field: &str,
        shape: Vec<usize>,
        values: &[u32],
    ) {
        let bytes = values
            .iter()
            .flat_map(|&v| i64::from(v).to_le_bytes())
            .collect();
        self.tensors.insert(
            Self::key(step, micro, field),
            RawTensor {
                dtype: Dtype::I64,
                shape,
                bytes,
            },
        );
    }

    fn note_step(&mut self, step: u64, micro: usize) {
        self.steps = self.steps.max(step);
        self.grad_accum = self.grad_accum.max(micro + 1);
    }

    /// The model inputs of a micro-batch: ids, token types and the attention mask if any.
    fn put_inputs(
        &mut self,
        step: u64,
        micro: usize,
        shape: [usize; 2],
        [ids, types]: [&Vec<u32>; 2],
        mask: Option<&Vec<u32>>,
    ) {
        self.put_ints(step, micro, "input_ids", shape.to_vec(), ids);
        self.put_ints(step, micro, "token_type_ids", shape.to_vec(), types);
        if let Some(mask) = mask {
            self.put_ints(step, micro, "attention_mask", shape.to_vec(), mask);
        }
    }

    /// Records micro-batch `micro` of step `step` (1-based: the update it feeds).
    pub fn push_mlm(&mut self, step: u64, micro: usize, batch: &MlmBatch) {
        let shape = [batch.batch_size, batch.seq_len];
        let inputs = [&batch.input_ids, &batch.token_type_ids];
        self.put_inputs(step, micro, shape, inputs, batch.attention_mask.as_ref());
        let n = batch.masked_positions.len();
        self.put_ints(
            step,
            micro,
            "masked_positions",
            vec![n],
            &batch.masked_positions,
        );
        self.put_ints(step, micro, "masked_labels", vec![n], &batch.masked_labels);
        self.note_step(step, micro);
    }

    /// Records micro-batch `micro` of step `step` (1-based) of a fine-tuning run.
    pub fn push_classification(&mut self, step: u64, micro: usize, batch: &ClassificationBatch) {
        let shape = [batch.batch_size, batch.seq_len];
        let inputs = [&batch.input_ids, &batch.token_type_ids];
        self.put_inputs(step, micro, shape, inputs, Some(&batch.attention_mask));
        match &batch.labels {
            BatchLabels::Classes(classes) => {
                let values: Vec<u32> = classes.iter().map(|&c| c as u32).collect();
                self.put_ints(step, micro, "labels", vec![classes.len()], &values);
            }
            BatchLabels::Scores(scores) => {
                self.tensors.insert(
                    Self::key(step, micro, "labels"),
                    RawTensor::from_f32(vec![scores.len()], scores),
                );
            }
            BatchLabels::Unlabelled => {}
        }
        self.note_step(step, micro);
    }

    /// Writes `FILE`.
    pub fn finish(self) -> Result<PathBuf> {
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("kind".to_string(), self.kind.to_string()),
            ("steps".to_string(), self.steps.to_string()),
            ("grad_accum".to_string(), self.grad_accum.to_string()),
            (
                "init_dir".to_string(),
                self.init_dir().display().to_string(),
            ),
            ("config".to_string(), self.run_config.to_string()),
        ]);
        let file = TensorFile {
            path: self.path.clone(),
            tensors: self.tensors,
            metadata: Some(metadata),
        };
        file.write(&self.path)?;
        Ok(self.path)
    }
}
