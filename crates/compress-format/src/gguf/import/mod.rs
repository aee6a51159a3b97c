//! GGUF → Hugging Face directory: `config.json` from the metadata ([`config`]), every tensor
//! dequantized to f32/f16/bf16 with llama's q/k rows returned to HF's rotary order, and
//! `tokenizer.json` + `tokenizer_config.json` (with the chat template) rebuilt from
//! `tokenizer.ggml.*` ([`tokenizer`]) — what transformers' own GGUF loader produces.
//!
//! The tensor names, shapes and permutations are the export's own table (`tensor_map`), read in
//! the other direction, so import and export cannot disagree.

pub mod config;
pub mod tokenizer;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::read::GgufFile;
use super::tensor_map::{plans, unpermute_rows};
use crate::error::{FormatError, Result};
use crate::hf_config::HfConfig;
use crate::safetensors::{write_model_dir_weights, Dtype, TensorOut};

/// GGUF tensors import knows and drops: llama.cpp's Llama 3 rotary factors are derived from
/// `rope_scaling` by the export and are not weights.
const DERIVED_TENSORS: &[&str] = &["rope_freqs.weight"];

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// dtype of the written tensors.
    pub dtype: Dtype,
    /// Shard into files of at most this many bytes.
    pub max_shard_bytes: Option<usize>,
}

/// What an import wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`, when set.
    pub name: Option<String>,
    /// Tensors written.
    pub tensors: usize,
    /// Parameters written.
    pub parameters: usize,
    /// How many tensors each ggml type had in the file.
    pub types: BTreeMap<String, usize>,
    /// `tokenizer.ggml.model` of the rebuilt tokenizer, when the file has one.
    pub tokenizer: Option<String>,
    /// Whether a chat template was carried over.
    pub chat_template: bool,
    /// What may differ from the original model (e.g. an unknown pre-tokenizer).
    pub warnings: Vec<String>,
}

/// Imports the GGUF file `src` into the (new or empty) directory `dir`.
pub fn import_gguf(src: &Path, dir: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    let file = GgufFile::open(src)?;
    let cfg_json = config::config_json(&file, opts.dtype.torch_name())?;
    let text = serde_json::to_string_pretty(&cfg_json).expect("a JSON object");
    let cfg = HfConfig::from_json(&text, &src.join("(metadata)"))?;
    let tensors = tensors(&file, &cfg, opts.dtype)?;
    let parameters = tensors
        .iter()
        .map(|t| t.shape.iter().product::<usize>())
        .sum();
    let mut types = BTreeMap::new();
    for t in file.tensors() {
        let name = t
            .ty()
            .map_or(format!("type {}", t.type_id), |ty| ty.name().into());
        *types.entry(name).or_insert(0) += 1;
    }
    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    write_model_dir_weights(dir, &tensors, opts.max_shard_bytes)?;
    write_json(&dir.join("config.json"), &text)?;
    let rebuilt = write_tokenizer(&file, dir)?;
    Ok(ImportReport {
        architecture: cfg.architecture.model_type().into(),
        name: file
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        tensors: tensors.len(),
        parameters,
        types,
        chat_template: rebuilt.as_ref().is_some_and(|r| r.chat_template),
        warnings: rebuilt
            .as_ref()
            .and_then(|r| r.warning.clone())
            .into_iter()
            .collect(),
        tokenizer: rebuilt.map(|r| r.model),
    })
}

/// What [`write_tokenizer`] wrote.
#[derive(Clone, Debug)]
pub struct TokenizerFiles {
    /// `tokenizer.ggml.model` (`gpt2` or `llama`).
    pub model: String,
    /// Whether `tokenizer_config.json` carries a chat template.
    pub chat_template: bool,
    /// What may tokenize differently from the original tokenizer, if anything.
    pub warning: Option<String>,
}

/// Writes `tokenizer.json` and `tokenizer_config.json` rebuilt from `file`'s
/// `tokenizer.ggml.*` into `dir`, or returns `None` when the file has no vocabulary. Works on
/// vocabulary-only files too.
pub fn write_tokenizer(file: &GgufFile, dir: &Path) -> Result<Option<TokenizerFiles>> {
    let Some(r) = tokenizer::rebuild(file)? else {
        return Ok(None);
    };
    write_json(&dir.join("tokenizer.json"), &r.tokenizer.to_string())?;
    let pretty = serde_json::to_string_pretty(&r.config).expect("a JSON object");
    write_json(&dir.join("tokenizer_config.json"), &pretty)?;
    Ok(Some(TokenizerFiles {
        chat_template: r.config.get("chat_template").is_some(),
        model: r.model,
        warning: r.warning,
    }))
}

fn write_json(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| FormatError::io(path, e))
}

/// Every HF tensor of `cfg`, dequantized from its GGUF tensor; a GGUF tensor the model does not
/// have (beyond [`DERIVED_TENSORS`]) is an error naming it.
fn tensors(file: &GgufFile, cfg: &HfConfig, dtype: Dtype) -> Result<Vec<TensorOut>> {
    let plans = plans(cfg);
    let known: std::collections::HashSet<&str> = plans.iter().map(|p| p.gguf.as_str()).collect();
    if let Some(t) = file
        .tensors()
        .iter()
        .find(|t| !known.contains(t.name.as_str()) && !DERIVED_TENSORS.contains(&t.name.as_str()))
    {
        return Err(FormatError::UnknownTensor {
            path: file.path().to_path_buf(),
            name: t.name.clone(),
        });
    }
    let mut out = Vec::with_capacity(plans.len());
    for p in &plans {
        let t = file.tensor(&p.gguf)?;
        let want: Vec<usize> = p.shape.iter().rev().copied().collect();
        if t.ne != want {
            return Err(FormatError::Shape {
                name: p.gguf.clone(),
                expected: want,
                got: t.ne.clone(),
            });
        }
        let w = file.tensor_f32(&p.gguf)?;
        let cols = if p.shape.len() == 2 { p.shape[1] } else { 1 };
        let w = match p.permute {
            Some(heads) => unpermute_rows(&w, cols, heads),
            None => w,
        };
        out.push(TensorOut::from_f32(&p.hf, p.shape.clone(), &w, dtype)?);
    }
    Ok(out)
}
