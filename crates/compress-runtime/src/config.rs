//! The model hyper-parameters the runtime needs, read from `config.json`.

use std::path::Path;

use compress_format::hf_config::{rope_inv_freq, HfConfig};

use crate::error::{Result, RuntimeError};

/// Shape and numerics of a Llama-family model, as the runtime runs it.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Residual width.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads (per layer the loader may find fewer after head pruning).
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Longest context the model supports.
    pub max_position_embeddings: usize,
    /// Rotary inverse frequencies (`head_dim / 2`).
    pub inv_freq: Vec<f32>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens.
    pub eos_token_ids: Vec<u32>,
    /// Whether `lm_head` is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Mixture-of-experts FFNs, if any.
    pub moe: Option<compress_format::hf_config::moe::MoeConfig>,
}

impl ModelConfig {
    /// Reads and checks `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<(Self, HfConfig)> {
        let path = dir.join("config.json");
        let hf = HfConfig::from_file(&path)?;
        hf.validate(&path)?;
        if hf.mlp_bias() {
            return Err(RuntimeError::unsupported(
                &path,
                "mlp_bias=true is not supported (no Llama-family checkpoint we target uses it)",
            ));
        }
        if let Some(s) = &hf.rope_scaling {
            if !matches!(s.rope_type.as_str(), "default" | "linear" | "llama3") {
                return Err(RuntimeError::unsupported(
                    &path,
                    format!(
                        "rope_scaling type `{}` is not supported (supported: linear, llama3)",
                        s.rope_type
                    ),
                ));
            }
        }
        if hf.head_dim % 2 != 0 {
            return Err(RuntimeError::unsupported(
                &path,
                format!(
                    "head_dim {} must be even for rotary embeddings",
                    hf.head_dim
                ),
            ));
        }
        let cfg = Self {
            hidden_size: hf.hidden_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads: hf.num_key_value_heads,
            head_dim: hf.head_dim,
            vocab_size: hf.vocab_size,
            rms_norm_eps: hf.rms_norm_eps as f32,
            max_position_embeddings: hf.max_position_embeddings,
            inv_freq: rope_inv_freq(hf.head_dim, hf.rope_theta, hf.rope_scaling.as_ref()),
            bos_token_id: hf.bos_token_id,
            eos_token_ids: hf.eos_token_ids.clone(),
            tie_word_embeddings: hf.tie_word_embeddings,
            moe: hf.moe,
        };
        Ok((cfg, hf))
    }
}
