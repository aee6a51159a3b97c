//! The `quantization_config` entry of `config.json` for `pack-quantized` checkpoints.
//!
//! compressed-tensors 0.15 (`ModelCompressor.update_config`, keys sorted)
//! writes, for llm-compressor's W4A16 scheme (4-bit symmetric, groups of 128):
//!
//! ```json
//! {
//!   "config_groups": {
//!     "group_0": {
//!       "format": "pack-quantized",
//!       "input_activations": null,
//!       "output_activations": null,
//!       "targets": ["Linear"],
//!       "weights": {
//!         "actorder": null, "block_structure": null, "dynamic": false,
//!         "group_size": 128, "num_bits": 4, "observer": "memoryless_minmax",
//!         "observer_kwargs": {}, "scale_dtype": null, "strategy": "group",
//!         "symmetric": true, "type": "int", "zp_dtype": null
//!       }
//!     }
//!   },
//!   "format": "pack-quantized",
//!   "global_compression_ratio": null,
//!   "ignore": ["lm_head"],
//!   "kv_cache_scheme": null,
//!   "quant_method": "compressed-tensors",
//!   "quantization_status": "compressed",
//!   "sparsity_config": {},
//!   "transform_config": {},
//!   "version": "0.15.0.1"
//! }
//! ```
//!
//! Asymmetric schemes have `"zp_dtype": "torch.int8"`; channel schemes have
//! `"strategy": "channel", "group_size": null`. [`QuantizationConfig::to_json`]
//! writes exactly this shape (plus [`RAGGED_GROUPS_KEY`] when set);
//! [`QuantizationConfig::from_json`] reads it, the library's preset shorthand
//! (`"config_groups": {"W4A16": ["Linear"]}`), and library defaults for
//! absent keys, and rejects what this crate cannot load: other formats,
//! float types, activation or KV-cache quantization, several config groups,
//! transforms, compressed sparsity formats, `actorder: group` (a `weight_g_idx`
//! permutation) and strategies other than tensor/channel/group. A `dense`
//! [`SparsityConfig`] (zeros stored in place) is read and written; a sparse
//! model without quantization has a `quantization_config` of format `dense`
//! and no config groups, which [`read_compression`] tells apart.

use super::consts::{CT_VERSION, DENSE_FORMAT, FORMAT_NAME, QUANT_METHOD, RAGGED_GROUPS_KEY};
use super::json::{as_object, is_empty, missing, opt_str, present, required_str, string_list};
use super::scheme::{parse_scheme, preset};
use super::sparsity::SparsityConfig;
use super::{QuantStrategy, WeightQuant};
use crate::error::{FormatError, Result};
use serde_json::{json, Value};
use std::path::Path;

/// The `quantization_config` of config.json.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizationConfig {
    /// Weight quantization of every targeted layer.
    pub weights: WeightQuant,
    /// Modules quantized: class names (`"Linear"`) or `re:` patterns.
    pub targets: Vec<String>,
    /// Modules left unquantized, e.g. `["lm_head"]`.
    pub ignore: Vec<String>,
    /// Whether some layers have a ragged last group (written as [`RAGGED_GROUPS_KEY`] only when true).
    pub ragged_groups: bool,
    /// The pruning the weights carry (zeros kept by quantization), if any.
    pub sparsity: Option<SparsityConfig>,
}

/// Errors unless `obj["quant_method"]` (at `key`) is compressed-tensors.
fn check_method(obj: &serde_json::Map<String, Value>, path: &Path, key: &str) -> Result<()> {
    let method = required_str(obj, path, key, "quant_method")?;
    if method != QUANT_METHOD {
        return Err(FormatError::invalid(
            path,
            key,
            format!("`{method}` is not supported (only `{QUANT_METHOD}`)"),
        ));
    }
    Ok(())
}

/// Reads a `quantization_config` (or a whole config.json holding one): the packed scheme, if
/// the weights are quantized, and the sparsity entry, if they are pruned.
pub fn read_compression(
    v: &Value,
    path: &Path,
) -> Result<(Option<QuantizationConfig>, Option<SparsityConfig>)> {
    let key = "quantization_config";
    let obj = as_object(v.get(key).unwrap_or(v), path, key)?;
    if obj.get("format").and_then(Value::as_str) == Some(DENSE_FORMAT) {
        let at = |k: &str| format!("{key}.{k}");
        check_method(obj, path, &at("quant_method"))?;
        if let Some(x) = obj.get("config_groups").filter(|x| !is_empty(x)) {
            return Err(FormatError::invalid(
                path,
                at("config_groups"),
                format!("format `{DENSE_FORMAT}` holds no quantized weights, got {x}"),
            ));
        }
        let sparsity_key = at("sparsity_config");
        let sparsity = obj.get("sparsity_config").unwrap_or(&Value::Null);
        return Ok((
            None,
            SparsityConfig::from_json(sparsity, path, &sparsity_key)?,
        ));
    }
    let q = QuantizationConfig::from_json(v, path)?;
    let s = q.sparsity.clone();
    Ok((Some(q), s))
}

impl QuantizationConfig {
    /// A config targeting `Linear`, ignoring `lm_head`, without ragged groups.
    pub fn new(weights: WeightQuant) -> Self {
        QuantizationConfig {
            weights,
            targets: vec!["Linear".into()],
            ignore: vec!["lm_head".into()],
            ragged_groups: false,
            sparsity: None,
        }
    }

    /// The JSON object compressed-tensors 0.15 writes for this scheme (see the module doc).
    pub fn to_json(&self) -> Value {
        let w = &self.weights;
        let group_size = match w.strategy {
            QuantStrategy::Group => json!(w.group_size),
            _ => Value::Null,
        };
        let zp_dtype = if w.symmetric {
            Value::Null
        } else {
            json!("torch.int8")
        };
        let mut v = json!({
            "config_groups": {
                "group_0": {
                    "format": FORMAT_NAME,
                    "input_activations": null,
                    "output_activations": null,
                    "targets": self.targets,
                    "weights": {
                        "actorder": null,
                        "block_structure": null,
                        "dynamic": false,
                        "group_size": group_size,
                        "num_bits": w.num_bits,
                        "observer": "memoryless_minmax",
                        "observer_kwargs": {},
                        "scale_dtype": null,
                        "strategy": w.strategy.name(),
                        "symmetric": w.symmetric,
                        "type": "int",
                        "zp_dtype": zp_dtype,
                    },
                },
            },
            "format": FORMAT_NAME,
            "global_compression_ratio": null,
            "ignore": self.ignore,
            "kv_cache_scheme": null,
            "quant_method": QUANT_METHOD,
            "quantization_status": "compressed",
            "sparsity_config": {},
            "transform_config": {},
            "version": CT_VERSION,
        });
        if self.ragged_groups {
            v[RAGGED_GROUPS_KEY] = Value::Bool(true);
        }
        if let Some(s) = &self.sparsity {
            v["sparsity_config"] = s.to_json();
        }
        v
    }

    /// Parses a `quantization_config` object (or a whole config.json holding one); errors name `path` and the key.
    pub fn from_json(v: &Value, path: &Path) -> Result<Self> {
        let key = "quantization_config";
        let obj = as_object(v.get(key).unwrap_or(v), path, key)?;
        let at = |k: &str| format!("{key}.{k}");
        check_method(obj, path, &at("quant_method"))?;
        let format = required_str(obj, path, &at("format"), "format")?;
        if format != FORMAT_NAME {
            return Err(FormatError::invalid(
                path,
                at("format"),
                format!("format `{format}` is not supported (only `{FORMAT_NAME}`)"),
            ));
        }
        if let Some(s) = opt_str(obj, path, &at("quantization_status"), "quantization_status")? {
            if s != "compressed" {
                return Err(FormatError::invalid(
                    path,
                    at("quantization_status"),
                    format!("`{s}`: packed weights must be `compressed`"),
                ));
            }
        }
        if present(obj, "kv_cache_scheme") {
            return Err(FormatError::invalid(
                path,
                at("kv_cache_scheme"),
                "KV-cache (activation) quantization is not supported",
            ));
        }
        if let Some(x) = obj.get("transform_config").filter(|x| !is_empty(x)) {
            return Err(FormatError::invalid(
                path,
                at("transform_config"),
                format!("must be empty, got {x}"),
            ));
        }
        let sparsity_key = at("sparsity_config");
        let sparsity = match obj.get("sparsity_config") {
            Some(x) => SparsityConfig::from_json(x, path, &sparsity_key)?,
            None => None,
        };
        let ignore = match obj.get("ignore").filter(|x| !x.is_null()) {
            None => Vec::new(),
            Some(x) => string_list(x, path, &at("ignore"))?,
        };
        let ragged_groups = match obj.get(RAGGED_GROUPS_KEY) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(x) => {
                return Err(FormatError::invalid(
                    path,
                    at(RAGGED_GROUPS_KEY),
                    format!("expected true or false, got {x}"),
                ))
            }
        };
        let groups_key = at("config_groups");
        let groups = as_object(
            obj.get("config_groups")
                .ok_or_else(|| missing(path, &groups_key))?,
            path,
            &groups_key,
        )?;
        let mut entries = groups.iter();
        let (name, scheme) = match (entries.next(), entries.next()) {
            (Some(first), None) => first,
            _ => {
                return Err(FormatError::invalid(
                    path,
                    groups_key,
                    format!(
                        "exactly one config group is supported, got {} ({})",
                        groups.len(),
                        groups.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };
        let scheme_key = format!("{groups_key}.{name}");
        let (weights, targets) = match scheme {
            Value::Array(_) => (
                preset(name, path, &scheme_key)?,
                string_list(scheme, path, &scheme_key)?,
            ),
            _ => parse_scheme(scheme, path, &scheme_key)?,
        };
        Ok(QuantizationConfig {
            weights,
            targets,
            ignore,
            ragged_groups,
            sparsity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sparse_float_and_sparse_quantized_configs() {
        let s = SparsityConfig {
            structure: "unstructured".into(),
            global_sparsity: 0.25,
            targets: vec!["Linear".into()],
            ignore: vec!["lm_head".into()],
        };
        let p = Path::new(P);
        let (q, got) = read_compression(&s.to_quantization_config_json(), p).unwrap();
        assert_eq!((q, got), (None, Some(s.clone())));
        let mut qc = QuantizationConfig::new(WeightQuant::group(4, true, 32));
        qc.sparsity = Some(s.clone());
        let (q, got) = read_compression(&json!({"quantization_config": qc.to_json()}), p).unwrap();
        assert_eq!((q, got), (Some(qc), Some(s)));
        let bad = json!({"quant_method": "compressed-tensors", "format": "dense",
                         "config_groups": {"group_0": {"targets": ["Linear"]}}});
        let e = read_compression(&bad, p).unwrap_err().to_string();
        assert!(e.contains("config_groups"), "{e}");
    }

    const P: &str = "/m/config.json";

    /// Written by compressed-tensors 0.15.0.1 itself: a model with `up_proj`
    /// (Linear 256→64) and `lm_head`, `apply_quantization_config` with group_0 =
    /// 4-bit symmetric group-128 weights and ignore = ["lm_head"], then
    /// `ModelCompressor.from_pretrained_model(model, quantization_format="pack-quantized")`,
    /// `compress_model`, `update_config(dir)`; this is `config.json["quantization_config"]`.
    const LIBRARY_W4A16: &str = r#"{
  "config_groups": {
    "group_0": {
      "format": "pack-quantized",
      "input_activations": null,
      "output_activations": null,
      "targets": [
        "Linear"
      ],
      "weights": {
        "actorder": null,
        "block_structure": null,
        "dynamic": false,
        "group_size": 128,
        "num_bits": 4,
        "observer": "memoryless_minmax",
        "observer_kwargs": {},
        "scale_dtype": null,
        "strategy": "group",
        "symmetric": true,
        "type": "int",
        "zp_dtype": null
      }
    }
  },
  "format": "pack-quantized",
  "global_compression_ratio": null,
  "ignore": [
    "lm_head"
  ],
  "kv_cache_scheme": null,
  "quant_method": "compressed-tensors",
  "quantization_status": "compressed",
  "sparsity_config": {},
  "transform_config": {},
  "version": "0.15.0.1"
}"#;

    /// The library's W8A16 preset written via `QuantizationConfig(config_groups={"W8A16":
    /// ["Linear"]}, format="pack-quantized", ...)` + `update_config` (scheme format null).
    const LIBRARY_W8A16_PRESET: &str = r#"{"config_groups": {"W8A16": {"format": null,
      "input_activations": null, "output_activations": null, "targets": ["Linear"],
      "weights": {"actorder": null, "block_structure": null, "dynamic": false,
      "group_size": null, "num_bits": 8, "observer": "memoryless_minmax",
      "observer_kwargs": {}, "scale_dtype": null, "strategy": "channel", "symmetric": true,
      "type": "int", "zp_dtype": null}}}, "format": "pack-quantized",
      "global_compression_ratio": null, "ignore": ["lm_head"], "kv_cache_scheme": null,
      "quant_method": "compressed-tensors", "quantization_status": "compressed",
      "sparsity_config": {}, "transform_config": {}, "version": "0.15.0.1"}"#;

    fn parse(s: &str) -> Result<QuantizationConfig> {
        QuantizationConfig::from_json(&serde_json::from_str(s).unwrap(), Path::new(P))
    }

    fn err_with(edit: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(LIBRARY_W4A16).unwrap();
        edit(&mut v);
        QuantizationConfig::from_json(&v, Path::new(P))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_and_reproduces_the_library_json() {
        let c = parse(LIBRARY_W4A16).unwrap();
        assert_eq!(c, QuantizationConfig::new(WeightQuant::group(4, true, 128)));
        let lib: Value = serde_json::from_str(LIBRARY_W4A16).unwrap();
        assert_eq!(c.to_json(), lib);
        // Our serialization also has the library's (sorted) key order.
        assert_eq!(
            serde_json::to_string_pretty(&c.to_json()).unwrap(),
            LIBRARY_W4A16
        );
        let c = parse(LIBRARY_W8A16_PRESET).unwrap();
        assert_eq!(c.weights, WeightQuant::channel(8, true));
        assert_eq!(c.ignore, ["lm_head"]);
        // The whole config.json works too.
        let whole = json!({"model_type": "llama", "quantization_config": lib});
        assert_eq!(
            QuantizationConfig::from_json(&whole, Path::new(P))
                .unwrap()
                .weights
                .group_size,
            Some(128)
        );
    }

    #[test]
    fn asymmetric_writes_int8_zp_dtype_and_ragged_flag_only_when_set() {
        let mut c = QuantizationConfig::new(WeightQuant::group(4, false, 128));
        let v = c.to_json();
        assert_eq!(
            v["config_groups"]["group_0"]["weights"]["zp_dtype"],
            "torch.int8"
        );
        assert!(v.get(RAGGED_GROUPS_KEY).is_none());
        c.ragged_groups = true;
        let v = c.to_json();
        assert_eq!(v[RAGGED_GROUPS_KEY], true);
        assert_eq!(QuantizationConfig::from_json(&v, Path::new(P)).unwrap(), c);
        let ch = QuantizationConfig::new(WeightQuant::channel(8, true)).to_json();
        assert_eq!(
            ch["config_groups"]["group_0"]["weights"]["group_size"],
            Value::Null
        );
        assert_eq!(
            ch["config_groups"]["group_0"]["weights"]["strategy"],
            "channel"
        );
    }

    #[test]
    fn round_trips_every_scheme() {
        for bits in 2..=8 {
            for sym in [true, false] {
                for wq in [
                    WeightQuant::group(bits, sym, 32),
                    WeightQuant::channel(bits, sym),
                    WeightQuant::tensor(bits, sym),
                ] {
                    let c = QuantizationConfig {
                        weights: wq,
                        targets: vec!["Linear".into(), "re:.*proj$".into()],
                        ignore: vec![],
                        ragged_groups: bits % 2 == 0,
                        sparsity: (bits == 4).then(|| SparsityConfig {
                            structure: "2:4".into(),
                            global_sparsity: 0.5,
                            targets: vec!["Linear".into()],
                            ignore: vec!["lm_head".into()],
                        }),
                    };
                    let text = serde_json::to_string(&c.to_json()).unwrap();
                    assert_eq!(parse(&text).unwrap(), c);
                }
            }
        }
    }

    #[test]
    fn library_defaults_and_presets() {
        // QuantizationArgs defaults: 8 bits, int, symmetric, strategy from group_size.
        let mut v: Value = serde_json::from_str(LIBRARY_W4A16).unwrap();
        let w = v["config_groups"]["group_0"]["weights"]
            .as_object_mut()
            .unwrap();
        w.retain(|k, _| k == "group_size");
        let c = QuantizationConfig::from_json(&v, Path::new(P)).unwrap();
        assert_eq!(c.weights, WeightQuant::group(8, true, 128));
        v["config_groups"]["group_0"]["weights"]["group_size"] = json!(-1);
        let c = QuantizationConfig::from_json(&v, Path::new(P)).unwrap();
        assert_eq!(c.weights, WeightQuant::channel(8, true));
        v["config_groups"]["group_0"]["weights"] = json!({});
        let c = QuantizationConfig::from_json(&v, Path::new(P)).unwrap();
        assert_eq!(c.weights, WeightQuant::tensor(8, true));
        v["config_groups"] = json!({"w4a16_asym": ["Linear"]});
        let c = QuantizationConfig::from_json(&v, Path::new(P)).unwrap();
        assert_eq!(c.weights, WeightQuant::group(4, false, 128));
        assert_eq!(c.targets, ["Linear"]);
        v["config_groups"] = json!({"FP8": ["Linear"]});
        let e = QuantizationConfig::from_json(&v, Path::new(P))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config_groups.FP8") && e.contains("preset scheme `FP8`"),
            "{e}"
        );
    }

    #[test]
    fn rejects_what_cannot_be_loaded() {
        let w = "/config_groups/group_0/weights";
        let s = "/config_groups/group_0";
        let group_0: Value = serde_json::from_str::<Value>(LIBRARY_W4A16).unwrap()["config_groups"]
            ["group_0"]
            .clone();
        // (object to edit, key set in it, new value, substring of the error)
        let cases = [
            (
                "",
                "format",
                json!("naive-quantized"),
                "format `naive-quantized` is not supported",
            ),
            ("", "quant_method", json!("gptq"), "`gptq` is not supported"),
            ("", "quantization_status", json!("frozen"), "`frozen`"),
            ("", "kv_cache_scheme", json!({"num_bits": 8}), "KV-cache"),
            (
                "",
                "transform_config",
                json!({"config_groups": {}}),
                "must be empty",
            ),
            ("", "ignore", json!("lm_head"), "list of strings"),
            ("", RAGGED_GROUPS_KEY, json!("yes"), "true or false"),
            (
                "",
                "config_groups",
                json!({}),
                "exactly one config group is supported, got 0",
            ),
            (
                "/config_groups",
                "group_1",
                group_0,
                "exactly one config group is supported, got 2 (group_0, group_1)",
            ),
            (
                s,
                "input_activations",
                json!({"num_bits": 8}),
                "activation quantization",
            ),
            (
                s,
                "output_activations",
                json!({"num_bits": 8}),
                "activation quantization",
            ),
            (
                s,
                "format",
                json!("float-quantized"),
                "`float-quantized` is not supported",
            ),
            (w, "type", json!("float"), "only integer weights"),
            (w, "num_bits", json!(9), "2..=8 bits, got 9"),
            (w, "group_size", json!(0), "needs group_size > 0, got 0"),
            (w, "group_size", json!(-2), "got -2"),
            (w, "strategy", json!("block"), "`block` is not supported"),
            (w, "actorder", json!("group"), "weight_g_idx"),
            (w, "dynamic", json!(true), "dynamic quantization"),
            (
                w,
                "block_structure",
                json!([128, 128]),
                "block quantization",
            ),
            (
                w,
                "zp_dtype",
                json!("torch.float8_e4m3fn"),
                "`torch.float8_e4m3fn` is not supported",
            ),
        ];
        for (obj, k, value, needle) in cases {
            let e = err_with(|v| {
                let o = v.pointer_mut(obj).unwrap().as_object_mut().unwrap();
                o.insert(k.to_string(), value);
            });
            let key = match (obj, k) {
                ("/config_groups", _) => "quantization_config.config_groups".to_string(),
                _ => format!("quantization_config{}.{k}", obj.replace('/', ".")),
            };
            assert!(e.starts_with(P), "{e}");
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let e = err_with(|v| {
            let bitmask = json!({"format": "sparse-24-bitmask"});
            v.as_object_mut()
                .unwrap()
                .insert("sparsity_config".into(), bitmask);
        });
        assert!(
            e.contains("`quantization_config.sparsity_config.format`")
                && e.contains("`sparse-24-bitmask` is not supported"),
            "{e}"
        );
        let e = err_with(|v| {
            v.as_object_mut().unwrap().remove("format");
        });
        assert_eq!(
            e,
            format!("{P}: missing required key `quantization_config.format`")
        );
        let e = err_with(|v| {
            v["config_groups"]["group_0"]
                .as_object_mut()
                .unwrap()
                .remove("weights");
        });
        assert!(
            e.contains("missing required key") && e.contains("group_0.weights"),
            "{e}"
        );
        // Strategy `channel` with a positive group_size: the library rejects it too.
        let e = err_with(|v| {
            v["config_groups"]["group_0"]["weights"]["strategy"] = json!("channel");
        });
        assert!(
            e.contains("weights.group_size`: group_size 128 is only allowed with strategy `group`"),
            "{e}"
        );
        // actorder "weight" changes calibration only, not the format.
        let mut v: Value = serde_json::from_str(LIBRARY_W4A16).unwrap();
        v["config_groups"]["group_0"]["weights"]["actorder"] = json!("weight");
        assert!(QuantizationConfig::from_json(&v, Path::new(P)).is_ok());
    }
}
