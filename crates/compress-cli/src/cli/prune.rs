//! Arguments of `compress prune` (defaults: `compress_core::stages::prune::config`).

use std::path::PathBuf;

use clap::Args;
use compress_core::stages::prune::config::defaults;

use super::shared::{HeldOutArgs, IgnoreArg, WriteArgs};

/// `--scope` of `compress prune`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneScope {
    /// Each matrix (or each layer's heads/neurons) gets the target sparsity.
    Layer,
    /// The target holds over the whole model together.
    Global,
}

/// `--criterion` of `compress prune`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneCriterion {
    /// |w|.
    Magnitude,
    /// |w| times the input's activation norm on calibration data (Wanda).
    Wanda,
}

/// `--schedule` of `compress prune`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneSchedule {
    /// Prune once (then retrain --retrain-steps).
    Oneshot,
    /// --rounds rounds of rising sparsity, retraining --retrain-steps after each.
    Iterative,
    /// Gradual cubic schedule (Zhu & Gupta): --rounds mask updates during --retrain-steps.
    Agp,
}

/// `compress prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Model directory (float).
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Target sparsity in [0, 1): fraction of weights, or of heads/neurons per layer (N:M: N/M).
    #[arg(long)]
    pub sparsity: Option<f64>,
    /// unstructured, N:M (N of every M inputs pruned, e.g. 2:4), heads or neurons.
    #[arg(long, default_value = defaults::PATTERN)]
    pub pattern: String,
    /// Sparsity per matrix / per layer, or over the whole model (global: heads and neurons then
    /// differ per layer, written as the compress_layer_shapes config extension).
    #[arg(long, value_enum, default_value_t = PruneScope::Layer)]
    pub scope: PruneScope,
    /// How weights (or heads/neurons) are ranked.
    #[arg(long, value_enum, default_value_t = PruneCriterion::Magnitude)]
    pub criterion: PruneCriterion,
    /// When to prune relative to retraining.
    #[arg(long, value_enum, default_value_t = PruneSchedule::Oneshot)]
    pub schedule: PruneSchedule,
    /// Iterative rounds, or AGP mask updates.
    #[arg(long, default_value_t = defaults::ROUNDS)]
    pub rounds: usize,
    /// Retraining steps (per round for iterative, in all for agp); 0 = no retraining.
    #[arg(long, default_value_t = 0)]
    pub retrain_steps: usize,
    /// Retraining data (.txt, .json or .jsonl); also Wanda's calibration data unless --calib.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Wanda calibration data.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Wanda calibration sequences.
    #[arg(long, default_value_t = defaults::CALIB_SAMPLES)]
    pub calib_samples: usize,
    /// Held-out data for the perplexity columns.
    #[command(flatten)]
    pub held_out: HeldOutArgs,
    /// Tokens per training, calibration and evaluation sequence.
    #[arg(long, default_value_t = defaults::SEQ_LEN)]
    pub seq_len: usize,
    /// Retraining sequences per step.
    #[arg(long, default_value_t = defaults::BATCH_SIZE)]
    pub batch_size: usize,
    /// Retraining peak learning rate (warmup, then cosine to a tenth).
    #[arg(long, default_value_t = defaults::LR)]
    pub lr: f64,
    /// Retrain against the dense model: weight α of the distillation (soft) term, 0 = plain LM loss.
    #[arg(long, default_value_t = 0.0)]
    pub distill_alpha: f64,
    /// Softmax temperature of the distillation term.
    #[arg(long = "distill-T", default_value_t = defaults::DISTILL_T)]
    pub distill_temperature: f64,
    /// Linears left dense.
    #[command(flatten)]
    pub ignore: IgnoreArg,
    /// Output dtype, --overwrite, --json.
    #[command(flatten)]
    pub write: WriteArgs,
}
