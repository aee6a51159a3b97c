//! Training checkpoints: a directory holding the model in HF layout (f32, so it reloads
//! bit-exactly), the AdamW state (burnpack, keyed by the name-derived parameter ids) and
//! `state.json` (step and the training config it was made with). Written atomically.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use compress_format::hf_config::HfConfig;
use compress_format::safetensors::Dtype;
use serde::{Deserialize, Serialize};

use super::TrainConfig;
use crate::error::{CoreError, Result};
use crate::model::hf::{load_model, write_model_files, SaveOptions};
use crate::model::LlamaModel;
use crate::outdir::write_dir_atomically;

/// File name of the optimizer state inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// File name of the step/config record inside a checkpoint.
pub const STATE_FILE: &str = "state.json";

/// The non-tensor state of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer steps completed.
    pub step: usize,
    /// The config of the run that wrote it.
    pub config: TrainConfig,
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The model weights.
    pub model: LlamaModel,
    /// Optimizer steps completed.
    pub step: usize,
    /// The checkpoint directory.
    pub dir: PathBuf,
}

impl Checkpoint {
    /// Path of the optimizer state file.
    pub fn optimizer_path(&self) -> PathBuf {
        self.dir.join(OPTIMIZER_FILE)
    }
}

/// Writes a checkpoint to `dir` (replacing any previous one atomically); `extra` adds files of
/// its own (a training hook's state) into the same atomic directory.
pub fn save(
    dir: &Path,
    model: &LlamaModel,
    hf_config: &HfConfig,
    optim: &ModuleOptimizer,
    cfg: &TrainConfig,
    step: usize,
    extra: &dyn Fn(&Path) -> Result<()>,
) -> Result<()> {
    let opts = SaveOptions {
        dtype: Dtype::F32,
        max_shard_bytes: None,
        tokenizer_from: None,
    };
    write_dir_atomically(dir, |tmp| {
        write_model_files(model, hf_config, tmp, &opts)?;
        let opt_path = tmp.join(OPTIMIZER_FILE);
        optim
            .save(&opt_path)
            .map_err(|e| CoreError::Invalid(format!("{}: {e:?}", opt_path.display())))?;
        let state = CheckpointState {
            step,
            config: cfg.clone(),
        };
        let json = serde_json::to_string_pretty(&state).expect("state serializes");
        compress_format::atomic::write_atomic(&tmp.join(STATE_FILE), json.as_bytes())?;
        extra(tmp)
    })
}

/// Loads the checkpoint in `dir`, checking it was made with a compatible config.
pub fn load(dir: &Path, cfg: &TrainConfig, device: &Device) -> Result<Checkpoint> {
    let state_path = dir.join(STATE_FILE);
    if !state_path.is_file() {
        let msg = format!("no checkpoint at {} (missing {STATE_FILE})", dir.display());
        return Err(CoreError::missing("resume", msg));
    }
    let body = std::fs::read_to_string(&state_path).map_err(|e| CoreError::io(&state_path, e))?;
    let state: CheckpointState = serde_json::from_str(&body).map_err(|e| CoreError::Data {
        path: state_path.clone(),
        msg: e.to_string(),
    })?;
    let mut theirs = state.config.clone();
    theirs.steps = cfg.steps;
    theirs.checkpoint_every = cfg.checkpoint_every;
    if &theirs != cfg {
        let msg = format!(
            "{} was written with other training settings ({:?}); resume with the same ones",
            state_path.display(),
            state.config
        );
        return Err(CoreError::missing("resume", msg));
    }
    let loaded = load_model(dir, device)?;
    Ok(Checkpoint {
        model: loaded.model,
        step: state.step,
        dir: dir.to_path_buf(),
    })
}
