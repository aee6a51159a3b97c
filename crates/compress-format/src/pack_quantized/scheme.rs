//! Parsing one compressed-tensors config group (`QuantizationScheme` /
//! `QuantizationArgs` JSON) into a [`WeightQuant`], with the library's
//! defaults for absent keys.

use super::consts::{DEFAULT_GROUP_SIZE, FORMAT_NAME};
use super::json::{as_object, missing, opt_str, present, string_list};
use super::{QuantStrategy, WeightQuant};
use crate::error::{FormatError, Result};
use serde_json::Value;
use std::path::Path;

/// Parses one config-group scheme object into weights and targets.
pub(super) fn parse_scheme(
    v: &Value,
    path: &Path,
    key: &str,
) -> Result<(WeightQuant, Vec<String>)> {
    let obj = as_object(v, path, key)?;
    let at = |k: &str| format!("{key}.{k}");
    for k in ["input_activations", "output_activations"] {
        if present(obj, k) {
            return Err(FormatError::invalid(
                path,
                at(k),
                "activation quantization is not supported (weight-only pack-quantized)",
            ));
        }
    }
    if let Some(f) = opt_str(obj, path, &at("format"), "format")? {
        if f != FORMAT_NAME {
            return Err(FormatError::invalid(
                path,
                at("format"),
                format!("format `{f}` is not supported (only `{FORMAT_NAME}`)"),
            ));
        }
    }
    let targets_key = at("targets");
    let targets = string_list(
        obj.get("targets")
            .ok_or_else(|| missing(path, &targets_key))?,
        path,
        &targets_key,
    )?;
    let weights_key = at("weights");
    let weights = match obj.get("weights").filter(|x| !x.is_null()) {
        Some(w) => parse_weights(w, path, &weights_key)?,
        None => return Err(missing(path, &weights_key)),
    };
    Ok((weights, targets))
}

/// Parses `QuantizationArgs` JSON, filling absent keys with the library's defaults.
fn parse_weights(v: &Value, path: &Path, key: &str) -> Result<WeightQuant> {
    let obj = as_object(v, path, key)?;
    let at = |k: &str| format!("{key}.{k}");
    let bad = |k: &str, msg: String| FormatError::invalid(path, at(k), msg);
    let num_bits = match obj.get("num_bits") {
        None => 8,
        Some(x) => x
            .as_u64()
            .and_then(|b| u8::try_from(b).ok())
            .ok_or_else(|| bad("num_bits", format!("expected a small integer, got {x}")))?,
    };
    if let Some(t) = opt_str(obj, path, &at("type"), "type")? {
        if !t.eq_ignore_ascii_case("int") {
            return Err(bad(
                "type",
                format!("`{t}` is not supported (only integer weights, `int`)"),
            ));
        }
    }
    let symmetric = match obj.get("symmetric") {
        None => true,
        Some(x) => x
            .as_bool()
            .ok_or_else(|| bad("symmetric", format!("expected true or false, got {x}")))?,
    };
    // group_size: null, -1 (channel) or > 0.
    let group_size: Option<i64> = match obj.get("group_size") {
        None | Some(Value::Null) => None,
        Some(x) => match x.as_i64() {
            Some(g) if g == -1 || g >= 0 => Some(g),
            _ => {
                return Err(bad(
                    "group_size",
                    format!("expected null, -1 or > 0, got {x}"),
                ))
            }
        },
    };
    let strategy = match opt_str(obj, path, &at("strategy"), "strategy")? {
        Some(s) => QuantStrategy::from_name(s).ok_or_else(|| {
            bad(
                "strategy",
                format!("`{s}` is not supported (tensor, channel or group)"),
            )
        })?,
        None => match group_size {
            None => QuantStrategy::Tensor,
            Some(-1) => QuantStrategy::Channel,
            Some(_) => QuantStrategy::Group,
        },
    };
    let group_size = match (strategy, group_size) {
        (_, None) => None,
        (QuantStrategy::Channel, Some(-1)) => None,
        (_, Some(g)) => Some(usize::try_from(g).map_err(|_| {
            bad(
                "group_size",
                format!("-1 is only allowed with strategy `channel`, not `{strategy}`"),
            )
        })?),
    };
    match obj.get("dynamic") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(x) => {
            return Err(bad(
                "dynamic",
                format!("dynamic quantization ({x}) is not supported"),
            ))
        }
    }
    match obj.get("actorder") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::String(s))
            if s.eq_ignore_ascii_case("weight") || s.eq_ignore_ascii_case("static") => {}
        Some(x) => {
            return Err(bad(
                "actorder",
                format!("{x} stores a weight_g_idx permutation, which is not supported"),
            ))
        }
    }
    if present(obj, "block_structure") {
        return Err(bad(
            "block_structure",
            "block quantization is not supported".into(),
        ));
    }
    if let Some(z) = opt_str(obj, path, &at("zp_dtype"), "zp_dtype")? {
        if z != "torch.int8" {
            return Err(bad(
                "zp_dtype",
                format!("`{z}` is not supported (torch.int8)"),
            ));
        }
    }
    let wq = WeightQuant {
        num_bits,
        symmetric,
        strategy,
        group_size,
    };
    wq.validate_at(path, key)?;
    Ok(wq)
}

/// The weights of a compressed-tensors preset scheme name usable with pack-quantized.
pub(super) fn preset(name: &str, path: &Path, key: &str) -> Result<WeightQuant> {
    match name.to_ascii_uppercase().as_str() {
        "W4A16" => Ok(WeightQuant::group(4, true, DEFAULT_GROUP_SIZE)),
        "W4A16_ASYM" => Ok(WeightQuant::group(4, false, DEFAULT_GROUP_SIZE)),
        "W8A16" => Ok(WeightQuant::channel(8, true)),
        _ => Err(FormatError::invalid(
            path,
            key,
            format!(
                "preset scheme `{name}` is not supported (W4A16, W4A16_ASYM, W8A16, or a full scheme object)"
            ),
        )),
    }
}
