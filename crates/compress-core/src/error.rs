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
    /// A tensor (or a layer's module) that is missing or cannot be used, by HF name.
    #[error("{name}: {msg}")]
    Tensor {
        /// The HF tensor or module name, e.g. `model.layers.3.mlp.down_proj`.
        name: String,
        /// What is wrong.
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
    /// A stage setting out of range or inconsistent with another: names the config field (the
    /// recipe key; the CLI shows it as the flag `--field-name`) and the value.
    #[error("{field}{}: {msg}", fmt_value(.value))]
    Setting {
        /// The config field (recipe key), e.g. `group_size`.
        field: String,
        /// The value given, as text (empty when the field is missing).
        value: String,
        /// What is wrong with it.
        msg: String,
    },
    /// An impossible or invalid setting (names the setting and value).
    #[error("{0}")]
    Invalid(String),
}

fn fmt_value(value: &str) -> String {
    match value.is_empty() {
        true => String::new(),
        false => format!(" = {value}"),
    }
}

/// Result alias of compress-core.
pub type Result<T> = std::result::Result<T, CoreError>;

impl CoreError {
    /// A [`CoreError::Setting`] for `field` = `value`.
    pub fn setting(field: &str, value: impl std::fmt::Display, msg: impl Into<String>) -> Self {
        CoreError::Setting {
            field: field.to_string(),
            value: value.to_string(),
            msg: msg.into(),
        }
    }

    /// A [`CoreError::Tensor`] for the tensor or module `name`.
    pub fn tensor(name: impl Into<String>, msg: impl std::fmt::Display) -> Self {
        CoreError::Tensor {
            name: name.into(),
            msg: msg.to_string(),
        }
    }

    /// A [`CoreError::Setting`] for a field that is required but missing.
    pub fn missing(field: &str, msg: impl Into<String>) -> Self {
        Self::setting(field, "", msg)
    }

    /// Builds an [`CoreError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CoreError::Io {
            path: path.into(),
            source,
        }
    }
}
