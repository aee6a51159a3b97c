//! Arguments of `compress quantize` (defaults: `compress_core::stages::quantize::config`).

use std::path::PathBuf;

use clap::Args;
use compress_core::stages::quantize::config::defaults;
use compress_core::stages::quantize::QuantMethod as Method;

use super::shared::{IgnoreArg, WriteArgs};

/// Rounding method of `compress quantize`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantMethod {
    /// Round to nearest.
    Rtn,
    /// Round to nearest with a clip ratio searched per group.
    Mse,
    /// GPTQ (Hessian error feedback on calibration data).
    Gptq,
    /// AWQ-style activation-aware scales on calibration data.
    Awq,
    /// Quantization-aware fine-tuning, then export.
    Qat,
}

impl From<QuantMethod> for Method {
    fn from(m: QuantMethod) -> Self {
        match m {
            QuantMethod::Rtn => Method::Rtn,
            QuantMethod::Mse => Method::Mse,
            QuantMethod::Gptq => Method::Gptq,
            QuantMethod::Awq => Method::Awq,
            QuantMethod::Qat => Method::Qat,
        }
    }
}

/// `compress quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory (pack-quantized).
    #[arg(long)]
    pub out: PathBuf,
    /// Bits per weight, 2-8.
    #[arg(long)]
    pub bits: u8,
    /// Input columns per scale group [default: 128].
    #[arg(long, conflicts_with_all = ["per_channel", "per_tensor"])]
    pub group_size: Option<usize>,
    /// One scale per output channel.
    #[arg(long, conflicts_with = "per_tensor")]
    pub per_channel: bool,
    /// One scale for the whole weight.
    #[arg(long)]
    pub per_tensor: bool,
    /// Symmetric (no zero point) instead of asymmetric.
    #[arg(long)]
    pub symmetric: bool,
    /// Rounding method: rtn, mse (clip search), gptq and awq (need --calib), qat (needs --data).
    #[arg(long, value_enum, default_value_t = QuantMethod::Rtn)]
    pub method: QuantMethod,
    /// Calibration data for gptq/awq (.txt, .json or .jsonl, as eval data).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Calibration sequences to use.
    #[arg(long, default_value_t = defaults::CALIB_SAMPLES)]
    pub calib_samples: usize,
    /// Tokens per calibration (or QAT training) sequence.
    #[arg(long, default_value_t = defaults::SEQ_LEN)]
    pub seq_len: usize,
    /// GPTQ: quantize columns in order of decreasing activation energy, with static groups so
    /// no g_idx is stored (the default for gptq).
    #[arg(long, conflicts_with = "no_act_order")]
    pub act_order: bool,
    /// GPTQ: quantize columns left to right instead of by activation energy.
    #[arg(long)]
    pub no_act_order: bool,
    /// GPTQ: dampening added to the Hessian diagonal, as a fraction of its mean.
    #[arg(long, default_value_t = defaults::DAMPENING)]
    pub dampening: f64,
    /// QAT: training data (.txt, .json or .jsonl); the model is fine-tuned with fake-quantized
    /// linears on it, then exported as rtn does.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// QAT: optimizer steps [default: 100].
    #[arg(long)]
    pub steps: Option<usize>,
    /// QAT: peak learning rate, cosine-decayed to a tenth [default: 1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// QAT: sequences per step [default: 4].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// QAT: loss weight of KL to the float model, the rest next-token loss, 0-1 [default: 1].
    #[arg(long)]
    pub distill: Option<f64>,
    /// Linears left in floating point.
    #[command(flatten)]
    pub ignore: IgnoreArg,
    /// Refuse group sizes that do not divide a layer's input width (vLLM/transformers need that).
    #[arg(long)]
    pub strict_compat: bool,
    /// Output dtype, --overwrite, --json.
    #[command(flatten)]
    pub write: WriteArgs,
}
