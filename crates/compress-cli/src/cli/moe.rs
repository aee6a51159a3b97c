//! Arguments of `compress moe`.

use std::path::PathBuf;

use clap::Args;
use compress_core::stages::moe::config::defaults;

use super::shared::{HeldOutArgs, WriteArgs};

/// `--routing` of `compress moe`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoeRouting {
    /// The chosen experts' outputs added, unweighted (MoEfication; top-k = E is the dense model).
    Sum,
    /// Weighted by the softmax of the chosen experts' router scores (Mixtral style).
    Softmax,
}

/// `--split` of `compress moe`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoeSplit {
    /// Cluster neurons by their gate/up weights.
    Weights,
    /// Cluster neurons by their activations on --data (co-activation).
    Activations,
}

/// `compress moe`.
#[derive(Args, Debug)]
pub struct MoeArgs {
    /// Dense model directory (float).
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Experts per layer (the FFN neurons split evenly; the first I mod E one larger).
    #[arg(long, default_value_t = defaults::EXPERTS)]
    pub experts: usize,
    /// Experts each token runs (written to the config; --top-k on eval/generate overrides it).
    #[arg(long, default_value_t = defaults::TOP_K)]
    pub top_k: usize,
    /// How the chosen experts combine.
    #[arg(long, value_enum, default_value_t = MoeRouting::Sum)]
    pub routing: MoeRouting,
    /// What the neurons are clustered by.
    #[arg(long, value_enum, default_value_t = MoeSplit::Weights)]
    pub split: MoeSplit,
    /// Calibration data for the routers, the activation split and fine-tuning (.txt, .json, .jsonl).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Calibration sequences.
    #[arg(long, default_value_t = defaults::CALIB_SAMPLES)]
    pub calib_samples: usize,
    /// Router training steps per layer (batches of 256 tokens); 0 = untrained (all experts tie).
    #[arg(long, default_value_t = defaults::ROUTER_STEPS)]
    pub router_steps: usize,
    /// Router learning rate.
    #[arg(long, default_value_t = defaults::ROUTER_LR)]
    pub router_lr: f64,
    /// Balanced k-means rounds of the split.
    #[arg(long, default_value_t = defaults::KMEANS_ITERS)]
    pub kmeans_iters: usize,
    /// Fine-tune the MoE model (at --top-k) this many steps by distillation from the dense model
    /// (α 1, T 1) on --data; 0 = no fine-tuning.
    #[arg(long, default_value_t = 0)]
    pub finetune_steps: usize,
    /// Fine-tuning peak learning rate.
    #[arg(long, default_value_t = defaults::FINETUNE_LR)]
    pub finetune_lr: f64,
    /// Held-out data: perplexity at several top-k, trained vs random routers.
    #[command(flatten)]
    pub held_out: HeldOutArgs,
    /// Tokens per calibration and evaluation sequence.
    #[arg(long, default_value_t = defaults::SEQ_LEN)]
    pub seq_len: usize,
    /// Output dtype, --overwrite, --json.
    #[command(flatten)]
    pub write: WriteArgs,
}
