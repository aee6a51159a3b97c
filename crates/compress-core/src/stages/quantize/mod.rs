//! Weight quantization of a Llama-family model into compressed-tensors `pack-quantized` layers.
//!
//! Lifecycle: [`quantize_sequential`] walks the model one decoder layer at a time (from memory
//! or streamed from a checkpoint), runs calibration data through the layers already quantized
//! when the method needs it, quantizes every target linear (every linear but `lm_head` and the
//! `--ignore` list) and reports its reconstruction error; [`save_quantized`] writes the packed
//! directory atomically. [`quantize_model`] is the one-call form for a model in memory.
//!
//! Methods: [`rtn`] (round to nearest), [`mse`] (searched clip ratio per group), [`gptq`]
//! (Hessian-aware error feedback), [`awq`] (activation-aware scales folded into the preceding
//! norm/linear, then [`clip`]: clip ratios searched on the output error), [`qat`] (fake-quant
//! training). The scale/zero-point math lives in [`math`].

pub mod awq;
pub mod clip;
pub mod config;
mod experts;
pub mod gptq;
pub mod mse;
pub mod qat;
pub mod run;
pub mod sequential;

/// The shared arithmetic ([`crate::quant`]), under the names the methods use.
pub use crate::quant::{math, rtn};

use std::path::{Path, PathBuf};

use compress_format::hf_config::HfConfig;
use compress_format::pack_quantized::{QuantizationConfig, QuantizedLinear, WeightQuant};
use compress_format::safetensors::{write_model_dir_weights, Dtype, TensorOut};
use serde::Serialize;

use crate::error::{CoreError, Result};
use crate::model::hf::torch_dtype_name;
use crate::model::weights::{tensor_specs, TensorKind, TensorSpec};
use crate::model::{LlamaConfig, LlamaModel};
use crate::outdir::write_dir_atomically;

pub use config::{QuantMethod, QuantizeRunConfig};
pub use run::{run, QuantizeReport};
pub use sequential::{quantize_sequential, Calibration, ModelSource};

/// How each weight matrix is rounded.
#[derive(Clone, Debug)]
pub enum Method {
    /// Round to nearest with min/max scales.
    Rtn,
    /// Round to nearest with a clip ratio searched per group.
    Mse(mse::MseConfig),
    /// GPTQ error feedback against calibration Hessians.
    Gptq(gptq::GptqConfig),
    /// AWQ activation-aware scales, then round to nearest.
    Awq(awq::AwqConfig),
}

impl Method {
    /// The CLI name (`rtn`, `mse`, `gptq`, `awq`).
    pub fn name(&self) -> &'static str {
        match self {
            Method::Rtn => "rtn",
            Method::Mse(_) => "mse",
            Method::Gptq(_) => "gptq",
            Method::Awq(_) => "awq",
        }
    }

    /// Whether the method needs calibration data.
    pub fn needs_calibration(&self) -> bool {
        matches!(self, Method::Gptq(_) | Method::Awq(_))
    }
}

/// How to quantize.
#[derive(Clone, Debug)]
pub struct QuantizeConfig {
    /// Bits, symmetry and granularity of every quantized weight.
    pub weights: WeightQuant,
    /// Layers left in floating point besides `lm_head` (names or prefixes of HF module names).
    pub ignore: Vec<String>,
    /// The rounding method.
    pub method: Method,
}

impl QuantizeConfig {
    /// Round-to-nearest with `weights`, nothing ignored but `lm_head`.
    pub fn rtn(weights: WeightQuant) -> Self {
        Self {
            weights,
            ignore: Vec::new(),
            method: Method::Rtn,
        }
    }

    fn awq_max_tokens(&self) -> usize {
        match &self.method {
            Method::Awq(a) => a.max_tokens,
            _ => 0,
        }
    }
}

/// One quantized layer's line of the summary.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    /// HF module name, e.g. `model.layers.0.mlp.up_proj`.
    pub name: String,
    /// Method used.
    pub method: String,
    /// Bits per code.
    pub bits: u8,
    /// Group size (`None` for channel/tensor).
    pub group_size: Option<usize>,
    /// Relative reconstruction error ‖W − Ŵ‖² / ‖W‖².
    pub rel_error: f64,
    /// Bytes of the weight in the source dtype.
    pub bytes_before: usize,
    /// Bytes of packed codes, scales and zero points.
    pub bytes_after: usize,
    /// Bits per weight including scales and zero points.
    pub bits_per_weight: f64,
}

/// A quantized model: the packed layers and every tensor left in floating point.
#[derive(Debug)]
pub struct QuantizedModel {
    /// Packed layers by HF module name.
    pub layers: Vec<(String, QuantizedLinear)>,
    /// Tensors kept in floating point (embeddings, norms, biases, ignored linears), HF layout.
    pub floats: Vec<(TensorSpec, Vec<f32>)>,
    /// Per-layer summary.
    pub reports: Vec<LayerReport>,
    /// The `quantization_config` to write.
    pub config: QuantizationConfig,
}

pub(crate) fn ignored(name: &str, ignore: &[String]) -> bool {
    ignore
        .iter()
        .any(|i| name == i || name.starts_with(&format!("{i}.")))
}

/// The full ignore list (`lm_head` + `extra`), each extra entry checked to name a linear.
pub(crate) fn check_ignore(cfg: &LlamaConfig, extra: &[String]) -> Result<Vec<String>> {
    let linears: Vec<String> = tensor_specs(cfg)
        .into_iter()
        .filter(|s| s.kind == TensorKind::Linear)
        .map(|s| s.name.trim_end_matches(".weight").to_string())
        .collect();
    for i in extra {
        if !linears.iter().any(|n| ignored(n, std::slice::from_ref(i))) {
            let msg = "names no linear layer (e.g. model.layers.0.mlp.down_proj)";
            return Err(CoreError::setting("ignore", i, msg));
        }
    }
    let mut ignore = vec!["lm_head".to_string()];
    // Mixture-of-experts routers stay in float, as every MoE checkpoint keeps them.
    if cfg.moe.is_some() {
        ignore.extend((0..cfg.stored_layers()).map(crate::model::names::router));
    }
    ignore.extend(extra.iter().cloned());
    Ok(ignore)
}

/// The summary line of one quantized layer.
pub(crate) fn layer_report(
    name: &str,
    method: &str,
    w: &[f32],
    ql: &QuantizedLinear,
    wq: &WeightQuant,
    scale_dtype: Dtype,
    source_dtype: Dtype,
) -> LayerReport {
    let (out, inn) = (ql.out_features, ql.in_features);
    let deq = ql.dequantize(wq);
    let num: f64 = w
        .iter()
        .zip(&deq)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = w.iter().map(|a| (*a as f64).powi(2)).sum();
    let zp_bits = if wq.symmetric {
        0
    } else {
        wq.num_bits as usize
    };
    let bits_after =
        out * inn * wq.num_bits as usize + ql.scales.len() * (scale_dtype.size() * 8 + zp_bits);
    LayerReport {
        name: name.to_string(),
        method: method.to_string(),
        bits: wq.num_bits,
        group_size: wq.group_size,
        rel_error: if den > 0.0 { num / den } else { 0.0 },
        bytes_before: out * inn * source_dtype.size(),
        bytes_after: bits_after.div_ceil(8),
        bits_per_weight: bits_after as f64 / (out * inn) as f64,
    }
}

/// Quantizes every target linear of `model` in memory (scales stored as `scale_dtype`);
/// `calib` is needed by GPTQ and AWQ.
pub fn quantize_model(
    model: &LlamaModel,
    cfg: &QuantizeConfig,
    calib: Option<&Calibration>,
    scale_dtype: Dtype,
    source_dtype: Dtype,
) -> Result<QuantizedModel> {
    quantize_sequential(
        &ModelSource::Model(model),
        cfg,
        calib,
        scale_dtype,
        source_dtype,
        &mut |_, _| {},
    )
}

/// Writes `quantized` (packed layers, other tensors as `dtype`) into `out`, atomically.
pub fn save_quantized(
    hf_config: &HfConfig,
    quantized: &QuantizedModel,
    out: &Path,
    dtype: Dtype,
    tokenizer_from: Option<PathBuf>,
) -> Result<()> {
    let mut tensors = Vec::new();
    for (name, q) in &quantized.layers {
        tensors.extend(q.to_tensors(name, &quantized.config.weights, dtype)?);
    }
    for (spec, values) in &quantized.floats {
        tensors.push(TensorOut::from_f32(
            spec.name.clone(),
            spec.shape.clone(),
            values,
            dtype,
        )?);
    }
    let mut config = hf_config.clone();
    config.torch_dtype = Some(torch_dtype_name(dtype).to_string());
    config
        .raw
        .insert("quantization_config".into(), quantized.config.to_json());
    write_dir_atomically(out, |tmp| {
        config.save(&tmp.join("config.json"))?;
        write_model_dir_weights(tmp, &tensors, None)?;
        if let Some(src) = &tokenizer_from {
            compress_format::atomic::copy_tokenizer_files(src, tmp)?;
        }
        Ok(())
    })
}
