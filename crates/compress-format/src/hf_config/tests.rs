//! Parsing tests of `config.json` on real model configs.

use super::*;

pub(crate) const LLAMA32_1B: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
  "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16,
  "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256
}"#;

pub(crate) const QWEN25_05B: &str = r#"{
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896,
  "initializer_range": 0.02, "intermediate_size": 4864, "max_position_embeddings": 32768,
  "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
  "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.40.1", "use_cache": true,
  "use_sliding_window": false, "vocab_size": 151936
}"#;

pub(crate) const TF5_LLAMA: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "dtype": "bfloat16", "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "vocab_size": 100, "eos_token_id": null,
  "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
}"#;

pub(crate) fn parse(json: &str) -> Result<HfConfig> {
    HfConfig::from_json(json, Path::new("/models/x/config.json"))
}

fn with(json: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut v: Map<String, Value> = serde_json::from_str(json).unwrap();
    edit(&mut v);
    serde_json::to_string(&v).unwrap()
}

#[test]
fn per_layer_shapes_round_trip_and_are_checked() {
    let shapes = serde_json::json!([
        {"num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 100},
        {"num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 128}
    ]);
    let text = with(TF5_LLAMA, |v| {
        v.insert(LAYER_SHAPES_KEY.into(), shapes.clone());
    });
    let c = parse(&text).unwrap();
    assert_eq!(c.layer(1).num_key_value_heads, 1);
    assert_eq!(c.layer(0).intermediate_size, 100);
    let back = parse(&c.to_json_string()).unwrap();
    assert_eq!(back.layer_shapes, c.layer_shapes);
    let uniform = parse(TF5_LLAMA).unwrap();
    assert!(c.num_parameters() < uniform.num_parameters());
    // Dropping the shapes removes the key.
    let mut u = c.clone();
    u.layer_shapes.clear();
    assert!(!u.to_json_string().contains(LAYER_SHAPES_KEY));
    for bad in [
        serde_json::json!([{"num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 100}]),
        serde_json::json!([{"num_attention_heads": 3, "num_key_value_heads": 2, "intermediate_size": 1},
                           {"num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 1}]),
        serde_json::json!("wide"),
    ] {
        let text = with(TF5_LLAMA, |v| {
            v.insert(LAYER_SHAPES_KEY.into(), bad.clone());
        });
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains(LAYER_SHAPES_KEY), "{bad}: {e}");
    }
}

#[test]
fn parses_llama3_config() {
    let c = parse(LLAMA32_1B).unwrap();
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
        (2048, 8192, 16)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (32, 8, 64)
    );
    assert_eq!(c.rope_theta, 500000.0);
    let rs = c.rope_scaling.as_ref().unwrap();
    assert_eq!(rs.rope_type, "llama3");
    assert_eq!(rs.factor, 32.0);
    assert_eq!(
        (rs.low_freq_factor, rs.high_freq_factor),
        (Some(1.0), Some(4.0))
    );
    assert_eq!(rs.original_max_position_embeddings, Some(8192));
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!((c.vocab_size, c.max_position_embeddings), (128256, 131072));
    assert!(c.tie_word_embeddings && !c.attention_bias);
    assert_eq!(c.bos_token_id, Some(128000));
    assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
    assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
    // Published parameter count of Llama-3.2-1B.
    assert_eq!(c.num_parameters(), 1_235_814_400);
}

#[test]
fn parses_qwen2_config_with_default_bias() {
    let c = parse(QWEN25_05B).unwrap();
    assert_eq!(c.architecture, Architecture::Qwen2);
    assert!(c.attention_bias, "Qwen2 defaults to q/k/v bias");
    assert!(!c.o_proj_bias());
    assert!(c.tie_word_embeddings);
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.eos_token_ids, vec![151643]);
    assert!(c.rope_scaling.is_none());
    // Published parameter count of Qwen2.5-0.5B.
    assert_eq!(c.num_parameters(), 494_032_768);
}

#[test]
fn parses_transformers5_rope_parameters() {
    let c = parse(TF5_LLAMA).unwrap();
    assert_eq!(c.rope_theta, 500000.0);
    let rs = c.rope_scaling.clone().unwrap();
    assert_eq!((rs.rope_type.as_str(), rs.factor), ("llama3", 8.0));
    assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
    assert!(c.eos_token_ids.is_empty());
    assert_eq!(c.head_dim, 16);
    assert_eq!(c.max_position_embeddings, 2048);

    let plain = with(TF5_LLAMA, |m| {
        m.insert(
            "rope_parameters".into(),
            serde_json::json!({"rope_theta": 1e6, "rope_type": "default"}),
        );
    });
    let c = parse(&plain).unwrap();
    assert_eq!(c.rope_theta, 1e6);
    assert!(c.rope_scaling.is_none());

    // Editing scaling writes back into rope_parameters, not a new rope_scaling key.
    let mut c2 = c.clone();
    c2.rope_scaling = Some(RopeScaling {
        rope_type: "linear".into(),
        factor: 2.0,
        low_freq_factor: None,
        high_freq_factor: None,
        original_max_position_embeddings: None,
    });
    c2.rope_theta = 2e6;
    let json = c2.to_json_string();
    let v: Value = serde_json::from_str(&json).unwrap();
    assert!(v.get("rope_scaling").is_none() && v.get("rope_theta").is_none());
    assert_eq!(v["rope_parameters"]["rope_type"], "linear");
    let back = parse(&json).unwrap();
    assert_eq!(
        back,
        HfConfig {
            raw: back.raw.clone(),
            ..c2
        }
    );
}

#[test]
fn missing_and_invalid_keys_are_named() {
    let err = parse(&with(LLAMA32_1B, |m| {
        m.remove("hidden_size");
    }))
    .unwrap_err();
    assert!(matches!(&err, FormatError::MissingKey { key, .. } if key == "hidden_size"));
    let msg = err.to_string();
    assert!(
        msg.contains("/models/x/config.json") && msg.contains("hidden_size"),
        "{msg}"
    );

    let err = parse(&with(LLAMA32_1B, |m| {
        m.insert("num_key_value_heads".into(), Value::from(5));
    }))
    .unwrap_err();
    assert!(matches!(&err, FormatError::InvalidValue { key, .. } if key == "num_key_value_heads"));

    let err = parse(&with(LLAMA32_1B, |m| {
        m.insert("vocab_size".into(), Value::from(0));
    }))
    .unwrap_err();
    assert!(matches!(&err, FormatError::InvalidValue { key, .. } if key == "vocab_size"));

    let err = parse(&with(LLAMA32_1B, |m| {
        m.insert("hidden_size".into(), Value::from("big"));
    }))
    .unwrap_err();
    assert!(matches!(&err, FormatError::InvalidValue { key, .. } if key == "hidden_size"));

    let err = parse(&with(LLAMA32_1B, |m| {
        m.get_mut("rope_scaling")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("factor");
    }))
    .unwrap_err();
    assert!(matches!(&err, FormatError::MissingKey { key, .. } if key == "rope_scaling.factor"));

    let err = parse(&with(TF5_LLAMA, |m| {
        m.insert("hidden_size".into(), Value::from(66));
    }))
    .unwrap_err();
    assert!(matches!(&err, FormatError::InvalidValue { key, .. } if key == "hidden_size"));

    assert!(matches!(parse("{not json"), Err(FormatError::Json { .. })));
    assert!(matches!(
        parse("[1]"),
        Err(FormatError::InvalidValue { .. })
    ));
}

#[test]
fn unknown_architecture_and_model_type_fallback() {
    let err = parse(&with(LLAMA32_1B, |m| {
        m.insert(
            "architectures".into(),
            serde_json::json!(["GPT2LMHeadModel"]),
        );
    }))
    .unwrap_err();
    assert!(
        matches!(&err, FormatError::UnknownArchitecture { arch, .. } if arch == "GPT2LMHeadModel")
    );

    let c = parse(&with(QWEN25_05B, |m| {
        m.remove("architectures");
    }))
    .unwrap();
    assert_eq!(c.architecture, Architecture::Qwen2);
    let mistral = with(LLAMA32_1B, |m| {
        m.remove("architectures");
        m.insert("model_type".into(), Value::from("mistral"));
    });
    assert_eq!(parse(&mistral).unwrap().architecture, Architecture::Mistral);
    let err = parse(&with(LLAMA32_1B, |m| {
        m.remove("architectures");
        m.remove("model_type");
    }))
    .unwrap_err();
    assert!(matches!(&err, FormatError::MissingKey { key, .. } if key == "architectures"));
}

#[test]
fn explicit_head_dim_and_legacy_type_alias() {
    let json = with(TF5_LLAMA, |m| {
        m.insert("head_dim".into(), Value::from(32));
        m.remove("rope_parameters");
        m.insert(
            "rope_scaling".into(),
            serde_json::json!({"type": "linear", "factor": 4}),
        );
        m.insert("attention_bias".into(), Value::from(true));
    });
    let c = parse(&json).unwrap();
    assert_eq!(c.head_dim, 32);
    assert_eq!(c.rope_theta, 10000.0);
    assert_eq!(c.rope_scaling.as_ref().unwrap().rope_type, "linear");
    assert_eq!(c.rope_scaling.as_ref().unwrap().factor, 4.0);
    assert!(c.attention_bias && c.o_proj_bias());
    // q: 64*128+128, k/v: 64*64+64 each, o: 128*64+64, mlp 3*64*128, norms 128.
    let layer = (64 * 128 + 128) + 2 * (64 * 64 + 64) + (128 * 64 + 64) + 3 * 64 * 128 + 128;
    assert_eq!(c.num_parameters(), 2 * 100 * 64 + 2 * layer + 64);
    let rs: RopeScaling = serde_json::from_str(r#"{"type":"linear","factor":2.0}"#).unwrap();
    assert_eq!(rs.rope_type, "linear");
}
