//! File formats for the `compress` toolkit.
//!
//! This crate knows how Hugging Face Llama-family checkpoints are laid out on
//! disk and nothing about tensors as computations (it does not depend on
//! burn):
//!
//! * [`hf_config`]: typed, round-trippable `config.json`;
//! * [`hf_names`]: the checkpoints' tensor names (`model.layers.{l}.self_attn.q_proj`, …);
//! * [`safetensors`]: memory-mapped, validated reading of `.safetensors`
//!   files and sharded model directories, and atomic (optionally sharded)
//!   writing;
//! * [`pack_quantized`]: the compressed-tensors `pack-quantized` layout of
//!   integer weight-only quantized Linear layers and its `quantization_config`;
//! * [`gguf`]: llama.cpp's GGUF: reading, writing, Q8_0/Q4_0 blocks and export of
//!   an HF directory;
//! * [`atomic`]: write-to-temp-then-rename file replacement and tokenizer
//!   file copying.
//!
//! All fallible functions return [`Result`] with a [`FormatError`] whose
//! message names the file and the key or tensor involved.

pub mod atomic;
pub mod error;
pub mod gguf;
pub mod hf_config;
pub mod hf_names;
pub mod npy;
pub mod pack_quantized;
pub mod safetensors;
pub mod tokenizer_json;

pub use crate::atomic::{copy_tokenizer_files, write_atomic, write_atomic_with};
pub use crate::error::{FormatError, Result};
pub use crate::hf_config::{Architecture, HfConfig, RopeScaling};
pub use crate::pack_quantized::{QuantStrategy, QuantizationConfig, QuantizedLinear, WeightQuant};
pub use crate::safetensors::{
    write_model_dir_weights, write_safetensors, Dtype, ModelFiles, SafetensorsFile, TensorOut,
    TensorRef,
};
