//! Hugging Face `config.json` for Llama-family causal LMs.
//!
//! The file is a flat JSON object written by `transformers`. The keys read
//! here are the model hyper-parameters (`hidden_size`, `num_hidden_layers`,
//! ...), the architecture (`architectures[0]`, falling back to `model_type`),
//! RoPE settings and token ids. Two RoPE layouts exist:
//!
//! * transformers 4: `rope_theta` plus an optional `rope_scaling` object
//!   (`{"rope_type" | "type": "llama3" | "linear" | ..., "factor": ...}`);
//! * transformers 5: a single `rope_parameters` object holding `rope_theta`,
//!   `rope_type` and the scaling fields (`rope_type: "default"` = no scaling).
//!
//! The whole original object is kept in [`HfConfig::raw`]; saving writes every
//! key back and overwrites only the typed fields whose values were changed,
//! so unknown keys survive a load/save round trip.

pub mod moe;
mod parse;
mod rope;
mod write_back;

pub use rope::rope_inv_freq;

use crate::atomic::write_atomic;
use crate::error::{FormatError, Result};
use parse::json_kind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// Model architectures this toolkit understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// `LlamaForCausalLM` (Llama 2/3, TinyLlama, SmolLM, ...).
    Llama,
    /// `Qwen2ForCausalLM` (Qwen2 / Qwen2.5; biased q/k/v projections).
    Qwen2,
    /// `MistralForCausalLM`.
    Mistral,
}

impl Architecture {
    /// All supported architectures.
    pub const ALL: [Architecture; 3] = [Self::Llama, Self::Qwen2, Self::Mistral];

    /// The `architectures[0]` class name, e.g. `LlamaForCausalLM`.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Mistral => "MistralForCausalLM",
        }
    }

    /// The `model_type` string, e.g. `llama`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Mistral => "mistral",
        }
    }

    /// Parses an `architectures[0]` class name.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.hf_name() == name)
    }

    /// Parses a `model_type` string.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.model_type() == model_type)
    }
}

/// RoPE scaling parameters (`rope_scaling`, or the scaling part of `rope_parameters`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// Scaling kind: `"llama3"`, `"linear"`, `"dynamic"`, `"yarn"`, ...
    #[serde(alias = "type")]
    pub rope_type: String,
    /// Scaling factor.
    pub factor: f64,
    /// Llama-3 low-frequency factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_freq_factor: Option<f64>,
    /// Llama-3 high-frequency factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_freq_factor: Option<f64>,
    /// Context length the model was pre-trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
}

/// Top-level key (this project's extension) listing each decoder layer's own sizes, for
/// structurally pruned models whose layers differ. transformers and vLLM ignore it and cannot
/// load such a model; compress (core and runtime) reads it.
pub const LAYER_SHAPES_KEY: &str = "compress_layer_shapes";

/// Top-level key (this project's extension) of a model whose depth cycles through `K` distinct
/// decoder blocks (ALBERT-style parameter sharing): layer `l` of `num_hidden_layers` runs stored
/// block `l mod K`, and only `model.layers.0 .. K-1` are stored. transformers and vLLM cannot
/// load such a model; compress (core and runtime) reads it.
pub const SHARED_LAYERS_KEY: &str = "compress_shared_layers";

/// Largest hidden size, intermediate size, head count or vocabulary a config may give
/// (2^24, 64× the largest released models use): larger is a corrupt file, and would make
/// derived sizes overflow.
pub const MAX_DIM: usize = 1 << 24;
/// Largest `head_dim` (released models use ≤ 576); the runtime allocates `head_dim / 2`
/// rotary frequencies from it.
pub const MAX_HEAD_DIM: usize = 1 << 16;
/// Most decoder layers (released models have ≤ 128).
pub const MAX_LAYERS: usize = 1 << 16;
/// Longest `max_position_embeddings` (2^30 tokens).
pub const MAX_CONTEXT: usize = 1 << 30;

/// One decoder layer's sizes under [`LAYER_SHAPES_KEY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerShape {
    /// Query heads of the layer.
    pub num_attention_heads: usize,
    /// Key/value heads of the layer.
    pub num_key_value_heads: usize,
    /// FFN inner width of the layer.
    pub intermediate_size: usize,
}

/// Typed view of a Hugging Face `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct HfConfig {
    /// Model architecture.
    pub architecture: Architecture,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (GQA); defaults to `num_attention_heads`.
    pub num_key_value_heads: usize,
    /// Per-head dimension (explicit `head_dim` or `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// RoPE scaling, if any.
    pub rope_scaling: Option<RopeScaling>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Maximum context length.
    pub max_position_embeddings: usize,
    /// Whether `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections have a bias.
    pub attention_bias: bool,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids (`eos_token_id` may be an int or a list).
    pub eos_token_ids: Vec<u32>,
    /// Stored weight dtype (`dtype` or `torch_dtype`), e.g. `"bfloat16"`.
    pub torch_dtype: Option<String>,
    /// Per-layer sizes ([`LAYER_SHAPES_KEY`]); empty when every layer has the top-level sizes.
    pub layer_shapes: Vec<LayerShape>,
    /// Distinct stored blocks cycled through the depth ([`SHARED_LAYERS_KEY`]); 0 = none shared.
    pub shared_layers: usize,
    /// Mixture-of-experts FFNs ([`moe`]), if the model has them.
    pub moe: Option<moe::MoeConfig>,
    /// The whole original JSON object.
    pub raw: Map<String, Value>,
}

impl HfConfig {
    /// Reads and parses `config.json` at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses config JSON text; `path` is used in error messages.
    pub fn from_json(json: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(json).map_err(|source| FormatError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        match value {
            Value::Object(raw) => Self::from_raw(raw, path),
            other => Err(FormatError::invalid(
                path,
                "<root>",
                format!("expected a JSON object, got {}", json_kind(&other)),
            )),
        }
    }

    /// Checks the typed fields for consistency; errors name `path` and the key.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let sizes = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (key, v) in sizes {
            if v == 0 {
                return Err(FormatError::invalid(path, key, "must be > 0"));
            }
            let max = match key {
                "num_hidden_layers" => MAX_LAYERS,
                "head_dim" => MAX_HEAD_DIM,
                "max_position_embeddings" => MAX_CONTEXT,
                _ => MAX_DIM,
            };
            if v > max {
                return Err(FormatError::invalid(
                    path,
                    key,
                    format!("{v} is larger than {max} (a corrupt config?)"),
                ));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(FormatError::invalid(
                path,
                "num_key_value_heads",
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    self.num_attention_heads, self.num_key_value_heads
                ),
            ));
        }
        if !self.layer_shapes.is_empty() && self.layer_shapes.len() != self.num_hidden_layers {
            return Err(FormatError::invalid(
                path,
                LAYER_SHAPES_KEY,
                format!(
                    "{} entries for num_hidden_layers {}",
                    self.layer_shapes.len(),
                    self.num_hidden_layers
                ),
            ));
        }
        if self.shared_layers > self.num_hidden_layers
            || (self.shared_layers > 0 && !self.layer_shapes.is_empty())
        {
            return Err(FormatError::invalid(
                path,
                SHARED_LAYERS_KEY,
                format!(
                    "{} shared blocks for num_hidden_layers {}{}: need at most one per layer, all of one shape",
                    self.shared_layers,
                    self.num_hidden_layers,
                    if self.layer_shapes.is_empty() { "" } else { " with per-layer shapes" }
                ),
            ));
        }
        if let Some(m) = &self.moe {
            m.validate(self.intermediate_size, path)?;
            if !self.layer_shapes.is_empty() || self.shared_layers > 0 {
                return Err(FormatError::invalid(
                    path,
                    moe::NUM_EXPERTS_KEY,
                    "experts need every layer of one shape and none shared",
                ));
            }
        }
        for (l, ls) in self.layer_shapes.iter().enumerate() {
            let (h, kv, i) = (
                ls.num_attention_heads,
                ls.num_key_value_heads,
                ls.intermediate_size,
            );
            if h == 0 || kv == 0 || i == 0 || !h.is_multiple_of(kv) || h.max(i) > MAX_DIM {
                return Err(FormatError::invalid(
                    path,
                    format!("{LAYER_SHAPES_KEY}[{l}]"),
                    format!("heads {h}, kv heads {kv}, intermediate {i}: sizes must be in 1..={MAX_DIM} and heads a multiple of kv heads"),
                ));
            }
        }
        for (key, v) in [
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(FormatError::invalid(
                    path,
                    key,
                    format!("must be a finite number > 0, got {v}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether `o_proj` has a bias (Llama with `attention_bias`; never Qwen2/Mistral).
    pub fn o_proj_bias(&self) -> bool {
        self.attention_bias && self.architecture == Architecture::Llama
    }

    /// Whether the MLP projections have biases (Llama `mlp_bias`).
    pub fn mlp_bias(&self) -> bool {
        self.architecture == Architecture::Llama
            && self
                .raw
                .get("mlp_bias")
                .and_then(Value::as_bool)
                .unwrap_or(false)
    }

    /// Pretty JSON of `raw` with changed typed fields written over it (ends with a newline).
    pub fn to_json_string(&self) -> String {
        let mut out = self.raw.clone();
        let orig = Self::from_raw(self.raw.clone(), Path::new("config.json")).ok();
        write_back::write_back(self, orig.as_ref(), &mut out);
        let mut s = serde_json::to_string_pretty(&Value::Object(out))
            .expect("serializing a serde_json::Value cannot fail");
        s.push('\n');
        s
    }

    /// Atomically writes [`Self::to_json_string`] to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_json_string().as_bytes())
    }

    /// Total parameter count of the model this config describes (saturating at `usize::MAX`
    /// for sizes no validated config has).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let mul = |a: usize, b: usize| a.saturating_mul(b);
        let sum = |xs: &[usize]| xs.iter().fold(0usize, |a, &x| a.saturating_add(x));
        let layer = |ls: LayerShape| {
            let q = mul(ls.num_attention_heads, self.head_dim);
            let kv = mul(ls.num_key_value_heads, self.head_dim);
            let i = ls.intermediate_size;
            let qkv_bias = if self.attention_bias {
                sum(&[q, kv, kv])
            } else {
                0
            };
            let o_bias = if self.o_proj_bias() { h } else { 0 };
            let mlp_bias = if self.mlp_bias() { sum(&[i, i, h]) } else { 0 };
            let attn = sum(&[mul(h, q), mul(mul(2, h), kv), mul(q, h), qkv_bias, o_bias]);
            let router = self.moe.map_or(0, |m| mul(m.num_experts, h));
            sum(&[attn, mul(mul(3, h), i), mlp_bias, mul(2, h), router])
        };
        if self.stored_layers() > MAX_LAYERS {
            return usize::MAX;
        }
        let layers = (0..self.stored_layers())
            .map(|l| layer(self.layer(l)))
            .fold(0usize, usize::saturating_add);
        let embed = mul(self.vocab_size, h);
        let lm_head = if self.tie_word_embeddings { 0 } else { embed };
        sum(&[embed, layers, h, lm_head])
    }

    /// Decoder blocks stored in the weights: [`Self::shared_layers`] when shared, else every layer.
    pub fn stored_layers(&self) -> usize {
        match self.shared_layers {
            0 => self.num_hidden_layers,
            k => k,
        }
    }

    /// Layer `l`'s sizes: its [`LAYER_SHAPES_KEY`] entry, or the top-level sizes.
    pub fn layer(&self, l: usize) -> LayerShape {
        self.layer_shapes.get(l).copied().unwrap_or(LayerShape {
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads,
            intermediate_size: self.intermediate_size,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
