//! [`DistillRunConfig`]: every setting of one distill run. Field names are the recipe keys and,
//! with dashes, the flags of `compress distill` (`T` is `--T`); the defaults live in
//! [`defaults`] and nowhere else.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::settings;
use crate::train::kd::FeatureDistance;
use crate::train::DistillLoss;

/// Default values of [`DistillRunConfig`] (the CLI shows them in `--help`).
pub mod defaults {
    /// Weight α of the soft (teacher) term.
    pub const ALPHA: f64 = 0.7;
    /// Softmax temperature T of the soft term.
    pub const T: f64 = 2.0;
    /// Optimizer steps.
    pub const STEPS: usize = 200;
    /// Layer pairs of the feature term.
    pub const FEATURE_LAYERS: &str = "uniform";
    /// Logits per position in the teacher cache.
    pub const TOP_K: usize = 64;
    /// Held-out sequences scored.
    pub const EVAL_SAMPLES: usize = 32;
    /// Tokens per sequence.
    pub const SEQ_LEN: usize = 128;
    /// Sequences per micro-batch.
    pub const BATCH_SIZE: usize = 8;
    /// Micro-batches per step.
    pub const GRAD_ACCUM: usize = 1;
    /// Peak learning rate.
    pub const LR: f64 = 5e-4;
    /// Checkpoint interval in steps.
    pub const CHECKPOINT_EVERY: usize = 100;
}

/// Every setting of a distill run (see the module doc for names and defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistillRunConfig {
    /// Teacher model directory (float or pack-quantized; frozen).
    pub teacher: PathBuf,
    /// Student model directory (any shape with the teacher's vocabulary).
    pub student: Option<PathBuf>,
    /// Student = the teacher's layers: a count N or a comma list of 0-based depths.
    #[serde(deserialize_with = "settings::de_opt_text")]
    pub student_layers: Option<String>,
    /// Student = the teacher with this fraction (0, 1) of each layer's heads and neurons.
    pub student_width: Option<f64>,
    /// Student = K distinct blocks cycled through the teacher's depth.
    pub share_layers: Option<usize>,
    /// Weight α of the soft term; the hard term gets 1 − α.
    pub alpha: f64,
    /// Softmax temperature T of the soft term.
    #[serde(rename = "T", alias = "temperature")]
    pub temperature: f64,
    /// Training data.
    pub data: PathBuf,
    /// Optimizer steps.
    pub steps: usize,
    /// Output directory.
    pub out: PathBuf,
    /// Weight of the feature (hidden-state) term; 0 = off.
    pub feature_weight: f64,
    /// Distance of the feature term.
    pub feature_loss: FeatureDistance,
    /// Layer outputs paired by the feature term: `uniform` or 1-based STUDENT:TEACHER pairs.
    pub feature_layers: String,
    /// File of the teacher's top-k logits (built when missing, reused after).
    pub teacher_cache: Option<PathBuf>,
    /// Logits per position in `teacher_cache`.
    pub top_k: usize,
    /// Held-out data for the report's perplexities.
    pub eval_data: Option<PathBuf>,
    /// Held-out sequences to score.
    pub eval_samples: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per step.
    pub grad_accum: usize,
    /// Peak learning rate (warmup, then cosine to a tenth).
    pub lr: f64,
    /// Warmup steps (default: 5% of `steps`).
    pub warmup: Option<usize>,
    /// Checkpoint every N steps (0 = only at the end).
    pub checkpoint_every: usize,
    /// Continue an interrupted run from its checkpoint.
    pub resume: bool,
    /// Stop after this many total steps, keeping the checkpoint (as an interruption would).
    pub stop_after: Option<usize>,
    /// dtype of the written student (default: the teacher's).
    pub dtype: Option<String>,
    /// Replace a non-empty `out`.
    pub overwrite: bool,
    /// Device: cpu, tch:cpu or cuda:N.
    pub device: String,
    /// Random seed.
    pub seed: u64,
}

impl Default for DistillRunConfig {
    fn default() -> Self {
        Self {
            teacher: PathBuf::new(),
            student: None,
            student_layers: None,
            student_width: None,
            share_layers: None,
            alpha: defaults::ALPHA,
            temperature: defaults::T,
            data: PathBuf::new(),
            steps: defaults::STEPS,
            out: PathBuf::new(),
            feature_weight: 0.0,
            feature_loss: FeatureDistance::Mse,
            feature_layers: defaults::FEATURE_LAYERS.into(),
            teacher_cache: None,
            top_k: defaults::TOP_K,
            eval_data: None,
            eval_samples: defaults::EVAL_SAMPLES,
            seq_len: defaults::SEQ_LEN,
            batch_size: defaults::BATCH_SIZE,
            grad_accum: defaults::GRAD_ACCUM,
            lr: defaults::LR,
            warmup: None,
            checkpoint_every: defaults::CHECKPOINT_EVERY,
            resume: false,
            stop_after: None,
            dtype: None,
            overwrite: false,
            device: "cpu".into(),
            seed: 0,
        }
    }
}

impl DistillRunConfig {
    /// The checks that read no file; returns the loss.
    pub fn validate(&self) -> Result<DistillLoss> {
        let loss = DistillLoss::new(self.alpha, self.temperature)?;
        settings::non_negative("feature_weight", self.feature_weight)?;
        settings::positive("lr", self.lr)?;
        let students = [
            self.student.is_some(),
            self.student_layers.is_some(),
            self.student_width.is_some(),
            self.share_layers.is_some(),
        ];
        if students.iter().filter(|s| **s).count() != 1 {
            return Err(CoreError::missing(
                "student",
                "give exactly one of `student`, `student_layers`, `student_width`, `share_layers`",
            ));
        }
        Ok(loss)
    }

    /// The input files and dirs it reads besides the teacher (set ones only).
    pub fn input_paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let data = (!self.data.as_os_str().is_empty()).then_some(&mut self.data);
        [
            self.student.as_mut(),
            data,
            self.teacher_cache.as_mut(),
            self.eval_data.as_mut(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
