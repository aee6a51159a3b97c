//! Arguments of `compress moe`.

use std::path::PathBuf;

use clap::Args;

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
    #[arg(long, default_value_t = 8)]
    pub experts: usize,
    /// Experts each token runs (written to the config; --top-k on eval/generate overrides it).
    #[arg(long, default_value_t = 2)]
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
    #[arg(long, default_value_t = 64)]
    pub calib_samples: usize,
    /// Router training steps per layer (batches of 256 tokens); 0 = untrained (all experts tie).
    #[arg(long, default_value_t = 300)]
    pub router_steps: usize,
    /// Router learning rate.
    #[arg(long, default_value_t = 1e-2)]
    pub router_lr: f64,
    /// Balanced k-means rounds of the split.
    #[arg(long, default_value_t = 10)]
    pub kmeans_iters: usize,
    /// Fine-tune the MoE model (at --top-k) this many steps by distillation from the dense model
    /// (α 1, T 1) on --data; 0 = no fine-tuning.
    #[arg(long, default_value_t = 0)]
    pub finetune_steps: usize,
    /// Fine-tuning peak learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub finetune_lr: f64,
    /// Held-out data: perplexity at several top-k, trained vs random routers.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Held-out sequences to score.
    #[arg(long, default_value_t = 32)]
    pub eval_samples: usize,
    /// Tokens per calibration and evaluation sequence.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// dtype of the written tensors: f32, f16 or bf16 (default: as loaded).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
