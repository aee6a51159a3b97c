//! `config.json` from a GGUF file's metadata, as transformers' GGUF loader builds it
//! (`GGUF_CONFIG_MAPPING` in `transformers/integrations/ggml.py`): `{arch}.block_count` →
//! `num_hidden_layers`, `.embedding_length` → `hidden_size`, `.feed_forward_length` →
//! `intermediate_size`, `.attention.head_count(_kv)` → `num_(key_value_)heads`,
//! `.attention.layer_norm_rms_epsilon` → `rms_norm_eps`, `.rope.freq_base` → `rope_theta`,
//! `.context_length` → `max_position_embeddings`; the vocabulary from the token embedding's rows,
//! tied embeddings when there is no `output.weight`, q/k/v bias when `attn_q.bias` is stored.

use std::path::Path;

use serde_json::{json, Map, Value as Json};

use super::super::read::GgufFile;
use super::super::value::Value;
use crate::error::{FormatError, Result};
use crate::hf_config::Architecture;

/// The GGUF architectures imported, and the HF architecture each becomes.
pub(crate) fn architecture(file: &GgufFile) -> Result<Architecture> {
    let arch = text(file, "general.architecture")?;
    match arch {
        "llama" => Ok(Architecture::Llama),
        "qwen2" => Ok(Architecture::Qwen2),
        other => Err(FormatError::invalid(
            file.path(),
            "general.architecture",
            format!("`{other}`: GGUF import reads llama (Llama, Mistral) and qwen2 models"),
        )),
    }
}

fn text<'a>(file: &'a GgufFile, key: &str) -> Result<&'a str> {
    file.get(key)
        .ok_or_else(|| missing(file.path(), key))?
        .as_str()
        .ok_or_else(|| FormatError::invalid(file.path(), key, "expected a string"))
}

fn missing(path: &Path, key: &str) -> FormatError {
    FormatError::MissingKey {
        path: path.to_path_buf(),
        key: key.into(),
    }
}

/// An unsigned integer value of `key`, if present.
pub(crate) fn opt_uint(file: &GgufFile, key: &str) -> Result<Option<u64>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            FormatError::invalid(file.path(), key, "expected a non-negative integer")
        }),
    }
}

fn uint(file: &GgufFile, key: &str) -> Result<u64> {
    opt_uint(file, key)?.ok_or_else(|| missing(file.path(), key))
}

/// A number of `key`; an f32 is read as its shortest decimal (`1e-5`, not `9.99999974e-6`).
fn opt_float(file: &GgufFile, key: &str) -> Result<Option<f64>> {
    match file.get(key) {
        None => Ok(None),
        Some(Value::F32(v)) => Ok(Some(v.to_string().parse().unwrap_or(f64::from(*v)))),
        Some(v) => v
            .as_number()
            .map(Some)
            .ok_or_else(|| FormatError::invalid(file.path(), key, "expected a number")),
    }
}

/// `head_count_kv` may be one number or (per layer) an array; import needs one number.
fn kv_heads(file: &GgufFile, key: &str, heads: u64) -> Result<u64> {
    match file.get(key) {
        None => Ok(heads),
        Some(Value::Array(_, items)) => {
            let first = items.first().and_then(Value::as_u64);
            match first {
                Some(n) if items.iter().all(|v| v.as_u64() == Some(n)) => Ok(n),
                _ => Err(FormatError::invalid(
                    file.path(),
                    key,
                    "per-layer key/value head counts that differ are not supported",
                )),
            }
        }
        Some(v) => v
            .as_u64()
            .ok_or_else(|| FormatError::invalid(file.path(), key, "expected an integer")),
    }
}

/// The config.json object of `file` (whose tensors decide the vocabulary, tying and bias),
/// stored as `dtype` (`torch_dtype`).
pub(crate) fn config_json(file: &GgufFile, dtype: &str) -> Result<Map<String, Json>> {
    let arch = architecture(file)?;
    let a = text(file, "general.architecture")?;
    let k = |s: &str| format!("{a}.{s}");
    let heads = uint(file, &k("attention.head_count"))?;
    let hidden = uint(file, &k("embedding_length"))?;
    let embd = file.tensor("token_embd.weight")?;
    let vocab = embd.ne.get(1).copied().unwrap_or(0);
    let mut c = json!({
        "architectures": [arch.hf_name()],
        "model_type": arch.model_type(),
        "hidden_size": hidden,
        "intermediate_size": uint(file, &k("feed_forward_length"))?,
        "num_hidden_layers": uint(file, &k("block_count"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads(file, &k("attention.head_count_kv"), heads)?,
        "rms_norm_eps": opt_float(file, &k("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| missing(file.path(), &k("attention.layer_norm_rms_epsilon")))?,
        "rope_theta": opt_float(file, &k("rope.freq_base"))?.unwrap_or(10_000.0),
        "max_position_embeddings": uint(file, &k("context_length"))?,
        "vocab_size": vocab,
        "tie_word_embeddings": file.tensor("output.weight").is_err(),
        "torch_dtype": dtype,
    });
    let c = c.as_object_mut().expect("an object");
    if let Some(hd) = opt_uint(file, &k("attention.key_length"))? {
        if heads > 0 && hd != hidden / heads {
            c.insert("head_dim".into(), hd.into());
        }
    }
    if arch == Architecture::Llama {
        c.insert(
            "attention_bias".into(),
            file.tensor("blk.0.attn_q.bias").is_ok().into(),
        );
    }
    for (gguf, hf) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
    ] {
        if let Some(id) = opt_uint(file, gguf)? {
            c.insert(hf.into(), id.into());
        }
    }
    if let Some(rs) = rope_scaling(file, a)? {
        c.insert("rope_scaling".into(), rs);
    }
    Ok(c.clone())
}

/// `rope_scaling` from `{arch}.rope.scaling.*` (linear only; other kinds are refused rather
/// than silently dropped).
fn rope_scaling(file: &GgufFile, a: &str) -> Result<Option<Json>> {
    let key = format!("{a}.rope.scaling.type");
    let Some(ty) = file.get(&key) else {
        return Ok(None);
    };
    let ty = ty
        .as_str()
        .ok_or_else(|| FormatError::invalid(file.path(), &key, "expected a string"))?;
    let factor = opt_float(file, &format!("{a}.rope.scaling.factor"))?;
    match (ty, factor) {
        ("none", _) => Ok(None),
        ("linear", Some(f)) => Ok(Some(json!({"rope_type": "linear", "factor": f}))),
        _ => Err(FormatError::invalid(
            file.path(),
            &key,
            format!("`{ty}` rope scaling is not supported by GGUF import (none or linear)"),
        )),
    }
}
