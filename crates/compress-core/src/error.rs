//! The error type of compress-core: every variant names the file, key or value at fault.

use std::path::PathBuf;

use compress_format::FormatError;

/// Errors of model loading, data reading, training and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A file-format error (config.json, safetensors) from compress-format.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The checkpoint's tensors do not match the config: missing, extra or mis-shaped tensors.
    #[error("{path}: {msg}")]
    Weights {
        /// The model directory.
        path: PathBuf,
        /// What is wrong, naming the tensor.
        msg: String,
    },
    /// A data file that cannot be used (empty, malformed, out-of-vocab ids).
    #[error("{path}: {msg}")]
    Data {
        /// The data file.
        path: PathBuf,
        /// What is wrong, naming the line or value.
        msg: String,
    },
    /// A tokenizer that is missing or cannot be read.
    #[error("{path}: {msg}")]
    Tokenizer {
        /// The tokenizer file or model directory.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A device that cannot be used (unknown name, backend not compiled in, no GPU).
    #[error("device: {0}")]
    Device(String),
    /// An impossible or invalid setting (names the setting and value).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of compress-core.
pub type Result<T> = std::result::Result<T, CoreError>;

impl CoreError {
    /// Builds an [`CoreError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CoreError::Io {
            path: path.into(),
            source,
        }
    }
}
