//! Checks of stage settings shared by every stage's config: each error is a
//! [`CoreError::Setting`] naming the config field (the recipe key) and its value.

use std::path::{Path, PathBuf};

use compress_format::safetensors::Dtype;

use crate::error::{CoreError, Result};

/// `path` (the value of `field`) must be an existing file.
pub fn file(field: &str, path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(CoreError::missing(
            field,
            "required (a .txt, .json or .jsonl file)",
        ));
    }
    match path.is_file() {
        true => Ok(()),
        false => Err(CoreError::setting(field, path.display(), "file not found")),
    }
}

/// [`file()`] when `path` is set.
pub fn opt_file(field: &str, path: &Option<PathBuf>) -> Result<()> {
    path.as_deref().map_or(Ok(()), |p| file(field, p))
}

/// `value` must be finite and > 0.
pub fn positive(field: &str, value: f64) -> Result<()> {
    match value.is_finite() && value > 0.0 {
        true => Ok(()),
        false => Err(CoreError::setting(
            field,
            value,
            "must be a finite number > 0",
        )),
    }
}

/// `value` must be finite and ≥ 0.
pub fn non_negative(field: &str, value: f64) -> Result<()> {
    match value.is_finite() && value >= 0.0 {
        true => Ok(()),
        false => Err(CoreError::setting(
            field,
            value,
            "must be a finite number ≥ 0",
        )),
    }
}

/// `value` must be > 0.
pub fn nonzero(field: &str, value: usize) -> Result<()> {
    match value > 0 {
        true => Ok(()),
        false => Err(CoreError::setting(field, value, "must be > 0")),
    }
}

/// The dtype named by `field` (`f32`, `f16` or `bf16`), or `default` when unset.
pub fn dtype(field: &str, value: Option<&str>, default: Dtype) -> Result<Dtype> {
    let Some(s) = value else { return Ok(default) };
    match s.to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(Dtype::F32),
        "f16" | "float16" | "half" => Ok(Dtype::F16),
        "bf16" | "bfloat16" => Ok(Dtype::BF16),
        _ => Err(CoreError::setting(field, s, "expected f32, f16 or bf16")),
    }
}

/// Deserializes an optional text setting that may also be written as a number or a list of
/// numbers (`student_layers = 2`, `= "0,3"` or `= [0, 3]`), as the CLI's text flag takes it.
pub fn de_opt_text<'de, D>(d: D) -> std::result::Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Text {
        Str(String),
        Int(i64),
        List(Vec<i64>),
    }
    let t: Option<Text> = serde::Deserialize::deserialize(d)?;
    Ok(t.map(|t| match t {
        Text::Str(s) => s,
        Text::Int(i) => i.to_string(),
        Text::List(v) => v.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
    }))
}
