//! [`QuantizeRunConfig`]: every setting of one quantize run. Field names are the recipe keys
//! (`[[stages]]` tables) and, with dashes, the flags of `compress quantize`; the defaults live
//! in [`defaults`] and nowhere else.

use std::path::PathBuf;

use compress_format::pack_quantized::WeightQuant;
use serde::{Deserialize, Serialize};

use super::awq::AwqConfig;
use super::gptq::GptqConfig;
use super::mse::MseConfig;
use super::Method;
use crate::error::{CoreError, Result};
use crate::settings;

/// Default values of [`QuantizeRunConfig`] (the CLI shows them in `--help`).
pub mod defaults {
    /// Bits per weight.
    pub const BITS: u8 = 4;
    /// Input columns per scale group.
    pub const GROUP_SIZE: usize = compress_format::pack_quantized::DEFAULT_GROUP_SIZE;
    /// Calibration sequences.
    pub const CALIB_SAMPLES: usize = 128;
    /// Tokens per calibration (or QAT training) sequence.
    pub const SEQ_LEN: usize = 512;
    /// GPTQ dampening, as a fraction of the Hessian diagonal's mean.
    pub const DAMPENING: f64 = 0.01;
    /// GPTQ's column order by default: static act-order (as llm-compressor's default); on the
    /// real SmolLM2-135M it lowers int4 g64 KL by 30% (0.264 to 0.186), and static groups need no
    /// `g_idx`, so loaders see the usual format.
    pub const ACT_ORDER: bool = true;
    /// QAT optimizer steps.
    pub const QAT_STEPS: usize = 100;
    /// QAT peak learning rate.
    pub const QAT_LR: f64 = 1e-4;
    /// QAT sequences per step.
    pub const QAT_BATCH_SIZE: usize = 4;
    /// QAT weight of KL to the float model.
    pub const QAT_DISTILL: f64 = 1.0;
}

/// The rounding method, as named in recipes and on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantMethod {
    /// Round to nearest.
    #[default]
    Rtn,
    /// Round to nearest with a clip ratio searched per group.
    Mse,
    /// GPTQ (Hessian error feedback on calibration data).
    Gptq,
    /// AWQ-style activation-aware scales on calibration data.
    Awq,
    /// Quantization-aware fine-tuning, then RTN export.
    Qat,
}

impl QuantMethod {
    /// The name (`rtn`, `mse`, `gptq`, `awq`, `qat`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Rtn => "rtn",
            Self::Mse => "mse",
            Self::Gptq => "gptq",
            Self::Awq => "awq",
            Self::Qat => "qat",
        }
    }

    /// Whether the method needs calibration data (`calib`).
    pub fn needs_calibration(self) -> bool {
        matches!(self, Self::Gptq | Self::Awq)
    }

    /// Whether the method reads calibration data when given some (MSE weighs its clip search
    /// by the inputs' energy then).
    pub fn reads_calibration(self) -> bool {
        self.needs_calibration() || self == Self::Mse
    }
}

/// Every setting of a quantize run (see the module doc for names and defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantizeRunConfig {
    /// Model directory (float).
    pub model: PathBuf,
    /// Output directory (pack-quantized).
    pub out: PathBuf,
    /// Bits per weight, 2-8.
    pub bits: u8,
    /// Input columns per scale group (default [`defaults::GROUP_SIZE`]).
    pub group_size: Option<usize>,
    /// One scale per output channel.
    pub per_channel: bool,
    /// One scale for the whole weight.
    pub per_tensor: bool,
    /// Symmetric (no zero point).
    pub symmetric: bool,
    /// Rounding method.
    pub method: QuantMethod,
    /// Calibration data for gptq/awq.
    pub calib: Option<PathBuf>,
    /// Calibration sequences.
    pub calib_samples: usize,
    /// Tokens per calibration (or QAT training) sequence.
    pub seq_len: usize,
    /// GPTQ: columns in order of decreasing activation energy (static groups); unset means
    /// [`defaults::ACT_ORDER`] for GPTQ (llm-compressor's default too).
    pub act_order: Option<bool>,
    /// GPTQ: dampening as a fraction of the Hessian diagonal's mean.
    pub dampening: f64,
    /// QAT: training data.
    pub data: Option<PathBuf>,
    /// QAT: optimizer steps (default [`defaults::QAT_STEPS`]).
    pub steps: Option<usize>,
    /// QAT: peak learning rate (default [`defaults::QAT_LR`]).
    pub lr: Option<f64>,
    /// QAT: sequences per step (default [`defaults::QAT_BATCH_SIZE`]).
    pub batch_size: Option<usize>,
    /// QAT: weight of KL to the float model, 0-1 (default [`defaults::QAT_DISTILL`]).
    pub distill: Option<f64>,
    /// Linear layers (HF names or prefixes) left in floating point; lm_head always is.
    pub ignore: Vec<String>,
    /// dtype of scales and unquantized tensors (default: as loaded).
    pub dtype: Option<String>,
    /// Refuse group sizes that do not divide a layer's input width.
    pub strict_compat: bool,
    /// Replace a non-empty `out`.
    pub overwrite: bool,
    /// Device: cpu, tch:cpu or cuda:N.
    pub device: String,
    /// Random seed.
    pub seed: u64,
}

impl Default for QuantizeRunConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            out: PathBuf::new(),
            bits: defaults::BITS,
            group_size: None,
            per_channel: false,
            per_tensor: false,
            symmetric: false,
            method: QuantMethod::Rtn,
            calib: None,
            calib_samples: defaults::CALIB_SAMPLES,
            seq_len: defaults::SEQ_LEN,
            act_order: None,
            dampening: defaults::DAMPENING,
            data: None,
            steps: None,
            lr: None,
            batch_size: None,
            distill: None,
            ignore: Vec::new(),
            dtype: None,
            strict_compat: false,
            overwrite: false,
            device: "cpu".into(),
            seed: 0,
        }
    }
}

impl QuantizeRunConfig {
    /// The checks that read no file: bits, granularity, method and its options. Returns the
    /// weight scheme and the rounding method.
    pub fn validate(&self) -> Result<(WeightQuant, Method)> {
        if !(2..=8).contains(&self.bits) {
            return Err(CoreError::setting(
                "bits",
                self.bits,
                "must be between 2 and 8",
            ));
        }
        if self.group_size == Some(0) {
            return Err(CoreError::setting("group_size", 0, "must be > 0"));
        }
        let exclusive = [
            (self.group_size.is_some(), "group_size"),
            (self.per_channel, "per_channel"),
            (self.per_tensor, "per_tensor"),
        ];
        let set: Vec<&str> = exclusive.iter().filter(|x| x.0).map(|x| x.1).collect();
        if set.len() > 1 {
            let msg = format!("cannot be used with `{}`", set[1]);
            return Err(CoreError::missing(set[0], msg));
        }
        let weights = if self.per_tensor {
            WeightQuant::tensor(self.bits, self.symmetric)
        } else if self.per_channel {
            WeightQuant::channel(self.bits, self.symmetric)
        } else {
            let g = self.group_size.unwrap_or(defaults::GROUP_SIZE);
            WeightQuant::group(self.bits, self.symmetric, g)
        };
        self.validate_qat()?;
        settings::non_negative("dampening", self.dampening)?;
        let method = match self.method {
            QuantMethod::Rtn | QuantMethod::Qat => Method::Rtn,
            QuantMethod::Mse => Method::Mse(MseConfig::for_bits(self.bits)),
            QuantMethod::Gptq => Method::Gptq(GptqConfig {
                dampening_frac: self.dampening,
                act_order: self.act_order.unwrap_or(defaults::ACT_ORDER),
                ..GptqConfig::default()
            }),
            QuantMethod::Awq => Method::Awq(AwqConfig::default()),
        };
        if self.act_order.is_some() && self.method != QuantMethod::Gptq {
            return Err(CoreError::missing(
                "act_order",
                "only applies to `method` gptq",
            ));
        }
        if self.calib.is_some() && !self.method.reads_calibration() {
            let msg = match self.method {
                QuantMethod::Qat => "`method` qat trains on `data` instead".to_string(),
                m => format!("`method` {} uses no calibration data", m.name()),
            };
            return Err(CoreError::missing("calib", msg));
        }
        Ok((weights, method))
    }

    /// The QAT options: only with `method` qat, which needs `data`.
    fn validate_qat(&self) -> Result<()> {
        let options = [
            (self.data.is_some(), "data"),
            (self.steps.is_some(), "steps"),
            (self.lr.is_some(), "lr"),
            (self.batch_size.is_some(), "batch_size"),
            (self.distill.is_some(), "distill"),
        ];
        if self.method != QuantMethod::Qat {
            return match options.iter().find(|(set, _)| *set) {
                Some((_, field)) => Err(CoreError::missing(field, "only applies to `method` qat")),
                None => Ok(()),
            };
        }
        if self.calib.is_some() {
            return Err(CoreError::missing(
                "calib",
                "`method` qat trains on `data` instead",
            ));
        }
        if self.data.is_none() {
            return Err(CoreError::setting(
                "method",
                "qat",
                "needs training data (`data`: a .txt, .json or .jsonl file)",
            ));
        }
        settings::nonzero("steps", self.qat_steps())?;
        settings::nonzero("batch_size", self.batch_size.unwrap_or(1))?;
        settings::positive("lr", self.qat_lr())?;
        let d = self.distill.unwrap_or(defaults::QAT_DISTILL);
        if !(0.0..=1.0).contains(&d) {
            return Err(CoreError::setting("distill", d, "must be between 0 and 1"));
        }
        settings::opt_file("data", &self.data)
    }

    /// QAT steps, defaulted.
    pub fn qat_steps(&self) -> usize {
        self.steps.unwrap_or(defaults::QAT_STEPS)
    }

    /// QAT peak learning rate, defaulted.
    pub fn qat_lr(&self) -> f64 {
        self.lr.unwrap_or(defaults::QAT_LR)
    }

    /// The data files it reads (set ones only).
    pub fn input_paths_mut(&mut self) -> Vec<&mut PathBuf> {
        [self.calib.as_mut(), self.data.as_mut()]
            .into_iter()
            .flatten()
            .collect()
    }
}
