//! The one error type of the training crate. Every variant says what to do about it, or names
//! the file, field or step at fault.

use std::path::PathBuf;

use berthash_data::DataError;
use berthash_model::ModelError;

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    // The io error is part of the message (not a `#[source]`) so it is printed exactly once.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error(transparent)]
    Model(#[from] ModelError),

    #[error(transparent)]
    Data(#[from] DataError),

    #[error("invalid training config: `{field}`: {message}")]
    Config { field: String, message: String },

    #[error(
        "run directory {path} already holds a run ({what}); pass overwrite to replace it or resume to continue it"
    )]
    RunExists { path: PathBuf, what: String },

    #[error(
        "{path}: not a model directory (config.json + model.safetensors), a run directory or a checkpoint"
    )]
    NoModel { path: PathBuf },

    #[error("{path}: nothing to resume: {message}")]
    NothingToResume { path: PathBuf, message: String },

    #[error("{path}: checkpoint is unusable: {message}")]
    Checkpoint { path: PathBuf, message: String },

    #[error(
        "{path}: checkpoint was saved for a different model shape: `{field}` is {checkpoint} in the checkpoint but {current} in this run"
    )]
    ShapeMismatch {
        path: PathBuf,
        field: String,
        checkpoint: String,
        current: String,
    },

    #[error(
        "non-finite loss ({value}) at step {step}; training stopped{}. Lower the learning rate, check the data, or set on_nonfinite = \"skip\"",
        last_checkpoint.as_ref().map(|p| format!(" (last good checkpoint: {})", p.display())).unwrap_or_default()
    )]
    NonFinite {
        step: u64,
        value: f32,
        last_checkpoint: Option<PathBuf>,
    },

    #[error(
        "stopped at step {step} as asked; checkpoint {}",
        checkpoint.display()
    )]
    Interrupted { step: u64, checkpoint: PathBuf },

    #[error(
        "{path} is in use by another berthash process (it holds {path}/.lock): wait for it to finish or stop it"
    )]
    RunLocked { path: PathBuf },

    #[error("the data stream ended after {batches} batches, before step {step} of {max_steps}")]
    DataExhausted {
        batches: u64,
        step: u64,
        max_steps: u64,
    },

    #[error("precision {precision}: {message}")]
    Precision { precision: String, message: String },

    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            cause: source,
        }
    }

    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        TrainError::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}
