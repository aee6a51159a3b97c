//! Flags several commands share, declared once and flattened into each command's args.

use std::path::PathBuf;

use clap::Args;

/// How a stage command writes its output.
#[derive(Args, Debug, Clone)]
pub struct WriteArgs {
    /// dtype of the written tensors (scales and unquantized tensors for quantize): f32, f16 or
    /// bf16 (default: as loaded).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Held-out data scored by a stage's report.
#[derive(Args, Debug, Clone)]
pub struct HeldOutArgs {
    /// Held-out data (.txt, .json or .jsonl) for the report's perplexities.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Held-out sequences to score.
    #[arg(long, default_value_t = compress_core::stages::prune::config::defaults::EVAL_SAMPLES)]
    pub eval_samples: usize,
}

/// `--top-k` of the commands that run a model.
#[derive(Args, Debug, Clone)]
pub struct TopKArg {
    /// Experts each token runs in a mixture-of-experts model (default: its config's).
    #[arg(long)]
    pub top_k: Option<usize>,
}

/// `--ignore` of quantize and prune.
#[derive(Args, Debug, Clone)]
pub struct IgnoreArg {
    /// Leave these linear layers (HF names or prefixes) as they are; lm_head always is.
    #[arg(long, num_args = 1..)]
    pub ignore: Vec<String>,
}
