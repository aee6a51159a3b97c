//! An HF Llama-family directory (float safetensors, or compressed-tensors pack-quantized)
//! → a GGUF file llama.cpp loads (architecture `llama` for Llama/Mistral, `qwen2` for Qwen2).
//!
//! # Tensors
//!
//! ```text
//! model.embed_tokens.weight                  token_embd.weight
//! model.layers.N.input_layernorm.weight      blk.N.attn_norm.weight
//! model.layers.N.self_attn.{q,k,v,o}_proj    blk.N.attn_{q,k,v,output}.{weight,bias}
//! model.layers.N.post_attention_layernorm    blk.N.ffn_norm.weight
//! model.layers.N.mlp.{gate,up,down}_proj     blk.N.ffn_{gate,up,down}.weight
//! model.norm.weight                          output_norm.weight
//! lm_head.weight                             output.weight (absent when tied)
//! (rope_scaling llama3)                      rope_freqs.weight, f32 [head_dim / 2]
//! ```
//!
//! For `llama`, the rows of q and k (weights, biases, and a packed layer's codes and scales)
//! are permuted within each head from HF's half-split rotary layout to ggml's interleaved
//! pairs: new row `2i + j` of a head is old row `j·head_dim/2 + i` (llama.cpp's
//! `convert_hf_to_gguf.py` `permute`). Qwen2 uses NeoX rotary and is not permuted.
//!
//! # Types
//!
//! 1-D tensors (norms, biases) are always F32. 2-D tensors take the export type; Q8_0/Q4_0
//! need rows that are a multiple of 32 and fall back to F16 otherwise (listed in the report).
//! Float weights are quantized with ggml's reference rows, so a Q4_0 export equals
//! `llama-quantize --pure` of the F32 export. A packed layer whose codes fit the target block
//! exactly (symmetric, group size 32, ≤ 4 bits for Q4_0, ≤ 8 bits for Q8_0) keeps its codes
//! and scales (scales rounded to f16 where they are not f16 values already); any other packed
//! layer is dequantized for F32/F16 and needs `allow_requantize` for Q8_0/Q4_0.

use std::path::{Path, PathBuf};

use half::f16;

use super::blocks::{q4_0_from_codes, q8_0_from_codes, quantize_q4_0, quantize_q8_0, QK};
pub use super::tensor_map::permute_rows;
use super::tensor_map::{arch_name, llama3_rope_factors, plans};
use super::value::Value;
use super::vocab::tokenizer_metadata;
use super::write::{write_gguf, TensorInfo};
use super::{GgmlType, QUANTIZATION_VERSION};
use crate::error::{FormatError, Result};
use crate::hf_config::HfConfig;
use crate::hf_names;
use crate::pack_quantized::tensor_io::read_weight_shape;
use crate::pack_quantized::{
    is_packed_layer, read_compression, QuantStrategy, QuantizedLinear, WeightQuant,
};
use crate::safetensors::{encode_f32, Dtype, ModelFiles};

/// The `--type` of an export: the storage of its 2-D tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportType {
    /// Everything F32.
    F32,
    /// 2-D tensors F16.
    F16,
    /// 2-D tensors Q8_0.
    Q8_0,
    /// 2-D tensors Q4_0 (embeddings and output included, like `llama-quantize --pure`).
    Q4_0,
}

impl ExportType {
    /// Parses `f32`, `f16`, `q8_0` or `q4_0`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            "q8_0" => Some(Self::Q8_0),
            "q4_0" => Some(Self::Q4_0),
            _ => None,
        }
    }

    /// The ggml type of its 2-D tensors.
    pub fn ggml(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_*`).
    pub fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q8_0 => 7,
        }
    }
}

/// Options of [`export_gguf`].
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Storage of the 2-D tensors.
    pub ty: ExportType,
    /// Storage of `output.weight` (llama-quantize's `--output-tensor-type`); default `ty`.
    pub output_ty: Option<ExportType>,
    /// Allow dequantizing a packed layer and quantizing it again to a different block format.
    pub allow_requantize: bool,
    /// `tokenizer.json` to embed (default: the model directory's).
    pub tokenizer: Option<PathBuf>,
    /// `general.name` (default: the directory's name).
    pub name: Option<String>,
}

impl ExportOptions {
    /// Defaults for `ty`: no requantizing, the directory's tokenizer and name.
    pub fn new(ty: ExportType) -> Self {
        ExportOptions {
            ty,
            output_ty: None,
            allow_requantize: false,
            tokenizer: None,
            name: None,
        }
    }
}

/// Where a written tensor's data came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorSource {
    /// Float weights, converted or quantized here.
    Float,
    /// A packed layer's codes and scales, stored as they are.
    Packed,
    /// A packed layer's codes, with scales that f16 could not hold exactly rounded to f16.
    PackedScalesRounded,
    /// A packed layer dequantized to F32/F16.
    Dequantized,
    /// A packed layer dequantized and quantized again (`allow_requantize`).
    Requantized,
    /// Computed from the config (`rope_freqs`).
    Config,
}

impl TensorSource {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Float => "float",
            Self::Packed => "packed",
            Self::PackedScalesRounded => "packed-scales-rounded",
            Self::Dequantized => "dequantized",
            Self::Requantized => "requantized",
            Self::Config => "config",
        }
    }
}

/// One tensor of the written file.
#[derive(Clone, Debug)]
pub struct ExportedTensor {
    /// Header entry (GGUF name, dims, type).
    pub info: TensorInfo,
    /// Source name in the HF directory (the layer prefix for packed layers).
    pub source_name: String,
    /// Where the data came from.
    pub source: TensorSource,
}

/// What [`export_gguf`] wrote.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// `general.architecture`.
    pub architecture: &'static str,
    /// Every tensor, in file order.
    pub tensors: Vec<ExportedTensor>,
    /// File size in bytes.
    pub bytes: u64,
    /// Number of weights.
    pub parameters: usize,
}

fn model_metadata(
    cfg: &HfConfig,
    path: &Path,
    opts: &ExportOptions,
    dir: &Path,
) -> Result<Vec<(String, Value)>> {
    let arch = arch_name(cfg);
    let name = opts.name.clone().unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into())
    });
    let u = |v: usize| Value::U32(v as u32);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(name)),
        ("general.file_type".into(), Value::U32(opts.ty.file_type())),
    ];
    if opts.ty.ggml().block_len() > 1 {
        md.push((
            "general.quantization_version".into(),
            Value::U32(QUANTIZATION_VERSION),
        ));
    }
    let k = |s: &str| format!("{arch}.{s}");
    md.extend([
        (k("vocab_size"), u(cfg.vocab_size)),
        (k("context_length"), u(cfg.max_position_embeddings)),
        (k("embedding_length"), u(cfg.hidden_size)),
        (k("block_count"), u(cfg.num_hidden_layers)),
        (k("feed_forward_length"), u(cfg.intermediate_size)),
        (k("attention.head_count"), u(cfg.num_attention_heads)),
        (k("attention.head_count_kv"), u(cfg.num_key_value_heads)),
        (k("rope.freq_base"), Value::F32(cfg.rope_theta as f32)),
        (
            k("attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        (k("rope.dimension_count"), u(cfg.head_dim)),
    ]);
    if cfg.head_dim * cfg.num_attention_heads != cfg.hidden_size {
        md.push((k("attention.key_length"), u(cfg.head_dim)));
        md.push((k("attention.value_length"), u(cfg.head_dim)));
    }
    match &cfg.rope_scaling {
        None => {}
        Some(rs) if rs.rope_type == "llama3" => {}
        Some(rs) if rs.rope_type == "linear" => {
            md.push((k("rope.scaling.type"), Value::String("linear".into())));
            md.push((k("rope.scaling.factor"), Value::F32(rs.factor as f32)));
        }
        Some(rs) => {
            return Err(FormatError::invalid(
                path,
                "rope_scaling.rope_type",
                format!(
                    "`{}` cannot be exported to GGUF here (none, linear or llama3)",
                    rs.rope_type
                ),
            ))
        }
    }
    Ok(md)
}

/// Exports the HF directory `dir` to the GGUF file `out` (written atomically).
///
/// `progress(done, total)` is called after each tensor.
pub fn export_gguf(
    dir: &Path,
    out: &Path,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExportReport> {
    let config_path = dir.join("config.json");
    let cfg = HfConfig::from_file(&config_path)?;
    if cfg.mlp_bias() {
        return Err(FormatError::invalid(
            &config_path,
            "mlp_bias",
            "MLP biases cannot be expressed in llama.cpp's llama architecture",
        ));
    }
    if !cfg.layer_shapes.is_empty() {
        return Err(FormatError::invalid(
            &config_path,
            crate::hf_config::LAYER_SHAPES_KEY,
            "layers of different sizes cannot be expressed in llama.cpp's llama architecture",
        ));
    }
    if cfg.moe.is_some() {
        return Err(FormatError::invalid(
            &config_path,
            crate::hf_config::moe::NUM_EXPERTS_KEY,
            "compress moe's experts (sum routing over a split FFN) have no llama.cpp architecture",
        ));
    }
    if cfg.shared_layers > 0 {
        return Err(FormatError::invalid(
            &config_path,
            crate::hf_config::SHARED_LAYERS_KEY,
            "layers sharing blocks cannot be expressed in llama.cpp's llama architecture",
        ));
    }
    let quant = match cfg.raw.get("quantization_config") {
        Some(v) => read_compression(v, &config_path)?.0,
        None => None,
    };
    let files = ModelFiles::open_dir(dir)?;
    let mut md = model_metadata(&cfg, &config_path, opts, dir)?;
    let tok_path = opts
        .tokenizer
        .clone()
        .unwrap_or_else(|| dir.join("tokenizer.json"));
    if !tok_path.is_file() {
        return Err(FormatError::invalid(
            &tok_path,
            "tokenizer.json",
            "not found: GGUF files carry their tokenizer (pass --tokenizer PATH to take one from elsewhere)",
        ));
    }
    md.extend(tokenizer_metadata(
        &tok_path,
        cfg.vocab_size,
        cfg.bos_token_id,
        cfg.eos_token_ids.first().copied(),
    )?);

    let plans = plans(&cfg);
    let mut used = std::collections::HashSet::new();
    let mut tensors = Vec::with_capacity(plans.len() + 1);
    for plan in &plans {
        let prefix = plan.hf.trim_end_matches(".weight");
        let packed = plan.two_d() && quant.is_some() && is_packed_layer(&files, prefix);
        let shape = if packed {
            for suffix in [
                "weight_packed",
                "weight_scale",
                "weight_zero_point",
                "weight_shape",
            ] {
                used.insert(format!("{prefix}.{suffix}"));
            }
            let (out, inn) = read_weight_shape(&files.tensor(&format!("{prefix}.weight_shape"))?)?;
            vec![out, inn]
        } else {
            used.insert(plan.hf.clone());
            files.tensor(&plan.hf)?.shape.to_vec()
        };
        if shape != plan.shape {
            return Err(FormatError::Shape {
                name: plan.hf.clone(),
                expected: plan.shape.clone(),
                got: shape,
            });
        }
        if let Some(h) = plan.permute.filter(|&h| shape[0] % (2 * h) != 0) {
            return Err(FormatError::tensor(
                &plan.hf,
                format!(
                    "{} rows cannot be split into {h} heads of rotary pairs",
                    shape[0]
                ),
            ));
        }
        let ne: Vec<usize> = shape.iter().rev().copied().collect();
        let mut ty = if plan.gguf == "output.weight" {
            opts.output_ty.unwrap_or(opts.ty).ggml()
        } else if plan.two_d() {
            opts.ty.ggml()
        } else {
            GgmlType::F32
        };
        if ty.tensor_bytes(&ne).is_none() {
            ty = GgmlType::F16;
        }
        let source = if packed {
            source_for(&plan.hf, ty, quant.as_ref().map(|q| &q.weights), opts)?
        } else {
            TensorSource::Float
        };
        tensors.push(ExportedTensor {
            info: TensorInfo {
                name: plan.gguf.clone(),
                ne,
                ty,
            },
            source_name: plan.hf.clone(),
            source,
        });
    }
    let rope = llama3_rope_factors(&cfg);
    if let Some(f) = &rope {
        tensors.push(ExportedTensor {
            info: TensorInfo {
                name: "rope_freqs.weight".into(),
                ne: vec![f.len()],
                ty: GgmlType::F32,
            },
            source_name: "rope_scaling".into(),
            source: TensorSource::Config,
        });
    }
    // Buffers some exporters save, and an lm_head that duplicates tied embeddings.
    let tied_head = hf_names::weight(hf_names::LM_HEAD);
    let ignorable = |n: &str| hf_names::is_buffer(n) || (cfg.tie_word_embeddings && n == tied_head);
    if let Some(extra) = files
        .names()
        .into_iter()
        .find(|n| !used.contains(*n) && !ignorable(n))
    {
        return Err(FormatError::UnknownTensor {
            path: dir.to_path_buf(),
            name: extra.to_string(),
        });
    }

    let infos: Vec<TensorInfo> = tensors.iter().map(|t| t.info.clone()).collect();
    let total = infos.len();
    let wq = quant.as_ref().map(|q| q.weights);
    let mut rounded = vec![false; total];
    let bytes = write_gguf(out, &md, &infos, |i| {
        let t = &tensors[i];
        let heads = plans.get(i).and_then(|p| p.permute);
        let data = match t.source {
            TensorSource::Config => {
                encode(&t.info.name, rope.as_deref().unwrap_or(&[]), GgmlType::F32)?
            }
            TensorSource::Float => {
                let w = files.tensor(&t.source_name)?.to_f32()?;
                let cols = if t.info.ne.len() == 2 {
                    t.info.ne[0]
                } else {
                    1
                };
                let w = match heads {
                    Some(h) => permute_rows(&w, cols, h),
                    None => w,
                };
                encode(&t.info.name, &w, t.info.ty)?
            }
            _ => {
                let wq = wq
                    .as_ref()
                    .expect("packed source implies a quantization config");
                let (data, r) = packed_bytes(&files, &t.source_name, wq, heads, t)?;
                rounded[i] = r;
                data
            }
        };
        progress(i + 1, total);
        Ok(data)
    })?;
    for (t, r) in tensors.iter_mut().zip(rounded) {
        if r {
            t.source = TensorSource::PackedScalesRounded;
        }
    }
    let parameters = infos.iter().map(TensorInfo::numel).sum();
    Ok(ExportReport {
        architecture: arch_name(&cfg),
        tensors,
        bytes,
        parameters,
    })
}

/// Whether a packed scheme's codes fit `ty`'s blocks as they are.
fn fits(wq: &WeightQuant, ty: GgmlType) -> bool {
    let max_bits = match ty {
        GgmlType::Q4_0 => 4,
        GgmlType::Q8_0 => 8,
        _ => return false,
    };
    wq.symmetric
        && wq.strategy == QuantStrategy::Group
        && wq.group_size == Some(QK)
        && wq.num_bits <= max_bits
}

fn describe(wq: &WeightQuant) -> String {
    let sym = if wq.symmetric {
        "symmetric"
    } else {
        "asymmetric"
    };
    match wq.group_size {
        Some(g) => format!("int{} {sym} group-{g}", wq.num_bits),
        None => format!("int{} {sym} per-{}", wq.num_bits, wq.strategy),
    }
}

fn source_for(
    hf: &str,
    ty: GgmlType,
    wq: Option<&WeightQuant>,
    opts: &ExportOptions,
) -> Result<TensorSource> {
    let wq = wq.expect("packed layers come with a quantization config");
    Ok(match ty {
        GgmlType::F32 | GgmlType::F16 => TensorSource::Dequantized,
        _ if fits(wq, ty) => TensorSource::Packed,
        _ if opts.allow_requantize => TensorSource::Requantized,
        _ => {
            return Err(FormatError::tensor(
                hf.trim_end_matches(".weight"),
                format!(
                    "{} codes do not fit {ty} blocks ({}); export from the float model, choose \
                     another --type, or pass --allow-requantize",
                    describe(wq),
                    if ty == GgmlType::Q4_0 {
                        "symmetric, group 32, at most 4 bits"
                    } else {
                        "symmetric, group 32"
                    }
                ),
            ))
        }
    })
}

/// The tensor's bytes from a packed layer, and whether scales had to be rounded to f16.
fn packed_bytes(
    files: &ModelFiles,
    hf: &str,
    wq: &WeightQuant,
    heads: Option<usize>,
    t: &ExportedTensor,
) -> Result<(Vec<u8>, bool)> {
    let prefix = hf.trim_end_matches(".weight");
    let layer = QuantizedLinear::from_files(files, prefix, wq)?;
    let ty = t.info.ty;
    if t.source != TensorSource::Packed {
        let w = layer.dequantize(wq);
        let w = match heads {
            Some(h) => permute_rows(&w, layer.in_features, h),
            None => w,
        };
        return Ok((encode(&t.info.name, &w, ty)?, false));
    }
    let ng = wq.num_groups(layer.in_features);
    let (q, s) = match heads {
        Some(h) => (
            permute_rows(&layer.q, layer.in_features, h),
            permute_rows(&layer.scales, ng, h),
        ),
        None => (layer.q, layer.scales),
    };
    let scales: Vec<f16> = s.iter().map(|&v| f16::from_f32(v)).collect();
    let rounded = scales.iter().zip(&s).any(|(h, &v)| h.to_f32() != v);
    let mut out = Vec::with_capacity(ty.tensor_bytes(&t.info.ne).unwrap_or(0));
    match ty {
        GgmlType::Q4_0 => q4_0_from_codes(&q, &scales, &mut out),
        _ => q8_0_from_codes(&q, &scales, &mut out),
    }
    Ok((out, rounded))
}

/// Encodes row-major f32 weights as `ty` (rows a multiple of 32 for the block types); the
/// export writes F32, F16, BF16, Q8_0 and Q4_0 (the other types are read only).
pub fn encode(name: &str, w: &[f32], ty: GgmlType) -> Result<Vec<u8>> {
    let float = |d: Dtype| encode_f32(w, d).expect("a float dtype");
    Ok(match ty {
        GgmlType::F32 => float(Dtype::F32),
        GgmlType::F16 => float(Dtype::F16),
        GgmlType::BF16 => float(Dtype::BF16),
        GgmlType::Q8_0 => {
            let mut out = Vec::new();
            quantize_q8_0(w, &mut out);
            out
        }
        GgmlType::Q4_0 => {
            let mut out = Vec::new();
            quantize_q4_0(w, &mut out);
            out
        }
        other => {
            return Err(FormatError::Dtype {
                name: name.to_string(),
                dtype: other.to_string(),
                msg: "GGUF export writes f32, f16, bf16, q8_0 and q4_0".into(),
            })
        }
    })
}
