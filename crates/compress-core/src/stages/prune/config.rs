//! [`PruneRunConfig`]: every setting of one prune run. Field names are the recipe keys and,
//! with dashes, the flags of `compress prune` (`distill_T` is `--distill-T`); the defaults live
//! in [`defaults`] and nowhere else.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Criterion, Pattern, PruneConfig, Schedule, Scope};
use crate::error::{CoreError, Result};
use crate::settings;
use crate::train::{DistillLoss, TrainConfig};

/// Default values of [`PruneRunConfig`] (the CLI shows them in `--help`).
pub mod defaults {
    /// What is pruned.
    pub const PATTERN: &str = "unstructured";
    /// Iterative rounds, or AGP mask updates.
    pub const ROUNDS: usize = 4;
    /// Wanda calibration sequences.
    pub const CALIB_SAMPLES: usize = 64;
    /// Held-out sequences scored.
    pub const EVAL_SAMPLES: usize = 32;
    /// Tokens per sequence.
    pub const SEQ_LEN: usize = 128;
    /// Retraining sequences per step.
    pub const BATCH_SIZE: usize = 8;
    /// Retraining peak learning rate.
    pub const LR: f64 = 5e-4;
    /// Softmax temperature of the distillation term.
    pub const DISTILL_T: f64 = 2.0;
}

/// Every setting of a prune run (see the module doc for names and defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruneRunConfig {
    /// Model directory (float).
    pub model: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Target sparsity in [0, 1) (N:M: implied as N/M when unset).
    pub sparsity: Option<f64>,
    /// unstructured, N:M (e.g. 2:4), heads or neurons.
    pub pattern: String,
    /// Per matrix / per layer, or over the whole model.
    pub scope: Scope,
    /// How weights (or heads/neurons) are ranked.
    pub criterion: Criterion,
    /// When to prune relative to retraining.
    pub schedule: Schedule,
    /// Iterative rounds, or AGP mask updates.
    pub rounds: usize,
    /// Retraining steps (per round for iterative, in all for agp); 0 = none.
    pub retrain_steps: usize,
    /// Retraining data; also Wanda's calibration data unless `calib`.
    pub data: Option<PathBuf>,
    /// Wanda calibration data.
    pub calib: Option<PathBuf>,
    /// Wanda calibration sequences.
    pub calib_samples: usize,
    /// Held-out data for the perplexity columns of the report.
    pub eval_data: Option<PathBuf>,
    /// Held-out sequences to score.
    pub eval_samples: usize,
    /// Tokens per training, calibration and evaluation sequence.
    pub seq_len: usize,
    /// Retraining sequences per step.
    pub batch_size: usize,
    /// Retraining peak learning rate (warmup, then cosine to a tenth).
    pub lr: f64,
    /// Weight α of the distillation term while retraining; 0 = plain LM loss.
    pub distill_alpha: f64,
    /// Softmax temperature of the distillation term.
    #[serde(rename = "distill_T")]
    pub distill_temperature: f64,
    /// Linear layers (HF names or prefixes) left dense; lm_head always is.
    pub ignore: Vec<String>,
    /// dtype of the written tensors (default: as loaded).
    pub dtype: Option<String>,
    /// Replace a non-empty `out`.
    pub overwrite: bool,
    /// Device: cpu, tch:cpu or cuda:N.
    pub device: String,
    /// Random seed (also the retraining data order).
    pub seed: u64,
}

impl Default for PruneRunConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            out: PathBuf::new(),
            sparsity: None,
            pattern: defaults::PATTERN.into(),
            scope: Scope::Layer,
            criterion: Criterion::Magnitude,
            schedule: Schedule::OneShot,
            rounds: defaults::ROUNDS,
            retrain_steps: 0,
            data: None,
            calib: None,
            calib_samples: defaults::CALIB_SAMPLES,
            eval_data: None,
            eval_samples: defaults::EVAL_SAMPLES,
            seq_len: defaults::SEQ_LEN,
            batch_size: defaults::BATCH_SIZE,
            lr: defaults::LR,
            distill_alpha: 0.0,
            distill_temperature: defaults::DISTILL_T,
            ignore: Vec::new(),
            dtype: None,
            overwrite: false,
            device: "cpu".into(),
            seed: 0,
        }
    }
}

impl PruneRunConfig {
    /// The pruning settings, checked (no file is read).
    pub fn validate(&self) -> Result<PruneConfig> {
        let pattern = Pattern::parse(&self.pattern)?;
        let sparsity = match (self.sparsity, pattern) {
            (Some(s), _) => s,
            (None, Pattern::NM { n, m }) => n as f64 / m as f64,
            (None, _) => {
                let msg = format!("required for `pattern` {}", self.pattern);
                return Err(CoreError::missing("sparsity", msg));
            }
        };
        settings::nonzero("batch_size", self.batch_size)?;
        if self.seq_len < 2 {
            return Err(CoreError::setting("seq_len", self.seq_len, "must be ≥ 2"));
        }
        settings::positive("lr", self.lr)?;
        let retrain = (self.retrain_steps > 0).then(|| TrainConfig {
            steps: self.retrain_steps,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            lr: self.lr,
            min_lr: self.lr / 10.0,
            warmup_steps: (self.retrain_steps / 20).max(1),
            seed: self.seed,
            ..TrainConfig::default()
        });
        let distill = match self.distill_alpha {
            0.0 => None,
            // The loss names its own fields (`alpha`, `T`): here they are `distill_…`.
            alpha => Some(DistillLoss::new(alpha, self.distill_temperature).map_err(
                |e| match e {
                    CoreError::Setting { field, value, msg } => CoreError::Setting {
                        field: format!("distill_{field}"),
                        value,
                        msg,
                    },
                    e => e,
                },
            )?),
        };
        let cfg = PruneConfig {
            sparsity,
            pattern,
            scope: self.scope,
            criterion: self.criterion,
            schedule: self.schedule,
            rounds: self.rounds,
            ignore: self.ignore.clone(),
            distill,
            retrain,
        };
        if cfg.distill.is_some() && cfg.retrain.is_none() {
            let msg = "distills while retraining; give `retrain_steps`";
            return Err(CoreError::setting("distill_alpha", self.distill_alpha, msg));
        }
        cfg.validate()?;
        if cfg.retrain.is_some() && self.data.is_none() {
            let msg = "retraining needs `data`";
            return Err(CoreError::setting("retrain_steps", self.retrain_steps, msg));
        }
        Ok(cfg)
    }

    /// The data files it reads (set ones only).
    pub fn input_paths_mut(&mut self) -> Vec<&mut PathBuf> {
        [
            self.data.as_mut(),
            self.calib.as_mut(),
            self.eval_data.as_mut(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
