//! Loading and saving HF checkpoint directories (`config.json` + `model.safetensors` or a
//! sharded index, f32/f16/bf16; compressed-tensors pack-quantized dirs load dequantized). Every tensor is checked against the config: anything
//! missing, extra or mis-shaped is an error naming the tensor. Saving writes the same HF
//! layout atomically, in the loaded dtype unless told otherwise; load → save is bit-exact.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use compress_format::atomic::copy_tokenizer_files;
use compress_format::hf_config::HfConfig;
use compress_format::pack_quantized::{
    is_packed_layer, read_compression, QuantizationConfig, QuantizedLinear, SparsityConfig,
};
use compress_format::safetensors::{write_model_dir_weights, Dtype, ModelFiles, TensorOut};

use super::config::LlamaConfig;
use super::llama::LlamaModel;
use super::weights::{build_model, export_tensors, tensor_specs, TensorKind, TensorSpec};
use crate::error::{CoreError, Result};
use crate::outdir::write_dir_atomically;

/// A model loaded from an HF directory, with what is needed to save it back the same way.
#[derive(Debug)]
pub struct LoadedModel {
    /// The burn model.
    pub model: LlamaModel,
    /// The parsed `config.json` (all original keys kept).
    pub hf_config: HfConfig,
    /// The float dtype the weights were stored in.
    pub dtype: Dtype,
    /// The directory it came from.
    pub dir: PathBuf,
    /// The `quantization_config` of a pack-quantized checkpoint (weights dequantized on load).
    pub quantization: Option<QuantizationConfig>,
    /// The `sparsity_config` of a pruned checkpoint (zeros stored in place).
    pub sparsity: Option<SparsityConfig>,
}

/// Tensors some checkpoints carry that hold no weights (rotary buffers).
fn ignorable(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

/// An opened checkpoint directory whose tensor names and shapes have been checked against its
/// config; tensors are read on demand (memory-mapped), so a model can be streamed layer by layer.
#[derive(Debug)]
pub struct Checkpoint {
    /// The safetensors files.
    pub files: ModelFiles,
    /// The parsed `config.json` (all original keys kept).
    pub hf_config: HfConfig,
    /// The model shape.
    pub config: LlamaConfig,
    /// The float dtype the weights are stored in.
    pub dtype: Dtype,
    /// The directory.
    pub dir: PathBuf,
    /// The `quantization_config` of a pack-quantized checkpoint.
    pub quantization: Option<QuantizationConfig>,
    /// The `sparsity_config` of a pruned checkpoint.
    pub sparsity: Option<SparsityConfig>,
}

/// Bytes of the `.safetensors` files in `dir` (a model's weights on disk).
pub fn weight_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))? {
        let e = e.map_err(|e| CoreError::io(dir, e))?;
        if e.file_name().to_string_lossy().ends_with(".safetensors") {
            total += e
                .metadata()
                .map_err(|err| CoreError::io(e.path(), err))?
                .len();
        }
    }
    Ok(total)
}

/// Loads an HF Llama-family directory onto `device`.
pub fn load_model(dir: &Path, device: &Device) -> Result<LoadedModel> {
    let ck = open_checkpoint(dir)?;
    let model = build_model(&ck.config, device, &mut |spec| ck.read(spec))?;
    Ok(LoadedModel {
        model,
        hf_config: ck.hf_config,
        dtype: ck.dtype,
        dir: ck.dir,
        quantization: ck.quantization,
        sparsity: ck.sparsity,
    })
}

/// Opens and checks an HF Llama-family directory without reading its weights.
pub fn open_checkpoint(dir: &Path) -> Result<Checkpoint> {
    if !dir.is_dir() {
        return Err(CoreError::Invalid(format!(
            "{}: model directory not found",
            dir.display()
        )));
    }
    let hf_config = HfConfig::from_file(&dir.join("config.json"))?;
    let (quantization, sparsity) = match hf_config.raw.get("quantization_config") {
        Some(v) => read_compression(v, &dir.join("config.json"))?,
        None => (None, None),
    };
    if hf_config.mlp_bias() {
        return Err(CoreError::Invalid(format!(
            "{}: mlp_bias=true is not supported (no Llama-family checkpoint we target uses it)",
            dir.join("config.json").display()
        )));
    }
    let cfg = LlamaConfig::from_hf(&hf_config);
    cfg.validate()
        .map_err(|e| CoreError::Invalid(format!("{}: {e}", dir.join("config.json").display())))?;
    let files = ModelFiles::open_dir(dir)?;
    let specs = tensor_specs(&cfg);
    // A packed linear `p` holds p.weight_packed, p.weight_scale, p.weight_shape and, when
    // asymmetric, p.weight_zero_point instead of p.weight.
    let packed = |name: &str| {
        quantization.is_some()
            && name.ends_with(".weight")
            && is_packed_layer(&files, name.trim_end_matches(".weight"))
    };
    let mut expected_names: Vec<String> = Vec::new();
    for s in &specs {
        if s.kind == TensorKind::Linear && packed(&s.name) {
            let p = s.name.trim_end_matches(".weight");
            for suffix in [
                "weight_packed",
                "weight_scale",
                "weight_shape",
                "weight_zero_point",
            ] {
                let n = format!("{p}.{suffix}");
                if suffix != "weight_zero_point" || files.contains(&n) {
                    expected_names.push(n);
                }
            }
        } else {
            expected_names.push(s.name.clone());
        }
    }
    let expected: BTreeSet<&str> = expected_names.iter().map(|s| s.as_str()).collect();

    let mut missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|n| !files.contains(n))
        .collect();
    missing.sort();
    if let Some(first) = missing.first() {
        return Err(weights_error(
            dir,
            format!(
                "missing tensor `{first}`{} (config: {} layers, tie_word_embeddings={})",
                more(missing.len()),
                cfg.num_layers,
                cfg.tie_word_embeddings
            ),
        ));
    }
    let extra: Vec<&str> = files
        .names()
        .into_iter()
        .filter(|n| !expected.contains(n) && !ignorable(n))
        .filter(|n| !(cfg.tie_word_embeddings && *n == "lm_head.weight" && tied_copy(&files)))
        .collect();
    if let Some(first) = extra.first() {
        return Err(weights_error(
            dir,
            format!(
                "unexpected tensor `{first}`{} not used by a {:?} model of this config",
                more(extra.len()),
                cfg.architecture
            ),
        ));
    }
    let dtype = files.dtype().unwrap_or(Dtype::F32);
    Ok(Checkpoint {
        files,
        hf_config,
        config: cfg,
        dtype,
        dir: dir.to_path_buf(),
        quantization,
        sparsity,
    })
}

impl Checkpoint {
    /// The values of one tensor of [`tensor_specs`] in HF layout (packed layers dequantized).
    pub fn read(&self, spec: &TensorSpec) -> Result<Vec<f32>> {
        let dir = &self.dir;
        if let Some(q) = &self.quantization {
            let prefix = spec.name.trim_end_matches(".weight");
            if spec.kind == TensorKind::Linear && is_packed_layer(&self.files, prefix) {
                let layer = QuantizedLinear::from_files(&self.files, prefix, &q.weights)?;
                if [layer.out_features, layer.in_features] != [spec.shape[0], spec.shape[1]] {
                    return Err(weights_error(
                        dir,
                        format!(
                            "packed layer `{prefix}` has shape [{}, {}], config.json implies {:?}",
                            layer.out_features, layer.in_features, spec.shape
                        ),
                    ));
                }
                return Ok(layer.dequantize(&q.weights));
            }
        }
        let t = self.files.tensor(&spec.name)?;
        self.check_shape(spec, t.shape)?;
        Ok(t.to_f32()?)
    }

    /// Errors unless a float tensor of `shape` fits `spec` (what config.json implies).
    fn check_shape(&self, spec: &TensorSpec, shape: &[usize]) -> Result<()> {
        if shape == spec.shape.as_slice() {
            return Ok(());
        }
        let msg = format!(
            "tensor `{}` has shape {shape:?}, config.json implies {:?}",
            spec.name, spec.shape
        );
        Err(weights_error(&self.dir, msg))
    }

    /// Checks every float tensor's shape against config.json without reading the weights
    /// (packed layers are checked when read), so a config the weights contradict (a vocabulary
    /// of 10^12, a transposed matrix) is found up front.
    pub fn check_shapes(&self) -> Result<()> {
        for spec in tensor_specs(&self.config) {
            let prefix = spec.name.trim_end_matches(".weight");
            let packed = self.quantization.is_some()
                && spec.kind == TensorKind::Linear
                && is_packed_layer(&self.files, prefix);
            if !packed {
                self.check_shape(&spec, self.files.tensor(&spec.name)?.shape)?;
            }
        }
        Ok(())
    }
}

/// Whether a tied checkpoint's stored `lm_head.weight` is just a copy of the embeddings.
fn tied_copy(files: &ModelFiles) -> bool {
    match (
        files.tensor("lm_head.weight"),
        files.tensor("model.embed_tokens.weight"),
    ) {
        (Ok(a), Ok(b)) => a.shape == b.shape && a.dtype == b.dtype && a.data == b.data,
        _ => false,
    }
}

fn more(n: usize) -> String {
    if n > 1 {
        format!(" and {} more", n - 1)
    } else {
        String::new()
    }
}

fn weights_error(dir: &Path, msg: String) -> CoreError {
    CoreError::Weights {
        path: dir.to_path_buf(),
        msg,
    }
}

/// How to save a model.
#[derive(Clone, Debug)]
pub struct SaveOptions {
    /// Float dtype of the written tensors.
    pub dtype: Dtype,
    /// Split into shards of at most this many bytes (HF index layout); `None` = one file.
    pub max_shard_bytes: Option<usize>,
    /// Copy tokenizer files from this directory, if given.
    pub tokenizer_from: Option<PathBuf>,
}

/// HF's name of a float dtype in config.json.
pub fn torch_dtype_name(dtype: Dtype) -> &'static str {
    dtype.torch_name()
}

/// Saves `model` as an HF directory at `out`, atomically (temp dir + rename).
pub fn save_model(
    model: &LlamaModel,
    hf_config: &HfConfig,
    out: &Path,
    opts: &SaveOptions,
) -> Result<()> {
    if !matches!(opts.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        let msg = "only f32, f16 and bf16 checkpoints can be saved";
        return Err(CoreError::setting(
            "dtype",
            format_args!("{:?}", opts.dtype),
            msg,
        ));
    }
    write_dir_atomically(out, |tmp| write_model_files(model, hf_config, tmp, opts))
}

/// Writes `config.json`, the weights and tokenizer files into the existing directory `dir`
/// (each file atomically); [`save_model`] wraps this in an atomic directory.
pub fn write_model_files(
    model: &LlamaModel,
    hf_config: &HfConfig,
    dir: &Path,
    opts: &SaveOptions,
) -> Result<()> {
    let tensors = export_tensors(model)
        .into_iter()
        .map(|(spec, values)| TensorOut::from_f32(spec.name, spec.shape, &values, opts.dtype))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut config = hf_config.clone();
    config.torch_dtype = Some(torch_dtype_name(opts.dtype).to_string());
    // The weights written here are plain floats, even when the model was loaded packed.
    config.raw.remove("quantization_config");
    config.save(&dir.join("config.json"))?;
    write_model_dir_weights(dir, &tensors, opts.max_shard_bytes)?;
    if let Some(src) = &opts.tokenizer_from {
        copy_tokenizer_files(src, dir)?;
    }
    Ok(())
}
