//! The `sparsity_config` entry of compressed-tensors' `quantization_config`, for pruned models
//! whose zeros are stored in place (format `dense`).
//!
//! compressed-tensors (`SparsityCompressionConfig`, registered as `dense`) writes
//!
//! ```json
//! "quantization_config": {
//!   "quant_method": "compressed-tensors",
//!   "format": "dense",
//!   "quantization_status": "compressed",
//!   "sparsity_config": {
//!     "format": "dense",
//!     "global_sparsity": 0.5,
//!     "ignore": ["lm_head"],
//!     "registry_requires_subclass": false,
//!     "sparsity_structure": "unstructured",
//!     "targets": ["Linear"]
//!   },
//!   "version": "0.15.0.1"
//! }
//! ```
//!
//! for a sparse float model (no `config_groups`), and the same `sparsity_config` next to the
//! `config_groups` of a pack-quantized one. `sparsity_structure` is `"unstructured"` or `"N:M"`
//! (at least N zeros in every M consecutive inputs); `global_sparsity` is the fraction of
//! zeros over the targeted weights. The `dense` format stores nothing extra: loaders read the
//! weights as they are, so the entry is informational. Compressed sparse formats
//! (`sparse-bitmask`, `sparse-24-bitmask`) are not read or written by this crate.

use super::consts::{CT_VERSION, DENSE_FORMAT, QUANT_METHOD};
use super::json::{as_object, opt_str, required_str, string_list};
use crate::error::{FormatError, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// A compressed-tensors `sparsity_config` of format `dense`.
#[derive(Clone, Debug, PartialEq)]
pub struct SparsityConfig {
    /// `"unstructured"` or `"N:M"`.
    pub structure: String,
    /// Fraction of zeros over the targeted weights.
    pub global_sparsity: f64,
    /// Modules pruned: class names (`"Linear"`) or `re:` patterns.
    pub targets: Vec<String>,
    /// Modules left dense.
    pub ignore: Vec<String>,
}

impl SparsityConfig {
    /// The `sparsity_config` object.
    pub fn to_json(&self) -> Value {
        json!({
            "format": DENSE_FORMAT,
            "global_sparsity": self.global_sparsity,
            "ignore": self.ignore,
            "registry_requires_subclass": false,
            "sparsity_structure": self.structure,
            "targets": self.targets,
        })
    }

    /// A whole `quantization_config` for a sparse float model (no quantization).
    pub fn to_quantization_config_json(&self) -> Value {
        json!({
            "format": DENSE_FORMAT,
            "quant_method": QUANT_METHOD,
            "quantization_status": "compressed",
            "sparsity_config": self.to_json(),
            "version": CT_VERSION,
        })
    }

    /// `(N, M)` of an `"N:M"` structure (`None` for unstructured).
    pub fn n_m(&self) -> Option<(usize, usize)> {
        parse_n_m(&self.structure)
    }

    /// Parses a `sparsity_config` object found at `key` of `path`; `None` when it is empty.
    pub fn from_json(v: &Value, path: &Path, key: &str) -> Result<Option<Self>> {
        if v.is_null() || v.as_object().is_some_and(Map::is_empty) {
            return Ok(None);
        }
        let obj = as_object(v, path, key)?;
        let at = |k: &str| format!("{key}.{k}");
        let format = required_str(obj, path, &at("format"), "format")?;
        if format != DENSE_FORMAT {
            return Err(FormatError::invalid(
                path,
                at("format"),
                format!("sparsity format `{format}` is not supported (only `{DENSE_FORMAT}`)"),
            ));
        }
        let structure = opt_str(obj, path, &at("sparsity_structure"), "sparsity_structure")?
            .unwrap_or("unstructured")
            .to_string();
        if structure != "unstructured" && parse_n_m(&structure).is_none() {
            return Err(FormatError::invalid(
                path,
                at("sparsity_structure"),
                format!("`{structure}`: expected `unstructured` or `N:M` with N < M"),
            ));
        }
        let global_sparsity = match obj.get("global_sparsity") {
            None | Some(Value::Null) => 0.0,
            Some(x) => x.as_f64().ok_or_else(|| {
                FormatError::invalid(
                    path,
                    at("global_sparsity"),
                    format!("expected a number, got {x}"),
                )
            })?,
        };
        let list = |k: &str| match obj.get(k).filter(|x| !x.is_null()) {
            None => Ok(Vec::new()),
            Some(x) => string_list(x, path, &at(k)),
        };
        Ok(Some(Self {
            structure,
            global_sparsity,
            targets: list("targets")?,
            ignore: list("ignore")?,
        }))
    }
}

/// `(N, M)` of `"N:M"` with `0 < N < M`.
pub fn parse_n_m(s: &str) -> Option<(usize, usize)> {
    let (n, m) = s.split_once(':')?;
    let (n, m) = (n.trim().parse().ok()?, m.trim().parse().ok()?);
    (n > 0 && n < m).then_some((n, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/m/config.json";

    #[test]
    fn round_trips() {
        let s = SparsityConfig {
            structure: "2:4".into(),
            global_sparsity: 0.5,
            targets: vec!["Linear".into()],
            ignore: vec!["lm_head".into()],
        };
        let v = s.to_json();
        assert_eq!(v["format"], "dense");
        let back = SparsityConfig::from_json(&v, Path::new(P), "sparsity_config").unwrap();
        assert_eq!(back, Some(s.clone()));
        assert_eq!(back.unwrap().n_m(), Some((2, 4)));
        let q = s.to_quantization_config_json();
        assert_eq!(q["quant_method"], "compressed-tensors");
        assert_eq!(q["sparsity_config"], v);
    }

    #[test]
    fn empty_is_none_and_bad_values_are_named() {
        let p = Path::new(P);
        assert_eq!(SparsityConfig::from_json(&json!({}), p, "k").unwrap(), None);
        assert_eq!(
            SparsityConfig::from_json(&Value::Null, p, "k").unwrap(),
            None
        );
        let e =
            SparsityConfig::from_json(&json!({"format": "sparse-bitmask"}), p, "k").unwrap_err();
        assert!(e.to_string().contains("k.format"), "{e}");
        let e = SparsityConfig::from_json(
            &json!({"format": "dense", "sparsity_structure": "4:2"}),
            p,
            "k",
        )
        .unwrap_err();
        assert!(e.to_string().contains("k.sparsity_structure"), "{e}");
        assert_eq!(parse_n_m("2:4"), Some((2, 4)));
        assert_eq!(parse_n_m("4:4"), None);
        assert_eq!(parse_n_m("0:4"), None);
    }
}
