//! The runtime's error type.

use std::path::PathBuf;

use compress_format::FormatError;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file-format error (the message names the file and key/tensor).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A model directory the runtime cannot run; the message says why.
    #[error("{path}: {msg}")]
    Unsupported {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// KV cache bookkeeping failed.
    #[error(transparent)]
    Kv(#[from] crate::kv::KvError),
    /// A request or setting that cannot be honoured.
    #[error("{0}")]
    Invalid(String),
}

/// Result with [`RuntimeError`].
pub type Result<T> = std::result::Result<T, RuntimeError>;

impl RuntimeError {
    /// An [`RuntimeError::Unsupported`] for `path`.
    pub fn unsupported(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Self::Unsupported {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
