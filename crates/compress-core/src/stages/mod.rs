//! Compression stages. Each stage is a folder: `config.rs` (its run config: recipe keys, CLI
//! flags, defaults, checks), the method files (pure math), and `run.rs` (its one entry point,
//! `run(config, progress)`: load → stage → fine-tune → eval → atomic save → report).

pub mod distill;
pub mod moe;
pub mod prune;
pub mod quantize;

use std::path::Path;

use crate::error::{CoreError, Result};
use crate::model::hf::{load_model, LoadedModel};

/// Loads the float model a stage works on from `dir` (the config field `model`); a quantized
/// one is refused with `advice` (what to do instead).
pub(crate) fn load_float(
    dir: &Path,
    device: &burn::tensor::Device,
    advice: &str,
) -> Result<LoadedModel> {
    let loaded = load_model(dir, device)?;
    match loaded.quantization {
        Some(_) => Err(CoreError::setting(
            "model",
            dir.display(),
            format!("is quantized; {advice}"),
        )),
        None => Ok(loaded),
    }
}
