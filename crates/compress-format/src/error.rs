//! Error type shared by every format module.
//!
//! Every variant renders as a single line that names the file (and, where it
//! applies, the config key or tensor) so that a user can find the problem
//! without a backtrace.

use std::path::{Path, PathBuf};

/// Architectures accepted by [`crate::hf_config::HfConfig`], as listed in error messages.
pub const SUPPORTED_ARCHITECTURES: &str = "LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM";

/// Everything that can go wrong while reading or writing model files.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// An I/O operation on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// File or directory being accessed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// `path` does not contain valid JSON.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// File being parsed.
        path: PathBuf,
        /// Underlying parser error.
        source: serde_json::Error,
    },
    /// A required key is absent from a JSON file.
    #[error("{}: missing required key `{key}`", path.display())]
    MissingKey {
        /// File being parsed.
        path: PathBuf,
        /// Name of the missing key.
        key: String,
    },
    /// The config names an architecture this toolkit does not handle.
    #[error(
        "{}: unsupported architecture `{arch}` (supported: {SUPPORTED_ARCHITECTURES})",
        path.display()
    )]
    UnknownArchitecture {
        /// Config file.
        path: PathBuf,
        /// Architecture (or model_type) found in the file.
        arch: String,
    },
    /// A key is present but its value is unusable.
    #[error("{}: invalid value for `{key}`: {msg}", path.display())]
    InvalidValue {
        /// File being parsed.
        path: PathBuf,
        /// Offending key.
        key: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A safetensors file (or shard index) is corrupt or inconsistent.
    #[error("{}: invalid safetensors data: {msg}", path.display())]
    Safetensors {
        /// File being read or written.
        path: PathBuf,
        /// What is wrong (names the tensor where one is involved).
        msg: String,
    },
    /// A `tokenizer.json` that cannot be loaded safely.
    #[error("{}: {msg}", path.display())]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A GGUF file is corrupt or uses something this crate does not read.
    #[error("{}: invalid GGUF: {msg}", path.display())]
    Gguf {
        /// File being read.
        path: PathBuf,
        /// What is wrong (names the key or tensor where one is involved).
        msg: String,
    },
    /// A tensor that was asked for does not exist.
    #[error("{}: missing tensor `{name}`", path.display())]
    MissingTensor {
        /// File or model directory searched.
        path: PathBuf,
        /// Tensor name.
        name: String,
    },
    /// A tensor exists that the caller did not expect.
    #[error("{}: unexpected tensor `{name}`", path.display())]
    UnknownTensor {
        /// File or model directory holding it.
        path: PathBuf,
        /// Tensor name.
        name: String,
    },
    /// A tensor has a dtype the operation cannot handle.
    #[error("tensor `{name}`: dtype {dtype}: {msg}")]
    Dtype {
        /// Tensor name.
        name: String,
        /// Dtype found.
        dtype: String,
        /// Why it is unusable.
        msg: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}`: expected shape {expected:?}, got {got:?}")]
    Shape {
        /// Tensor name.
        name: String,
        /// Shape required.
        expected: Vec<usize>,
        /// Shape found.
        got: Vec<usize>,
    },
    /// A tensor's values are unusable (out of range, not representable, inconsistent).
    #[error("tensor `{name}`: {msg}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong with its values.
        msg: String,
    },
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, FormatError>;

impl FormatError {
    /// Builds an [`FormatError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Builds a [`FormatError::Safetensors`] for `path`.
    pub fn safetensors(path: &Path, msg: impl Into<String>) -> Self {
        FormatError::Safetensors {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }

    /// Builds a [`FormatError::Tensor`] for tensor `name`.
    pub fn tensor(name: impl Into<String>, msg: impl Into<String>) -> Self {
        FormatError::Tensor {
            name: name.into(),
            msg: msg.into(),
        }
    }

    /// Builds a [`FormatError::InvalidValue`] for `path` and `key`.
    pub fn invalid(path: &Path, key: impl Into<String>, msg: impl Into<String>) -> Self {
        FormatError::InvalidValue {
            path: path.to_path_buf(),
            key: key.into(),
            msg: msg.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_name_file_and_key() {
        let p = Path::new("/m/config.json");
        let e = FormatError::MissingKey {
            path: p.into(),
            key: "hidden_size".into(),
        };
        assert_eq!(
            e.to_string(),
            "/m/config.json: missing required key `hidden_size`"
        );
        let e = FormatError::UnknownArchitecture {
            path: p.into(),
            arch: "GPT2LMHeadModel".into(),
        };
        let s = e.to_string();
        assert!(s.starts_with("/m/config.json: unsupported architecture `GPT2LMHeadModel`"));
        assert!(s.contains("Qwen2ForCausalLM") && s.contains("MistralForCausalLM"));
        let e = FormatError::io(p, std::io::Error::other("boom"));
        assert_eq!(e.to_string(), "/m/config.json: boom");
        let e = FormatError::Shape {
            name: "w".into(),
            expected: vec![2, 3],
            got: vec![3, 2],
        };
        assert_eq!(
            e.to_string(),
            "tensor `w`: expected shape [2, 3], got [3, 2]"
        );
        assert_eq!(
            FormatError::tensor("l.weight_packed", "bad").to_string(),
            "tensor `l.weight_packed`: bad"
        );
        for e in [
            FormatError::safetensors(p, "x"),
            FormatError::invalid(p, "k", "m"),
        ] {
            assert!(!e.to_string().contains('\n'));
            assert!(e.to_string().contains("/m/config.json"));
        }
    }
}
