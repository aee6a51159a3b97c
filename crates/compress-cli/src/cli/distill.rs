//! Arguments of `compress distill`.

use std::path::PathBuf;

use clap::{ArgGroup, Args};
use compress_core::stages::distill::config::defaults;

use super::shared::{HeldOutArgs, WriteArgs};

/// `--feature-loss` of `compress distill`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureLoss {
    /// Mean squared error.
    Mse,
    /// One minus cosine similarity per position.
    Cosine,
}

/// `compress distill`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("student_kind").required(true).args(["student", "student_layers", "student_width", "share_layers"])))]
pub struct DistillArgs {
    /// Teacher model directory (float or pack-quantized; frozen).
    #[arg(long)]
    pub teacher: PathBuf,
    /// Student model directory (any shape with the teacher's vocabulary).
    #[arg(long)]
    pub student: Option<PathBuf>,
    /// Student = the teacher's layers: a count N (evenly spaced, first and last kept) or a comma
    /// list of 0-based depths.
    #[arg(long)]
    pub student_layers: Option<String>,
    /// Student = the teacher with this fraction (0, 1) of each layer's head groups and FFN
    /// neurons, the most important ones (Wanda-scored on the training data).
    #[arg(long)]
    pub student_width: Option<f64>,
    /// Student = K distinct blocks (the teacher's first K) cycled through the teacher's depth.
    #[arg(long)]
    pub share_layers: Option<usize>,
    /// Weight α of the soft (teacher) term; the hard (label) term gets 1 − α.
    #[arg(long, default_value_t = defaults::ALPHA)]
    pub alpha: f64,
    /// Softmax temperature T of the soft term.
    #[arg(long = "T", visible_alias = "temperature", default_value_t = defaults::T)]
    pub temperature: f64,
    /// Training data (.txt, .json or .jsonl).
    #[arg(long)]
    pub data: PathBuf,
    /// Optimizer steps.
    #[arg(long, default_value_t = defaults::STEPS)]
    pub steps: usize,
    /// Output directory (student, distill_report.json, metrics.jsonl).
    #[arg(long)]
    pub out: PathBuf,
    /// Weight of the feature (hidden-state) term; 0 = off.
    #[arg(long, default_value_t = 0.0)]
    pub feature_weight: f64,
    /// Distance of the feature term.
    #[arg(long, value_enum, default_value_t = FeatureLoss::Mse)]
    pub feature_loss: FeatureLoss,
    /// Layer outputs paired by the feature term: `uniform` or STUDENT:TEACHER pairs (1-based),
    /// e.g. `1:2,2:4`.
    #[arg(long, default_value = defaults::FEATURE_LAYERS)]
    pub feature_layers: String,
    /// Keep the teacher's top-k logits of every training window in this file (built on the
    /// first run, reused after), so the teacher's logits are computed once.
    #[arg(long)]
    pub teacher_cache: Option<PathBuf>,
    /// Logits per position in --teacher-cache.
    #[arg(long, default_value_t = defaults::TOP_K)]
    pub top_k: usize,
    /// Held-out data for the teacher/student perplexities.
    #[command(flatten)]
    pub held_out: HeldOutArgs,
    /// Tokens per sequence.
    #[arg(long, default_value_t = defaults::SEQ_LEN)]
    pub seq_len: usize,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = defaults::BATCH_SIZE)]
    pub batch_size: usize,
    /// Micro-batches per step.
    #[arg(long, default_value_t = defaults::GRAD_ACCUM)]
    pub grad_accum: usize,
    /// Peak learning rate (warmup, then cosine to a tenth).
    #[arg(long, default_value_t = defaults::LR)]
    pub lr: f64,
    /// Warmup steps (default: 5% of --steps).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Checkpoint every N steps into `.<out>.distill-run` next to --out (0 = only at the end).
    #[arg(long, default_value_t = defaults::CHECKPOINT_EVERY)]
    pub checkpoint_every: usize,
    /// Continue an interrupted run from its checkpoint (same flags).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many total steps, keeping the checkpoint (as an interruption would).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// Output dtype (default: the teacher's), --overwrite, --json.
    #[command(flatten)]
    pub write: WriteArgs,
}
