//! Errors of the model crate. Every variant names the file (when there is one) and the field or
//! tensor at fault, so a user can fix the input without reading our code.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    // The io error is part of the message (not a `#[source]`) so it is printed exactly once.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error(
        "{}: malformed JSON at line {line}, column {column}: {message}",
        display_path(path)
    )]
    Json {
        path: Option<PathBuf>,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{}: invalid field `{field}`: {message}", display_path(path))]
    InvalidConfig {
        path: Option<PathBuf>,
        field: &'static str,
        message: String,
    },

    #[error("unknown preset {name:?} (known: {known})")]
    UnknownPreset { name: String, known: String },

    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },

    #[error("{path}: tensor `{key}` has shape {found:?}, but this model expects {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error(
        "{path}: tensor `{key}` has dtype {found}, expected a float tensor (F32, F16, BF16 or F64)"
    )]
    DtypeMismatch {
        path: PathBuf,
        key: String,
        found: String,
    },

    #[error("{path}: required tensor `{key}` is missing")]
    MissingTensor { path: PathBuf, key: String },

    #[error("{path} has no trained {class} head (no `{key}`): {hint}")]
    MissingHead {
        path: PathBuf,
        class: &'static str,
        key: String,
        hint: &'static str,
    },

    #[error("{path}: cannot find the hashed-embedding projection: {message}")]
    Projection { path: PathBuf, message: String },

    #[error("{path}: {message}")]
    Inputs { path: PathBuf, message: String },
}

fn display_path(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map_or_else(|| "config".to_string(), |p| p.display().to_string())
}

impl ModelError {
    /// Attaches the file a config error came from.
    pub(crate) fn in_file(self, file: &Path) -> Self {
        match self {
            ModelError::Json {
                line,
                column,
                message,
                ..
            } => ModelError::Json {
                path: Some(file.to_path_buf()),
                line,
                column,
                message,
            },
            ModelError::InvalidConfig { field, message, .. } => ModelError::InvalidConfig {
                path: Some(file.to_path_buf()),
                field,
                message,
            },
            other => other,
        }
    }
}
