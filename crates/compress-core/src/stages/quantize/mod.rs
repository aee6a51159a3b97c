//! Weight quantization of a [`LlamaModel`] into compressed-tensors `pack-quantized` layers.
//!
//! Lifecycle: [`quantize_model`] picks the target linears (every linear but `lm_head` and the
//! `--ignore` list), quantizes each with the chosen method and reports its reconstruction
//! error; [`save_quantized`] writes the packed directory atomically. The scale/zero-point math
//! lives in [`math`], round-to-nearest in [`rtn`]. Calibration methods (MSE clipping, GPTQ,
//! AWQ) and QAT are still to come.

pub mod math;
pub mod rtn;

use std::path::{Path, PathBuf};

use compress_format::hf_config::HfConfig;
use compress_format::pack_quantized::{QuantizationConfig, QuantizedLinear, WeightQuant};
use compress_format::safetensors::{write_model_dir_weights, Dtype, TensorOut};
use serde::Serialize;

use crate::error::{CoreError, Result};
use crate::model::hf::torch_dtype_name;
use crate::model::weights::{export_tensors, TensorKind, TensorSpec};
use crate::model::LlamaModel;
use crate::outdir::write_dir_atomically;

/// How to quantize.
#[derive(Clone, Debug)]
pub struct QuantizeConfig {
    /// Bits, symmetry and granularity of every quantized weight.
    pub weights: WeightQuant,
    /// Layers left in floating point besides `lm_head` (names or prefixes of HF module names).
    pub ignore: Vec<String>,
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

fn ignored(name: &str, ignore: &[String]) -> bool {
    ignore
        .iter()
        .any(|i| name == i || name.starts_with(&format!("{i}.")))
}

/// Quantizes every target linear of `model` (scales stored as `scale_dtype`).
pub fn quantize_model(
    model: &LlamaModel,
    cfg: &QuantizeConfig,
    scale_dtype: Dtype,
    source_dtype: Dtype,
) -> Result<QuantizedModel> {
    cfg.weights.validate()?;
    let mut ignore = vec!["lm_head".to_string()];
    ignore.extend(cfg.ignore.iter().cloned());
    let tensors = export_tensors(model);
    let is_linear = |s: &TensorSpec| s.kind == TensorKind::Linear;
    for i in &cfg.ignore {
        let matches = tensors.iter().any(|(s, _)| {
            is_linear(s) && ignored(s.name.trim_end_matches(".weight"), std::slice::from_ref(i))
        });
        if !matches {
            return Err(CoreError::Invalid(format!(
                "--ignore {i}: names no linear layer (e.g. model.layers.0.mlp.down_proj)"
            )));
        }
    }
    let wq = &cfg.weights;
    let mut config = QuantizationConfig::new(*wq);
    config.ignore = ignore.clone();
    let (mut layers, mut reports, mut floats) = (Vec::new(), Vec::new(), Vec::new());
    for (spec, w) in tensors {
        let name = spec.name.trim_end_matches(".weight").to_string();
        if !is_linear(&spec) || ignored(&name, &ignore) {
            floats.push((spec, w));
            continue;
        }
        let (out, inn) = (spec.shape[0], spec.shape[1]);
        config.ragged_groups |= wq.is_ragged(inn);
        let ql = rtn::quantize_rtn(&w, out, inn, wq, scale_dtype, None);
        let deq = ql.dequantize(wq);
        let num: f64 = w
            .iter()
            .zip(&deq)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let den: f64 = w.iter().map(|a| (*a as f64).powi(2)).sum();
        let n_scales = ql.scales.len();
        let zp_bits = if wq.symmetric {
            0
        } else {
            wq.num_bits as usize
        };
        let bits_after =
            out * inn * wq.num_bits as usize + n_scales * (scale_dtype.size() * 8 + zp_bits);
        reports.push(LayerReport {
            name: name.clone(),
            method: "rtn".into(),
            bits: wq.num_bits,
            group_size: wq.group_size,
            rel_error: if den > 0.0 { num / den } else { 0.0 },
            bytes_before: out * inn * source_dtype.size(),
            bytes_after: bits_after.div_ceil(8),
            bits_per_weight: bits_after as f64 / (out * inn) as f64,
        });
        layers.push((name, ql));
    }
    Ok(QuantizedModel {
        layers,
        floats,
        reports,
        config,
    })
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
