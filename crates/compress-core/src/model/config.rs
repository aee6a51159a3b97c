//! [`LlamaConfig`]: the run-time shape of a Llama-family decoder, built from an HF
//! `config.json` ([`LlamaConfig::from_hf`]) or a preset ([`LlamaConfig::preset`]).

use compress_format::hf_config::moe::MoeConfig;
use compress_format::hf_config::{
    Architecture, HfConfig, LayerShape, RopeScaling, LAYER_SHAPES_KEY, SHARED_LAYERS_KEY,
};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// Shape and hyper-parameters of a Llama-family decoder (Llama 2/3, Qwen2, Mistral).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// HF architecture family (decides e.g. whether `o_proj` has a bias).
    #[serde(skip, default = "default_arch")]
    pub architecture: Architecture,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model (residual) width.
    pub hidden_size: usize,
    /// FFN inner width; any value, no divisibility assumed.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (GQA when smaller than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head (need not equal hidden_size / num_heads).
    pub head_dim: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// Optional RoPE frequency scaling (`llama3`, `linear`).
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Whether `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v (and for Llama also o) projections carry a bias.
    pub attention_bias: bool,
    /// Longest position the model was trained for.
    pub max_position_embeddings: usize,
    /// Begin-of-sequence token, if any.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (generation stops at any of them).
    #[serde(default)]
    pub eos_token_ids: Vec<u32>,
    /// Per-layer sizes of a non-uniformly pruned model (empty: every layer has the sizes above,
    /// which are then the largest of any layer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_shapes: Vec<LayerShape>,
    /// Distinct decoder blocks cycled through the depth (ALBERT-style sharing; 0 = none): layer
    /// `l` runs block `l mod shared_layers`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shared_layers: usize,
    /// Mixture-of-experts FFNs (experts, top-k, routing rule), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<MoeConfig>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_arch() -> Architecture {
    Architecture::Llama
}

impl LlamaConfig {
    /// Builds the run-time config from a parsed HF `config.json`.
    pub fn from_hf(hf: &HfConfig) -> Self {
        Self {
            architecture: hf.architecture,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads: hf.num_key_value_heads,
            head_dim: hf.head_dim,
            rope_theta: hf.rope_theta,
            rope_scaling: hf.rope_scaling.clone(),
            rms_norm_eps: hf.rms_norm_eps,
            tie_word_embeddings: hf.tie_word_embeddings,
            // Mistral's projections never carry a bias, whatever the config says.
            attention_bias: hf.attention_bias && hf.architecture != Architecture::Mistral,
            max_position_embeddings: hf.max_position_embeddings,
            bos_token_id: hf.bos_token_id,
            eos_token_ids: hf.eos_token_ids.clone(),
            layer_shapes: hf.layer_shapes.clone(),
            shared_layers: hf.shared_layers,
            moe: hf.moe,
        }
    }

    /// A named preset: `tiny` (about 5M parameters, GQA, untied; the demo model's shape).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self {
                architecture: Architecture::Llama,
                vocab_size: 4096,
                hidden_size: 256,
                intermediate_size: 704,
                num_layers: 4,
                num_heads: 8,
                num_kv_heads: 4,
                head_dim: 32,
                rope_theta: 10000.0,
                rope_scaling: None,
                rms_norm_eps: 1e-5,
                tie_word_embeddings: false,
                attention_bias: false,
                max_position_embeddings: 512,
                bos_token_id: Some(1),
                eos_token_ids: vec![2],
                layer_shapes: Vec::new(),
                shared_layers: 0,
                moe: None,
            }),
            other => Err(CoreError::Invalid(format!(
                "unknown model preset `{other}` (known: tiny; or pass a config.json path)"
            ))),
        }
    }

    /// Checks the shape for consistency (sizes non-zero, heads divide, even head_dim), with the
    /// same rules as a config.json read from disk.
    pub fn validate(&self) -> Result<()> {
        self.to_hf()?;
        if let Some(s) = &self.rope_scaling {
            if !matches!(s.rope_type.as_str(), "default" | "linear" | "llama3") {
                return Err(CoreError::Invalid(format!(
                    "config: rope_scaling type `{}` is not supported (supported: linear, llama3)",
                    s.rope_type
                )));
            }
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(CoreError::Invalid(format!(
                "config: head_dim {} must be even for rotary embeddings",
                self.head_dim
            )));
        }
        Ok(())
    }

    /// Whether `o_proj` carries a bias (Llama with `attention_bias`; never Qwen2 or Mistral).
    pub fn o_proj_bias(&self) -> bool {
        self.attention_bias && self.architecture == Architecture::Llama
    }

    /// The HF `config.json` for this shape, as written by `compress train` and savers; an
    /// inconsistent shape is an error naming the key.
    pub fn to_hf(&self) -> Result<HfConfig> {
        let arch = self.architecture;
        let mut json = serde_json::json!({
            "architectures": [arch.hf_name()],
            "model_type": arch.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        });
        let obj = json.as_object_mut().expect("json object");
        if let Some(scaling) = &self.rope_scaling {
            obj.insert(
                "rope_scaling".into(),
                serde_json::to_value(scaling).expect("rope scaling serializes"),
            );
        }
        if let Some(bos) = self.bos_token_id {
            obj.insert("bos_token_id".into(), bos.into());
        }
        if self.shared_layers > 0 {
            obj.insert(SHARED_LAYERS_KEY.into(), self.shared_layers.into());
        }
        if let Some(m) = &self.moe {
            m.write(obj);
        }
        if !self.layer_shapes.is_empty() {
            obj.insert(
                LAYER_SHAPES_KEY.into(),
                serde_json::to_value(&self.layer_shapes).expect("layer shapes serialize"),
            );
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                obj.insert("eos_token_id".into(), (*one).into());
            }
            many => {
                obj.insert("eos_token_id".into(), many.to_vec().into());
            }
        }
        Ok(HfConfig::from_json(
            &json.to_string(),
            std::path::Path::new("<model config>"),
        )?)
    }

    /// Loads a config from a preset name or a JSON file (HF config.json or this struct).
    pub fn from_name_or_file(name: &str) -> Result<Self> {
        let path = std::path::Path::new(name);
        if path.extension().is_some_and(|e| e == "json") || path.exists() {
            let hf = HfConfig::from_file(path)?;
            let cfg = Self::from_hf(&hf);
            cfg.validate()?;
            Ok(cfg)
        } else {
            Self::preset(name)
        }
    }

    /// Layer `l`'s own sizes (the top-level ones unless `layer_shapes` lists them).
    pub fn layer(&self, l: usize) -> LayerShape {
        self.layer_shapes.get(l).copied().unwrap_or(LayerShape {
            num_attention_heads: self.num_heads,
            num_key_value_heads: self.num_kv_heads,
            intermediate_size: self.intermediate_size,
        })
    }

    /// Decoder blocks the model holds: `shared_layers` when shared, else one per layer.
    pub fn stored_layers(&self) -> usize {
        match self.shared_layers {
            0 => self.num_layers,
            k => k,
        }
    }

    /// Number of parameters of a model of this shape (shared blocks counted once).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let layer = |ls: LayerShape| {
            let q = ls.num_attention_heads * self.head_dim;
            let kv = ls.num_key_value_heads * self.head_dim;
            let mut attn = h * q + 2 * h * kv + q * h;
            if self.attention_bias {
                attn += q + 2 * kv;
            }
            if self.o_proj_bias() {
                attn += h;
            }
            let router = self.moe.map_or(0, |m| m.num_experts * h);
            attn + 3 * h * ls.intermediate_size + 2 * h + router
        };
        let layers: usize = (0..self.stored_layers())
            .map(|l| layer(self.layer(l)))
            .sum();
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + layers + h + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_round_trips_through_hf_config() {
        let tiny = LlamaConfig::preset("tiny").unwrap();
        tiny.validate().unwrap();
        let back = LlamaConfig::from_hf(&tiny.to_hf().unwrap());
        assert_eq!(tiny, back);
        assert_eq!(
            tiny.num_parameters(),
            tiny.to_hf().unwrap().num_parameters()
        );
    }

    #[test]
    fn bad_heads_are_rejected() {
        let mut cfg = LlamaConfig::preset("tiny").unwrap();
        cfg.num_kv_heads = 3;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("num_key_value_heads 3"), "{err}");
        cfg.num_kv_heads = 4;
        cfg.hidden_size = 0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("hidden_size"), "{err}");
        cfg.hidden_size = 256;
        cfg.rope_scaling = Some(RopeScaling {
            rope_type: "yarn".into(),
            factor: 4.0,
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: Some(512),
        });
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("`yarn` is not supported"), "{err}");
        assert!(LlamaConfig::preset("huge").is_err());
    }
}
