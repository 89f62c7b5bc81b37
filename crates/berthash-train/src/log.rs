//! Observability: `metrics.jsonl` (one record per logged step and per evaluation), `summary.json`,
//! and progress on the terminal (an indicatif bar on a TTY, plain `tracing` lines otherwise).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::best::BestEval;
use crate::config::ReportTo;
use crate::error::{Result, TrainError};
use crate::tensorboard::EventWriter;

/// A logged training step: means over the steps since the previous record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub tokens_seen: u64,
    pub elapsed_s: f64,
    /// Updates skipped for non-finite values in this interval.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// An evaluation: `eval_loss`, `eval_accuracy`, … as run_glue names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: u64,
    /// The split evaluated (`dev`, `dev_matched`, `held_out`, …).
    pub split: String,
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Train(StepRecord),
    Eval(EvalRecord),
}

impl Record {
    pub fn step(&self) -> u64 {
        match self {
            Record::Train(r) => r.step,
            Record::Eval(r) => r.step,
        }
    }
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub steps: u64,
    pub tokens_seen: u64,
    /// Training wall time (across resumes), evaluation included.
    pub wall_time_s: f64,
    pub tokens_per_s: f64,
    pub final_loss: Option<f64>,
    pub best_eval: Option<BestEval>,
    /// The metric that picked the best evaluation, and its direction.
    pub metric_for_best_model: String,
    pub greater_is_better: bool,
    /// The run stopped before `max_steps` for lack of improvement (early stopping).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_early: bool,
    pub final_eval: BTreeMap<String, f64>,
    pub skipped_steps: u64,
    /// Corpus rows and files the data stream skipped in the process that finished the run (`empty_text_rows`,
    /// `bad_rows_skipped`, `bad_files_skipped`); absent when none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data_skipped: BTreeMap<String, u64>,
    pub precision: String,
    /// The Burn backend that finished the run, as Burn names it (`autodiff<flex>`,
    /// `autodiff<cubecl<wgpu<wgsl>>>`).
    #[serde(default)]
    pub backend: String,
    /// The final model (a Hugging Face directory).
    pub model_dir: PathBuf,
    /// The last checkpoint.
    pub checkpoint: Option<PathBuf>,
}

/// Reads every record of a `metrics.jsonl`.
pub fn read_metrics(path: &Path) -> Result<Vec<Record>> {
    read_records(path, false)
}

/// Reads the records; `torn_tail` tolerates (drops, with a warning) an unparseable last line,
/// which a process killed mid-write leaves.
fn read_records(path: &Path, torn_tail: bool) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(e) if torn_tail && i + 1 == lines.len() => {
                tracing::warn!(
                    "{}: dropping a partly written last line ({e})",
                    path.display()
                );
            }
            Err(e) => {
                return Err(TrainError::Format {
                    path: path.to_path_buf(),
                    message: format!("line {}: {e}", i + 1),
                })
            }
        }
    }
    Ok(records)
}

/// A training record's TensorBoard scalars (`train/loss`, `train/learning_rate`, …).
fn train_scalars(record: &StepRecord) -> Vec<(String, f64)> {
    let mut values = vec![
        ("train/loss".to_string(), record.loss),
        ("train/learning_rate".to_string(), record.lr),
        ("train/grad_norm".to_string(), record.grad_norm),
        ("train/tokens_per_s".to_string(), record.tokens_per_s),
    ];
    values.extend(record.epoch.map(|e| ("train/epoch".to_string(), e)));
    values
}

/// An evaluation's TensorBoard scalars (`eval/dev/eval_accuracy`, …).
fn eval_scalars(record: &EvalRecord) -> Vec<(String, f64)> {
    let split = &record.split;
    record
        .metrics
        .iter()
        .map(|(k, v)| (format!("eval/{split}/{k}"), *v))
        .collect()
}

/// Writes a run's `metrics.jsonl` as a TensorBoard event file in `dir`; returns its path.
pub fn metrics_to_tensorboard(metrics: &Path, dir: &Path) -> Result<PathBuf> {
    let mut events = EventWriter::create(dir)?;
    for record in read_metrics(metrics)? {
        match &record {
            Record::Train(r) => events.scalars(r.step, &train_scalars(r))?,
            Record::Eval(r) => events.scalars(r.step, &eval_scalars(r))?,
        }
    }
    Ok(events.path().to_path_buf())
}

/// Writes records and shows progress.
pub struct Logger {
    path: PathBuf,
    file: File,
    /// TensorBoard events beside `metrics.jsonl`, when the run reports to TensorBoard.
    events: Option<EventWriter>,
    bar: Option<ProgressBar>,
    max_steps: u64,
}

impl Logger {
    /// Opens `metrics.jsonl` for appending. `resume_step`: drop records past that step (written
    /// by the interrupted run after its last checkpoint) so the file reads as one clean run.
    pub fn open(
        path: &Path,
        start_step: u64,
        max_steps: u64,
        resume_step: Option<u64>,
        report_to: ReportTo,
    ) -> Result<Self> {
        if let Some(step) = resume_step {
            if path.exists() {
                let kept: Vec<Record> = read_records(path, true)?
                    .into_iter()
                    .filter(|r| r.step() <= step)
                    .collect();
                let mut text = String::new();
                for r in &kept {
                    text.push_str(&serde_json::to_string(r).expect("record serializes"));
                    text.push('\n');
                }
                crate::run_dir::write_file(path, text.as_bytes())?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(max_steps);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  ETA {eta}",
                )
                .expect("valid template"),
            );
            bar.set_position(start_step);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let events = match (report_to, path.parent()) {
            (ReportTo::Tensorboard, Some(dir)) => Some(EventWriter::create(dir)?),
            _ => None,
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            events,
            bar,
            max_steps,
        })
    }

    fn append(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_string(record).expect("record serializes");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }

    pub fn step(&mut self, record: StepRecord) -> Result<()> {
        if let Some(events) = &mut self.events {
            events.scalars(record.step, &train_scalars(&record))?;
        }
        let msg = format!(
            "loss {:.4}  lr {:.3e}  |g| {:.3}  {:.0} tok/s",
            record.loss, record.lr, record.grad_norm, record.tokens_per_s
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(record.step);
                bar.set_message(msg);
            }
            None => tracing::info!("step {}/{}  {msg}", record.step, self.max_steps),
        }
        self.append(&Record::Train(record))
    }

    pub fn eval(&mut self, record: EvalRecord) -> Result<()> {
        if let Some(events) = &mut self.events {
            events.scalars(record.step, &eval_scalars(&record))?;
        }
        let text: Vec<String> = record
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        let line = format!(
            "eval {} at step {}: {}",
            record.split,
            record.step,
            text.join("  ")
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => tracing::info!("{line}"),
        }
        self.append(&Record::Eval(record))
    }

    pub fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => tracing::info!("{message}"),
        }
    }

    pub fn warn(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("warning: {message}")),
            None => tracing::warn!("{message}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
