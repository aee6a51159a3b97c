//! [`MoeRunConfig`]: every setting of one MoEfication run. Field names are the recipe keys and,
//! with dashes, the flags of `compress moe`; the defaults live in [`defaults`] and nowhere else.

use std::path::PathBuf;

use compress_format::hf_config::moe::Routing;
use serde::{Deserialize, Serialize};

use super::{MoeStageConfig, SplitBy};
use crate::error::{CoreError, Result};
use crate::settings;

/// Default values of [`MoeRunConfig`] (the CLI shows them in `--help`).
pub mod defaults {
    /// Experts per layer.
    pub const EXPERTS: usize = 8;
    /// Experts each token runs.
    pub const TOP_K: usize = 2;
    /// Calibration sequences.
    pub const CALIB_SAMPLES: usize = 64;
    /// Router training steps per layer.
    pub const ROUTER_STEPS: usize = 300;
    /// Router learning rate.
    pub const ROUTER_LR: f64 = 1e-2;
    /// Balanced k-means rounds.
    pub const KMEANS_ITERS: usize = 10;
    /// Fine-tuning peak learning rate.
    pub const FINETUNE_LR: f64 = 1e-4;
    /// Sequences per fine-tuning step.
    pub const FINETUNE_BATCH_SIZE: usize = 8;
    /// Held-out sequences scored.
    pub const EVAL_SAMPLES: usize = 32;
    /// Tokens per calibration and evaluation sequence.
    pub const SEQ_LEN: usize = 128;
}

/// Every setting of a MoEfication run (see the module doc for names and defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoeRunConfig {
    /// Dense model directory (float).
    pub model: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Experts per layer.
    pub experts: usize,
    /// Experts each token runs (written to the config).
    pub top_k: usize,
    /// How the chosen experts combine.
    pub routing: Routing,
    /// What the neurons are clustered by.
    pub split: SplitBy,
    /// Calibration data for the routers, the activation split and fine-tuning.
    pub data: Option<PathBuf>,
    /// Calibration sequences.
    pub calib_samples: usize,
    /// Router training steps per layer (batches of 256 tokens); 0 = untrained.
    pub router_steps: usize,
    /// Router learning rate.
    pub router_lr: f64,
    /// Balanced k-means rounds of the split.
    pub kmeans_iters: usize,
    /// Fine-tuning steps by distillation from the dense model (α 1, T 1); 0 = none.
    pub finetune_steps: usize,
    /// Fine-tuning peak learning rate.
    pub finetune_lr: f64,
    /// Held-out data: perplexity at several top-k, trained vs random routers.
    pub eval_data: Option<PathBuf>,
    /// Held-out sequences to score.
    pub eval_samples: usize,
    /// Tokens per calibration and evaluation sequence.
    pub seq_len: usize,
    /// dtype of the written tensors (default: as loaded).
    pub dtype: Option<String>,
    /// Replace a non-empty `out`.
    pub overwrite: bool,
    /// Device: cpu, tch:cpu or cuda:N.
    pub device: String,
    /// Random seed.
    pub seed: u64,
}

impl Default for MoeRunConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            out: PathBuf::new(),
            experts: defaults::EXPERTS,
            top_k: defaults::TOP_K,
            routing: Routing::Sum,
            split: SplitBy::Weights,
            data: None,
            calib_samples: defaults::CALIB_SAMPLES,
            router_steps: defaults::ROUTER_STEPS,
            router_lr: defaults::ROUTER_LR,
            kmeans_iters: defaults::KMEANS_ITERS,
            finetune_steps: 0,
            finetune_lr: defaults::FINETUNE_LR,
            eval_data: None,
            eval_samples: defaults::EVAL_SAMPLES,
            seq_len: defaults::SEQ_LEN,
            dtype: None,
            overwrite: false,
            device: "cpu".into(),
            seed: 0,
        }
    }
}

impl MoeRunConfig {
    /// The conversion settings, checked against a layer of `intermediate` FFN neurons.
    pub fn validate(&self, intermediate: usize) -> Result<MoeStageConfig> {
        let cfg = MoeStageConfig {
            experts: self.experts,
            top_k: self.top_k,
            routing: self.routing,
            split: self.split,
            kmeans_iters: self.kmeans_iters,
            router_steps: self.router_steps,
            router_lr: self.router_lr,
            seed: self.seed,
        };
        cfg.validate(intermediate)?;
        if self.data.is_none() && self.router_steps > 0 {
            let msg = "training the routers needs `data` (`router_steps` 0 leaves them at zero: \
                       every expert ties and runs, i.e. the dense model)";
            return Err(CoreError::setting("router_steps", self.router_steps, msg));
        }
        if self.finetune_steps > 0 {
            if self.data.is_none() {
                let msg = "fine-tuning needs `data`";
                return Err(CoreError::setting(
                    "finetune_steps",
                    self.finetune_steps,
                    msg,
                ));
            }
            settings::positive("finetune_lr", self.finetune_lr)?;
        }
        Ok(cfg)
    }

    /// The data files it reads (set ones only).
    pub fn input_paths_mut(&mut self) -> Vec<&mut PathBuf> {
        [self.data.as_mut(), self.eval_data.as_mut()]
            .into_iter()
            .flatten()
            .collect()
    }
}
