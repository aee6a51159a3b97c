//! Small typed accessors for `serde_json` objects whose errors name the file and key.

use crate::error::{FormatError, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// A MissingKey error for `key`.
pub(super) fn missing(path: &Path, key: &str) -> FormatError {
    FormatError::MissingKey {
        path: path.to_path_buf(),
        key: key.to_string(),
    }
}

/// `v` as an object, or an error naming `key`.
pub(super) fn as_object<'a>(
    v: &'a Value,
    path: &Path,
    key: &str,
) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| FormatError::invalid(path, key, format!("expected an object, got {v}")))
}

/// Whether `obj[k]` exists and is not null.
pub(super) fn present(obj: &Map<String, Value>, k: &str) -> bool {
    obj.get(k).is_some_and(|x| !x.is_null())
}

/// Whether `v` is null, `{}` or `[]`.
pub(super) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `obj[k]` as a string if present and not null.
pub(super) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    path: &Path,
    key: &str,
    k: &str,
) -> Result<Option<&'a str>> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(x) => Err(FormatError::invalid(
            path,
            key,
            format!("expected a string, got {x}"),
        )),
    }
}

/// `obj[k]` as a string, required.
pub(super) fn required_str<'a>(
    obj: &'a Map<String, Value>,
    path: &Path,
    key: &str,
    k: &str,
) -> Result<&'a str> {
    opt_str(obj, path, key, k)?.ok_or_else(|| missing(path, key))
}

/// `v` as a list of strings.
pub(super) fn string_list(v: &Value, path: &Path, key: &str) -> Result<Vec<String>> {
    let bad = || FormatError::invalid(path, key, format!("expected a list of strings, got {v}"));
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
        .collect()
}
