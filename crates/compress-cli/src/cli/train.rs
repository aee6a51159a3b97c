//! Arguments of `compress train` (defaults: `compress_core::train::run`).

use std::path::PathBuf;

use clap::Args;
use compress_core::train::run::defaults;

/// `compress train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model preset (tiny) or a config.json path; ignored with --init.
    #[arg(long, default_value = defaults::CONFIG)]
    pub config: String,
    /// Start from this model directory instead of random weights.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Training data (.txt, .json, .jsonl).
    #[arg(long)]
    pub data: PathBuf,
    /// tokenizer.json for text data (copied into the output).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Optimizer steps.
    #[arg(long)]
    pub steps: usize,
    /// Output directory (model, metrics.jsonl, checkpoint/).
    #[arg(long)]
    pub out: PathBuf,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = defaults::BATCH_SIZE)]
    pub batch_size: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = defaults::SEQ_LEN)]
    pub seq_len: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = defaults::LR)]
    pub lr: f64,
    /// Final learning rate (cosine decay target).
    #[arg(long, default_value_t = defaults::MIN_LR)]
    pub min_lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = defaults::WARMUP)]
    pub warmup: usize,
    /// AdamW weight decay.
    #[arg(long, default_value_t = defaults::WEIGHT_DECAY)]
    pub weight_decay: f32,
    /// Global gradient-norm clip (0 = off).
    #[arg(long, default_value_t = defaults::GRAD_CLIP)]
    pub grad_clip: f64,
    /// Micro-batches per step.
    #[arg(long, default_value_t = defaults::GRAD_ACCUM)]
    pub grad_accum: usize,
    /// Checkpoint every N steps (0 = only at the end).
    #[arg(long, default_value_t = defaults::CHECKPOINT_EVERY)]
    pub checkpoint_every: usize,
    /// Continue from OUT/checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many total steps, keeping the checkpoint (as an interruption would).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// dtype of the saved model: f32, f16 or bf16.
    #[arg(long, default_value = defaults::DTYPE)]
    pub dtype: String,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}
