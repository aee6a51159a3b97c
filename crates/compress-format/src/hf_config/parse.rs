//! Parsing `config.json` values into [`HfConfig`].
//!
//! JSON `null` is treated as an absent key everywhere (transformers writes
//! `"head_dim": null`, `"eos_token_id": null`, ...). Integers written as
//! floats (`4096.0`) are accepted. Every error names the file and the key,
//! with nested keys written as `rope_scaling.factor`.

use super::{Architecture, HfConfig, LayerShape, RopeScaling, LAYER_SHAPES_KEY, SHARED_LAYERS_KEY};
use crate::error::{FormatError, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Scaling kinds whose `factor` is mandatory.
const FACTOR_REQUIRED: &[&str] = &["linear", "dynamic", "llama3", "yarn"];

/// Key lookup helpers bound to the file being parsed.
struct Keys<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Keys<'a> {
    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Value of `key`, treating JSON `null` as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn invalid(&self, key: &str, v: &Value, want: &str) -> FormatError {
        FormatError::invalid(
            self.path,
            self.name(key),
            format!("expected {want}, got {v}"),
        )
    }

    fn missing(&self, key: &str) -> FormatError {
        FormatError::MissingKey {
            path: self.path.to_path_buf(),
            key: self.name(key),
        }
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        if let Some(n) = v.as_u64() {
            return Ok(Some(n));
        }
        match v.as_f64() {
            Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64 => Ok(Some(f as u64)),
            _ => Err(self.invalid(key, v, "a non-negative integer")),
        }
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.opt_u64(key)?
            .map(|n| usize::try_from(n).map_err(|_| self.invalid(key, &Value::from(n), "a usize")))
            .transpose()
    }

    fn req_usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.opt_u64(key)?
            .map(|n| u32::try_from(n).map_err(|_| self.invalid(key, &Value::from(n), "a u32")))
            .transpose()
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| self.invalid(key, v, "a number")))
            .transpose()
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.invalid(key, v, "a boolean")))
            .transpose()
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        self.get(key)
            .map(|v| v.as_str().ok_or_else(|| self.invalid(key, v, "a string")))
            .transpose()
    }

    fn opt_object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>> {
        self.get(key)
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| self.invalid(key, v, "an object"))
            })
            .transpose()
    }
}

impl RopeScaling {
    /// Parses a `rope_scaling` / `rope_parameters` object; `key` prefixes error key names.
    fn parse(obj: &Map<String, Value>, key: &str, path: &Path) -> Result<Self> {
        let prefix = format!("{key}.");
        let k = Keys {
            path,
            obj,
            prefix: &prefix,
        };
        let rope_type = match k.opt_str("rope_type")? {
            Some(t) => t,
            None => k.opt_str("type")?.ok_or_else(|| k.missing("rope_type"))?,
        }
        .to_string();
        let factor = match k.opt_f64("factor")? {
            Some(f) => f,
            None if FACTOR_REQUIRED.contains(&rope_type.as_str()) => {
                return Err(k.missing("factor"))
            }
            None => 1.0,
        };
        if !(factor.is_finite() && factor > 0.0) {
            return Err(FormatError::invalid(
                path,
                k.name("factor"),
                format!("must be > 0, got {factor}"),
            ));
        }
        let scaling = RopeScaling {
            low_freq_factor: k.opt_f64("low_freq_factor")?,
            high_freq_factor: k.opt_f64("high_freq_factor")?,
            original_max_position_embeddings: k.opt_usize("original_max_position_embeddings")?,
            rope_type,
            factor,
        };
        if scaling.rope_type == "llama3" {
            if scaling.low_freq_factor.is_none() {
                return Err(k.missing("low_freq_factor"));
            }
            if scaling.high_freq_factor.is_none() {
                return Err(k.missing("high_freq_factor"));
            }
            if scaling.original_max_position_embeddings.is_none() {
                return Err(k.missing("original_max_position_embeddings"));
            }
        }
        Ok(scaling)
    }
}

impl HfConfig {
    /// Builds the typed config from an already-parsed JSON object (kept as `raw`).
    pub fn from_raw(raw: Map<String, Value>, path: &Path) -> Result<Self> {
        let k = Keys {
            path,
            obj: &raw,
            prefix: "",
        };
        let architecture = parse_architecture(&k)?;
        let hidden_size = k.req_usize("hidden_size")?;
        let intermediate_size = k.req_usize("intermediate_size")?;
        let num_hidden_layers = k.req_usize("num_hidden_layers")?;
        let num_attention_heads = k.req_usize("num_attention_heads")?;
        let rms_norm_eps = k
            .opt_f64("rms_norm_eps")?
            .ok_or_else(|| k.missing("rms_norm_eps"))?;
        let vocab_size = k.req_usize("vocab_size")?;
        let num_key_value_heads = k
            .opt_usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        let head_dim = match k.opt_usize("head_dim")? {
            Some(d) => d,
            None if num_attention_heads > 0 && hidden_size % num_attention_heads == 0 => {
                hidden_size / num_attention_heads
            }
            None => {
                return Err(FormatError::invalid(
                    path,
                    "hidden_size",
                    format!(
                        "{hidden_size} is not divisible by num_attention_heads \
                         {num_attention_heads} (and no head_dim given)"
                    ),
                ))
            }
        };

        let rope_params = k.opt_object("rope_parameters")?;
        let rp_keys = rope_params.map(|obj| Keys {
            path,
            obj,
            prefix: "rope_parameters.",
        });
        let rope_theta = match (k.opt_f64("rope_theta")?, &rp_keys) {
            (Some(t), _) => t,
            (None, Some(rp)) => rp.opt_f64("rope_theta")?.unwrap_or(10000.0),
            (None, None) => 10000.0,
        };
        let rope_scaling = if let Some(rs) = k.opt_object("rope_scaling")? {
            Some(RopeScaling::parse(rs, "rope_scaling", path)?)
        } else if let Some(rp) = &rp_keys {
            let kind = match rp.opt_str("rope_type")? {
                Some(t) => Some(t),
                None => rp.opt_str("type")?,
            };
            match kind {
                Some(t) if t != "default" => {
                    Some(RopeScaling::parse(rp.obj, "rope_parameters", path)?)
                }
                _ => None,
            }
        } else {
            None
        };

        let eos_token_ids = match k.get("eos_token_id") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| k.invalid("eos_token_id", v, "a list of u32 token ids"))
                })
                .collect::<Result<_>>()?,
            Some(_) => vec![k.opt_u32("eos_token_id")?.unwrap_or_default()],
        };
        let torch_dtype = match k.opt_str("dtype")? {
            Some(d) => Some(d.to_string()),
            None => k.opt_str("torch_dtype")?.map(str::to_string),
        };

        let layer_shapes = match k.get(LAYER_SHAPES_KEY) {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value::<Vec<LayerShape>>(v.clone()).map_err(|e| {
                FormatError::invalid(
                    path,
                    LAYER_SHAPES_KEY,
                    format!("expected a list of {{num_attention_heads, num_key_value_heads, intermediate_size}}: {e}"),
                )
            })?,
        };
        let cfg = HfConfig {
            architecture,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rope_theta,
            rope_scaling,
            rms_norm_eps,
            vocab_size,
            max_position_embeddings: k.opt_usize("max_position_embeddings")?.unwrap_or(2048),
            tie_word_embeddings: k.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            attention_bias: k
                .opt_bool("attention_bias")?
                .unwrap_or(architecture == Architecture::Qwen2),
            bos_token_id: k.opt_u32("bos_token_id")?,
            eos_token_ids,
            torch_dtype,
            layer_shapes,
            moe: super::moe::MoeConfig::parse(&raw, path)?,
            shared_layers: match k.opt_usize(SHARED_LAYERS_KEY)? {
                Some(0) => {
                    return Err(FormatError::invalid(path, SHARED_LAYERS_KEY, "must be > 0"))
                }
                v => v.unwrap_or(0),
            },
            raw: Map::new(),
        };
        cfg.validate(path)?;
        Ok(HfConfig { raw, ..cfg })
    }
}

/// Describes the JSON type of `v` for error messages.
pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads `architectures[0]`, falling back to `model_type`.
fn parse_architecture(k: &Keys<'_>) -> Result<Architecture> {
    let unknown = |arch: &str| FormatError::UnknownArchitecture {
        path: k.path.to_path_buf(),
        arch: arch.to_string(),
    };
    if let Some(v) = k.get("architectures") {
        let first = v
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .ok_or_else(|| k.invalid("architectures", v, "a non-empty list of class names"))?;
        return Architecture::from_hf_name(first).ok_or_else(|| unknown(first));
    }
    match k.opt_str("model_type")? {
        Some(mt) => Architecture::from_model_type(mt).ok_or_else(|| unknown(mt)),
        None => Err(k.missing("architectures")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(obj: &Map<String, Value>) -> Keys<'_> {
        Keys {
            path: Path::new("c.json"),
            obj,
            prefix: "p.",
        }
    }

    #[test]
    fn nulls_are_absent_and_float_integers_accepted() {
        let obj: Map<String, Value> =
            serde_json::from_str(r#"{"a": null, "b": 4096.0, "c": 1.5, "d": -1, "e": "x"}"#)
                .unwrap();
        let k = keys_of(&obj);
        assert_eq!(k.opt_usize("a").unwrap(), None);
        assert_eq!(k.opt_usize("b").unwrap(), Some(4096));
        assert_eq!(k.opt_f64("c").unwrap(), Some(1.5));
        let e = k.opt_usize("c").unwrap_err().to_string();
        assert!(e.contains("c.json") && e.contains("`p.c`"), "{e}");
        assert!(k.opt_u32("d").is_err());
        assert!(k.opt_bool("e").is_err());
        let e = k.req_usize("zz").unwrap_err();
        assert!(matches!(&e, FormatError::MissingKey { key, .. } if key == "p.zz"));
    }

    #[test]
    fn rope_scaling_requirements() {
        let p = Path::new("c.json");
        let obj = |s: &str| serde_json::from_str::<Map<String, Value>>(s).unwrap();
        let rs = RopeScaling::parse(
            &obj(r#"{"rope_type": "yarn", "factor": 4.0, "beta_fast": 32}"#),
            "rope_scaling",
            p,
        )
        .unwrap();
        assert_eq!((rs.rope_type.as_str(), rs.factor), ("yarn", 4.0));
        let rs =
            RopeScaling::parse(&obj(r#"{"rope_type": "longrope"}"#), "rope_scaling", p).unwrap();
        assert_eq!(rs.factor, 1.0);
        let e = RopeScaling::parse(
            &obj(r#"{"rope_type": "llama3", "factor": 8.0}"#),
            "rope_scaling",
            p,
        )
        .unwrap_err();
        assert!(
            matches!(&e, FormatError::MissingKey { key, .. } if key == "rope_scaling.low_freq_factor")
        );
        let e = RopeScaling::parse(&obj(r#"{"factor": 8.0}"#), "rope_parameters", p).unwrap_err();
        assert!(
            matches!(&e, FormatError::MissingKey { key, .. } if key == "rope_parameters.rope_type")
        );
        let e = RopeScaling::parse(
            &obj(r#"{"type": "linear", "factor": 0}"#),
            "rope_scaling",
            p,
        )
        .unwrap_err();
        assert!(
            matches!(&e, FormatError::InvalidValue { key, .. } if key == "rope_scaling.factor")
        );
    }
}
