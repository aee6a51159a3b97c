//! Writing [`HfConfig`] typed fields back over the original JSON object.
//!
//! Only fields whose value differs from what `raw` parses to are written, so
//! an unmodified config saves exactly as loaded. Changed values go to the key
//! layout the file already uses: `rope_theta`/`rope_scaling` for
//! transformers 4, `rope_parameters` for transformers 5, `dtype` and/or
//! `torch_dtype`, and a scalar or list `eos_token_id`.

use super::{HfConfig, RopeScaling};
use serde_json::{Map, Value};

/// Scaling keys stored inside `rope_parameters` (removed when scaling is dropped).
const SCALING_KEYS: &[&str] = &[
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "original_max_position_embeddings",
];

impl RopeScaling {
    /// Writes these fields over `obj`, keeping any other keys it has.
    fn merge_into(&self, obj: &mut Map<String, Value>) {
        let has_type = obj.contains_key("type");
        if !has_type || obj.contains_key("rope_type") {
            obj.insert("rope_type".into(), Value::from(self.rope_type.clone()));
        }
        if has_type {
            obj.insert("type".into(), Value::from(self.rope_type.clone()));
        }
        obj.insert("factor".into(), Value::from(self.factor));
        let opts = [
            ("low_freq_factor", self.low_freq_factor.map(Value::from)),
            ("high_freq_factor", self.high_freq_factor.map(Value::from)),
            (
                "original_max_position_embeddings",
                self.original_max_position_embeddings.map(Value::from),
            ),
        ];
        for (key, v) in opts {
            match v {
                Some(v) => obj.insert(key.into(), v),
                None => obj.remove(key),
            };
        }
    }
}

/// Writes the typed fields of `cfg` that differ from `orig` (all of them if `orig` is None) into `out`.
pub(super) fn write_back(cfg: &HfConfig, orig: Option<&HfConfig>, out: &mut Map<String, Value>) {
    macro_rules! changed {
        ($f:ident) => {
            orig.is_none_or(|o| o.$f != cfg.$f)
        };
    }
    macro_rules! put {
        ($($f:ident),*) => {$(
            if changed!($f) {
                out.insert(stringify!($f).into(), Value::from(cfg.$f));
            }
        )*};
    }
    if changed!(architecture) {
        out.insert(
            "architectures".into(),
            Value::from(vec![cfg.architecture.hf_name()]),
        );
        out.insert(
            "model_type".into(),
            Value::from(cfg.architecture.model_type()),
        );
    }
    put!(
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        rms_norm_eps,
        vocab_size,
        max_position_embeddings,
        tie_word_embeddings,
        attention_bias
    );
    if changed!(layer_shapes) {
        if cfg.layer_shapes.is_empty() {
            out.remove(super::LAYER_SHAPES_KEY);
        } else {
            let v = serde_json::to_value(&cfg.layer_shapes).expect("layer shapes serialize");
            out.insert(super::LAYER_SHAPES_KEY.into(), v);
        }
    }
    if changed!(moe) {
        super::moe::MoeConfig::clear(out);
        if let Some(m) = &cfg.moe {
            m.write(out);
        }
    }
    if changed!(shared_layers) {
        match cfg.shared_layers {
            0 => out.remove(super::SHARED_LAYERS_KEY),
            k => out.insert(super::SHARED_LAYERS_KEY.into(), Value::from(k)),
        };
    }
    // head_dim: keep an explicit key up to date; add one when it can no longer be derived.
    let derivable = cfg.num_attention_heads > 0
        && cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        && cfg.hidden_size / cfg.num_attention_heads == cfg.head_dim;
    let explicit = out.get("head_dim").is_some_and(|v| !v.is_null());
    if explicit || !derivable {
        out.insert("head_dim".into(), Value::from(cfg.head_dim));
    }

    let has_top_theta = out.contains_key("rope_theta");
    let has_top_scaling = out.contains_key("rope_scaling");
    let has_rp = out.get("rope_parameters").is_some_and(Value::is_object);
    if changed!(rope_theta) {
        if has_top_theta || !has_rp {
            out.insert("rope_theta".into(), Value::from(cfg.rope_theta));
        }
        if let Some(Value::Object(rp)) = out.get_mut("rope_parameters") {
            if rp.contains_key("rope_theta") || !has_top_theta {
                rp.insert("rope_theta".into(), Value::from(cfg.rope_theta));
            }
        }
    }
    if changed!(rope_scaling) {
        if has_top_scaling || !has_rp {
            let v = cfg.rope_scaling.as_ref().map_or(Value::Null, |rs| {
                let mut obj = out
                    .get("rope_scaling")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                rs.merge_into(&mut obj);
                Value::Object(obj)
            });
            out.insert("rope_scaling".into(), v);
        } else if let Some(Value::Object(rp)) = out.get_mut("rope_parameters") {
            match &cfg.rope_scaling {
                Some(rs) => rs.merge_into(rp),
                None => {
                    rp.insert("rope_type".into(), Value::from("default"));
                    rp.remove("type");
                    for key in SCALING_KEYS {
                        rp.remove(*key);
                    }
                }
            }
        }
    }
    if changed!(bos_token_id) {
        out.insert(
            "bos_token_id".into(),
            cfg.bos_token_id.map_or(Value::Null, Value::from),
        );
    }
    if changed!(eos_token_ids) {
        let was_list = out.get("eos_token_id").is_some_and(Value::is_array);
        let v = match cfg.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] if !was_list => Value::from(*one),
            many => Value::from(many.to_vec()),
        };
        out.insert("eos_token_id".into(), v);
    }
    if changed!(torch_dtype) {
        let mut keys: Vec<&str> = ["dtype", "torch_dtype"]
            .into_iter()
            .filter(|k| out.contains_key(*k))
            .collect();
        if keys.is_empty() {
            keys.push("torch_dtype");
        }
        for key in keys {
            match &cfg.torch_dtype {
                Some(d) => out.insert(key.into(), Value::from(d.clone())),
                None => out.remove(key),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf_config::tests::{parse, LLAMA32_1B, QWEN25_05B, TF5_LLAMA};
    use std::path::Path;

    #[test]
    fn round_trip_keeps_unknown_keys_and_persists_edits() {
        let c = parse(LLAMA32_1B).unwrap();
        let original: Value = serde_json::from_str(LLAMA32_1B).unwrap();
        let unchanged: Value = serde_json::from_str(&c.to_json_string()).unwrap();
        assert_eq!(
            unchanged, original,
            "unchanged config must round-trip exactly"
        );

        let mut e = c.clone();
        e.intermediate_size = 4096;
        e.num_attention_heads = 24; // 2048 / 24 is not integral: head_dim key must stay
        e.num_key_value_heads = 6;
        e.eos_token_ids = vec![7];
        e.torch_dtype = Some("float16".into());
        e.rope_scaling = None;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        e.save(&p).unwrap();
        let back = HfConfig::from_file(&p).unwrap();
        assert_eq!(
            back,
            HfConfig {
                raw: back.raw.clone(),
                ..e
            }
        );
        assert_eq!(back.raw["pretraining_tp"], 1);
        assert_eq!(back.raw["transformers_version"], "4.45.0.dev0");
        assert_eq!(back.raw["eos_token_id"], serde_json::json!([7]));
        assert_eq!(back.raw["torch_dtype"], "float16");
        assert!(back.raw["rope_scaling"].is_null());
        assert!(c.to_json_string().ends_with("}\n"));

        let err = HfConfig::from_file(&dir.path().join("missing.json")).unwrap_err();
        assert!(err.to_string().contains("missing.json"), "{err}");
    }

    #[test]
    fn derived_head_dim_written_when_no_longer_derivable() {
        let mut c = parse(QWEN25_05B).unwrap();
        assert!(!c.to_json_string().contains("head_dim"));
        c.num_attention_heads = 7; // 896 / 7 = 128 != 64
        c.num_key_value_heads = 1;
        let back = parse(&c.to_json_string()).unwrap();
        assert_eq!((back.head_dim, back.num_attention_heads), (64, 7));
        assert_eq!(back.eos_token_ids, vec![151643]);
        assert!(back.raw["eos_token_id"].is_number());
    }

    #[test]
    fn transformers5_edits_stay_in_rope_parameters() {
        let c = parse(TF5_LLAMA).unwrap();
        let mut e = c.clone();
        e.rope_theta = 1e6;
        e.rope_scaling = None;
        e.torch_dtype = Some("float32".into());
        let v: Value = serde_json::from_str(&e.to_json_string()).unwrap();
        assert!(v.get("rope_theta").is_none() && v.get("rope_scaling").is_none());
        assert_eq!(
            v["rope_parameters"],
            serde_json::json!({"rope_theta": 1e6, "rope_type": "default"})
        );
        assert_eq!(v["dtype"], "float32");
        assert!(v.get("torch_dtype").is_none());
        let back = HfConfig::from_json(&e.to_json_string(), Path::new("c.json")).unwrap();
        assert_eq!((back.rope_theta, back.rope_scaling), (1e6, None));
    }

    #[test]
    fn merge_keeps_legacy_type_key_and_extra_fields() {
        let mut obj: Map<String, Value> = serde_json::from_str(
            r#"{"type": "dynamic", "factor": 2.0, "extra": 1, "low_freq_factor": 1.0}"#,
        )
        .unwrap();
        let rs = RopeScaling {
            rope_type: "linear".into(),
            factor: 3.0,
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: Some(4096),
        };
        rs.merge_into(&mut obj);
        assert_eq!(
            Value::Object(obj),
            serde_json::json!({"type": "linear", "factor": 3.0, "extra": 1, "original_max_position_embeddings": 4096})
        );
    }

    #[test]
    fn config_without_raw_writes_all_fields() {
        let c = parse(QWEN25_05B).unwrap();
        let bare = HfConfig {
            raw: Map::new(),
            ..c.clone()
        };
        let back = parse(&bare.to_json_string()).unwrap();
        assert_eq!(
            back,
            HfConfig {
                raw: back.raw.clone(),
                ..c
            }
        );
    }
}
