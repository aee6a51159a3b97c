//! `config`: `config.json` through [`HfConfig::from_json`] and `validate`, the derived sizes,
//! and the runtime's [`ModelConfig::from_dir`] over the same file.

use std::path::Path;

use compress_format::hf_config::HfConfig;
use compress_runtime::config::ModelConfig;

use super::{read_repo, Kind, Scratch, Target};

/// The `config.json` parsers (format and runtime).
pub struct ConfigTarget {
    scratch: Scratch,
}

impl ConfigTarget {
    /// A target writing cases to `config.json` in a scratch dir.
    pub fn new() -> Self {
        Self {
            scratch: Scratch::new("config.json"),
        }
    }
}

impl Default for ConfigTarget {
    fn default() -> Self {
        Self::new()
    }
}

/// Configs with the optional sections the parser knows (MoE, per-layer shapes, rope scaling,
/// shared layers, quantization) on top of the demo config.
const EXTRA_SEEDS: &[&str] = &[
    r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":16,"intermediate_size":32,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":64,"max_position_embeddings":128,"rms_norm_eps":1e-5,"rope_theta":10000.0,"tie_word_embeddings":true,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":64}}"#,
    r#"{"architectures":["MixtralForCausalLM"],"model_type":"mixtral","hidden_size":16,"intermediate_size":32,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":4,"vocab_size":64,"max_position_embeddings":128,"num_experts":4,"num_experts_per_tok":2,"eos_token_id":[1,2],"bos_token_id":0}"#,
    r#"{"architectures":["LlamaForCausalLM"],"hidden_size":16,"intermediate_size":32,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"vocab_size":64,"max_position_embeddings":128,"compress_layer_shapes":[{"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":16},{"num_attention_heads":2,"num_key_value_heads":2,"intermediate_size":32}],"rope_scaling":{"type":"linear","factor":2.0}}"#,
    r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":16,"intermediate_size":32,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":64,"max_position_embeddings":128,"attention_bias":true,"compress_shared_layers":2}"#,
];

impl Target for ConfigTarget {
    fn name(&self) -> &'static str {
        "config"
    }

    fn kind(&self) -> Kind {
        Kind::Json
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = [
            "examples/models/demo/config.json",
            "tests/fixtures/llama3_gqa_untied/config.json",
            "tests/fixtures/mistral_headdim/config.json",
            "tests/fixtures/qwen2_bias_tied/config.json",
        ]
        .iter()
        .filter_map(|f| read_repo(f))
        .collect();
        seeds.extend(EXTRA_SEEDS.iter().map(|s| s.as_bytes().to_vec()));
        seeds
    }

    fn alloc_limit(&self, input: &[u8]) -> usize {
        super::tree_limit(input.len())
    }

    fn run_one(&mut self, input: &[u8]) -> bool {
        let path = Path::new("config.json");
        if let Ok(text) = std::str::from_utf8(input) {
            if let Ok(c) = HfConfig::from_json(text, path) {
                if c.validate(path).is_ok() {
                    let _ = (c.num_parameters(), c.stored_layers());
                }
            }
        }
        self.scratch.write(input);
        ModelConfig::from_dir(self.scratch.dir.path()).is_ok()
    }
}
